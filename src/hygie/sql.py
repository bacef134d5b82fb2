"""Quoting for the SQL that hygie builds from names and fixed texts (never from user-supplied values)."""


def literal(text: str) -> str:
    """A SQL string literal. Used instead of bound parameters, which make DuckDB's Python client import pandas."""
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
