"""The researcher's pages and endpoints: their projects, submitting a study, following a job, requesting the
release of its outputs, and reading and downloading released results (tables, plots, files).

Researchers never see row-level data: a job's outputs are aggregates written after disclosure control, shown
only once two output checkers released them; downloads go through the airlock service (permission, hash check,
audit event)."""

from __future__ import annotations

import datetime as dt
import io
import re
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse
from markupsafe import Markup
from pydantic import BaseModel, Field, TypeAdapter
from starlette.responses import Response

from hygie.api import services
from hygie.api.auth import Caller, allow, check_csrf, may, signed_in
from hygie.api.context import utcnow
from hygie.api.pages import render
from hygie.api.results import read_output
from hygie.api.routes.operator import NAME, ProjectOut, project_out
from hygie.errors import HygieError, InputError, NotFoundError, Problem

if TYPE_CHECKING:
    from hygie.governance.projects import ProjectInfo

router = APIRouter()
SignedIn = Annotated[Caller, Depends(signed_in)]
Id = Annotated[int, PathParam(ge=1, le=2**53)]  # database ids: no overflow of a 64-bit column
MAX_UPLOAD = 2 * 1024 * 1024  # a study file or a cohort definition; far more than either needs
MAX_FILES = 50
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


class JobOut(BaseModel):
    id: int
    project: str
    submitted_by: str
    submitted_at: dt.datetime
    release: str
    engine: str
    study_name: str
    status: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    message: str


class JobDetail(JobOut):
    log: str


class ReviewOut(BaseModel):
    reviewer: str
    decision: str
    comment: str
    at: dt.datetime


class OutputFile(BaseModel):
    name: str
    bytes: int
    sha256: str
    rows: int | None = None


class OutputOut(BaseModel):
    id: int
    job_id: Id
    project: str
    requested_by: str
    requested_at: dt.datetime
    status: str
    files: list[OutputFile]
    findings: list[dict[str, Any]]
    reviews: list[ReviewOut]
    released_at: dt.datetime | None


def job_out(j: Any, cls: type[JobOut] = JobOut, **extra: Any) -> Any:
    return cls(
        id=j.id, project=j.project, submitted_by=j.submitted_by, submitted_at=j.submitted_at, release=j.release,
        engine=j.engine, study_name=j.study_name, status=j.status, started_at=j.started_at,
        finished_at=j.finished_at, message=j.message, **extra,
    )  # fmt: skip


def output_out(o: Any) -> OutputOut:
    files = [OutputFile(**{k: f.get(k) for k in ("name", "bytes", "sha256", "rows")}) for f in o.files]
    return OutputOut(
        id=o.id, job_id=o.job_id, project=o.project, requested_by=o.requested_by, requested_at=o.requested_at,
        status=o.status, files=files,
        findings=o.findings, reviews=[ReviewOut(**r.__dict__) for r in o.reviews], released_at=o.released_at,
    )  # fmt: skip


def my_projects(request: Request, c: Caller) -> tuple[ProjectInfo, ...]:
    from hygie.governance.permissions import Action, reachable_projects

    # Only the projects the caller's grants could open are read (all of them for an operator or an auditor);
    # each is then decided, at every request.
    candidates = services.projects(request).list(reachable_projects(c.principal, Action.PROJECT_VIEW))
    now = utcnow()
    return tuple(p for p in candidates if may(c, Action.PROJECT_VIEW, p.ref, now=now))


_PROJECTS_OUT = TypeAdapter(list[ProjectOut])


def projects_json(request: Request, projects: tuple[ProjectInfo, ...]) -> bytes:
    """The body of ``GET /api/v1/projects`` (``response_model`` documents it), serialised once for the same
    project snapshots (``fragments``)."""
    render = lambda: _PROJECTS_OUT.dump_json([project_out(p) for p in projects])  # noqa: E731
    return services.hub(request).fragments.get("projects.json", projects, render)


