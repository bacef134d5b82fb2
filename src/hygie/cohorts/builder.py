"""A readable Python way to define cohorts, for researchers who do not use ATLAS.

Everything compiles to the same Circe model (``CohortExpression``) the JSON files use, so a cohort built here
runs on every engine and exports to Circe JSON for ATLAS (``cohort.to_json()``)::

    from hygie.cohorts import builder as cb

    celecoxib = cb.concepts("celecoxib", 1118084, descendants=True)
    gi_bleed = cb.concepts("GI bleed", 192671, descendants=True)

    new_users = (
        cb.entry(cb.drug_era(celecoxib))          # index event: a celecoxib era...
        .first_event()                            # ...the person's first
        .with_observation(prior_days=365)         # with a year of prior observation
        .require("aged over 40", cb.age() > 40)
        .require("male", cb.gender(cb.MALE))
        .require("no prior GI bleed", cb.condition(gi_bleed).none(within=cb.before(365)))
        .exit_after(days=30)
        .censor_on(cb.condition(gi_bleed))
    )

Windows are in days relative to the index event start: ``cb.before(365)`` is [-365, 0],
``cb.after(30)`` is [0, 30], ``cb.days(-365, -1)`` any range, ``cb.anytime()`` unbounded (within the
observation period, as in Circe).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from hygie.cohorts import circe as c

MALE, FEMALE = 8507, 8532


# -- concept sets -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConceptSet:
    name: str
    concept_ids: tuple[int, ...]
    descendants: bool = False
    mapped: bool = False
    excluded: tuple[int, ...] = ()

    def excluding(self, *concept_ids: int) -> ConceptSet:
        """The same set minus these concepts (and their descendants when the set includes descendants)."""
        return replace(self, excluded=self.excluded + concept_ids)

    def to_circe(self, set_id: int) -> c.ConceptSet:
        def item(concept_id: int, excluded: bool) -> c.ConceptSetItem:
            return c.ConceptSetItem(
                concept=c.Concept(CONCEPT_ID=concept_id),
                isExcluded=excluded,
                includeDescendants=self.descendants,
                includeMapped=self.mapped,
            )

        items = [item(i, False) for i in self.concept_ids] + [item(i, True) for i in self.excluded]
        return c.ConceptSet(id=set_id, name=self.name, expression=c.ConceptSetExpression(items=items))


def concepts(name: str, *concept_ids: int, descendants: bool = False, mapped: bool = False) -> ConceptSet:
    """A named concept set: these concept ids, optionally with their descendants and the source codes mapped
    to them."""
    if not concept_ids:
        raise ValueError(f"concept set {name!r} needs at least one concept id")
    return ConceptSet(name, tuple(concept_ids), descendants, mapped)


class _Sets:
    """Numbers the concept sets a cohort uses, in order of first use."""

    def __init__(self) -> None:
        self.ids: dict[ConceptSet, int] = {}

    def id(self, concept_set: ConceptSet) -> int:
        return self.ids.setdefault(concept_set, len(self.ids))

    def to_circe(self) -> list[c.ConceptSet]:
        return [cs.to_circe(i) for cs, i in self.ids.items()]


# -- windows -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Days from the index start: ``start``/``end`` None means unbounded (up to the observation period)."""

    start: int | None
    end: int | None

    def to_circe(self) -> c.Window:
        def bound(days: int | None, default_coeff: Literal[-1, 1]) -> c.WindowBound:
            if days is None:
                return c.WindowBound(days=None, coeff=default_coeff)
            return c.WindowBound(days=abs(days), coeff=-1 if days < 0 else 1)

        return c.Window(start=bound(self.start, -1), end=bound(self.end, 1))


def days(start: int | None, end: int | None) -> Window:
    return Window(start, end)


def before(n: int | None = None) -> Window:
    """From ``n`` days before the index (any time before when None) up to the index day."""
    return Window(None if n is None else -n, 0)


def after(n: int | None = None) -> Window:
    return Window(0, n)


def anytime() -> Window:
    return Window(None, None)


# -- conditions over the index event ----------------------------------------------------------------------------


