"""Run one job's study in a child process, on the project's scope, under time and memory limits.

The worker never runs researcher-supplied study files in its own process: a child (``python -m
hygie.jobs.executor REQUEST.json``) opens the release through a ``DataScope`` (the project's tables, sites and
time window, minus opted-out patients), runs the study, and writes only the study's outputs (aggregates that
passed disclosure control) to the job's ``out`` folder. The child's memory is capped (address-space limit and
DuckDB's own memory limit), it has no network (``sandbox``), its wall time is capped, and it is killed when the
job is cancelled.

What the researcher sees of a run is ``log.txt``: progress lines and error messages that hygie writes itself,
which never contain patient values. Tracebacks go to ``worker.log`` (operator only, mode 0600).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import resource
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hygie.config import Settings
from hygie.engine.scope import DataScope

if TYPE_CHECKING:
    from hygie.disclosure.policy import DisclosurePolicy

HISTORY_OUTPUT = "run"  # the run's disclosure-controlled tables, under <job>/history/run until released

GIB = 1024**3
EXIT_TIMEOUT = 124  # like coreutils' timeout
EXIT_CANCELLED = 125
EXIT_MEMORY = 137


@dataclass(frozen=True)
class JobLimits:
    """Per-job caps; an operator sets them per deployment (HYGIE_JOB_SECONDS, HYGIE_JOB_MEMORY_GB)."""

    seconds: int = 3600
    memory_gb: float = 6.0

    @classmethod
    def from_env(cls) -> JobLimits:
        return cls(
            seconds=int(os.environ.get("HYGIE_JOB_SECONDS", cls.seconds)),
            memory_gb=float(os.environ.get("HYGIE_JOB_MEMORY_GB", cls.memory_gb)),
        )

    @property
    def duckdb_memory(self) -> str:
        # DuckDB spills beyond its limit; leave headroom below the process cap for Python and Arrow buffers.
        return f"{max(int(self.memory_gb * 1024 * 0.6), 256)}MB"


@dataclass(frozen=True)
class ExecutionRequest:
    """What the child needs, written as ``request.json`` in the job's folder."""

    job_id: str
    study_file: str  # relative to the job's bundle folder
    release: str
    engine: str = "duckdb"
    tables: list[str] | None = None
    sites: list[str] | None = None
    window: tuple[str | None, str | None] = (None, None)
    excluded_persons_file: str | None = None  # one person_id per line, in the job folder (never in logs)
    extra: dict[str, str] = field(default_factory=dict)

    def scope(self, folder: Path) -> DataScope:
        excluded: frozenset[int] = frozenset()
        if self.excluded_persons_file:
            lines = (folder / self.excluded_persons_file).read_text().split()
            excluded = frozenset(int(x) for x in lines)
        start, end = self.window
        return DataScope(
            tables=frozenset(self.tables) if self.tables is not None else None,
            sites=frozenset(self.sites) if self.sites is not None else None,
            window=(dt.date.fromisoformat(start) if start else None, dt.date.fromisoformat(end) if end else None),
            excluded_persons=excluded,
        )

    def write(self, folder: Path) -> Path:
        path = folder / "request.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> ExecutionRequest:
        data = json.loads(path.read_text())
        data["window"] = tuple(data.get("window") or (None, None))
        return cls(**data)


@dataclass(frozen=True)
class Execution:
    """How a child run ended."""

    state: str  # succeeded | failed | timed_out | cancelled
    exit_code: int
    seconds: float
    message: str


