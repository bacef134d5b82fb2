"""The portal's templates (Jinja2, server-rendered) and static files (our own CSS and a few lines of JS).

Nothing is fetched from outside the hub: no CDN, no web font, no external script (CSP ``default-src 'self'``).
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
