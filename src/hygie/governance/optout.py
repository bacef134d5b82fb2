"""The opt-out register: patients who objected to the re-use of their data (GDPR Art 21, SNDS, EHDS Art 71).

A patient is entered by NIR. The NIR is checked (structure and key), then pseudonymised at once exactly as the
release build pseudonymises a patient: ``linkage key -> NIR token -> pseudonym key -> person_id``
(``ingest.pseudonymise`` and ``ingest.build``). Only that ``person_id`` is stored, so the register holds no
identifier and matches the ``person_id`` the patient has in every release built with the same keys; the NIR is
never stored, logged or shown (errors give row numbers only).

The register is append-only (``models.OptOutEvent``): entering and withdrawing an objection each add an event;
a person is opted out when their latest event is an entry. ``register_version`` (the newest event id) lets a
job or a release manifest record which state of the register it applied. The job runner removes
``opted_out_person_ids(store)`` from every study it runs.

Limits: a patient who reached the hub without a NIR, or through a site that hashed identities with a trusted
third party's key instead of the hub's linkage key, cannot be matched by NIR; a person whose records carry two
different NIRs is matched by the NIR whose token the release build chose (the smallest token).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hygie.config import Settings
from hygie.errors import HygieError, InputError, Problem
from hygie.governance.accounts import utcnow
from hygie.governance.events import Event, EventSink, default_sink
from hygie.governance.models import OptOutEvent
from hygie.governance.permissions import Action, require
from hygie.governance.roles import Principal
from hygie.governance.store import Store
from hygie.identity import normalise_nir

MAX_PROBLEMS = 20  # reported per file; the rest are counted
OBJECT = "optout-register"


class Pseudonymiser:
    """NIR -> release ``person_id``, with the hub's linkage and pseudonym keys (loaded once)."""

    def __init__(self, settings: Settings) -> None:
        from hygie.ingest.build import pseudonym_key
        from hygie.ingest.deposit import linkage_key

        self._linkage = linkage_key(settings)
        self._pseudonym = pseudonym_key(settings)

    def nir_token(self, nir: str) -> str:
        normalised = normalise_nir(nir)
        if normalised is None:
            raise HygieError("not a valid NIR (15 characters with a correct key)")
        token = self._linkage.token("nir", normalised)
        assert token is not None
        return token

    def person_id_of_token(self, nir_token: str) -> int:
        from hygie.ingest.build import _person_id  # the one definition of a person's id from its anchor

        return _person_id(self._pseudonym, nir_token)

    def person_id(self, nir: str) -> int:
        return self.person_id_of_token(self.nir_token(nir))


@dataclass(frozen=True)
class RegisterChange:
    rows: int  # NIRs read
    changed: int  # persons entered (or withdrawn)
    unchanged: int  # already in that state (a NIR given twice counts once as changed)
    version: int  # the register's version afterwards


@dataclass(frozen=True)
class RegisterStatus:
    opted_out: int
    events: int
    version: int


def read_nir_file(path: Path) -> list[str]:
    """The NIRs of a CSV file with a ``nir`` column; every bad row is reported by number, never by value."""
    try:
        f = path.open(encoding="utf-8-sig", newline="")
    except OSError as e:
        raise InputError(Problem(path.name, f"cannot be read ({e.strerror})")) from None
    with f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "nir" not in columns:
            raise InputError(Problem(path.name, "no 'nir' column in the header", row=0))
        reader.fieldnames = columns
        nirs: list[str] = []
        problems: list[Problem] = []
        more = 0
        for row_number, row in enumerate(reader, start=1):
            raw = (row.get("nir") or "").strip()
            if None in row:
                problem = Problem(path.name, "too many fields", row=row_number)
            elif not raw:
                problem = Problem(path.name, "no NIR", row=row_number, column="nir")
            elif (nir := normalise_nir(raw)) is None:
                problem = Problem(path.name, "not a valid NIR (15 characters with a correct key)", row_number, "nir")
            else:
                nirs.append(nir)
                continue
            if len(problems) < MAX_PROBLEMS:
                problems.append(problem)
            else:
                more += 1
    if problems:
        raise InputError(problems, more=more, hint="nothing was entered in the register; fix the file and retry")
    if not nirs:
        raise InputError(Problem(path.name, "no NIR in the file"))
    return nirs


class OptOutRegister:
    """Register service: entries and withdrawals need ``optout.manage`` and are reported (as counts)."""

    def __init__(self, store: Store, *, events: EventSink | None = None) -> None:
        self.store = store
        self.events = events if events is not None else default_sink(store.settings)

    def add(
        self, actor: Principal, nirs: Iterable[str], *, source: str, now: dt.datetime | None = None
    ) -> RegisterChange:
        """Enter the objection of each patient in ``nirs`` (all or nothing)."""
        return self._change(actor, nirs, "add", source, now or utcnow())

    def remove(
        self, actor: Principal, nirs: Iterable[str], *, source: str, now: dt.datetime | None = None
    ) -> RegisterChange:
        """Withdraw the objection of each patient in ``nirs`` (the patient asked to be included again)."""
        return self._change(actor, nirs, "remove", source, now or utcnow())

    def _change(
        self, actor: Principal, nirs: Iterable[str], action: str, source: str, now: dt.datetime
    ) -> RegisterChange:
        try:
            require(actor, Action.OPTOUT_MANAGE, now=now)
        except HygieError:
            self.events.record(Event(actor.name, f"optout.{action}", OBJECT, "denied", now))
            raise
        pseudonymiser = Pseudonymiser(self.store.settings)
        tokens = [pseudonymiser.nir_token(nir) for nir in nirs]
        persons = {pseudonymiser.person_id_of_token(t): t for t in tokens}
        rows = len(tokens)
        with self.store.session(serialised=True) as session:
            current = _opted_out(session)
            wanted = [p for p in persons if (p in current) != (action == "add")]
            session.add_all(
                OptOutEvent(
                    person_id=p,
                    nir_token=persons[p],
                    action=action,
                    source=source,
                    entered_at=now,
                    entered_by=actor.name,
                )
                for p in wanted
            )
            session.flush()
            version = session.scalar(select(func.max(OptOutEvent.id))) or 0
        change = RegisterChange(rows, len(wanted), rows - len(wanted), version)
        self.events.record(
            Event(
                actor.name,
                f"optout.{action}",
                OBJECT,
                "ok",
                now,
                {"rows": rows, "changed": change.changed, "version": version, "source": source},
            )
        )
        return change

    def status(self) -> RegisterStatus:
        with self.store.session() as session:
            events = session.scalar(select(func.count(OptOutEvent.id))) or 0
            version = session.scalar(select(func.max(OptOutEvent.id))) or 0
            return RegisterStatus(len(_opted_out(session)), events, version)


def _opted_out(session: Session) -> set[int]:
    """Persons whose latest event is an entry."""
    latest = select(OptOutEvent.person_id, func.max(OptOutEvent.id).label("last")).group_by(OptOutEvent.person_id)
    sub = latest.subquery()
    query = select(OptOutEvent.person_id).join(sub, OptOutEvent.id == sub.c.last).where(OptOutEvent.action == "add")
    return set(session.scalars(query))


def opted_out_person_ids(store: Store) -> frozenset[int]:
    """The release ``person_id`` of every patient currently opted out: what the job runner removes."""
    with store.session() as session:
        return frozenset(_opted_out(session))


def register_version(store: Store) -> int:
    """The register's current version (0 when empty): record it with every job and release that applied it."""
    with store.session() as session:
        return session.scalar(select(func.max(OptOutEvent.id))) or 0