class Rule(ABC):
    """Something true or false of an index event; combine with ``&`` (all), ``|`` (any)."""

    @abstractmethod
    def member(self, sets: _Sets) -> c.CorrelatedCriteria | c.DemographicCriteria | c.CriteriaGroup:
        """The Circe criterion this rule stands for."""

    def group(self, sets: _Sets) -> c.CriteriaGroup:
        return _as_group(self.member(sets))

    def __and__(self, other: Rule) -> Rule:
        return all_of(self, other)

    def __or__(self, other: Rule) -> Rule:
        return any_of(self, other)


def _as_group(member: c.CorrelatedCriteria | c.DemographicCriteria | c.CriteriaGroup) -> c.CriteriaGroup:
    if isinstance(member, c.CriteriaGroup):
        return member
    if isinstance(member, c.DemographicCriteria):
        return c.CriteriaGroup(type="ALL", demographic_criteria_list=[member])
    return c.CriteriaGroup(type="ALL", criteria_list=[member])


@dataclass(frozen=True)
class _Group(Rule):
    type: Literal["ALL", "ANY", "AT_LEAST", "AT_MOST"]
    rules: tuple[Rule, ...]
    count: int | None = None

    def member(self, sets: _Sets) -> c.CriteriaGroup:
        members = [r.member(sets) for r in self.rules]
        return c.CriteriaGroup(
            type=self.type,
            count=self.count,
            criteria_list=[m for m in members if isinstance(m, c.CorrelatedCriteria)],
            demographic_criteria_list=[m for m in members if isinstance(m, c.DemographicCriteria)],
            groups=[m for m in members if isinstance(m, c.CriteriaGroup)],
        )


def all_of(*rules: Rule) -> Rule:
    return _Group("ALL", rules)


def any_of(*rules: Rule) -> Rule:
    return _Group("ANY", rules)


def at_least(count: int, *rules: Rule) -> Rule:
    return _Group("AT_LEAST", rules, count)


def at_most(count: int, *rules: Rule) -> Rule:
    return _Group("AT_MOST", rules, count)


@dataclass(frozen=True)
class _Demographic(Rule):
    criteria: c.DemographicCriteria

    def member(self, sets: _Sets) -> c.DemographicCriteria:
        return self.criteria


@dataclass(frozen=True)
class Age:
    """Age at the index event (year of index minus year of birth, as Circe): compare it to make a rule."""

    def _rule(self, op: c.NumericOp, value: float, extent: float | None = None) -> Rule:
        return _Demographic(c.DemographicCriteria(age=c.NumericRange(value=value, op=op, extent=extent)))

    def __gt__(self, value: float) -> Rule:  # type: ignore[override]
        return self._rule("gt", value)

    def __ge__(self, value: float) -> Rule:  # type: ignore[override]
        return self._rule("gte", value)

    def __lt__(self, value: float) -> Rule:  # type: ignore[override]
        return self._rule("lt", value)

    def __le__(self, value: float) -> Rule:  # type: ignore[override]
        return self._rule("lte", value)

    def between(self, low: float, high: float) -> Rule:
        """Inclusive at both ends."""
        return self._rule("bt", low, high)


def age() -> Age:
    return Age()


def gender(*concept_ids: int) -> Rule:
    return _Demographic(c.DemographicCriteria(gender=[c.Concept(CONCEPT_ID=i) for i in concept_ids]))


def index_between(start: str, end: str) -> Rule:
    """The index event starts between two ISO dates (inclusive)."""
    return _Demographic(c.DemographicCriteria(occurrence_start_date=c.DateRange(value=start, op="bt", extent=end)))


