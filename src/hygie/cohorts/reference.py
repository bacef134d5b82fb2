"""The oracle: a deliberately simple, row-by-row evaluator of Circe expressions over Python rows.

It reads the same ``plan`` as the SQL compiler (which Circe attribute tests which column) but executes
everything with loops, sets and dictionaries, following docs/circe-cohort-semantics.md step by step. It is
slow (quadratic joins) and meant for tiny CDMs: property tests require the SQL engines to agree with it.
SQL's three-valued logic is spelled out: a comparison with a missing value is false.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    NumericRange,
    TextFilter,
    Window,
)
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

Row = Mapping[str, Any]
Key = tuple[int, int]  # (person_id, event_id)


@dataclass(frozen=True)
class Event:
    person_id: int
    event_id: int
    start: dt.date
    end: dt.date | None
    visit_id: int | None
    concept_id: int | None = None
    op_start: dt.date | None = None
    op_end: dt.date | None = None

    @property
    def key(self) -> Key:
        return (self.person_id, self.event_id)


@dataclass(frozen=True)
class ReferenceResult:
    rows: list[tuple[int, dt.date, dt.date]]  # sorted (subject_id, cohort_start_date, cohort_end_date)
    mask_counts: dict[int, int]
    best_mask_counts: dict[int, int]  # persons by the mask of their best event (the highest mask)
    rule_subjects: list[int]
    qualified_events: int


def days(date: dt.date | None, n: int | None) -> dt.date | None:
    if date is None or n is None:
        return None
    return date + dt.timedelta(days=n)


def _lt(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a < b


def _le(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a <= b


class ReferenceEvaluator:
    def __init__(self, tables: Mapping[str, Sequence[Row]]) -> None:
        self.tables = tables
        self.persons = {p["person_id"]: p for p in tables.get("person", [])}
        self.periods: dict[int, list[tuple[dt.date, dt.date]]] = {}
        for op in tables.get("observation_period", []):
            self.periods.setdefault(op["person_id"], []).append(
                (op["observation_period_start_date"], op["observation_period_end_date"])
            )

    def rows(self, table: str) -> Sequence[Row]:
        return self.tables.get(table, [])

    # -- concept sets ----------------------------------------------------------------------------------------
    def codesets(self, expression: CohortExpression) -> dict[int, set[int]]:
        concepts = {c["concept_id"]: c for c in self.rows("concept")}
        resolved = {}
        for concept_set in expression.concept_sets:
            include: set[int] = set()
            exclude: set[int] = set()
            for item in concept_set.expression.items:
                cid = item.concept.concept_id
                found = {cid} if cid in concepts else set()
                if item.include_descendants:
                    for a in self.rows("concept_ancestor"):
                        d = a["descendant_concept_id"]
                        valid = d in concepts and concepts[d].get("invalid_reason") is None
                        if a["ancestor_concept_id"] == cid and valid:
                            found.add(d)
                if item.include_mapped:
                    found |= {
                        r["concept_id_1"]
                        for r in self.rows("concept_relationship")
                        if r["relationship_id"] == "Maps to"
                        and r.get("invalid_reason") is None
                        and r["concept_id_2"] in found
                    }
                (exclude if item.is_excluded else include).update(found)
            resolved[concept_set.id] = include - exclude
        return resolved

    # -- the pipeline --------------------------------------------------------------------------------------------
    def evaluate(self, e: CohortExpression) -> ReferenceResult:
        self.cs = self.codesets(e)
        pc = e.primary_criteria
        candidates: list[Event] = []
        for i, c in enumerate(pc.criteria_list):
            candidates += self.events(plan_criterion(c, f"$.PrimaryCriteria.CriteriaList[{i}]"))
        placed = []
        w = pc.observation_window
        for ev in candidates:
            for op_start, op_end in self.periods.get(ev.person_id, []):
                if (
                    op_start <= ev.start <= op_end
                    and days(op_start, w.prior_days) <= ev.start
                    and days(ev.start, w.post_days) <= op_end
                ):
                    placed.append((ev, op_start, op_end))
        primary = []
        for person, group in _by_person(placed, lambda p: p[0].person_id).items():
            ordered = _ordered(group, lambda p: (p[0].start, p[0].event_id), pc.primary_criteria_limit.type == "Last")
            for ordinal, (ev, op_start, op_end) in enumerate(ordered, start=1):
                primary.append(replace(ev, event_id=ordinal, op_start=op_start, op_end=op_end, person_id=person))
        if pc.primary_criteria_limit.type != "All":
            primary = [ev for ev in primary if ev.event_id == 1]
        qualified = primary
        if e.additional_criteria is not None:
            passing = self.group(e.additional_criteria, primary)
            qualified = [ev for ev in primary if ev.key in passing]
            if e.qualified_limit.type != "All":
                qualified = _first_per_person(qualified, e.qualified_limit.type == "Last")
        rule_sets = [self.group(rule.expression, qualified) for rule in e.inclusion_rules]
        masks = {ev.key: sum(2**i for i, s in enumerate(rule_sets) if ev.key in s) for ev in qualified}
        mask_counts: dict[int, int] = {}
        for ev in qualified:
            mask_counts[masks[ev.key]] = mask_counts.get(masks[ev.key], 0) + 1
        best: dict[int, int] = {}
        for ev in qualified:
            best[ev.person_id] = max(best.get(ev.person_id, 0), masks[ev.key])
        best_mask_counts: dict[int, int] = {}
        for mask in best.values():
            best_mask_counts[mask] = best_mask_counts.get(mask, 0) + 1
        rule_subjects = [
            len({ev.person_id for ev in qualified if all(ev.key in s for s in rule_sets[: i + 1])})
            for i in range(len(rule_sets))
        ]
        full = 2 ** len(rule_sets) - 1
        included = [ev for ev in qualified if masks[ev.key] == full]
        if e.expression_limit.type != "All":
            included = _first_per_person(included, e.expression_limit.type == "Last")
        periods = [(ev.person_id, ev.start, end) for ev in included if (end := self.exit(e, ev)) is not None]
        pad = e.collapse_settings.era_pad
        collapsed = [
            (person, start, days(end, -pad))
            for person, start, end in _merge([(p, s, days(en, pad)) for p, s, en in periods])
        ]
        rows = []
        low = dt.date.fromisoformat(e.censor_window.start_date[:10]) if e.censor_window.start_date else None
        high = dt.date.fromisoformat(e.censor_window.end_date[:10]) if e.censor_window.end_date else None
        for person, start, end in collapsed:
            start = max(start, low) if low else start
            end = min(end, high) if high else end
            if start <= end:
                rows.append((person, start, end))
        return ReferenceResult(sorted(rows), mask_counts, best_mask_counts, rule_subjects, len(qualified))

    def exit(self, e: CohortExpression, ev: Event) -> dt.date | None:
        """The earliest candidate exit on or after the start, or None (the event is dropped)."""
        candidates = []
        strategy = e.end_strategy
        if strategy is None or strategy.date_offset is None:
            candidates.append(ev.op_end)
        if strategy is not None and strategy.date_offset is not None:
            base = ev.start if strategy.date_offset.date_field == "StartDate" else ev.end
            shifted = days(base, strategy.date_offset.offset)
            candidates.append(ev.op_end if _lt(ev.op_end, shifted) else shifted)
        if strategy is not None and strategy.custom_era is not None:
            for era_start, era_end in self.drug_eras(strategy.custom_era, ev.person_id):
                if era_start <= ev.start <= era_end:
                    candidates.append(era_end)
        censors = []
        for i, c in enumerate(e.censoring_criteria):
            for cev in self.events(plan_criterion(c, f"$.CensoringCriteria[{i}]")):
                if cev.person_id == ev.person_id and _le(ev.start, cev.start) and _le(cev.start, ev.op_end):
                    censors.append(cev.start)
        if censors:
            candidates.append(min(censors))
        valid = [c for c in candidates if _le(ev.start, c)]
        return min(valid) if valid else None

    def drug_eras(self, era: Any, person_id: int) -> list[tuple[dt.date, dt.date]]:
        codeset = self.cs.get(era.drug_codeset_id, set())
        intervals = []
        for de in self.rows("drug_exposure"):
            if de["person_id"] != person_id:
                continue
            if de.get("drug_concept_id") not in codeset and de.get("drug_source_concept_id") not in codeset:
                continue
            start = de["drug_exposure_start_date"]
            if era.days_supply_override is not None:
                end = days(start, era.days_supply_override)
            else:
                end = de.get("drug_exposure_end_date") or days(start, de.get("days_supply")) or days(start, 1)
            intervals.append((person_id, start, days(end, era.gap_days + era.offset)))
        return [(s, days(en, -era.gap_days)) for _, s, en in _merge(intervals)]

    # -- domain events ---------------------------------------------------------------------------------------------
    def events(self, q: EventQuery) -> list[Event]:
        dom = q.domain
        rows = []
        for r in self.rows(dom.table):
            if q.codeset_id is not None and r.get(dom.concept or "") not in self.cs.get(q.codeset_id, set()):
                continue
            if q.source_codeset_id is not None and r.get(dom.source_concept or "") not in self.cs.get(
                q.source_codeset_id, set()
            ):
                continue
            rows.append(r)
        if q.first:
            firsts = {}
            for r in sorted(rows, key=lambda r: (r[dom.start], r[dom.event_id])):
                firsts.setdefault(r["person_id"], r)
            rows = list(firsts.values())
        out = []
        for r in rows:
            start = r[dom.start]
            end = _default_end(dom.end_rule, r, start, dom.end)
            person = self.persons.get(r["person_id"])
            if q.needs_person and person is None:
                continue
            context = _Context(r, start, end, person)
            if not all(self.test(f, context) for f in q.filters):
                continue
            if q.date_adjustment is not None:
                a = q.date_adjustment
                start, end = (
                    days(start if a.start_with == "START_DATE" else end, a.start_offset),
                    days(start if a.end_with == "START_DATE" else end, a.end_offset),
                )
            visit = r.get(dom.visit) if dom.visit else None
            concept = r.get(dom.concept) if dom.concept else None
            out.append(Event(r["person_id"], r[dom.event_id], start, end, visit, concept))
        if q.correlated is None:
            return out
        with_periods = [
            replace(ev, op_start=s, op_end=en)
            for ev in out
            for s, en in self.periods.get(ev.person_id, [])
            if _le(s, ev.start) and _le(ev.start, en)
        ]
        passing = self.group(q.correlated, with_periods)
        return [ev for ev in out if ev.key in passing]

    def test(self, f: Filter, c: _Context) -> bool:
        if isinstance(f, Abnormal):
            value, low, high = c.row.get("value_as_number"), c.row.get("range_low"), c.row.get("range_high")
            return _lt(value, low) or _lt(high, value) or c.row.get("value_as_concept_id") in ABNORMAL_VALUE_CONCEPTS
        if f.value.kind == "visit_concept":
            visits = {
                v["visit_occurrence_id"]
                for v in self.rows("visit_occurrence")
                if self.test(replace(f, value=Value("column", "visit_concept_id")), _Context(v))  # type: ignore[arg-type]
            }
            return c.row.get("visit_occurrence_id") in visits
        if f.value.kind == "place_of_service":
            sites = {
                s["care_site_id"]
                for s in self.rows("care_site")
                if self.test(replace(f, value=Value("column", "place_of_service_concept_id")), _Context(s))  # type: ignore[arg-type]
            }
            return c.row.get("care_site_id") in sites
        if f.value.kind == "provider_specialty":
            providers = {
                p["provider_id"]
                for p in self.rows("provider")
                if self.test(replace(f, value=Value("column", "specialty_concept_id")), _Context(p))  # type: ignore[arg-type]
            }
            return c.row.get("provider_id") in providers
        value = c.value(f.value)
        if isinstance(f, CodesetIn):
            members = self.cs.get(f.codeset_id, set())
            if f.negate:
                return not members or (value is not None and value not in members)
            return value is not None and value in members
        if value is None:
            return False
        if isinstance(f, ConceptIn):
            return (value not in f.concept_ids) if f.negate else (value in f.concept_ids)
        if isinstance(f, NumberIn):
            return _in_range(value, f.range, float)
        if isinstance(f, DateIn):
            return _in_range(value, f.range, lambda v: dt.date.fromisoformat(str(v)))
        if isinstance(f, TextMatch):
            return _text(value, f.filter)
        raise AssertionError(f"unknown filter {f!r}")

    # -- criteria groups -------------------------------------------------------------------------------------------
    def group(self, g: CriteriaGroup, events: list[Event]) -> set[Key]:
        keys = {ev.key for ev in events}
        members: list[set[Key]] = [self.correlated(c, events) for c in g.criteria_list]
        for dc in g.demographic_criteria_list:
            filters = demographic_filters(dc, "$")
            members.append(
                {
                    ev.key
                    for ev in events
                    if ev.person_id in self.persons
                    and all(self.test(f, _Context({}, ev.start, ev.end, self.persons[ev.person_id])) for f in filters)
                }
            )
        members += [self.group(sub, events) for sub in g.groups]
        if not members:
            return keys
        passing = set()
        for key in keys:
            n = sum(1 for m in members if key in m)
            ok = {
                "ALL": lambda n: n == len(members),
                "ANY": lambda n: n > 0,
                "AT_LEAST": lambda n: n >= (g.count or 0),
                "AT_MOST": lambda n: n <= (g.count or 0),
            }[g.type](n)
            if ok:
                passing.add(key)
        return passing

    def correlated(self, cc: CorrelatedCriteria, events: list[Event]) -> set[Key]:
        candidates = self.events(plan_criterion(cc.criteria, "$"))
        check = not cc.ignore_observation_period
        counts: dict[Key, list[Any]] = {}
        for p in set(events):
            matched = counts.setdefault(p.key, [])
            for a in candidates:
                if a.person_id != p.person_id:
                    continue
                if check and not (_le(p.op_start, a.start) and _le(a.start, p.op_end)):
                    continue
                if not _in_window(cc.start_window, a, p, check, event_end_default=False):
                    continue
                if cc.end_window is not None and not _in_window(cc.end_window, a, p, check, event_end_default=True):
                    continue
                if cc.restrict_visit and not (a.visit_id is not None and a.visit_id == p.visit_id):
                    continue
                matched.append(a)
        occurrence = cc.occurrence
        passing = set()
        for key, matched in counts.items():
            if occurrence.is_distinct:
                column = "start" if occurrence.count_column == "START_DATE" else "concept_id"
                n = len({getattr(a, column) for a in matched if getattr(a, column) is not None})
            else:
                n = len(matched)
            ok = {EXACTLY: n == occurrence.count, AT_MOST: n <= occurrence.count, AT_LEAST: n >= occurrence.count}
            if ok[occurrence.type]:
                passing.add(key)
        return passing


@dataclass(frozen=True)
class _Context:
    row: Row
    start: dt.date | None = None
    end: dt.date | None = None
    person: Row | None = None

    def value(self, v: Value) -> Any:
        person = self.person or {}
        if v.kind == "column":
            return self.row.get(v.column)
        if v.kind == "start":
            return self.start
        if v.kind == "end":
            return self.end
        if v.kind in ("age_start", "age_end"):
            date = self.start if v.kind == "age_start" else self.end
            yob = person.get("year_of_birth")
            return None if date is None or yob is None else date.year - yob
        if v.kind == "length":
            return None if self.start is None or self.end is None else (self.end - self.start).days
        if v.kind == "person":
            return person.get(v.column)
        if v.kind == "ratio":
            num, den = self.row.get(v.column), self.row.get(v.column2)
            return None if num is None or not den else num / den
        raise AssertionError(v.kind)


def _default_end(rule: str, row: Row, start: dt.date, end_column: str | None) -> dt.date | None:
    """Circe's end date of a record when the table has none or it is missing (semantics §2.2)."""
    recorded = row.get(end_column) if end_column else None
    if rule == "own":
        return recorded
    if rule == "start_plus_1":
        return days(start, 1)
    if rule == "coalesce_start_plus_1":
        return recorded or days(start, 1)
    return recorded or days(start, row.get("days_supply")) or days(start, 1)  # drug_exposure


