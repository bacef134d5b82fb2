"""The auditor's audit-log browser: entries newest first, filtered by actor, action or date, with the result of
verifying the whole log (hash chain, Merkle roots, signed checkpoints) shown above them."""

from __future__ import annotations

import itertools
from collections import deque
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from starlette.responses import Response

from hygie.api.auth import Caller, allow, signed_in
from hygie.api.context import hub
from hygie.api.pages import render

router = APIRouter()
SignedIn = Annotated[Caller, Depends(signed_in)]
PAGE = 200


class EntryOut(BaseModel):
    seq: int
    time: str
    actor: str
    action: str
    object: str
    outcome: str
    details: dict[str, Any]
    hash: str


class VerificationOut(BaseModel):
    ok: bool
    entries: int
    checkpoints: int
    findings: list[str]
    last_checkpoint_size: int | None
    last_checkpoint_root: str | None


class AuditPage(BaseModel):
    verification: VerificationOut
    entries: list[EntryOut]
    truncated: bool


def audit_page(
    request: Request, c: Caller, actor: str | None, action: str | None, since: str | None, limit: int
) -> AuditPage:
    from hygie.governance.audit import AuditLog
    from hygie.governance.permissions import Action

    allow(c, Action.AUDIT_READ)
    log = AuditLog(hub(request).settings)
    checked = log.verify()
    checkpoints = log.checkpoints()
    last = checkpoints[-1] if checkpoints else None
    verification = VerificationOut(
        ok=checked.ok,
        entries=checked.entries,
        checkpoints=checked.checkpoints,
        findings=[str(f) for f in checked.findings[:20]],
        last_checkpoint_size=last.size if last else None,
        last_checkpoint_root=last.root if last else None,
    )
    newest: deque[Any] = deque(maxlen=limit + 1)  # the newest matching entries, without loading the whole log
    newest.extend(log.entries(since=since or None, actor=actor or None, action=action or None))
    truncated = len(newest) > limit
    rows = list(itertools.islice(reversed(newest), limit))
    entries = [
        EntryOut(seq=e.seq, time=e.time, actor=e.actor, action=e.action, object=e.object, outcome=e.outcome,
                 details=e.details, hash=e.hash)
        for e in rows
    ]  # fmt: skip
    return AuditPage(verification=verification, entries=entries, truncated=truncated)


Filter = Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00-\x1f]*$")]


@router.get("/audit", include_in_schema=False)
def audit(
    request: Request,
    c: SignedIn,
    actor: Filter = None,
    action: Filter = None,
    since: Filter = None,
) -> Response:
    page = audit_page(request, c, actor, action, since, PAGE)
    return render(request, "audit.html", page=page, actor=actor or "", action=action or "", since=since or "")


@router.get(
    "/api/v1/audit", response_model=AuditPage, tags=["auditor"], summary="Audit log entries and its verification"
)
def audit_api(
    request: Request,
    c: SignedIn,
    actor: Filter = None,
    action: Filter = None,
    since: Filter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = PAGE,
) -> AuditPage:
    return audit_page(request, c, actor, action, since, limit)
