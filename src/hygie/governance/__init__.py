"""Governance: who may do what with which data (docs/governance.md).

- ``store``: the metadata database (SQLAlchemy 2 + Alembic; SQLite by default, PostgreSQL supported);
- ``models``: its tables; ``roles``: the five roles and their scopes;
- ``accounts``: local accounts, argon2id passwords, TOTP second factor, lockout, API tokens;
- ``permissions``: THE function that decides whether a principal may do an action on an object;
- ``projects``: approved projects, their scope, members and validity;
- ``optout``: the register of patients who objected, pseudonymised on entry;
- ``events``: what services report to the audit log;
- ``audit``: the tamper-evident audit log (``audit_merkle``: RFC 6962 tree; ``audit_details``: no patient data).
"""