# -- events ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Events:
    """Records of one CDM domain, optionally restricted to a concept set and other Circe attributes."""

    domain: str
    concept_set: ConceptSet | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def first_ever(self) -> Events:
        """Only each person's first such record (in the whole table, as Circe's ``First``)."""
        return self.where(first=True)

    def where(self, **attributes: Any) -> Events:
        """Any other Circe attribute of the domain, by its Python name (e.g. ``value_as_number=``)."""
        return replace(self, attributes={**self.attributes, **attributes})

    def to_criteria(self, sets: _Sets) -> c.Criteria:
        model = c.DOMAIN_MODELS[self.domain]
        values = dict(self.attributes)
        if self.concept_set is not None:
            values["codeset_id"] = sets.id(self.concept_set)
        return c.Criteria.of(model(**values))

    def occurs(
        self,
        kind: Literal["at_least", "at_most", "exactly"],
        count: int,
        within: Window,
        *,
        same_visit: bool = False,
        ignore_observation_period: bool = False,
        distinct_concepts: bool = False,
    ) -> Rule:
        return _Occurs(self, kind, count, within, same_visit, ignore_observation_period, distinct_concepts)

    def at_least(self, count: int = 1, *, within: Window, **options: bool) -> Rule:
        return self.occurs("at_least", count, within, **options)

    def at_most(self, count: int, *, within: Window, **options: bool) -> Rule:
        return self.occurs("at_most", count, within, **options)

    def exactly(self, count: int, *, within: Window, **options: bool) -> Rule:
        return self.occurs("exactly", count, within, **options)

    def none(self, *, within: Window, **options: bool) -> Rule:
        """No such record in the window."""
        return self.occurs("exactly", 0, within, **options)


@dataclass(frozen=True)
class _Occurs(Rule):
    events: Events
    kind: Literal["at_least", "at_most", "exactly"]
    count: int
    within: Window
    same_visit: bool
    ignore_observation_period: bool
    distinct_concepts: bool

    def member(self, sets: _Sets) -> c.CorrelatedCriteria:
        kind = {"exactly": c.EXACTLY, "at_most": c.AT_MOST, "at_least": c.AT_LEAST}[self.kind]
        return c.CorrelatedCriteria(
            criteria=self.events.to_criteria(sets),
            start_window=self.within.to_circe(),
            restrict_visit=self.same_visit,
            ignore_observation_period=self.ignore_observation_period,
            occurrence=c.Occurrence(type=kind, count=self.count, is_distinct=self.distinct_concepts),
        )


def _events(domain: str) -> Any:
    def make(concept_set: ConceptSet | None = None, **attributes: Any) -> Events:
        return Events(domain, concept_set, attributes)

    make.__doc__ = f"{domain} records, optionally of a concept set."
    return make


condition = _events("ConditionOccurrence")
condition_era = _events("ConditionEra")
drug = _events("DrugExposure")
drug_era = _events("DrugEra")
procedure = _events("ProcedureOccurrence")
measurement = _events("Measurement")
observation = _events("Observation")
visit = _events("VisitOccurrence")
device = _events("DeviceExposure")
death = _events("Death")
observation_period = _events("ObservationPeriod")


def value(op: c.NumericOp, number: float, extent: float | None = None) -> c.NumericRange:
    """A numeric range for attributes such as ``measurement(cs).where(value_as_number=value("gt", 7))``."""
    return c.NumericRange(value=number, op=op, extent=extent)


# -- the cohort -------------------------------------------------------------------------------------------------


Limit = Literal["First", "Last", "All"]


