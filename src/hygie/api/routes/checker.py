"""The output checker's review queue: each requested output with its automated check findings, its disclosure
control flags and its tables and plots; approve or reject with a comment. The airlock service decides who may
review (never the requester) and releases an output at its second approval."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field
from starlette.responses import Response

from hygie.api import services
from hygie.api.auth import Caller, allow, check_csrf, may, signed_in
from hygie.api.pages import render
from hygie.api.results import read_output
from hygie.api.routes.researcher import Id, OutputOut, output_out, output_ref

router = APIRouter()
SignedIn = Annotated[Caller, Depends(signed_in)]


def queue(request: Request, c: Caller) -> list[OutputOut]:
    """Requests the caller may review (the airlock lists them; ``decide`` filters out the caller's own)."""
    from hygie.governance.permissions import Action

    airlock = services.airlock(request)
    return [output_out(o) for o in airlock.list(c.principal) if may(c, Action.OUTPUT_REVIEW, output_ref(request, o))]


@router.get("/review", include_in_schema=False)
def review_queue(request: Request, c: SignedIn) -> Response:
    outputs = queue(request, c)
    pending = [o for o in outputs if o.status == "pending" and c.username not in {r.reviewer for r in o.reviews}]
    done = [o for o in outputs if o not in pending]
    return render(request, "checker/queue.html", pending=pending, done=done)


@router.get("/review/{output_id}", include_in_schema=False)
def review_page(request: Request, c: SignedIn, output_id: Id) -> Response:
    from hygie.governance.permissions import Action
    from hygie.jobs.queue import job_folder

    output = services.airlock(request).get(output_id)
    allow(c, Action.OUTPUT_REVIEW, output_ref(request, output))
    view = read_output(job_folder(services.hub(request).store, output.job_id) / "out")
    reviewed = c.username in {r.reviewer for r in output.reviews}
    return render(
        request, "checker/review.html", output=output_out(output), view=view, disclosure=output.disclosure,
        can_review=output.status == "pending" and not reviewed,
    )  # fmt: skip


@router.post("/review/{output_id}", include_in_schema=False, dependencies=[Depends(check_csrf)])
def review_form(
    request: Request,
    c: SignedIn,
    output_id: Id,
    decision: Annotated[str, Form(pattern=r"^(approve|reject)$")],
    comment: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    services.airlock(request).review(c.principal, output_id, approve=decision == "approve", comment=comment)
    return RedirectResponse("/review", status_code=303)


class ReviewIn(BaseModel):
    decision: str = Field(pattern=r"^(approve|reject)$")
    comment: str = Field(default="", max_length=5000)


@router.get("/api/v1/reviews", response_model=list[OutputOut], tags=["output checker"], summary="The review queue")
def queue_api(request: Request, c: SignedIn) -> list[OutputOut]:
    return queue(request, c)


@router.post(
    "/api/v1/outputs/{output_id}/reviews", response_model=OutputOut, tags=["output checker"],
    dependencies=[Depends(check_csrf)], summary="Approve or reject an output (a rejection needs a comment)",
)  # fmt: skip
def review_api(request: Request, c: SignedIn, output_id: Id, body: ReviewIn) -> OutputOut:
    info = services.airlock(request).review(
        c.principal, output_id, approve=body.decision == "approve", comment=body.comment
    )
    return output_out(info)
