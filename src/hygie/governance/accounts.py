"""Local accounts: argon2id passwords, a TOTP second factor, lockout after repeated failures, API tokens.

- Passwords: at least 12 characters; stored as argon2id hashes (argon2-cffi defaults), re-hashed when the
  parameters change.
- TOTP (RFC 6238, 30-second steps, one step of clock drift tolerated): the secret is wrapped by the operator's
  master key (``hygie.keys``), so a copy of the metadata database alone cannot mint codes; a code is accepted
  once (replays are refused). Required for every role in ``roles.MFA_ROLES``.
- Lockout: ``MAX_FAILURES`` consecutive failures (bad password or bad code) lock the account for
  ``LOCKOUT``; while locked even correct credentials are refused. Failures do not say which factor was wrong,
  nor whether the account exists.
- API tokens: ``hyg_`` + 256 random bits, shown once; only their SHA-256 is stored. Tokens are issued only to
  accounts whose second factor is in place when their roles need one. A refused token is always audited; a
  token's use is audited (and its ``last_used_at`` written) at its first use and then at most once every
  ``TOKEN_USE_RECORD`` per token, like a sign-in followed by clicks: a script calling the API in a loop would
  otherwise write an audit entry and a database row per call (decision 0020).
- Disabling an account or setting its password ends its portal sessions (``models.WebSession``).
- Accounts are ``person`` accounts (one named person; an e-mail address, when given, is unique) or ``service``
  accounts (tokens only, never a password login, never a role that needs a second factor).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import ColumnElement, FromClause, Row, Select, bindparam, delete, func, select, update
from sqlalchemy.orm import Session, selectinload

from hygie.errors import ConflictError, HygieError, NotFoundError
from hygie.governance.events import Detail, Event, EventSink, Outcome, default_sink
from hygie.governance.models import (
    ApiToken,
    Project,
    RoleGrant,
    TotpSecret,
    TrainingRecord,
    User,
    UTCDateTime,
    WebSession,
)
from hygie.governance.permissions import Action, require
from hygie.governance.roles import MFA_ROLES, TRAINED_ROLES, Grant, Principal, Role
from hygie.governance.safe_people import (
    TRAINING_VALIDITY_DAYS,
    ReviewStatus,
    grant_counts,
    next_change,
    review_deadline,
    review_status,
    trained,
)
from hygie.governance.store import Store
from hygie.keys import Keyring, WrappedKey
from hygie.releases import validate_name

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything, but a megabyte "password" is an attack, not a secret
MAX_FAILURES = 5
LOCKOUT = dt.timedelta(minutes=15)
TOTP_STEP = 30
TOKEN_PREFIX = "hyg_"
TOKEN_USE_RECORD = dt.timedelta(minutes=5)
ISSUER = "hygie"


class AuthenticationError(HygieError):
    """Credentials refused. The message never says which factor failed or whether the account exists."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_password_policy(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise HygieError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise HygieError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if username.lower() in password.lower():
        raise HygieError("a password must not contain the username")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class UserInfo:
    username: str
    full_name: str
    email: str | None
    kind: str
    active: bool
    grants: frozenset[Grant]
    totp_enrolled: bool
    locked_until: dt.datetime | None
    created_at: dt.datetime


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str  # base32, for manual entry
    uri: str  # otpauth:// URI, for a QR code


@dataclass(frozen=True)
class TokenInfo:
    id: int
    username: str
    name: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


def _grant(row: RoleGrant) -> Grant:
    return Grant(Role(row.role), site=row.site, project=row.project.name if row.project is not None else None)


@dataclass(frozen=True)
class GrantReview:
    """A grant as the periodic review sees it."""

    username: str
    grant: Grant
    granted_at: dt.datetime
    reviewed_at: dt.datetime | None
    reviewed_by: str | None
    deadline: dt.datetime  # it lapses then unless reviewed
    status: ReviewStatus
    trained: bool | None  # for roles that need training: whether a valid record covers today

    @property
    def needs_attention(self) -> bool:
        return self.status is not ReviewStatus.CURRENT or self.trained is False


