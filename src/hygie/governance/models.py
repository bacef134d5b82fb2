"""Tables of the metadata store (SQLAlchemy 2 typed declarative models).

The schema is created and changed only by the Alembic migrations in ``migrations/versions`` (a test checks the
migrations produce exactly these models). Times are stored in UTC. Later work adds ``jobs`` (a job belongs to a
project: ``project_id`` references ``projects.id``) and ``outputs`` (an output belongs to a job).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, Date, DateTime, ForeignKey, Index, MetaData, String, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as naive UTC (SQLite has no time zones) and always read back time-zone aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the metadata store: use an aware UTC datetime")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime(), dt.date: Date()}


class User(Base):
    """One account. ``kind`` is ``person`` (one named person, interactive) or ``service`` (tokens only)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="person")
    password_hash: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None]
    last_login_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(String(64))

    grants: Mapped[list[RoleGrant]] = relationship(back_populates="user", cascade="all, delete-orphan")
    totp: Mapped[TotpSecret | None] = relationship(cascade="all, delete-orphan")
    trainings: Mapped[list[TrainingRecord]] = relationship(cascade="all, delete-orphan")


class TrainingRecord(Base):
    """A course an account's person passed (``safe_people``: roles that reach data need a valid one)."""

    __tablename__ = "training_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    course: Mapped[str] = mapped_column(String(120))
    completed_on: Mapped[dt.date]
    expires_on: Mapped[dt.date]  # valid through this day
    recorded_at: Mapped[dt.datetime]
    recorded_by: Mapped[str] = mapped_column(String(64))


class TotpSecret(Base):
    """A user's TOTP secret, wrapped (AES-256-GCM) by the operator's master key; never stored in clear."""

    __tablename__ = "totp_secrets"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))  # fingerprint of the master key that wrapped it
    wrapped: Mapped[str] = mapped_column(Text)
    enrolled_at: Mapped[dt.datetime]
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)  # a code is accepted once (no replay)


class RoleGrant(Base):
    """A role on a scope. ``scope_key`` ("", "site:NAME" or "project:ID") makes a grant unique, since SQL
    unique constraints treat NULLs as distinct."""

    __tablename__ = "role_grants"
    __table_args__ = (UniqueConstraint("user_id", "role", "scope_key", name="uq_role_grants_user_role_scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    site: Mapped[str | None] = mapped_column(String(64))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    scope_key: Mapped[str] = mapped_column(String(80))
    granted_at: Mapped[dt.datetime]
    granted_by: Mapped[str] = mapped_column(String(64))
    # The last periodic review (``safe_people``): the grant lapses a review period after this, or after
    # ``granted_at`` when it has never been reviewed.
    reviewed_at: Mapped[dt.datetime | None]
    reviewed_by: Mapped[str | None] = mapped_column(String(64))

    @property
    def attested_at(self) -> dt.datetime:
        """When the grant was last confirmed: its last review, or its granting."""
        return self.reviewed_at or self.granted_at

    user: Mapped[User] = relationship(back_populates="grants")
    project: Mapped[Project | None] = relationship(back_populates="grants")


class ApiToken(Base):
    """An API token: only the SHA-256 of the secret is kept; the secret is shown once, at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship()


class Project(Base):
    """An approved use of data: purpose, legal basis, scope (releases, sites, tables, time window), validity.

    Scope lists are JSON arrays; ``None`` for sites or tables means "every site" / "every table".
    """

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(Text, default="")
    legal_basis: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default="draft")
    valid_from: Mapped[dt.datetime | None]
    valid_until: Mapped[dt.datetime | None]
    scope_releases: Mapped[list[str]] = mapped_column(JSON, default=list)
    scope_sites: Mapped[list[str] | None] = mapped_column(JSON)
    scope_tables: Mapped[list[str] | None] = mapped_column(JSON)
    window_start: Mapped[dt.date | None]
    window_end: Mapped[dt.date | None]
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    approved_at: Mapped[dt.datetime | None]
    approved_by: Mapped[str | None] = mapped_column(String(64))
    ended_at: Mapped[dt.datetime | None]  # when it was revoked or expired
    end_reason: Mapped[str | None] = mapped_column(Text)

    grants: Mapped[list[RoleGrant]] = relationship(back_populates="project", cascade="all, delete-orphan")


class OptOutEvent(Base):
    """The opt-out register, append-only: each row adds or removes one person (by release ``person_id``).

    A person is opted out when their latest event is an ``add``; the register's version is its highest ``id``.
    ``nir_token`` (the keyed linkage token of the NIR, never the NIR) lets a pseudonym-key rotation recompute
    ``person_id`` without asking for the NIRs again.
    """

    __tablename__ = "optout_events"
    __table_args__ = (Index("ix_optout_events_person_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(BigInteger)
    nir_token: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(8))  # add | remove
    source: Mapped[str] = mapped_column(String(200))
    entered_at: Mapped[dt.datetime]
    entered_by: Mapped[str] = mapped_column(String(64))


class Job(Base):
    """A study submitted to a project, run by the worker on the project's scope (``hygie.jobs``).

    ``status``: queued -> running -> succeeded | failed | timed_out | cancelled. The study bundle (the study file
    and the cohort files it names) lives in ``HYGIE_HOME/jobs/<id>/bundle``; its outputs in ``.../out``.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    submitted_by: Mapped[str] = mapped_column(String(64))
    submitted_at: Mapped[dt.datetime]
    release: Mapped[str] = mapped_column(String(128))
    engine: Mapped[str] = mapped_column(String(16))
    study_name: Mapped[str] = mapped_column(String(128))
    study_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    worker: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    message: Mapped[str] = mapped_column(Text, default="")
    optout_version: Mapped[int | None]  # the opt-out register version applied to the run

    project: Mapped[Project] = relationship()


class OutputRequest(Base):
    """A request to let a job's outputs leave the hub (the airlock). Two output checkers, neither of them the
    requester, must approve; one rejection ends it. ``files`` lists name, bytes, sha256 and rows of each file."""

    __tablename__ = "output_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime]
    justification: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | blocked | rejected | released
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # automated checks
    disclosure: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the study manifest's flags
    released_at: Mapped[dt.datetime | None]

    job: Mapped[Job] = relationship()
    project: Mapped[Project] = relationship()
    reviews: Mapped[list[OutputReview]] = relationship(back_populates="request", cascade="all, delete-orphan")


class OutputReview(Base):
    """One checker's decision on an output request (one per checker)."""

    __tablename__ = "output_reviews"
    __table_args__ = (UniqueConstraint("request_id", "reviewer", name="uq_output_reviews_request_reviewer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("output_requests.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(8))  # approve | reject
    comment: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime]

    request: Mapped[OutputRequest] = relationship(back_populates="reviews")


class WebSession(Base):
    """A signed-in browser session of the portal (``hygie.api.sessions``). Only the SHA-256 of the cookie's
    random id is kept, so a copy of the database holds no usable cookie. ``last_seen_at`` moves forward at most
    once a minute (a write per click would serialise every reader on SQLite)."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
