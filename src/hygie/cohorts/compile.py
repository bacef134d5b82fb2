"""Compile a Circe expression to set-based SQL, one engine-neutral script per cohort.

A script computes the cohort's rows and its inclusion statistics, both from the **qualified events** (after the
primary criteria, observation window, primary limit, additional criteria and qualified limit; one boolean
column per inclusion rule and the rule mask):
* the rows: events passing every rule, expression limit, exit date (end strategy, censoring), era collapse,
  dates clamped to the censor window (rows the window empties are removed by the caller, who counts them);
* the statistics: events per rule mask, persons per best mask, persons passing rules 0..i.
When a limit keeps at most one qualified event per person, one query returns every qualified event with its mask
and exit, and the caller derives both. Otherwise the qualified events are read twice: they are a step the
runner materialises before a rows query and a statistics query. Only ANSI-style SQL is emitted; the few
constructs whose spelling differs between engines (date arithmetic) go through ``Dialect``. See docs/decisions/0005
and 0019.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hygie.cohorts.circe import (
    AT_LEAST,
    AT_MOST,
    EXACTLY,
    CohortExpression,
    CorrelatedCriteria,
    CriteriaGroup,
    DateRange,
    DemographicCriteria,
    NumericRange,
    TextFilter,
    UnsupportedFeature,
    Window,
)
from hygie.cohorts.concepts import INLINE_IDS
from hygie.cohorts.plan import (
    ABNORMAL_VALUE_CONCEPTS,
    Abnormal,
    CodesetIn,
    ConceptIn,
    DateIn,
    EventQuery,
    Filter,
    NumberIn,
    TextMatch,
    Value,
    demographic_filters,
    plan_criterion,
)


class Dialect:
    """SQL spellings that differ between engines. The default is DuckDB's."""

    name = "duckdb"
    # Whether EXISTS may be a column of a select list (DuckDB); else such tests are joins.
    exists_in_select = True

    def add_days(self, date_sql: str, days_sql: str | int) -> str:
        if days_sql == 0:
            return date_sql
        return f"CAST(({date_sql}) + CAST({days_sql} AS INTEGER) AS DATE)"

    def day_diff(self, start_sql: str, end_sql: str) -> str:
        return f"date_diff('day', {start_sql}, {end_sql})"

    def year(self, date_sql: str) -> str:
        return f"year({date_sql})"

    def quantile(self, value_sql: str, q: float) -> str:
        """Exact quantile aggregate, linearly interpolated between order statistics (R's type 7)."""
        return f"quantile_cont({value_sql}, {q})"


class SparkDialect(Dialect):
    name = "spark"
    exists_in_select = False

    def add_days(self, date_sql: str, days_sql: str | int) -> str:
        if days_sql == 0:
            return date_sql
        return f"date_add({date_sql}, CAST({days_sql} AS INT))"

    def day_diff(self, start_sql: str, end_sql: str) -> str:
        return f"datediff({end_sql}, {start_sql})"

    def quantile(self, value_sql: str, q: float) -> str:
        return f"percentile({value_sql}, {q})"


# The rows of a script's statistics query: (part, key, n).
MASK_PART = 1  # key = an inclusion-rule mask, n = qualified events with that mask
BEST_MASK_PART = 2  # key = a mask, n = persons whose best (highest-mask) event has it
RULE_PART = 3  # key = rule index i, n = persons with an event passing rules 0..i


@dataclass(frozen=True)
class CohortScript:
    """One cohort: the steps to materialise first, as (temporary table name, SELECT) pairs; the query of its
    rows (``person_id, start_date, end_date``, dates clamped to the censor window, periods it empties not
    removed); the query of its inclusion statistics (``part, key, n``).

    With ``one_event_per_person`` there is no step and no statistics query: the rows query returns every
    qualified event with its ``inclusion_rule_mask`` (a column only if there are rules) and its exit (null if it
    has none; computed for events failing a rule too); the caller counts the statistics and keeps the events
    passing every rule with an exit."""

    steps: tuple[tuple[str, str], ...]
    rows_query: str
    stats_query: str | None  # None: the rows query returns every qualified event (one_event_per_person)
    rule_names: tuple[str, ...]
    has_censor_window: bool
    # At most one qualified event per person (a primary or qualified limit): persons are events.
    one_event_per_person: bool = False

    def sql(self) -> list[str]:
        """Every statement of the script, in order."""
        return [sql for _, sql in self.steps] + [self.rows_query] + ([self.stats_query] if self.stats_query else [])


EVENT_COLUMNS = "person_id, event_id, start_date, end_date, op_start_date, op_end_date, visit_occurrence_id"


def compile_cohort(
    expression: CohortExpression,
    *,
    key: int,
    codesets_table: str,
    prefix: str,
    dialect: Dialect | None = None,
    resolved: Mapping[int, Sequence[int]] | None = None,
) -> CohortScript:
    """SQL steps computing the cohort; ``codesets_table`` holds ``(cohort_key, codeset_id, concept_id)``.

    ``resolved`` (codeset id -> concept ids, once the concept sets are resolved) writes small concept sets
    into the SQL as literal lists: the engine then filters the domain tables while reading them (Parquet filter
    pushdown) instead of joining every row with the codesets table. Same rows either way.
    """
    return _Compiler(expression, key, codesets_table, prefix, dialect or Dialect(), resolved or {}).script()