def _in_range(value: Any, r: NumericRange | DateRange, convert: Callable[[Any], Any]) -> bool:
    low = convert(r.value)
    if r.op == "lt":
        return value < low
    if r.op == "lte":
        return value <= low
    if r.op == "eq":
        return value == low
    if r.op == "!eq":
        return value != low
    if r.op == "gt":
        return value > low
    if r.op == "gte":
        return value >= low
    inside = low <= value <= convert(r.extent)
    return inside if r.op == "bt" else not inside


def _text(value: str, f: TextFilter) -> bool:
    text = f.text or ""
    op = f.op.lstrip("!")
    hit = {"startsWith": value.startswith, "endsWith": value.endswith, "contains": value.__contains__}[op](text)
    return not hit if f.op.startswith("!") else hit


def _in_window(w: Window, a: Event, p: Event, check: bool, *, event_end_default: bool) -> bool:
    use_event_end = event_end_default if w.use_event_end is None else w.use_event_end
    event_date = a.end if use_event_end else a.start
    index_date = p.end if w.use_index_end else p.start
    for bound, is_low in ((w.start, True), (w.end, False)):
        if bound.days is not None:
            limit = days(index_date, bound.coeff * bound.days)
        elif check:
            limit = p.op_start if bound.coeff == -1 else p.op_end
        else:
            continue
        if not (_le(limit, event_date) if is_low else _le(event_date, limit)):
            return False
    return True


