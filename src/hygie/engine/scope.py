"""What a project may see of a release: tables, sites, a time window, minus the patients who objected.

A ``DataScope`` turns each CDM table of a release into a filtered SQL view, so that everything above the engine
(cohorts, analyses) sees only the approved part of the release without knowing a scope exists. The views are
DuckDB SQL; Spark receives its tables through DuckDB (``engine.spark.release_tables``), so both engines see the
same rows.

Semantics (docs/governance.md):
- **tables**: only the listed clinical tables (and the person, observation_period and death tables every study
  needs, and the vocabulary) are visible; the others do not exist for the project.
- **window**: a clinical record is visible when its start date lies in the window; observation periods (and
  payer plan periods) are clipped to the window and dropped when they fall outside it. Persons stay.
- **sites**: records whose id says they came from a deposit of another site are hidden (a built release numbers
  records ``deposit index * 2**48 + id``, and its lineage names the site of each deposit index). Observation
  periods are merged across sites when a release is built, so they are not restricted by site.
- **opted-out persons**: every row of every table with a ``person_id`` of a person who objected is removed.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from hygie.cdm.schema import Table, cdm_schema
from hygie.errors import HygieError
from hygie.ingest.quality import ID_BITS
from hygie.releases.manifest import Manifest
from hygie.sql import literal

ALWAYS_VISIBLE = frozenset({"person", "observation_period", "death", "cdm_source"})
CLIPPED_PERIODS = {
    "observation_period": ("observation_period_start_date", "observation_period_end_date"),
    "payer_plan_period": ("payer_plan_period_start_date", "payer_plan_period_end_date"),
}
_DEPOSIT_ORIGIN = re.compile(r"site (?P<site>\S+) \(deposit index (?P<index>\d+)\)")


@dataclass(frozen=True)
class DataScope:
    """The part of a release a project may use. ``None`` means "no restriction" for each dimension."""

    tables: frozenset[str] | None = None
    sites: frozenset[str] | None = None
    window: tuple[dt.date | None, dt.date | None] = (None, None)
    excluded_persons: frozenset[int] = field(default_factory=frozenset)

    @property
    def unrestricted(self) -> bool:
        return self.tables is None and self.sites is None and self.window == (None, None) and not self.excluded_persons

    def visible(self, table: str) -> bool:
        schema = cdm_schema()
        if table in ALWAYS_VISIBLE or self.tables is None:
            return True
        return schema[table].is_vocabulary or table in self.tables

    def view_sql(self, table: str, source_sql: str, manifest: Manifest) -> str:
        """``SELECT`` of the scoped rows of ``table``, read from ``source_sql`` (a table expression)."""
        if not self.visible(table):
            raise HygieError(f"table {table} is outside the project's approved scope")
        if self.unrestricted:  # also the operator's view of deposits, whose tables are not all CDM tables
            return f"SELECT * FROM {source_sql}"
        spec = cdm_schema()[table]
        conditions = [*self._person_conditions(spec), *self._site_conditions(spec, manifest)]
        columns = "*"
        start, end = self.window
        if table in CLIPPED_PERIODS and (start or end):
            first, last = CLIPPED_PERIODS[table]
            clipped_start = f"greatest({first}, DATE {literal(str(start))})" if start else first
            clipped_end = f"least({last}, DATE {literal(str(end))})" if end else last
            columns = f"* REPLACE ({clipped_start} AS {first}, {clipped_end} AS {last})"
            conditions += [f"{last} >= DATE {literal(str(start))}"] if start else []
            conditions += [f"{first} <= DATE {literal(str(end))}"] if end else []
        elif (start or end) and (event := event_date(spec)) is not None:
            conditions += [f"{event} >= DATE {literal(str(start))}"] if start else []
            conditions += [f"{event} <= DATE {literal(str(end))}"] if end else []
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT {columns} FROM {source_sql}{where}"

    def _person_conditions(self, spec: Table) -> list[str]:
        if not self.excluded_persons or not spec.has_person_id:
            return []
        ids = ", ".join(str(int(p)) for p in sorted(self.excluded_persons))
        return [f"person_id NOT IN ({ids})"]

    def _site_conditions(self, spec: Table, manifest: Manifest) -> list[str]:
        if self.sites is None or spec.name in CLIPPED_PERIODS or spec.name in ALWAYS_VISIBLE:
            return []
        key = spec.primary_key
        if key is None or not spec.has_person_id:
            return []
        indexes = sorted(deposit_indexes(manifest, spec.name, self.sites))
        if not indexes:
            return ["FALSE"]
        return [f"({key.name} // {2**ID_BITS}) IN ({', '.join(map(str, indexes))})"]


def event_date(spec: Table) -> str | None:
    """The date a record of a clinical table happened (its first required date column)."""
    if not spec.has_person_id or spec.name == "person":
        return None
    return next((c.name for c in spec.columns if c.base_type == "date" and c.required), None)


def deposit_indexes(manifest: Manifest, table: str, sites: Iterable[str]) -> set[int]:
    """Deposit indexes of ``table``'s rows that came from ``sites`` (read from the release's lineage)."""
    wanted = set(sites)
    found = set()
    for entry in manifest.lineage:
        match = _DEPOSIT_ORIGIN.fullmatch(entry.origin)
        if entry.table == table and match and match["site"] in wanted:
            found.add(int(match["index"]))
    return found
