"""Public pages, open to anyone without an account: the transparency registry of projects and how to object.

The registry says, for every project past its draft stage, who uses which data for what, on which legal basis,
in which state, and which outputs it released. It holds no patient data: project descriptions, release names,
site names, CDM table names, dates and released output names only.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from fastapi import APIRouter, Request
from markupsafe import Markup
from pydantic import BaseModel, TypeAdapter
from starlette.responses import Response

from hygie.api.auth import Caller, allow, caller
from hygie.api.context import hub
from hygie.api.pages import render

router = APIRouter()


class RegistryEntry(BaseModel):
    name: str
    title: str
    purpose: str
    legal_basis: str
    status: str
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None
    releases: list[str]
    sites: list[str] | None  # None: every site of the releases
    tables: list[str] | None  # None: every table
    window_start: dt.date | None
    window_end: dt.date | None
    approved_at: dt.datetime | None
    released_outputs: list[str]


REGISTRY_TTL = 2.0  # seconds: the registry is public and the same for everyone; a change shows within 2 s


def registry(request: Request, c: Caller) -> list[RegistryEntry]:
    """Projects the public may read about (``governance.projects.on_public_registry`` decides which).

    The list is computed at most every ``REGISTRY_TTL`` seconds: it is the hub's most-read page, it holds only
    public information, and no access depends on it (access follows the project's state at each request)."""
    from hygie.governance.permissions import Action

    allow(c, Action.REGISTRY_VIEW_PUBLIC)
    h = hub(request)
    now = time.monotonic()
    with _registry_lock:
        cached = h.cache.get("registry")
        if cached is not None and now - cached[0] < REGISTRY_TTL:
            return cached[1]
    entries = _registry(request)
    with _registry_lock:
        h.cache["registry"] = (now, entries)
    return entries


_registry_lock = threading.Lock()


def _registry(request: Request) -> list[RegistryEntry]:
    from hygie.governance.projects import Projects

    h = hub(request)
    released = released_outputs(request)
    entries = []
    for p in Projects(h.store, events=h.events).public():
        entries.append(
            RegistryEntry(
                name=p.name,
                title=p.title,
                purpose=p.purpose,
                legal_basis=p.legal_basis,
                status=p.status,
                valid_from=p.valid_from,
                valid_until=p.valid_until,
                releases=list(p.releases),
                sites=list(p.sites) if p.sites is not None else None,
                tables=list(p.tables) if p.tables is not None else None,
                window_start=p.window_start,
                window_end=p.window_end,
                approved_at=p.approved_at,
                released_outputs=released.get(p.name, []),
            )
        )
    return entries


def released_outputs(request: Request) -> dict[str, list[str]]:
    """Per project, its released outputs as "output <id>: <study> (<date>)". Released outputs are public by
    design (the transparency register lists them); their files stay for project members only."""
    from sqlalchemy import select

    from hygie.governance.models import Job, OutputRequest, Project

    query = (
        select(Project.name, OutputRequest.id, Job.study_name, OutputRequest.released_at)
        .join(OutputRequest, OutputRequest.project_id == Project.id)
        .join(Job, Job.id == OutputRequest.job_id)
        .where(OutputRequest.status == "released")
        .order_by(OutputRequest.id)
    )
    out: dict[str, list[str]] = {}
    with hub(request).store.session() as session:
        for project, output_id, study, released_at in session.execute(query):
            when = f" ({released_at:%Y-%m-%d})" if released_at else ""
            out.setdefault(project, []).append(f"output {output_id}: {study}{when}")
    return out


def entries_html(request: Request, entries: list[RegistryEntry]) -> Markup:
    """The registry's entries as HTML, rendered once per registry refresh: the page around them (navigation,
    CSRF token) is the caller's, the entries are the same for everyone."""
    from hygie.api.pages import templates

    h = hub(request)
    with _registry_lock:
        cached = h.cache.get("registry_html")
        if cached is not None and cached[0] is entries:
            return cached[1]
    html = Markup(templates.env.get_template("_registry_entries.html").render(entries=entries))
    with _registry_lock:
        h.cache["registry_html"] = (entries, html)
    return html


_ENTRIES = TypeAdapter(list[RegistryEntry])


def entries_json(request: Request, entries: list[RegistryEntry]) -> bytes:
    """The registry as the API returns it (``response_model`` documents it), serialised once per refresh."""
    h = hub(request)
    with _registry_lock:
        cached = h.cache.get("registry_json")
        if cached is not None and cached[0] is entries:
            return cached[1]
    body = _ENTRIES.dump_json(entries)
    with _registry_lock:
        h.cache["registry_json"] = (entries, body)
    return body


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    entries = registry(request, caller(request))
    return render(request, "registry.html", entries=entries, entries_html=entries_html(request, entries))


@router.get("/optout", include_in_schema=False)
async def optout(request: Request) -> Response:
    return render(request, "optout.html")


@router.get(
    "/api/v1/registry",
    response_model=list[RegistryEntry],
    tags=["public"],
    summary="The public registry of projects (no account needed)",
)
async def registry_api(request: Request) -> Response:
    entries = registry(request, caller(request))
    return Response(entries_json(request, entries), media_type="application/json")