def index_columns_used(e: CohortExpression) -> tuple[bool, bool]:
    """Whether anything after the primary criteria reads the index events' end date, and their visit: the end
    strategy (an offset from the end date), windows anchored on the index end, demographic tests of the end
    date, criteria restricted to the index visit."""
    uses_end = e.end_strategy is not None and (
        e.end_strategy.date_offset is not None and e.end_strategy.date_offset.date_field == "EndDate"
    )
    uses_visit = False
    groups = [e.additional_criteria] + [rule.expression for rule in e.inclusion_rules]
    while groups:
        g = groups.pop()
        if g is None:
            continue
        groups += g.groups
        uses_end |= any(dc.occurrence_end_date is not None for dc in g.demographic_criteria_list)
        for cc in g.criteria_list:
            uses_visit |= cc.restrict_visit
            uses_end |= bool(cc.start_window.use_index_end) or bool(cc.end_window and cc.end_window.use_index_end)
    return uses_end, uses_visit


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Compiler:
    def __init__(
        self,
        expression: CohortExpression,
        key: int,
        codesets: str,
        prefix: str,
        dialect: Dialect,
        resolved: Mapping[int, Sequence[int]],
    ) -> None:
        self.e = expression
        self.resolved = resolved
        self.key = key
        self.codesets = codesets
        self.prefix = prefix
        self.d = dialect
        self.ctes: list[tuple[str, str]] = []
        self.counter = 0
        self.inline_person = False  # whether a rule written as a column tests the person

    # -- plumbing -------------------------------------------------------------------------------------------
    def cte(self, sql: str) -> str:
        name = f"q{self.counter}"
        self.counter += 1
        self.ctes.append((name, sql))
        return name

    def finish(self, select: str) -> str:
        """One statement from the CTEs collected so far; starts a fresh CTE list for the next step."""
        ctes, self.ctes = self.ctes, []
        if not ctes:
            return select
        return "WITH " + ",\n".join(f"{name} AS (\n{sql}\n)" for name, sql in ctes) + "\n" + select

    def codeset(self, codeset_id: int) -> str:
        ids = self.resolved.get(codeset_id)
        if ids and len(ids) <= INLINE_IDS:  # never empty: ``IN ()`` is not SQL
            return f"({', '.join(str(int(i)) for i in sorted(ids))})"
        return f"(SELECT concept_id FROM {self.codesets} WHERE cohort_key = {self.key} AND codeset_id = {codeset_id})"

    # -- the script -----------------------------------------------------------------------------------------
    def script(self) -> CohortScript:
        e = self.e
        primary = self.primary_events()
        if e.additional_criteria is not None:
            passing = self.group(e.additional_criteria, primary, "$.AdditionalCriteria")
            order = "DESC" if e.qualified_limit.type == "Last" else "ASC"
            ranked = self.cte(
                f"SELECT pe.*, row_number() OVER (PARTITION BY pe.person_id ORDER BY pe.start_date {order}, "
                f"pe.event_id) AS qualified_ordinal FROM {primary} pe "
                f"JOIN {passing} ac ON ac.person_id = pe.person_id AND ac.event_id = pe.event_id"
            )
            where = "" if e.qualified_limit.type == "All" else " WHERE qualified_ordinal = 1"
            qualified = self.cte(f"SELECT {EVENT_COLUMNS} FROM {ranked}{where}")
        else:
            qualified = primary
        flags, joins = [], []
        self.inline_person = False
        for i, rule in enumerate(e.inclusion_rules):
            path = f"$.InclusionRules[{i}].expression"
            saved = (len(self.ctes), self.inline_person)
            inline = self.inline_test(rule.expression, path)
            if inline is not None:  # a column of the qualified events: no join back, no pass of its own
                flags.append(f"COALESCE({inline}, FALSE)")
                continue
            del self.ctes[saved[0] :]  # what a member compiled before the group turned out not to inline
            self.inline_person = saved[1]
            passing = self.group(rule.expression, qualified, path)
            joins.append(f" LEFT JOIN {passing} r{i} ON r{i}.person_id = P.person_id AND r{i}.event_id = P.event_id")
            flags.append(f"(r{i}.person_id IS NOT NULL)")
        # One join with PERSON for every demographic test written as a column.
        person_join = " LEFT JOIN person PP ON PP.person_id = P.person_id" if self.inline_person else ""
        columns = "".join(f", {flag} AS rule_{i}" for i, flag in enumerate(flags))
        qualified_sql = (
            f"SELECT {', '.join('P.' + c for c in EVENT_COLUMNS.split(', '))}{columns} "
            f"FROM {qualified} P{person_join}{''.join(joins)}"
        )
        mask = f"CAST({self.mask_sql(len(flags))} AS BIGINT) AS inclusion_rule_mask"
        masked = f"SELECT *, {mask} FROM ({qualified_sql}) f"
        one_event = self.limited_before_rules()
        if one_event:
            # At most one qualified event per person: the rows query returns every qualified event (its mask, its
            # exit even if it fails a rule, null if it has none) and the statistics are counted from it by the
            # caller. No materialised step and no second query: the qualified events are read once.
            qualified_events = self.cte(masked)
            mask_column = ", inclusion_rule_mask" if flags else ""
            rows = self.censor_window(self.exits(qualified_events, mask_column, drop_open=False), mask_column)
            rows_query = self.finish(
                f"SELECT CAST(person_id AS BIGINT) AS person_id, start_date, end_date{mask_column} FROM {rows}"
            )
            steps: tuple[tuple[str, str], ...] = ()
            stats_query = None
        else:
            # Read by both queries (rows and statistics): materialised first.
            qualified_events = f"{self.prefix}_qualified"
            steps = ((qualified_events, self.finish(masked)),)
            rows = self.censor_window(self.collapse(self.exits(self.included(qualified_events))))
            rows_query = self.finish(f"SELECT CAST(person_id AS BIGINT) AS person_id, start_date, end_date FROM {rows}")
            stats_query = self.finish("\nUNION ALL\n".join(self.statistics(qualified_events, len(flags))))
        return CohortScript(
            steps=steps,
            rows_query=rows_query,
            stats_query=stats_query,
            rule_names=tuple(r.name for r in e.inclusion_rules),
            has_censor_window=bool(e.censor_window.start_date or e.censor_window.end_date),
            one_event_per_person=one_event,
        )

    @staticmethod
    def mask_sql(n_rules: int) -> str:
        return " + ".join(f"(CASE WHEN rule_{i} THEN {2**i} ELSE 0 END)" for i in range(n_rules)) or "0"

    def statistics(self, qualified: str, n_rules: int) -> list[str]:
        """The inclusion statistics as rows ``(part, key, n)`` (see ``MASK_PART``...): one pass over the qualified
        events grouped by mask, and one grouped by person (best mask; whether the person passes rules 0..i)."""
        by_mask = (
            f"SELECT {MASK_PART} AS part, inclusion_rule_mask AS key, COUNT(*) AS n FROM {qualified} "
            f"GROUP BY inclusion_rule_mask"
        )
        passes = "".join(
            f", MAX(CASE WHEN {' AND '.join(f'rule_{j}' for j in range(i + 1))} THEN 1 ELSE 0 END) AS passes_{i}"
            for i in range(n_rules)
        )
        persons = self.cte(
            f"SELECT person_id, MAX(inclusion_rule_mask) AS best{passes} FROM {qualified} GROUP BY person_id"
        )
        return [
            by_mask,
            f"SELECT {BEST_MASK_PART} AS part, best AS key, COUNT(*) AS n FROM {persons} GROUP BY best",
            *(
                f"SELECT {RULE_PART} AS part, CAST({i} AS BIGINT) AS key, "
                f"CAST(COALESCE(SUM(passes_{i}), 0) AS BIGINT) AS n FROM {persons}"
                for i in range(n_rules)
            ),
        ]

    def inline_test(self, g: CriteriaGroup, path: str) -> str | None:
        """The group as a boolean SQL expression over a qualified event ``P`` (and its person ``PP``), when it
        is an ALL or ANY group whose members are demographic criteria, "none" or "at least one" correlated
        criteria ((NOT) EXISTS, where the dialect allows it in a select list) or such groups; else None (it is
        compiled as a join, ``group``). Null (a missing person or value) means the member fails, as in the join.
        Only for qualified events, whose (person, event id) is unique: a test per row is a test per event."""
        if g.type not in ("ALL", "ANY") or not (g.criteria_list or g.demographic_criteria_list or g.groups):
            return None
        members = []
        for i, cc in enumerate(g.criteria_list):
            test = self.inline_correlated(cc, f"{path}.CriteriaList[{i}]")
            if test is None:
                return None
            members.append(test)
        for i, sub in enumerate(g.groups):
            test = self.inline_test(sub, f"{path}.Groups[{i}]")
            if test is None:
                return None
            members.append(test)
        ctx = _EventContext("P", "P.start_date", "P.end_date", "PP")
        for i, dc in enumerate(g.demographic_criteria_list):
            filters = demographic_filters(dc, f"{path}.DemographicCriteriaList[{i}]")
            tests = ["PP.person_id IS NOT NULL"] + [self.predicate(f, ctx, self.d) for f in filters]
            members.append("(" + " AND ".join(tests) + ")")
            self.inline_person = True
        return "(" + (" AND " if g.type == "ALL" else " OR ").join(members) + ")"

    def inline_correlated(self, cc: CorrelatedCriteria, path: str) -> str | None:
        """ "None" or "at least one" as (NOT) EXISTS over the index event ``P``; None for other counts."""
        occurrence = cc.occurrence
        op = {EXACTLY: "=", AT_MOST: "<=", AT_LEAST: ">="}[occurrence.type]
        none = op in ("=", "<=") and occurrence.count == 0
        if not self.d.exists_in_select or not (none or (op == ">=" and occurrence.count == 1)):
            return None
        matched = self.correlated_match(cc, path)
        return f"(NOT {matched})" if none else matched

    def primary_events(self) -> str:
        pc = self.e.primary_criteria
        if not pc.criteria_list:
            raise UnsupportedFeature("", "$.PrimaryCriteria.CriteriaList", "at least one primary criterion is needed")
        # Columns nothing downstream reads are not read at all: on a wide, encrypted table every column costs.
        uses_end, uses_visit = index_columns_used(self.e)
        end = "end_date" if uses_end else "CAST(NULL AS DATE) AS end_date"
        visit = "visit_occurrence_id" if uses_visit else "CAST(NULL AS BIGINT) AS visit_occurrence_id"
        # Events of a person on the same day differ only by their end date and visit: when neither is read, which
        # one comes first cannot change the cohort, and the record id need not be read to break the tie.
        tie_break = ", E.event_id" if uses_end or uses_visit else ""
        parts = [
            f"SELECT person_id, event_id, start_date, {end}, {visit} FROM "
            f"{self.events(plan_criterion(c, f'$.PrimaryCriteria.CriteriaList[{i}]'))}"
            for i, c in enumerate(pc.criteria_list)
        ]
        union = self.cte("\nUNION ALL\n".join(parts))
        order = "DESC" if pc.primary_criteria_limit.type == "Last" else "ASC"
        window = pc.observation_window
        ordinal = (
            f"row_number() OVER (PARTITION BY E.person_id ORDER BY E.start_date {order}{tie_break})"
            if self.needs_event_ids()
            else "CAST(NULL AS BIGINT)"
        )
        ranked = self.cte(
            f"SELECT E.person_id, E.start_date, E.end_date, E.visit_occurrence_id, "
            f"OP.observation_period_start_date AS op_start_date, OP.observation_period_end_date AS op_end_date, "
            f"{ordinal} AS ordinal "
            f"FROM {union} E JOIN observation_period OP ON OP.person_id = E.person_id "
            f"AND E.start_date >= OP.observation_period_start_date AND E.start_date <= OP.observation_period_end_date "
            f"WHERE {self.d.add_days('OP.observation_period_start_date', window.prior_days)} <= E.start_date "
            f"AND {self.d.add_days('E.start_date', window.post_days)} <= OP.observation_period_end_date"
        )
        where = "" if pc.primary_criteria_limit.type == "All" else " WHERE ordinal = 1"
        return self.cte(
            f"SELECT person_id, ordinal AS event_id, start_date, end_date, op_start_date, op_end_date, "
            f"visit_occurrence_id FROM {ranked}{where}"
        )

    def included(self, qualified: str) -> str:
        e = self.e
        full = 2 ** len(e.inclusion_rules) - 1
        passing = f"SELECT {EVENT_COLUMNS} FROM {qualified} WHERE inclusion_rule_mask = {full}"
        if e.expression_limit.type == "All" or self.limited_before_rules():  # nothing to rank
            return self.cte(passing)
        order = "DESC" if e.expression_limit.type == "Last" else "ASC"
        ranked = self.cte(
            f"SELECT {EVENT_COLUMNS}, row_number() OVER (PARTITION BY person_id ORDER BY start_date {order}, "
            f"event_id) AS included_ordinal FROM {qualified} WHERE inclusion_rule_mask = {full}"
        )
        return self.cte(f"SELECT {EVENT_COLUMNS} FROM {ranked} WHERE included_ordinal = 1")

    def limited_before_rules(self) -> bool:
        """Whether the primary or qualified limit already keeps at most one event per person (then the
        expression limit has nothing to choose from)."""
        e = self.e
        return e.primary_criteria.primary_criteria_limit.type != "All" or (
            e.additional_criteria is not None and e.qualified_limit.type != "All"
        )

    def needs_event_ids(self) -> bool:
        """Whether anything tells the index events of a person apart: criteria or censoring joined back to them,
        a limit that ranks them. Else (every event kept, no criteria) they need no id, and numbering them (a sort
        of every event) is skipped."""
        e = self.e
        return (
            e.additional_criteria is not None
            or bool(e.inclusion_rules)
            or bool(e.censoring_criteria)  # censoring dates are joined back by event
            or e.primary_criteria.primary_criteria_limit.type != "All"
            or e.expression_limit.type != "All"
        )

    def exits(self, included: str, extra: str = "", *, drop_open: bool = True) -> str:
        """Each event's exit: the earliest candidate end (observation end, date offset, custom era end, first
        censoring event) on or after its start; an event without one leaves the cohort (with ``drop_open``;
        else its end is null and the caller drops it). ``extra``: more columns of ``included`` to carry (SQL
        starting with a comma, unqualified).

        Candidates are columns of one row per event (each join below matches at most one row: merged eras are
        disjoint, censoring is grouped per event), so no union of candidate rows has to be grouped again."""
        e = self.e
        strategy = e.end_strategy
        if strategy is not None and strategy.date_offset is not None and strategy.custom_era is not None:
            raise UnsupportedFeature("", "$.EndStrategy", "an end strategy is either DateOffset or CustomEra")
        candidates: list[str] = []
        joins: list[str] = []
        if strategy is None or strategy.date_offset is None:
            candidates.append("I.op_end_date")
        if strategy is not None and strategy.date_offset is not None:
            field = "I.start_date" if strategy.date_offset.date_field == "StartDate" else "I.end_date"
            shifted = self.d.add_days(field, strategy.date_offset.offset)
            candidates.append(f"CASE WHEN {shifted} > I.op_end_date THEN I.op_end_date ELSE {shifted} END")
        if strategy is not None and strategy.custom_era is not None:
            eras = self.custom_eras(included)
            joins.append(
                f"LEFT JOIN {eras} E ON E.person_id = I.person_id AND I.start_date >= E.era_start "
                f"AND I.start_date <= E.era_end"
            )
            candidates.append("E.era_end")
        if e.censoring_criteria:
            parts = [
                f"SELECT person_id, start_date FROM {self.events(plan_criterion(c, f'$.CensoringCriteria[{i}]'))}"
                for i, c in enumerate(e.censoring_criteria)
            ]
            censor = self.cte("\nUNION ALL\n".join(parts))
            censored = self.cte(
                f"SELECT I.person_id, I.event_id, MIN(C.start_date) AS censor_date FROM {included} I "
                f"JOIN {censor} C ON C.person_id = I.person_id AND C.start_date >= I.start_date "
                f"AND C.start_date <= I.op_end_date GROUP BY I.person_id, I.event_id"
            )
            joins.append(f"LEFT JOIN {censored} X ON X.person_id = I.person_id AND X.event_id = I.event_id")
            candidates.append("X.censor_date")
        kept = [f"CASE WHEN {c} >= I.start_date THEN {c} END" for c in candidates]
        end = kept[0] if len(kept) == 1 else f"LEAST({', '.join(kept)})"  # LEAST skips nulls (DuckDB, Spark)
        carried = "".join(f", I.{c.strip()}" for c in extra.split(",") if c.strip())
        ends = self.cte(
            f"SELECT I.person_id, I.start_date, {end} AS end_date{carried} FROM {included} I"
            + "".join(" " + j for j in joins)
        )
        if not drop_open:
            return ends
        return self.cte(f"SELECT person_id, start_date, end_date FROM {ends} WHERE end_date IS NOT NULL")

    def custom_eras(self, included: str) -> str:
        era = self.e.end_strategy.custom_era  # type: ignore[union-attr]
        assert era is not None
        d = self.d
        start = "de.drug_exposure_start_date"
        if era.days_supply_override is not None:
            end = d.add_days(start, era.days_supply_override)
        else:
            end = f"COALESCE(de.drug_exposure_end_date, {d.add_days(start, 'de.days_supply')}, {d.add_days(start, 1)})"
        codeset = self.codeset(era.drug_codeset_id)
        select = (
            f"SELECT de.person_id, {start} AS start_date, {d.add_days(end, era.gap_days + era.offset)} AS padded_end "
            "FROM drug_exposure de WHERE "
        )
        # An exposure matches by its concept or by its source concept: two disjoint scans instead of one OR, so
        # that the first reads only the concepts' rows of a table clustered by concept (decision 0021).
        exposures = self.cte(
            f"{select}de.drug_concept_id IN {codeset}\nUNION ALL\n"
            f"{select}de.drug_source_concept_id IN {codeset} AND NOT COALESCE(de.drug_concept_id IN {codeset}, FALSE)"
        )
        padded = self.cte(f"SELECT * FROM {exposures} WHERE person_id IN (SELECT person_id FROM {included})")
        return self.merge_intervals(padded, "start_date", "padded_end", "era_start", "era_end", -era.gap_days)

    def merge_intervals(self, table: str, start: str, end: str, out_start: str, out_end: str, end_shift: int) -> str:
        """CTE merging each person's overlapping (or touching) intervals; the merged end is shifted by
        ``end_shift``.

        One sort of the intervals: an interval starts a merged one when it starts after the latest end before it;
        a merged interval ends at the latest end before the next start (or the person's latest end). The second
        window numbers only the merged intervals, not every interval."""
        marked = self.cte(
            f"SELECT person_id, {start} AS s, MAX({end}) OVER (PARTITION BY person_id ORDER BY {start}, {end} "
            f"ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS end_before, MAX({end}) OVER (PARTITION BY "
            f"person_id ORDER BY {start}, {end} ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS last_end "
            f"FROM {table}"
        )
        starts = self.cte(
            f"SELECT person_id, s, last_end, LEAD(end_before) OVER (PARTITION BY person_id ORDER BY s) AS next_end "
            f"FROM {marked} WHERE end_before IS NULL OR end_before < s"
        )
        end_sql = self.d.add_days("COALESCE(next_end, last_end)", end_shift)
        return self.cte(f"SELECT person_id, s AS {out_start}, {end_sql} AS {out_end} FROM {starts}")

    def at_most_one_event_per_person(self) -> bool:
        """Whether a limit (primary, qualified or expression) already keeps at most one event per person."""
        return self.limited_before_rules() or self.e.expression_limit.type != "All"

    def collapse(self, ends: str) -> str:
        if self.at_most_one_event_per_person():  # one period per person: nothing to merge, padding cancels out
            return ends
        pad = self.e.collapse_settings.era_pad
        padded = self.cte(f"SELECT person_id, start_date, {self.d.add_days('end_date', pad)} AS end_date FROM {ends}")
        return self.merge_intervals(padded, "start_date", "end_date", "start_date", "end_date", -pad)

    def censor_window(self, collapsed: str, extra: str = "") -> str:
        """CTE of the cohort periods with their dates clamped to the censor window; a period the window empties
        (start after end) is left for the caller to drop and count, as is an open one (a null end stays null).
        ``extra``: more columns to carry (SQL starting with a comma)."""
        window = self.e.censor_window
        if not (window.start_date or window.end_date):
            return collapsed
        start, end = "start_date", "end_date"
        if window.start_date:
            literal = self.date_literal(window.start_date, "$.CensorWindow.StartDate")
            start = f"CASE WHEN start_date > {literal} THEN start_date ELSE {literal} END"
        if window.end_date:
            literal = self.date_literal(window.end_date, "$.CensorWindow.EndDate")
            end = f"CASE WHEN end_date IS NULL OR end_date < {literal} THEN end_date ELSE {literal} END"
        return self.cte(f"SELECT person_id, {start} AS start_date, {end} AS end_date{extra} FROM {collapsed}")

    def date_literal(self, value: str, path: str) -> str:
        try:
            return f"DATE '{dt.date.fromisoformat(value[:10]).isoformat()}'"
        except ValueError:
            raise UnsupportedFeature("", path, f"not an ISO date: {value!r}") from None

    # -- domain events --------------------------------------------------------------------------------------
    def events(self, q: EventQuery) -> str:
        """CTE of the rows a criterion selects: person_id, event_id, start_date, end_date, visit_occurrence_id,
        domain_concept_id."""
        dom, d = q.domain, self.d
        where = []
        if q.codeset_id is not None:
            if dom.concept is None:
                raise UnsupportedFeature("", f"{q.path}.CodesetId", f"{dom.name} has no concept to match")
            where.append(f"t.{dom.concept} IN {self.codeset(q.codeset_id)}")
        if q.source_codeset_id is not None:
            where.append(f"t.{dom.source_concept} IN {self.codeset(q.source_codeset_id)}")
        start = f"t.{dom.start}"
        plus_one = d.add_days(start, 1)
        end = {
            "own": f"t.{dom.end}",
            "start_plus_1": plus_one,
            "coalesce_start_plus_1": f"COALESCE(t.{dom.end}, {plus_one})",
            "drug_exposure": f"COALESCE(t.{dom.end}, {d.add_days(start, 't.days_supply')}, {plus_one})",
        }[dom.end_rule]
        visit = f"t.{dom.visit}" if dom.visit else "CAST(NULL AS BIGINT)"
        concept = f"t.{dom.concept}" if dom.concept else "CAST(NULL AS BIGINT)"
        ordinal = (
            f", row_number() OVER (PARTITION BY t.person_id ORDER BY {start}, t.{dom.event_id}) AS _ordinal"
            if q.first
            else ""
        )
        raw = self.cte(
            f"SELECT t.*, t.{dom.event_id} AS _event_id, {start} AS _start, {end} AS _end, {visit} AS _visit_id, "
            f"{concept} AS _concept_id{ordinal} FROM {dom.table} t" + (f" WHERE {' AND '.join(where)}" if where else "")
        )
        conditions = ["C._ordinal = 1"] if q.first else []
        conditions += [self.predicate(f, _EventContext("C", "C._start", "C._end", "P"), self.d) for f in q.filters]
        person_join = " JOIN person P ON P.person_id = C.person_id" if q.needs_person else ""
        adjust = q.date_adjustment
        if adjust is not None:
            start_out = d.add_days("C._start" if adjust.start_with == "START_DATE" else "C._end", adjust.start_offset)
            end_out = d.add_days("C._start" if adjust.end_with == "START_DATE" else "C._end", adjust.end_offset)
        else:
            start_out, end_out = "C._start", "C._end"
        selected = self.cte(
            f"SELECT C.person_id, C._event_id AS event_id, {start_out} AS start_date, {end_out} AS end_date, "
            f"C._visit_id AS visit_occurrence_id, C._concept_id AS domain_concept_id FROM {raw} C{person_join}"
            + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
        )
        if q.correlated is None:
            return selected
        with_periods = self.cte(
            f"SELECT E.person_id, E.event_id, E.start_date, E.end_date, E.visit_occurrence_id, "
            f"OP.observation_period_start_date AS op_start_date, OP.observation_period_end_date AS op_end_date "
            f"FROM {selected} E JOIN observation_period OP ON OP.person_id = E.person_id "
            f"AND E.start_date >= OP.observation_period_start_date AND E.start_date <= OP.observation_period_end_date"
        )
        passing = self.group(q.correlated, with_periods, q.correlated_path)
        return self.cte(
            f"SELECT E.* FROM {selected} E JOIN {passing} G ON G.person_id = E.person_id AND G.event_id = E.event_id"
        )

    def predicate(self, f: Filter, ctx: _EventContext, d: Dialect) -> str:
        if isinstance(f, Abnormal):
            c = ctx.row
            concepts = ", ".join(map(str, ABNORMAL_VALUE_CONCEPTS))
            return (
                f"({c}.value_as_number < {c}.range_low OR {c}.value_as_number > {c}.range_high "
                f"OR {c}.value_as_concept_id IN ({concepts}))"
            )
        if f.value.kind == "visit_concept":
            inner = self.predicate(_retarget(f, Value("column", "visit_concept_id")), _EventContext("V"), d)
            return f"{ctx.row}._visit_id IN (SELECT V.visit_occurrence_id FROM visit_occurrence V WHERE {inner})"
        if f.value.kind == "place_of_service":
            inner = self.predicate(_retarget(f, Value("column", "place_of_service_concept_id")), _EventContext("CS"), d)
            return f"{ctx.row}.care_site_id IN (SELECT CS.care_site_id FROM care_site CS WHERE {inner})"
        if f.value.kind == "provider_specialty":
            inner = self.predicate(_retarget(f, Value("column", "specialty_concept_id")), _EventContext("PR"), d)
            return f"{ctx.row}.provider_id IN (SELECT PR.provider_id FROM provider PR WHERE {inner})"
        value = ctx.value_sql(f.value, d)
        if isinstance(f, ConceptIn):
            ids = ", ".join(str(i) for i in f.concept_ids)
            return f"{value} {'NOT IN' if f.negate else 'IN'} ({ids})"
        if isinstance(f, CodesetIn):
            return f"{value} {'NOT IN' if f.negate else 'IN'} {self.codeset(f.codeset_id)}"
        if isinstance(f, NumberIn):
            return _range_sql(value, f.range, _number)
        if isinstance(f, DateIn):
            return _range_sql(value, f.range, lambda v: f"DATE '{v}'")
        if isinstance(f, TextMatch):
            return _text_sql(value, f.filter)
        raise AssertionError(f"unknown filter {f!r}")

    # -- criteria groups -----------------------------------------------------------------------------------
    def group(self, g: CriteriaGroup, events: str, path: str) -> str:
        """CTE of the distinct (person_id, event_id) of ``events`` that satisfy the group."""
        members = [self.correlated(c, events, f"{path}.CriteriaList[{i}]") for i, c in enumerate(g.criteria_list)]
        members += [
            self.demographic(dc, events, f"{path}.DemographicCriteriaList[{i}]")
            for i, dc in enumerate(g.demographic_criteria_list)
        ]
        members += [self.group(sub, events, f"{path}.Groups[{i}]") for i, sub in enumerate(g.groups)]
        if not members:
            return self.cte(f"SELECT DISTINCT person_id, event_id FROM {events}")
        if g.type in ("AT_LEAST", "AT_MOST") and g.count is None:
            raise UnsupportedFeature("", f"{path}.Count", f"a group of type {g.type} needs a Count")
        if g.type in ("ALL", "ANY"):
            # Members are subsets of ``events``: ALL is their intersection, ANY their union (one pass each, no
            # join back to every event and count). Null keys never matched the join, so they are left out.
            op = "\nINTERSECT\n" if g.type == "ALL" else "\nUNION\n"
            return self.cte(
                op.join(
                    f"SELECT person_id, event_id FROM {m} WHERE person_id IS NOT NULL AND event_id IS NOT NULL"
                    for m in members
                )
            )
        having = {
            "AT_LEAST": f">= {g.count}",
            "AT_MOST": f"<= {g.count}",
        }[g.type]
        union = "\nUNION ALL\n".join(
            f"SELECT DISTINCT {i} AS member, person_id, event_id FROM {m}" for i, m in enumerate(members)
        )
        return self.cte(
            f"SELECT E.person_id, E.event_id FROM (SELECT DISTINCT person_id, event_id FROM {events}) E "
            f"LEFT JOIN ({union}) U ON U.person_id = E.person_id AND U.event_id = E.event_id "
            f"GROUP BY E.person_id, E.event_id HAVING COUNT(U.member) {having}"
        )

    def correlated_match(self, cc: CorrelatedCriteria, path: str) -> str:
        """EXISTS: a counted event of the criterion matches the index event ``P`` (a counted event is a match
        whose counted column is not null, as COUNT skips nulls)."""
        on, counted_column, _ = self.correlated_join(cc, path)
        events = self.events(plan_criterion(cc.criteria, f"{path}.Criteria"))
        return f"EXISTS (SELECT 1 FROM {events} A WHERE {' AND '.join(on)} AND {counted_column} IS NOT NULL)"

    def correlated_join(self, cc: CorrelatedCriteria, path: str) -> tuple[list[str], str, str]:
        """The join conditions of a correlated criterion's events ``A`` with the index event ``P``, the counted
        column and the count (SQL)."""
        d = self.d
        on = ["A.person_id = P.person_id"]
        check_periods = not cc.ignore_observation_period
        if check_periods:
            on += ["A.start_date >= P.op_start_date", "A.start_date <= P.op_end_date"]
        on += _window_sql(cc.start_window, check_periods, event_end_default=False, d=d)
        if cc.end_window is not None:
            on += _window_sql(cc.end_window, check_periods, event_end_default=True, d=d)
        if cc.restrict_visit:
            on.append("A.visit_occurrence_id = P.visit_occurrence_id")
        occurrence = cc.occurrence
        if occurrence.is_distinct:
            column = {None: "domain_concept_id", "DOMAIN_CONCEPT": "domain_concept_id", "START_DATE": "start_date"}
            if occurrence.count_column not in column:
                reason = f"CountColumn {occurrence.count_column!r} is not supported yet"
                raise UnsupportedFeature("", f"{path}.Occurrence.CountColumn", reason)
            counted_column = f"A.{column[occurrence.count_column]}"
            counted = f"COUNT(DISTINCT {counted_column})"
        else:
            counted_column = "A.event_id"
            counted = f"COUNT({counted_column})"
        return on, counted_column, counted

    def correlated(self, cc: CorrelatedCriteria, events: str, path: str) -> str:
        a = self.events(plan_criterion(cc.criteria, f"{path}.Criteria"))
        on, counted_column, counted = self.correlated_join(cc, path)
        occurrence = cc.occurrence
        op = {EXACTLY: "=", AT_MOST: "<=", AT_LEAST: ">="}[occurrence.type]
        index = f"(SELECT DISTINCT {EVENT_COLUMNS} FROM {events}) P"
        # A counted event is a match whose counted column is not null (COUNT skips nulls).
        matched = f"EXISTS (SELECT 1 FROM {a} A WHERE {' AND '.join(on)} AND {counted_column} IS NOT NULL)"
        if op in ("=", "<=") and occurrence.count == 0:
            # "none": the index events that no counted event matches (an anti join, no pairs to count). EXCEPT
            # keeps the grouping's meaning where one index event has several rows (overlapping periods).
            return self.cte(
                f"SELECT person_id, event_id FROM {events}\nEXCEPT\n"
                f"SELECT P.person_id, P.event_id FROM {index} WHERE {matched}"
            )
        if op == ">=" and occurrence.count == 1:
            # "at least one": a semi join, which stops at the first match instead of counting every pair.
            return self.cte(f"SELECT DISTINCT P.person_id, P.event_id FROM {index} WHERE {matched}")
        # An index event without any match counts 0: when 0 fails the test, an inner join gives the same groups.
        zero_passes = {"=": occurrence.count == 0, "<=": occurrence.count >= 0, ">=": occurrence.count <= 0}[op]
        join = "LEFT JOIN" if zero_passes else "JOIN"
        return self.cte(
            f"SELECT P.person_id, P.event_id FROM {index} "
            f"{join} {a} A ON {' AND '.join(on)} GROUP BY P.person_id, P.event_id "
            f"HAVING {counted} {op} {occurrence.count}"
        )

    def demographic(self, dc: DemographicCriteria, events: str, path: str) -> str:
        filters = demographic_filters(dc, path)
        ctx = _EventContext("E", "E.start_date", "E.end_date", "P")
        conditions = [self.predicate(f, ctx, self.d) for f in filters]
        return self.cte(
            f"SELECT E.person_id, E.event_id FROM {events} E JOIN person P ON P.person_id = E.person_id"
            + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
        )