def _by_person(items: Iterable[Any], person: Callable[[Any], int]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for item in items:
        out.setdefault(person(item), []).append(item)
    return out


def _ordered(items: list[Any], key: Callable[[Any], tuple[dt.date, int]], last: bool) -> list[Any]:
    """By date (descending for "Last"), then id ascending: the SQL ``ORDER BY date [DESC], id``."""
    by_id = sorted(items, key=lambda x: key(x)[1])
    return sorted(by_id, key=lambda x: key(x)[0], reverse=last)


def _first_per_person(events: list[Event], last: bool) -> list[Event]:
    return [
        _ordered(group, lambda ev: (ev.start, ev.event_id), last)[0]
        for group in _by_person(events, lambda ev: ev.person_id).values()
    ]


def _merge(periods: list[tuple[int, dt.date, dt.date]]) -> list[tuple[int, dt.date, dt.date]]:
    """Merge each person's overlapping or touching periods (start on or before the running end)."""
    merged = []
    for person, group in sorted(_by_person(periods, lambda p: p[0]).items()):
        current: list[Any] | None = None
        for _, start, end in sorted(group, key=lambda p: (p[1], p[2])):
            if current is not None and start <= current[2]:
                current[2] = max(current[2], end)
            else:
                if current is not None:
                    merged.append(tuple(current))
                current = [person, start, end]
        if current is not None:
            merged.append(tuple(current))
    return merged  # type: ignore[return-value]


def evaluate(tables: Mapping[str, Sequence[Row]], expression: CohortExpression) -> ReferenceResult:
    return ReferenceEvaluator(tables).evaluate(expression)
