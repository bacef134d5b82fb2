"""The governance services a request uses, opened on the hub's metadata store and reporting to its event sink.

Routes call these services exactly as the CLI does; each service checks its own permission with
``governance.permissions`` and records its own events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

from hygie.api.context import hub

if TYPE_CHECKING:
    from hygie.governance.accounts import Accounts
    from hygie.governance.optout import OptOutRegister
    from hygie.governance.projects import Projects
    from hygie.jobs.airlock import Airlock
    from hygie.jobs.queue import Jobs


def accounts(request: Request) -> Accounts:
    return hub(request).accounts


def projects(request: Request) -> Projects:
    from hygie.governance.projects import Projects

    h = hub(request)
    return Projects(h.store, events=h.events)


def optout(request: Request) -> OptOutRegister:
    from hygie.governance.optout import OptOutRegister

    h = hub(request)
    return OptOutRegister(h.store, events=h.events)


def jobs(request: Request) -> Jobs:
    from hygie.jobs.queue import Jobs

    h = hub(request)
    return Jobs(h.store, events=h.events)


def airlock(request: Request) -> Airlock:
    from hygie.jobs.airlock import Airlock

    h = hub(request)
    return Airlock(h.store, events=h.events)
