"""The five roles of the hub, defined once, and where each one applies.

A role is granted *on a scope*: the whole hub (global roles), one site (data provider) or one project
(researcher: being a researcher of a project *is* being a member of it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from hygie.errors import HygieError


class Role(StrEnum):
    OPERATOR = "operator"  # runs the hub: accounts, projects, sites, releases, keys, opt-out register
    DATA_PROVIDER = "data_provider"  # deposits extracts for one site
    RESEARCHER = "researcher"  # member of one project: submits studies, requests outputs
    OUTPUT_CHECKER = "output_checker"  # reviews output requests (never their own)
    AUDITOR = "auditor"  # reads the audit log (a DPO, an inspector)


GLOBAL_ROLES = frozenset({Role.OPERATOR, Role.OUTPUT_CHECKER, Role.AUDITOR})
# Roles that reach data or let something out need a second factor (TRE checklist #2).
MFA_ROLES = frozenset({Role.OPERATOR, Role.DATA_PROVIDER, Role.RESEARCHER, Role.OUTPUT_CHECKER})
# Roles that reach patient-level data (through jobs) count only with a valid training record (TRE checklist #5).
TRAINED_ROLES = frozenset({Role.RESEARCHER})


@dataclass(frozen=True, order=True)
class Grant:
    """One role on one scope: ``site`` for a data provider, ``project`` for a researcher, neither otherwise."""

    role: Role
    site: str | None = None
    project: str | None = None

    def __post_init__(self) -> None:
        check_scope(self.role, self.site, self.project)

    def __str__(self) -> str:
        where = f" of site {self.site}" if self.site else f" of project {self.project}" if self.project else ""
        return f"{self.role.value}{where}"


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise HygieError(f"unknown role {value!r} (roles: {', '.join(r.value for r in Role)})") from None


def check_scope(role: Role, site: str | None, project: str | None) -> None:
    """A data provider needs a site, a researcher a project, and a global role neither."""
    if role is Role.DATA_PROVIDER and (site is None or project is not None):
        raise HygieError("the data_provider role is granted on one site: give --site (and no --project)")
    if role is Role.RESEARCHER and (project is None or site is not None):
        raise HygieError("the researcher role is granted on one project: give --project (and no --site)")
    if role in GLOBAL_ROLES and (site is not None or project is not None):
        raise HygieError(f"the {role.value} role is global: give neither --site nor --project")


@dataclass(frozen=True)
class Principal:
    """Who acts: an account's grants as loaded when it authenticated, or nobody (``username`` None: the public).

    ``mfa`` says the principal proved a second factor (or is the operator's console on the server); grants of
    roles in ``MFA_ROLES`` count only then.
    """

    username: str | None
    grants: frozenset[Grant] = frozenset()
    mfa: bool = False

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(None)

    @classmethod
    def console(cls, os_user: str) -> Principal:
        """The operator at the server's console (the CLI): whoever holds a shell there holds the keys too."""
        return cls(f"console:{os_user}", frozenset({Grant(Role.OPERATOR)}), mfa=True)

    @property
    def name(self) -> str:
        return self.username or "anonymous"

    @cached_property
    def ordered_grants(self) -> tuple[Grant, ...]:
        """The grants in a stable order (decisions try them in it, so a reason names the same grant each time);
        computed once per principal, which is asked many questions per request."""
        return tuple(sorted(self.grants, key=str))