@dataclass(frozen=True)
class _EventContext:
    """Where a filter finds its values: the row alias, the event dates, the person alias."""

    row: str
    start: str = ""
    end: str = ""
    person: str = "P"

    def value_sql(self, v: Value, d: Dialect) -> str:
        if v.kind == "column":
            return f"{self.row}.{v.column}"
        if v.kind == "start":
            return self.start
        if v.kind == "end":
            return self.end
        if v.kind == "age_start":
            return f"({d.year(self.start)} - {self.person}.year_of_birth)"
        if v.kind == "age_end":
            return f"({d.year(self.end)} - {self.person}.year_of_birth)"
        if v.kind == "length":
            return d.day_diff(self.start, self.end)
        if v.kind == "person":
            return f"{self.person}.{v.column}"
        if v.kind == "ratio":
            return f"({self.row}.{v.column} / NULLIF({self.row}.{v.column2}, 0))"
        raise AssertionError(f"unknown value kind {v.kind}")


def _retarget(f: Filter, value: Value) -> Filter:
    """The same test applied to another value (e.g. the visit's concept instead of the record's)."""
    return replace(f, value=value)  # type: ignore[arg-type]


def _range_sql(value: str, r: NumericRange | DateRange, literal: Callable[[Any], str]) -> str:
    """``value`` compared with the range; ``literal`` renders one bound as SQL."""
    low = literal(r.value)
    ops = {"lt": "<", "lte": "<=", "eq": "=", "!eq": "<>", "gt": ">", "gte": ">="}
    if r.op in ops:
        return f"{value} {ops[r.op]} {low}"
    between = f"({value} >= {low} AND {value} <= {literal(r.extent)})"
    return between if r.op == "bt" else f"NOT {between}"