@dataclass(frozen=True)
class Cohort:
    entry_events: tuple[Events, ...]
    entry_limit: Limit = "First"
    prior_days: int = 0
    post_days: int = 0
    qualifying: Rule | None = None
    qualified_limit: Limit = "First"
    rules: tuple[tuple[str, Rule], ...] = ()
    result_limit: Limit = "First"
    end: c.EndStrategy | None = None
    era_concepts: ConceptSet | None = None  # exit at the end of continuous exposure to these drugs
    era_gap_and_offset: tuple[int, int] = (0, 0)
    censors: tuple[Events, ...] = ()
    era_pad_days: int = 0
    window: tuple[str | None, str | None] = (None, None)

    # entry
    def first_event(self) -> Cohort:
        return replace(self, entry_limit="First")

    def all_events(self) -> Cohort:
        """Every qualifying event enters (overlapping periods are then merged)."""
        return replace(self, entry_limit="All", qualified_limit="All", result_limit="All")

    def last_event(self) -> Cohort:
        return replace(self, entry_limit="Last")

    def with_observation(self, *, prior_days: int = 0, post_days: int = 0) -> Cohort:
        """Index events need this much continuous observation before and after them."""
        return replace(self, prior_days=prior_days, post_days=post_days)

    def qualified_by(self, rule: Rule, *, limit: Limit = "First") -> Cohort:
        """Circe's additional criteria: events must satisfy ``rule`` to qualify."""
        return replace(self, qualifying=rule, qualified_limit=limit)

    # inclusion rules
    def require(self, name: str, rule: Rule) -> Cohort:
        """A named inclusion rule; attrition is reported per rule, in the order they are added."""
        return replace(self, rules=(*self.rules, (name, rule)))

    def keep(self, limit: Limit) -> Cohort:
        """Which of a person's events passing every rule enter the cohort (Circe's expression limit)."""
        return replace(self, result_limit=limit)

    # exit
    def exit_at_observation_end(self) -> Cohort:
        return replace(self, end=None, era_concepts=None)

    def exit_after(self, *, days: int, from_end: bool = False) -> Cohort:
        """Exit ``days`` after the index start (or end), at the latest at the end of observation."""
        date_field = "EndDate" if from_end else "StartDate"
        offset = c.DateOffset(date_field=date_field, offset=days)
        return replace(self, end=c.EndStrategy(date_offset=offset), era_concepts=None)

    def exit_when_exposure_ends(self, drugs: ConceptSet, *, gap_days: int = 0, offset: int = 0) -> Cohort:
        """Exit at the end of continuous exposure to ``drugs`` (gaps up to ``gap_days`` bridged)."""
        return replace(self, era_concepts=drugs, era_gap_and_offset=(gap_days, offset), end=None)

    def censor_on(self, *events: Events) -> Cohort:
        """Exit early at the first of these events after entry."""
        return replace(self, censors=(*self.censors, *events))

    def era_pad(self, days: int) -> Cohort:
        """Merge cohort periods separated by at most ``days``."""
        return replace(self, era_pad_days=days)

    def between(self, start: str | None = None, end: str | None = None) -> Cohort:
        """Clip cohort periods to a calendar window (Circe's censor window)."""
        return replace(self, window=(start, end))

    # output
    def to_circe(self) -> c.CohortExpression:
        sets = _Sets()
        primary = c.PrimaryCriteria(
            criteria_list=[e.to_criteria(sets) for e in self.entry_events],
            observation_window=c.ObservationWindow(prior_days=self.prior_days, post_days=self.post_days),
            primary_criteria_limit=c.Limit(type=self.entry_limit),
        )
        end = self.end
        if self.era_concepts is not None:
            gap_days, offset = self.era_gap_and_offset
            end = c.EndStrategy(
                custom_era=c.CustomEra(drug_codeset_id=sets.id(self.era_concepts), gap_days=gap_days, offset=offset)
            )
        expression = c.CohortExpression(
            primary_criteria=primary,
            additional_criteria=self.qualifying.group(sets) if self.qualifying is not None else None,
            qualified_limit=c.Limit(type=self.qualified_limit),
            inclusion_rules=[c.InclusionRule(name=name, expression=rule.group(sets)) for name, rule in self.rules],
            expression_limit=c.Limit(type=self.result_limit),
            end_strategy=end,
            censoring_criteria=[e.to_criteria(sets) for e in self.censors],
            collapse_settings=c.CollapseSettings(era_pad=self.era_pad_days),
            censor_window=c.CensorWindow(start_date=self.window[0], end_date=self.window[1]),
        )
        return expression.model_copy(update={"concept_sets": sets.to_circe()})

    def to_json(self) -> dict[str, Any]:
        """Circe JSON, importable in ATLAS."""
        return self.to_circe().to_json()


def entry(*events: Events) -> Cohort:
    """A cohort whose index events are records of ``events`` (any of them)."""
    if not events:
        raise ValueError("a cohort needs at least one kind of entry event")
    return Cohort(entry_events=events)