@dataclass(frozen=True)
class TrainingInfo:
    username: str
    course: str
    completed_on: dt.date
    expires_on: dt.date
    valid: bool


def grants_of(user: User) -> frozenset[Grant]:
    """Every grant the account holds, in force or lapsed (listings show them all)."""
    return frozenset(_grant(g) for g in user.grants)


def trained_until(user: User) -> dt.date | None:
    return max((t.expires_on for t in user.trainings), default=None)


def grants_in_force(user: User, now: dt.datetime) -> frozenset[Grant]:
    """The grants that count at ``now`` (``safe_people``: reviewed in time, trained where the role needs it)."""
    until = trained_until(user)
    return frozenset(_grant(g) for g in user.grants if grant_counts(Role(g.role), g.attested_at, until, now))


def _user_info(user: User) -> UserInfo:
    return UserInfo(
        user.username,
        user.full_name,
        user.email,
        user.kind,
        user.active,
        grants_of(user),
        user.totp is not None,
        user.locked_until,
        user.created_at,
    )


def _token_info(token: ApiToken) -> TokenInfo:
    return TokenInfo(
        token.id,
        token.user.username,
        token.name,
        token.created_at,
        token.expires_at,
        token.revoked_at,
        token.last_used_at,
    )


def _get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFoundError(f"no user named {username!r}")
    return user


def principal_columns() -> tuple[ColumnElement[Any], ...]:
    """What ``principal_from_rows`` reads: the account's name, state and second factor, one grant per row with
    its last attestation (review, or grant)."""
    u, g, p, t = User.__table__, RoleGrant.__table__, Project.__table__, TotpSecret.__table__
    tr = TrainingRecord.__table__
    attested = func.coalesce(g.c.reviewed_at, g.c.granted_at, type_=UTCDateTime()).label("attested_at")
    training = select(func.max(tr.c.expires_on)).where(tr.c.user_id == u.c.id).scalar_subquery()
    return (u.c.username, u.c.active, t.c.user_id.is_not(None).label("mfa"), g.c.role, g.c.site,
            p.c.name.label("project"), attested, training.label("trained_until"))  # fmt: skip


def principal_joins(source: FromClause) -> FromClause:
    """``source`` (which holds the ``users`` table) with the account's second factor and grants joined in."""
    u, g, p, t = User.__table__, RoleGrant.__table__, Project.__table__, TotpSecret.__table__
    return (
        source.outerjoin(t, t.c.user_id == u.c.id)
        .outerjoin(g, g.c.user_id == u.c.id)
        .outerjoin(p, p.c.id == g.c.project_id)
    )


def principal_from_rows(rows: Sequence[Row[Any]], now: dt.datetime | None = None) -> Principal:
    """The principal of an account from the rows of ``principal_columns`` (at least one): no grant counts
    while the account is disabled, nor when ``safe_people`` says it does not (review lapsed, training missing)."""
    first = rows[0]
    now = now or utcnow()
    grants = (
        frozenset(
            Grant(Role(r.role), site=r.site, project=r.project)
            for r in rows
            if r.role is not None and grant_counts(Role(r.role), r.attested_at, _as_date(r.trained_until), now)
        )
        if first.active
        else frozenset()
    )
    return Principal(first.username, grants, mfa=bool(first.mfa))


