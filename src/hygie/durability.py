"""Making a write survive a power loss: after writing a file and renaming it into place, flush the file and the
folder that names it (a rename is durable only once its folder is)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's contents and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