def execute(
    folder: Path,
    settings: Settings,
    limits: JobLimits,
    *,
    cancelled: Callable[[], bool] = lambda: False,
    poll_seconds: float = 0.5,
) -> Execution:
    """Run the job in ``folder`` (holding request.json and bundle/) in a child process and wait for it."""
    env = dict(os.environ)
    env.update(
        HYGIE_HOME=str(settings.home),
        HYGIE_MASTER_KEY_FILE=str(settings.master_key_file),
        HYGIE_MEMORY_LIMIT=limits.duckdb_memory,
        HYGIE_JOB_MEMORY_BYTES=str(int(limits.memory_gb * GIB)),
    )
    started = time.monotonic()
    with (folder / "worker.log").open("ab") as operator_log:
        os.chmod(folder / "worker.log", 0o600)
        child = subprocess.Popen(
            [sys.executable, "-m", "hygie.jobs.executor", str(folder / "request.json")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=operator_log,
            start_new_session=True,  # its own process group: a kill reaches Spark's JVM too
        )
        state, message = "succeeded", "finished"
        while True:
            try:
                code = child.wait(timeout=poll_seconds)
                break
            except subprocess.TimeoutExpired:
                pass
            if cancelled():
                state, message = "cancelled", "cancelled on request"
                code = _kill(child)
                break
            if time.monotonic() - started > limits.seconds:
                state, message = "timed_out", f"stopped: the job exceeded its {limits.seconds} s time limit"
                code = _kill(child)
                break
    if state == "succeeded" and code != 0:
        state = "failed"
        message = _last_log_line(folder) or (
            "stopped: the job exceeded its memory limit" if code in (EXIT_MEMORY, -signal.SIGKILL) else "failed"
        )
    if state != "succeeded":
        log(folder, message)
    return Execution(state, code, round(time.monotonic() - started, 3), message)


def _kill(child: subprocess.Popen) -> int:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
        os.killpg(child.pid, signal.SIGKILL)
    return child.wait()


def log(folder: Path, message: str) -> None:
    """One line of the researcher-visible job log (hygie's own words, never patient values)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with (folder / "log.txt").open("a", encoding="utf-8") as f:
        f.write(f"{stamp} {message}\n")


def _last_log_line(folder: Path) -> str:
    path = folder / "log.txt"
    if not path.exists():
        return ""
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[-1].split(" ", 1)[-1] if lines else ""


def _child(request_path: Path) -> int:
    """The child process: limits first, then the study."""
    memory = int(os.environ.get("HYGIE_JOB_MEMORY_BYTES", "0"))
    request = ExecutionRequest.read(request_path)
    folder = request_path.parent
    if memory and request.engine == "duckdb":  # a JVM reserves far more address space than it uses
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    from hygie.errors import HygieError
    from hygie.jobs.sandbox import SandboxError, deny_network

    try:
        how = deny_network()
    except SandboxError as e:
        log(folder, f"failed: {e}")
        return 1
    log(folder, "network: none (own network namespace)" if how == "namespace" else "network: refused by hygie")

    try:
        _run(request, folder)
    except MemoryError:
        log(folder, "stopped: the job exceeded its memory limit")
        return EXIT_MEMORY
    except HygieError as e:
        log(folder, f"failed: {e}")  # hygie's errors name files, rows and fields, never values
        return 1
    except Exception as e:  # the researcher sees the kind, the operator the traceback
        log(folder, f"failed: internal error ({type(e).__name__}); the operator has the details")
        traceback.print_exc()
        return 2
    return 0


def _run(request: ExecutionRequest, folder: Path) -> None:
    from hygie.disclosure.history import FolderHistory
    from hygie.releases import ReleaseStore
    from hygie.studies import load_study, run_study

    settings = Settings.from_env()
    release = ReleaseStore(settings).get(request.release)
    study = load_study(folder / "bundle" / request.study_file)
    project = Path(request.extra["project_folder"]) if "project_folder" in request.extra else None
    log(folder, f"running study {study.name} on release {release.name} with {request.engine}")
    run = run_study(
        study,
        release,
        settings,
        engine=request.engine,
        out=folder / "out",
        scope=request.scope(folder),
        policy=project_policy(project),
        history=FolderHistory(project / "released") if project else None,
        step=lambda message: log(folder, message),
    )
    if not release.manifest.synthetic:  # what the airlock adds to the project's history once released
        FolderHistory(folder / "history").record(HISTORY_OUTPUT, [*run.results, run.cohorts])
    log(folder, "study finished")


def project_policy(project: Path | None) -> DisclosurePolicy | None:
    """The project's disclosure policy (``disclosure.json`` in its folder), else the hub's default."""
    from hygie.disclosure.policy import DisclosurePolicy

    path = project / "disclosure.json" if project else None
    if path is None or not path.exists():
        return None
    return DisclosurePolicy.from_mapping(json.loads(path.read_text(encoding="utf-8")), str(path.name))


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1])))