class AccountRows:
    """The rows of ``principal_columns`` for one account, as read, and the principal they give at a moment.

    Kept by the store's read cache between requests (``readcache``): the principal is derived again whenever
    ``now`` reaches the next moment a grant's standing may change (``safe_people.next_change``: a review deadline,
    the end of a training), so the rules apply at every request exactly as if the rows were read again."""

    __slots__ = ("_memo", "rows")

    def __init__(self, rows: Sequence[Row[Any]]) -> None:
        self.rows = rows
        self._memo: tuple[Principal, dt.datetime, dt.datetime | None] | None = None  # (principal, from, until)

    def __bool__(self) -> bool:
        return bool(self.rows)

    def principal(self, now: dt.datetime) -> Principal:
        memo = self._memo
        if memo is not None and memo[1] <= now and (memo[2] is None or now < memo[2]):
            return memo[0]
        principal = principal_from_rows(self.rows, now)
        changes = [
            m
            for r in self.rows
            if r.role is not None
            and (m := next_change(Role(r.role), r.attested_at, _as_date(r.trained_until), now)) is not None
        ]
        self._memo = (principal, now, min(changes) if changes else None)  # one assignment: safe across threads
        return principal


def _as_date(value: dt.date | str | None) -> dt.date | None:
    """SQLite returns the aggregate of a DATE column as text."""
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def _principal_query() -> Select[Any]:
    u = User.__table__
    return select(*principal_columns()).select_from(principal_joins(u)).where(u.c.username == bindparam("username"))


def _token_query() -> Select[Any]:
    """A token with its account and the account's grants (one row per grant), for ``principal_from_rows``."""
    t, u = ApiToken.__table__, User.__table__
    return (
        select(t.c.id, t.c.revoked_at, t.c.expires_at, t.c.last_used_at, *principal_columns())
        .select_from(principal_joins(t.join(u, u.c.id == t.c.user_id)))
        .where(t.c.token_hash == bindparam("token_hash"))
    )


# Built once: the statements read on every request keep their compiled form and cache key (SQLAlchemy memoises
# both on the statement object), which is most of the cost of a small query.
_PRINCIPAL_QUERY = _principal_query()
_TOKEN_QUERY = _token_query()


def _end_sessions(session: Session, user: User) -> None:
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))


def _scope_key(grant: Grant, project_id: int | None) -> str:
    if grant.site is not None:
        return f"site:{grant.site}"
    if project_id is not None:
        return f"project:{project_id}"
    return ""