def projects_rows(request: Request, projects: tuple[ProjectInfo, ...]) -> Markup:
    """The rows of the projects page, rendered once for the same project snapshots (``fragments``)."""
    from hygie.api.pages import templates

    def render() -> Markup:
        template = templates.env.get_template("researcher/_project_rows.html")
        return Markup(template.render(projects=[project_out(p) for p in projects]))

    return services.hub(request).fragments.get("projects.html", projects, render)


def output_ref(request: Request, o: Any) -> Any:
    from hygie.governance.permissions import OutputRef

    return OutputRef(services.projects(request).get(o.project).ref, o.requested_by, o.status == "released")


# -- submitting ---------------------------------------------------------------------------------------------------


async def _save(upload: UploadFile, target: Path) -> None:
    size = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as f:
        while chunk := await upload.read(64 * 1024):
            size += len(chunk)
            if size > MAX_UPLOAD:
                raise InputError(Problem(upload.filename or "upload", f"larger than {MAX_UPLOAD // 1024} KiB"))
            f.write(chunk)


def _cohort_paths(study_file: Path) -> dict[str, str]:
    """Base name -> relative path of each Circe file the study names (where an uploaded file must go)."""
    try:
        data = yaml.safe_load(study_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return {}  # the study loader reports the error with its line
    cohorts = data.get("cohorts") if isinstance(data, dict) else None
    paths = {}
    for entry in (cohorts or {}).values() if isinstance(cohorts, dict) else ():
        circe = entry.get("circe") if isinstance(entry, dict) else None
        if isinstance(circe, str):
            paths[Path(circe).name] = circe
    return paths


async def submit_job(
    request: Request, c: Caller, project: str, release: str, engine: str, study: UploadFile, cohorts: list[UploadFile]
) -> JobOut:
    """Save the uploaded study and cohort files in a private temporary folder, laid out as the study names them,
    then hand them to the job service (which validates, checks permission and scope, and copies the bundle)."""
    if len(cohorts) > MAX_FILES:
        raise HygieError(f"at most {MAX_FILES} cohort files per study")
    with tempfile.TemporaryDirectory(prefix="hygie-upload-", dir=services.hub(request).settings.home) as tmp:
        folder = Path(tmp) / "study"
        study_file = folder / "study.yaml"
        await _save(study, study_file)
        wanted = _cohort_paths(study_file)
        for upload in cohorts:
            name = Path(upload.filename or "").name
            if not upload.filename:
                continue
            if not FILE_NAME.match(name):
                raise InputError(Problem(name or "cohort file", "file names use letters, digits, '.', '_' and '-'"))
            relative = wanted.get(name, name)
            target = (folder / relative).resolve()
            if not target.is_relative_to(folder.resolve()):
                raise InputError(Problem("study.yaml", f"cohort file {relative} lies outside the study's folder"))
            await _save(upload, target)
        info = services.jobs(request).submit(c.principal, project, study_file, release, engine=engine)
    return job_out(info)


# -- pages ----------------------------------------------------------------------------------------------------------


@router.get("/projects", include_in_schema=False)
async def projects_page(request: Request) -> Response:
    c = await signed_in(request)  # called, not a dependency: FastAPI's resolution of one cost more than the page
    return render(request, "researcher/projects.html", rows=projects_rows(request, my_projects(request, c)))


@router.get(
    "/api/v1/projects", response_model=list[ProjectOut], tags=["researcher"], summary="Projects the caller may view"
)
async def projects_api(request: Request) -> Response:
    # Defined next to the page: routes are matched in order, and these two are the most read of this router.
    c = await signed_in(request)
    return Response(projects_json(request, my_projects(request, c)), media_type="application/json")


@router.get("/projects/{name}", include_in_schema=False)
def project_page(request: Request, c: SignedIn, name: str) -> Response:
    from hygie.governance.permissions import Action

    project = services.projects(request).view(c.principal, name)
    jobs = services.jobs(request).list(c.principal, name)
    outputs = [o for o in services.airlock(request).list(c.principal) if o.project == name]
    return render(
        request,
        "researcher/project.html",
        project=project_out(project),
        jobs=[job_out(j) for j in reversed(jobs)],
        outputs=[output_out(o) for o in reversed(outputs)],
        can_submit=may(c, Action.JOB_SUBMIT, project.ref),
    )


@router.post("/projects/{name}/jobs", include_in_schema=False, dependencies=[Depends(check_csrf)])
async def submit_form(
    request: Request,
    c: SignedIn,
    name: str,
    release: Annotated[str, Form(pattern=NAME)],
    study: Annotated[UploadFile, File()],
    cohorts: Annotated[list[UploadFile], File()] = [],  # noqa: B006 - FastAPI reads the default, never mutates it
    engine: Annotated[str, Form(pattern=r"^(duckdb|spark)$")] = "duckdb",
) -> Response:
    job = await submit_job(request, c, name, release, engine, study, cohorts)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.get("/jobs/{job_id}", include_in_schema=False)
def job_page(request: Request, c: SignedIn, job_id: Id) -> Response:
    from hygie.governance.permissions import Action, JobRef

    service = services.jobs(request)
    job = service.view(c.principal, job_id)
    ref = JobRef(services.projects(request).get(job.project).ref, job.submitted_by)
    outputs = [o for o in services.airlock(request).list(c.principal) if o.job_id == job_id]
    return render(
        request,
        "researcher/job.html",
        job=job_out(job),
        log=service.log(c.principal, job_id),
        outputs=[output_out(o) for o in outputs],
        can_request=job.status == "succeeded" and not outputs and may(c, Action.OUTPUT_REQUEST, ref),
        can_cancel=not job.finished and may(c, Action.JOB_CANCEL, ref),
    )


@router.post("/jobs/{job_id}/cancel", include_in_schema=False, dependencies=[Depends(check_csrf)])
def cancel_form(request: Request, c: SignedIn, job_id: Id) -> Response:
    services.jobs(request).cancel(c.principal, job_id)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/outputs", include_in_schema=False, dependencies=[Depends(check_csrf)])
def request_form(
    request: Request, c: SignedIn, job_id: Id, justification: Annotated[str, Form(max_length=5000)] = ""
) -> Response:
    output = services.airlock(request).request(c.principal, job_id, justification=justification)
    return RedirectResponse(f"/outputs/{output.id}", status_code=303)


@router.get("/outputs/{output_id}", include_in_schema=False)
def output_page(request: Request, c: SignedIn, output_id: Id) -> Response:
    """A released output: its tables, plots and files. Before release only its state is shown."""
    from hygie.governance.permissions import Action
    from hygie.jobs.airlock import released_folder

    airlock = services.airlock(request)
    visible = {o.id for o in airlock.list(c.principal)}
    if output_id not in visible:
        raise NotFoundError(f"no output {output_id} you may see")
    output = airlock.get(output_id)
    view = None
    if output.status == "released":
        allow(c, Action.OUTPUT_DOWNLOAD, output_ref(request, output))
        view = read_output(released_folder(services.hub(request).store, output_id))
    return render(request, "researcher/output.html", output=output_out(output), view=view)


def _download(request: Request, c: Caller, output_id: Id, dest: Path) -> list[Path]:
    return services.airlock(request).download(c.principal, output_id, dest)


def _attachment(data: bytes, filename: str, media_type: str) -> Response:
    return Response(data, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# -- API and downloads (shared by pages and tokens) ----------------------------------------------------------------

TAG = ["researcher"]


@router.get("/api/v1/projects/{name}", response_model=ProjectOut, tags=TAG, summary="One project")
def project_api(request: Request, c: SignedIn, name: str) -> ProjectOut:
    return project_out(services.projects(request).view(c.principal, name))


@router.get("/api/v1/projects/{name}/jobs", response_model=list[JobOut], tags=TAG, summary="A project's jobs")
def jobs_api(request: Request, c: SignedIn, name: str) -> list[JobOut]:
    services.projects(request).view(c.principal, name)
    return [job_out(j) for j in services.jobs(request).list(c.principal, name)]


@router.post(
    "/api/v1/projects/{name}/jobs", response_model=JobOut, status_code=201, tags=TAG,
    dependencies=[Depends(check_csrf)], summary="Submit a study (multipart: study file and its Circe cohort files)",
)  # fmt: skip
async def submit_api(
    request: Request,
    c: SignedIn,
    name: str,
    release: Annotated[str, Form(pattern=NAME)],
    study: Annotated[UploadFile, File()],
    cohorts: Annotated[list[UploadFile], File()] = [],  # noqa: B006
    engine: Annotated[str, Form(pattern=r"^(duckdb|spark)$")] = "duckdb",
) -> JobOut:
    return await submit_job(request, c, name, release, engine, study, cohorts)


@router.get("/api/v1/jobs/{job_id}", response_model=JobDetail, tags=TAG, summary="A job, with its log")
def job_api(request: Request, c: SignedIn, job_id: Id) -> JobDetail:
    service = services.jobs(request)
    return job_out(service.view(c.principal, job_id), JobDetail, log=service.log(c.principal, job_id))


@router.post(
    "/api/v1/jobs/{job_id}/cancel", response_model=JobOut, tags=TAG, dependencies=[Depends(check_csrf)],
    summary="Cancel a job",
)  # fmt: skip
def cancel_api(request: Request, c: SignedIn, job_id: Id) -> JobOut:
    return job_out(services.jobs(request).cancel(c.principal, job_id))


class OutputRequestIn(BaseModel):
    justification: str = Field(default="", max_length=5000)


@router.post(
    "/api/v1/jobs/{job_id}/outputs", response_model=OutputOut, status_code=201, tags=TAG,
    dependencies=[Depends(check_csrf)], summary="Ask for a finished job's outputs to be released",
)  # fmt: skip
def request_api(request: Request, c: SignedIn, job_id: Id, body: OutputRequestIn) -> OutputOut:
    return output_out(services.airlock(request).request(c.principal, job_id, justification=body.justification))


@router.get("/api/v1/outputs", response_model=list[OutputOut], tags=TAG, summary="Outputs the caller may see")
def outputs_api(request: Request, c: SignedIn) -> list[OutputOut]:
    return [output_out(o) for o in services.airlock(request).list(c.principal)]


@router.get("/api/v1/outputs/{output_id}", response_model=OutputOut, tags=TAG, summary="One output request")
def output_api(request: Request, c: SignedIn, output_id: Id) -> OutputOut:
    airlock = services.airlock(request)
    if output_id not in {o.id for o in airlock.list(c.principal)}:
        raise NotFoundError(f"no output {output_id} you may see")
    return output_out(airlock.get(output_id))


@router.get(
    "/api/v1/outputs/{output_id}/download", tags=TAG, summary="A released output's files, as a zip",
    response_class=Response, responses={200: {"content": {"application/zip": {}}}},
)  # fmt: skip
def download_zip(request: Request, c: SignedIn, output_id: Id) -> Response:
    with tempfile.TemporaryDirectory(prefix="hygie-download-", dir=services.hub(request).settings.home) as tmp:
        files = _download(request, c, output_id, Path(tmp))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for path in files:
                z.write(path, path.relative_to(tmp).as_posix())
    return _attachment(buffer.getvalue(), f"hygie-output-{output_id}.zip", "application/zip")


@router.get(
    "/api/v1/outputs/{output_id}/files/{name}", tags=TAG, summary="One file of a released output",
    response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}},
)  # fmt: skip
def download_file(request: Request, c: SignedIn, output_id: Id, name: str) -> Response:
    with tempfile.TemporaryDirectory(prefix="hygie-download-", dir=services.hub(request).settings.home) as tmp:
        files = {p.relative_to(tmp).as_posix(): p for p in _download(request, c, output_id, Path(tmp))}
        if name not in files:
            raise NotFoundError(f"output {output_id} has no file {name!r}")
        data = files[name].read_bytes()
    media = "text/csv" if name.endswith(".csv") else "application/octet-stream"
    return _attachment(data, Path(name).name, media)
