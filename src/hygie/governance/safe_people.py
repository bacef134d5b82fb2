"""Safe people: when a stored grant counts. Two rules, applied every time a principal is loaded
(``accounts.principal_from_rows``), so the hub fails closed without any scheduled job.

**Training** (TRE checklist #5; SNDS: training is a prerequisite of access). A grant of a role in
``roles.TRAINED_ROLES`` counts only while the account holds a training record valid on the day: completed, and
not past its expiry date (inclusive). A grant may be given before the course is passed; it starts counting when
the record is entered.

**Yearly review** (TRE checklist #6; the SNDS "revue annuelle des habilitations"). A grant is *attested* when it
is given and again each time an operator reviews it. It stays in force for ``REVIEW_PERIOD`` after its last
attestation. In the last ``REVIEW_NOTICE`` of that period it is *due*: the review listing shows it and
``hygie user reviews --check`` raises the alert. After the period it has *lapsed*: it counts for nothing until
someone reviews it again. Reviews follow the rules of granting, and nobody reviews their own access.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from hygie.governance.roles import TRAINED_ROLES, Role

REVIEW_PERIOD = dt.timedelta(days=365)
REVIEW_NOTICE = dt.timedelta(days=30)
TRAINING_VALIDITY_DAYS = 3 * 365  # when a record gives no expiry date


class ReviewStatus(StrEnum):
    CURRENT = "current"  # attested within the period, not yet in its notice window
    DUE = "due"  # still in force; to be reviewed before its deadline
    LAPSED = "lapsed"  # not reviewed in time: suspended until reviewed


def review_deadline(attested_at: dt.datetime) -> dt.datetime:
    """The moment a grant attested at ``attested_at`` stops counting unless reviewed before."""
    return attested_at + REVIEW_PERIOD


def review_status(attested_at: dt.datetime, now: dt.datetime) -> ReviewStatus:
    deadline = review_deadline(attested_at)
    if now >= deadline:
        return ReviewStatus.LAPSED
    if now >= deadline - REVIEW_NOTICE:
        return ReviewStatus.DUE
    return ReviewStatus.CURRENT


def in_force(attested_at: dt.datetime, now: dt.datetime) -> bool:
    """Whether a grant attested at ``attested_at`` is within its review period at ``now``."""
    return now < review_deadline(attested_at)


def trained(valid_until: dt.date | None, now: dt.datetime) -> bool:
    """Whether training valid until ``valid_until`` (the latest expiry of the account's records) covers ``now``."""
    return valid_until is not None and now.date() <= valid_until


def grant_counts(role: Role, attested_at: dt.datetime, trained_until: dt.date | None, now: dt.datetime) -> bool:
    """Whether a stored grant counts at ``now``: reviewed in time and, for roles that need it, trained."""
    return in_force(attested_at, now) and (role not in TRAINED_ROLES or trained(trained_until, now))


def next_change(
    role: Role, attested_at: dt.datetime, trained_until: dt.date | None, now: dt.datetime
) -> dt.datetime | None:
    """The first moment after ``now`` at which ``grant_counts`` may answer otherwise for the same grant (its
    review deadline, or the midnight UTC ending its training), or None if it never will."""
    moments = [review_deadline(attested_at)]
    if role in TRAINED_ROLES and trained_until is not None:
        moments.append(dt.datetime.combine(trained_until + dt.timedelta(days=1), dt.time(), dt.UTC))
    later = [m for m in moments if m > now]
    return min(later) if later else None