def _text_sql(value: str, f: TextFilter) -> str:
    # '!' as the escape character: a backslash would need escaping itself in Spark SQL string literals.
    text = (f.text or "").replace("!", "!!").replace("%", "!%").replace("_", "!_")
    op = f.op.lstrip("!")
    pattern = {"startsWith": f"{text}%", "contains": f"%{text}%", "endsWith": f"%{text}"}[op]
    negate = "NOT " if f.op.startswith("!") else ""
    return f"{value} {negate}LIKE {_sql_string(pattern)} ESCAPE '!'"


def _window_sql(w: Window, check_periods: bool, *, event_end_default: bool, d: Dialect) -> list[str]:
    """Conditions placing the correlated event A inside a window around the index event P."""
    use_event_end = event_end_default if w.use_event_end is None else w.use_event_end
    event_date = "A.end_date" if use_event_end else "A.start_date"
    index_date = "P.end_date" if w.use_index_end else "P.start_date"
    conditions = []
    for bound, op in ((w.start, ">="), (w.end, "<=")):
        if bound.days is not None:
            conditions.append(f"{event_date} {op} {d.add_days(index_date, bound.coeff * bound.days)}")
        elif check_periods:
            conditions.append(f"{event_date} {op} {'P.op_start_date' if bound.coeff == -1 else 'P.op_end_date'}")
    return conditions
