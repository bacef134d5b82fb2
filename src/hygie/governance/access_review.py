"""Periodic review of access rights (TRE checklist #6; the SNDS "revue annuelle des habilitations").

A grant is *attested* when it is given and again each time an operator reviews it. It stays in force for
``REVIEW_PERIOD`` after its last attestation. In the last ``REVIEW_NOTICE`` of that period it is *due*: the
review listing shows it and ``hygie user reviews --check`` raises the alert. After the period it has *lapsed*: it
counts for nothing until someone reviews it again. The rule is applied every time a principal is loaded
(``accounts.principal_from_rows``), so the hub fails closed without any scheduled job.

Reviews follow the rules of granting (an operator; project grants under the project's rule), and nobody reviews
their own access.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

REVIEW_PERIOD = dt.timedelta(days=365)
REVIEW_NOTICE = dt.timedelta(days=30)


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
    """Whether a grant attested at ``attested_at`` counts at ``now``."""
    return now < review_deadline(attested_at)