class Accounts:
    """Account service. Every change is checked with ``permissions.decide`` and reported to ``events``."""

    def __init__(self, store: Store, *, events: EventSink | None = None, hasher: PasswordHasher | None = None):
        self.store = store
        self.events = events if events is not None else default_sink(store.settings)
        self.hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 "second recommended" parameters
        self._dummy: str | None = None

    @property
    def _dummy_hash(self) -> str:
        """Verified against when the account does not exist, so that timing does not reveal which accounts do."""
        if self._dummy is None:
            self._dummy = self.hasher.hash(secrets.token_hex(16))
        return self._dummy

    # -- helpers --------------------------------------------------------------------------------------------
    def _emit(self, actor: str, action: str, obj: str, outcome: Outcome, now: dt.datetime, **details: Detail) -> None:
        self.events.record(Event(actor, action, obj, outcome, now, details))

    def _master_key(self) -> Keyring:
        return Keyring(self.store.settings)  # during a master key rotation either key unwraps

    def _authorise(self, actor: Principal, action: Action, target: str, now: dt.datetime) -> None:
        try:
            require(actor, action, now=now)
        except HygieError:
            self._emit(actor.name, action.value, target, "denied", now)
            raise

    # -- accounts -------------------------------------------------------------------------------------------
    def add_user(
        self,
        actor: Principal,
        username: str,
        password: str | None,
        *,
        full_name: str | None = None,
        email: str | None = None,
        kind: str = "person",
        now: dt.datetime | None = None,
    ) -> UserInfo:
        """Create an account. A person account needs a password; a service account has none (tokens only)."""
        now = now or utcnow()
        self._authorise(actor, Action.USER_MANAGE, f"user:{username}", now)
        validate_name(username)
        if kind not in ("person", "service"):
            raise HygieError(f"unknown account kind {kind!r}: person or service")
        if kind == "person":
            if password is None:
                raise HygieError("a person account needs a password")
            check_password_policy(password, username)
        elif password is not None:
            raise HygieError("a service account has no password: it authenticates with API tokens")
        with self.store.session() as session:
            if session.scalar(select(User.id).where(User.username == username)) is not None:
                raise ConflictError(f"user {username!r} already exists")
            if email and session.scalar(select(User.id).where(User.email == email)) is not None:
                raise ConflictError("another account already belongs to this e-mail address (one account per person)")
            user = User(
                username=username,
                full_name=full_name or username,
                email=email or None,
                kind=kind,
                password_hash=self.hasher.hash(password) if password is not None else None,
                active=True,
                failed_logins=0,
                created_at=now,
                created_by=actor.name,
            )
            session.add(user)
            session.flush()
            info = _user_info(user)
        self._emit(actor.name, "user.create", f"user:{username}", "ok", now, kind=kind)
        return info

    def get(self, username: str) -> UserInfo:
        with self.store.session() as session:
            return _user_info(_get_user(session, username))

    def list(self) -> list[UserInfo]:
        with self.store.session() as session:
            return [_user_info(u) for u in session.scalars(select(User).order_by(User.username))]

    def set_password(self, actor: Principal, username: str, password: str, *, now: dt.datetime | None = None) -> None:
        now = now or utcnow()
        self._authorise(actor, Action.USER_MANAGE, f"user:{username}", now)
        check_password_policy(password, username)
        with self.store.session() as session:
            user = _get_user(session, username)
            if user.kind != "person":
                raise HygieError("a service account has no password")
            user.password_hash = self.hasher.hash(password)
            user.failed_logins, user.locked_until = 0, None
            _end_sessions(session, user)
        self._emit(actor.name, "user.password", f"user:{username}", "ok", now)

    def set_active(self, actor: Principal, username: str, active: bool, *, now: dt.datetime | None = None) -> None:
        """Disable (or re-enable) an account: a disabled account cannot log in and its tokens stop working."""
        now = now or utcnow()
        self._authorise(actor, Action.USER_MANAGE, f"user:{username}", now)
        with self.store.session() as session:
            user = _get_user(session, username)
            user.active = active
            if active:
                user.failed_logins, user.locked_until = 0, None
            else:
                _end_sessions(session, user)
        self._emit(actor.name, "user.enable" if active else "user.disable", f"user:{username}", "ok", now)

    # -- roles ----------------------------------------------------------------------------------------------
    def grant(self, actor: Principal, username: str, grant: Grant, *, now: dt.datetime | None = None) -> None:
        """Grant a role. A researcher grant on a project makes the user a member of it."""
        now = now or utcnow()
        action = Action.PROJECT_MANAGE if grant.project else Action.USER_MANAGE
        self._authorise_grant(actor, action, grant, username, now)
        with self.store.session() as session:
            user = _get_user(session, username)
            if user.kind == "service" and grant.role in MFA_ROLES:
                raise HygieError(
                    f"a service account cannot hold the {grant.role.value} role (it needs a second factor)"
                )
            project = self._project(session, grant.project) if grant.project else None
            if project is not None and project.status in ("revoked", "expired"):
                raise HygieError(f"project {project.name} is {project.status}: it takes no new member")
            if grant.site is not None:
                from hygie.ingest.sites import SiteRegistry

                SiteRegistry(self.store.settings).get(grant.site)  # the site must exist
            key = _scope_key(grant, project.id if project else None)
            exists = session.scalar(
                select(RoleGrant.id).where(
                    RoleGrant.user_id == user.id, RoleGrant.role == grant.role.value, RoleGrant.scope_key == key
                )
            )
            if exists is not None:
                raise ConflictError(f"{username} already has the role {grant}")
            session.add(
                RoleGrant(
                    user_id=user.id,
                    role=grant.role.value,
                    site=grant.site,
                    project_id=project.id if project else None,
                    scope_key=key,
                    granted_at=now,
                    granted_by=actor.name,
                )
            )
        self._emit(actor.name, "role.grant", f"user:{username}", "ok", now, role=str(grant))

    def revoke(self, actor: Principal, username: str, grant: Grant, *, now: dt.datetime | None = None) -> None:
        now = now or utcnow()
        action = Action.PROJECT_MANAGE if grant.project else Action.USER_MANAGE
        self._authorise_grant(actor, action, grant, username, now)
        with self.store.session() as session:
            row = self._grant_row(session, username, grant)
            session.delete(row)
        self._emit(actor.name, "role.revoke", f"user:{username}", "ok", now, role=str(grant))

    # -- safe people: training records, periodic review of grants (safe_people) --------------------------------
    def record_training(
        self,
        actor: Principal,
        username: str,
        course: str,
        completed_on: dt.date,
        expires_on: dt.date | None = None,
        *,
        now: dt.datetime | None = None,
    ) -> TrainingInfo:
        """Record a course the person passed; valid through ``expires_on`` (default: three years)."""
        now = now or utcnow()
        self._authorise(actor, Action.USER_MANAGE, f"user:{username}", now)
        course = course.strip()
        if not course or len(course) > 120:
            raise HygieError("the course needs a name of 1 to 120 characters")
        if completed_on > now.date():
            raise HygieError(f"the course cannot be completed in the future ({completed_on})")
        expires_on = expires_on or completed_on + dt.timedelta(days=TRAINING_VALIDITY_DAYS)
        if expires_on <= completed_on:
            raise HygieError(f"the training expires ({expires_on}) before or when it was completed ({completed_on})")
        with self.store.session() as session:
            user = _get_user(session, username)
            session.add(
                TrainingRecord(
                    user_id=user.id,
                    course=course,
                    completed_on=completed_on,
                    expires_on=expires_on,
                    recorded_at=now,
                    recorded_by=actor.name,
                )
            )
        self._emit(actor.name, "user.training", f"user:{username}", "ok", now, course=course,
                   completed_on=completed_on.isoformat(), expires_on=expires_on.isoformat())  # fmt: skip
        return TrainingInfo(username, course, completed_on, expires_on, trained(expires_on, now))

    def trainings(self, username: str | None = None, *, now: dt.datetime | None = None) -> list[TrainingInfo]:
        """Training records (of one account, or all), newest expiry first."""
        now = now or utcnow()
        with self.store.session() as session:
            query = select(TrainingRecord, User.username).join(User, User.id == TrainingRecord.user_id)
            if username is not None:
                _get_user(session, username)
                query = query.where(User.username == username)
            rows = session.execute(query).all()
            found = [
                TrainingInfo(name, t.course, t.completed_on, t.expires_on, trained(t.expires_on, now))
                for t, name in rows
            ]
        return sorted(found, key=lambda t: (t.username, t.expires_on), reverse=True)

    def review(self, actor: Principal, username: str, grant: Grant, *, now: dt.datetime | None = None) -> None:
        """Confirm, after review, that ``username`` still needs ``grant``: it is in force for another review
        period from now (a lapsed grant comes back). Nobody reviews their own access."""
        now = now or utcnow()
        action = Action.PROJECT_MANAGE if grant.project else Action.USER_MANAGE
        self._authorise_grant(actor, action, grant, username, now)
        if actor.username == username:
            self._emit(actor.name, "role.review", f"user:{username}", "denied", now, role=str(grant))
            raise HygieError("nobody reviews their own access: another operator must review it")
        with self.store.session() as session:
            row = self._grant_row(session, username, grant)
            was = review_status(row.attested_at, now)
            row.reviewed_at, row.reviewed_by = now, actor.name
        self._emit(actor.name, "role.review", f"user:{username}", "ok", now, role=str(grant), was=was.value)

    def grant_reviews(self, *, now: dt.datetime | None = None) -> list[GrantReview]:
        """Every grant of every account with its review state at ``now``, most urgent first."""
        now = now or utcnow()
        with self.store.session() as session:
            # Accounts, projects and training records in three queries, not three per grant.
            loads = (selectinload(RoleGrant.user).selectinload(User.trainings), selectinload(RoleGrant.project))
            rows = session.scalars(select(RoleGrant).options(*loads)).all()
            reviews = [
                GrantReview(
                    row.user.username,
                    _grant(row),
                    row.granted_at,
                    row.reviewed_at,
                    row.reviewed_by,
                    review_deadline(row.attested_at),
                    review_status(row.attested_at, now),
                    trained(trained_until(row.user), now) if Role(row.role) in TRAINED_ROLES else None,
                )
                for row in rows
            ]
        return sorted(reviews, key=lambda r: (r.deadline, r.username, str(r.grant)))

    def review_alert(self, actor: Principal, *, now: dt.datetime | None = None) -> list[GrantReview]:
        """The grants that need attention (review due or lapsed, training missing or expired), recorded in the
        audit log as an alert when there are any: the scheduled check an operator runs
        (``hygie user reviews --check``)."""
        now = now or utcnow()
        self._authorise(actor, Action.USER_MANAGE, "grants", now)
        pending = [r for r in self.grant_reviews(now=now) if r.needs_attention]
        if pending:
            counts = {s.value: sum(r.status is s for r in pending) for s in (ReviewStatus.DUE, ReviewStatus.LAPSED)}
            untrained = sum(r.trained is False for r in pending)
            self._emit(actor.name, "role.review_alert", "grants", "ok", now, **counts, untrained=untrained)
        return pending

    def _authorise_grant(self, actor: Principal, action: Action, grant: Grant, username: str, now: dt.datetime) -> None:
        if action is Action.PROJECT_MANAGE:
            from hygie.governance.projects import project_ref

            with self.store.session() as session:
                ref = project_ref(self._project(session, grant.project or ""))
            try:
                require(actor, action, ref, now=now)
            except HygieError:
                self._emit(actor.name, action.value, f"user:{username}", "denied", now, role=str(grant))
                raise
        else:
            self._authorise(actor, action, f"user:{username}", now)

    def _grant_row(self, session: Session, username: str, grant: Grant) -> RoleGrant:
        user = _get_user(session, username)
        project = self._project(session, grant.project) if grant.project else None
        key = _scope_key(grant, project.id if project else None)
        row = session.scalar(
            select(RoleGrant).where(
                RoleGrant.user_id == user.id, RoleGrant.role == grant.role.value, RoleGrant.scope_key == key
            )
        )
        if row is None:
            raise NotFoundError(f"{username} does not have the role {grant}")
        return row

    @staticmethod
    def _project(session: Session, name: str) -> Project:
        project = session.scalar(select(Project).where(Project.name == name))
        if project is None:
            raise NotFoundError(f"no project named {name!r}")
        return project

    # -- second factor --------------------------------------------------------------------------------------
    def enrol_totp(self, actor: Principal, username: str, *, now: dt.datetime | None = None) -> TotpEnrolment:
        """Create (or replace) the user's TOTP secret; the secret and its URI are returned once, never again."""
        now = now or utcnow()
        self._authorise(actor, Action.USER_MANAGE, f"user:{username}", now)
        secret = pyotp.random_base32(32)  # 160 bits
        master = self._master_key()
        with self.store.session() as session:
            user = _get_user(session, username)
            if user.kind != "person":
                raise HygieError("a service account has no second factor: it authenticates with API tokens")
            wrapped = master.wrap(base64.b32decode(secret), f"totp:{user.username}")
            if user.totp is None:
                user.totp = TotpSecret(key_id=wrapped.key_id, wrapped=wrapped.blob, enrolled_at=now)
            else:
                user.totp.key_id, user.totp.wrapped, user.totp.enrolled_at = wrapped.key_id, wrapped.blob, now
                user.totp.last_used_step = None
        self._emit(actor.name, "user.totp_enrol", f"user:{username}", "ok", now)
        uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)
        return TotpEnrolment(secret, uri)

    def _totp_step(self, user: User, code: str, now: dt.datetime) -> int | None:
        """The time step ``code`` is valid for (now, or one step either side), or None."""
        assert user.totp is not None
        raw = self._master_key().unwrap(WrappedKey(user.totp.key_id, user.totp.wrapped), f"totp:{user.username}")
        totp = pyotp.TOTP(base64.b32encode(raw).decode())
        current = int(now.timestamp()) // TOTP_STEP
        for step in (current - 1, current, current + 1):
            if hmac.compare_digest(totp.at(step * TOTP_STEP), code.strip()):
                return step
        return None

    # -- authentication -------------------------------------------------------------------------------------
    def authenticate(
        self, username: str, password: str, totp: str | None = None, *, now: dt.datetime | None = None
    ) -> Principal:
        """Check a password (and a TOTP code when the account has one or its roles need one); lock the account
        after ``MAX_FAILURES`` consecutive failures. Returns the principal with its grants."""
        now = now or utcnow()
        refused = AuthenticationError("authentication failed: wrong username, password or code")
        with self.store.session(serialised=True) as session:
            # FOR UPDATE (PostgreSQL): concurrent attempts count their failures and spend a TOTP step one at a time
            user = session.scalar(select(User).where(User.username == username).with_for_update())
            if user is None or user.kind != "person" or user.password_hash is None:
                self._verify(self._dummy_hash, password)
                outcome = None
            elif user.locked_until is not None and now < user.locked_until:
                outcome = "locked"
            elif not user.active:
                self._verify(user.password_hash, password)
                outcome = "disabled"
            else:
                outcome = self._check_factors(user, password, totp, now)
                if outcome == "ok":
                    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
                    principal = Principal(user.username, grants_in_force(user, now), mfa=user.totp is not None)
                else:
                    user.failed_logins += 1
                    if user.failed_logins >= MAX_FAILURES:
                        user.locked_until, user.failed_logins = now + LOCKOUT, 0
        if outcome == "ok":
            self._emit(username, "auth.password", f"user:{username}", "ok", now, mfa=principal.mfa)
            return principal
        self._emit(username if user else "anonymous", "auth.password", f"user:{username}", "denied", now,
                   reason=outcome or "unknown account")  # fmt: skip
        if outcome == "locked":
            assert user is not None and user.locked_until is not None
            raise AuthenticationError(f"account locked until {user.locked_until:%Y-%m-%d %H:%M} UTC after failures")
        raise refused

    def _check_factors(self, user: User, password: str, totp: str | None, now: dt.datetime) -> str:
        assert user.password_hash is not None
        if not self._verify(user.password_hash, password):
            return "bad password"
        if self.hasher.check_needs_rehash(user.password_hash):
            user.password_hash = self.hasher.hash(password)
        needs_mfa = any(Role(g.role) in MFA_ROLES for g in user.grants)
        if user.totp is None:
            return "second factor not enrolled" if needs_mfa else "ok"
        if not totp:
            return "no code"
        step = self._totp_step(user, totp, now)
        if step is None:
            return "bad code"
        if user.totp.last_used_step is not None and step <= user.totp.last_used_step:
            return "code replayed"
        user.totp.last_used_step = step
        return "ok"

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    # -- API tokens -----------------------------------------------------------------------------------------
    def create_token(
        self,
        actor: Principal,
        username: str,
        name: str,
        *,
        expires_at: dt.datetime | None = None,
        now: dt.datetime | None = None,
    ) -> tuple[TokenInfo, str]:
        """A new API token for ``username``; returns its description and the secret (shown once)."""
        now = now or utcnow()
        self._authorise(actor, Action.USER_MANAGE, f"user:{username}", now)
        validate_name(name)
        if expires_at is not None and expires_at <= now:
            raise HygieError("a token's expiry must be in the future")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.store.session() as session:
            user = _get_user(session, username)
            if not user.active:
                raise HygieError(f"{username} is disabled")
            needs_mfa = any(Role(g.role) in MFA_ROLES for g in user.grants)
            if needs_mfa and user.totp is None:
                raise HygieError(f"{username} must enrol a second factor (TOTP) before receiving a token")
            taken = session.scalar(select(ApiToken.id).where(ApiToken.user_id == user.id, ApiToken.name == name))
            if taken is not None:
                raise ConflictError(f"{username} already has a token named {name!r}")
            token = ApiToken(
                user_id=user.id, name=name, token_hash=hash_token(secret), created_at=now, expires_at=expires_at
            )
            token.user = user
            session.add(token)
            session.flush()
            info = _token_info(token)
        self._emit(actor.name, "token.create", f"user:{username}", "ok", now, token=name)
        return info, secret

    def tokens(self, username: str) -> list[TokenInfo]:
        with self.store.session() as session:
            user = _get_user(session, username)
            rows = session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id))
            return [_token_info(t) for t in rows]

    def revoke_token(self, actor: Principal, username: str, name: str, *, now: dt.datetime | None = None) -> None:
        now = now or utcnow()
        self._authorise(actor, Action.USER_MANAGE, f"user:{username}", now)
        with self.store.session() as session:
            user = _get_user(session, username)
            token = session.scalar(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.name == name))
            if token is None:
                raise NotFoundError(f"{username} has no token named {name!r}")
            if token.revoked_at is None:
                token.revoked_at = now
        self._emit(actor.name, "token.revoke", f"user:{username}", "ok", now, token=name)

    def authenticate_token(self, token: str, *, now: dt.datetime | None = None) -> Principal:
        """The principal a token stands for; refused when unknown, revoked, expired or its account disabled.

        The hub's hottest authentication path: one read of the token, its account and grants (one query, spared
        while nothing was committed to the store: ``governance.readcache``); a write (and an ``auth.token``
        audit event) only at the token's first use and then once per ``TOKEN_USE_RECORD``."""
        now = now or utcnow()
        digest = hash_token(token)
        account = self.store.reads.get(("token", digest), lambda: AccountRows(self._token_rows(digest)))
        rows = account.rows
        row = rows[0] if rows else None
        usable = (
            row is not None
            and row.revoked_at is None
            and (row.expires_at is None or now < row.expires_at)
            and row.active
        )
        if not usable:
            username = row.username if row is not None else None
            self._emit(username or "anonymous", "auth.token", f"user:{username or '?'}", "denied", now)
            raise AuthenticationError("authentication failed: unknown, revoked or expired token")
        assert row is not None
        principal = account.principal(now)  # the same rows and rules as ``principal`` (grants, training)
        last = row.last_used_at
        if last is None or now - last >= TOKEN_USE_RECORD:
            with self.store.session() as session:
                # Only the first of concurrent requests moves the mark, so one event per period, even across processes.
                moved = session.execute(
                    update(ApiToken)
                    .where(ApiToken.id == row.id, ApiToken.last_used_at.is_(None) | (ApiToken.last_used_at == last))
                    .values(last_used_at=now)
                    .execution_options(synchronize_session=False)
                ).rowcount
            if moved:
                self._emit(principal.name, "auth.token", f"user:{principal.name}", "ok", now)
        return principal

    def _token_rows(self, digest: str) -> list[Row[Any]]:
        with self.store.engine.connect() as connection:
            return connection.execute(_TOKEN_QUERY, {"token_hash": digest}).all()

    def principal(self, username: str, *, now: dt.datetime | None = None) -> Principal:
        """The principal of an account as it stands (for services acting on a user's behalf). Read on every
        request of the portal: one query on the tables (no ORM objects), its grants joined in."""
        with self.store.engine.connect() as connection:
            rows = connection.execute(_PRINCIPAL_QUERY, {"username": username}).all()
        if not rows:
            raise NotFoundError(f"no user named {username!r}")
        return principal_from_rows(rows, now)
