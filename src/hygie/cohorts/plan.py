"""Engine-neutral plan of a domain criterion: which table, which rows, which filters.

Both executors read this plan: the SQL compiler (``compile.py``) and the row-by-row oracle (``reference.py``).
Keeping the mapping from Circe attributes to CDM columns here, once, means the two can only disagree on how
they *execute* a filter, which is what the property tests check. Every Circe attribute that is set but has
no plan raises ``UnsupportedFeature`` with its JSON path: nothing is silently ignored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from hygie.cohorts.circe import (
    Concept,
    ConceptSetSelection,
    Criteria,
    CriteriaGroup,
    DateAdjustment,
    DateRange,
    DemographicCriteria,
    NumericRange,
    TextFilter,
    UnsupportedFeature,
    circe_alias,
)

# -- CDM domains -------------------------------------------------------------------------------------------------

EndRule = Literal["own", "start_plus_1", "coalesce_start_plus_1", "drug_exposure"]


@dataclass(frozen=True)
class Domain:
    """How one Circe domain reads its CDM table."""

    name: str
    table: str
    event_id: str  # the column that identifies a record (Death has none: person_id)
    concept: str | None  # matched against CodesetId
    source_concept: str | None  # matched against <Domain>SourceConcept
    start: str
    end: str | None  # the end-date column, if the table has one
    end_rule: EndRule
    visit: str | None  # visit_occurrence_id column
    provider: str | None = "provider_id"


DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain(
            "ConditionOccurrence", "condition_occurrence", "condition_occurrence_id", "condition_concept_id",
            "condition_source_concept_id", "condition_start_date", "condition_end_date", "coalesce_start_plus_1",
            "visit_occurrence_id",
        ),
        Domain(
            "DrugExposure", "drug_exposure", "drug_exposure_id", "drug_concept_id", "drug_source_concept_id",
            "drug_exposure_start_date", "drug_exposure_end_date", "drug_exposure", "visit_occurrence_id",
        ),
        Domain(
            "ProcedureOccurrence", "procedure_occurrence", "procedure_occurrence_id", "procedure_concept_id",
            "procedure_source_concept_id", "procedure_date", None, "start_plus_1", "visit_occurrence_id",
        ),
        Domain(
            "Measurement", "measurement", "measurement_id", "measurement_concept_id", "measurement_source_concept_id",
            "measurement_date", None, "start_plus_1", "visit_occurrence_id",
        ),
        Domain(
            "Observation", "observation", "observation_id", "observation_concept_id", "observation_source_concept_id",
            "observation_date", None, "start_plus_1", "visit_occurrence_id",
        ),
        Domain(
            "DeviceExposure", "device_exposure", "device_exposure_id", "device_concept_id", "device_source_concept_id",
            "device_exposure_start_date", "device_exposure_end_date", "coalesce_start_plus_1", "visit_occurrence_id",
        ),
        Domain(
            "Specimen", "specimen", "specimen_id", "specimen_concept_id", None, "specimen_date", None,
            "start_plus_1", None, None,
        ),
        Domain(
            "Death", "death", "person_id", "cause_concept_id", "cause_source_concept_id", "death_date", None,
            "start_plus_1", None, None,
        ),
        Domain(
            "VisitOccurrence", "visit_occurrence", "visit_occurrence_id", "visit_concept_id",
            "visit_source_concept_id", "visit_start_date", "visit_end_date", "own", "visit_occurrence_id",
        ),
        Domain(
            "VisitDetail", "visit_detail", "visit_detail_id", "visit_detail_concept_id",
            "visit_detail_source_concept_id", "visit_detail_start_date", "visit_detail_end_date", "own",
            "visit_occurrence_id",
        ),
        Domain(
            "ConditionEra", "condition_era", "condition_era_id", "condition_concept_id", None,
            "condition_era_start_date", "condition_era_end_date", "own", None, None,
        ),
        Domain(
            "DrugEra", "drug_era", "drug_era_id", "drug_concept_id", None, "drug_era_start_date",
            "drug_era_end_date", "own", None, None,
        ),
        Domain(
            "DoseEra", "dose_era", "dose_era_id", "drug_concept_id", None, "dose_era_start_date",
            "dose_era_end_date", "own", None, None,
        ),
        Domain(
            "ObservationPeriod", "observation_period", "observation_period_id", None, None,
            "observation_period_start_date", "observation_period_end_date", "own", None, None,
        ),
        Domain(
            "PayerPlanPeriod", "payer_plan_period", "payer_plan_period_id", None, None,
            "payer_plan_period_start_date", "payer_plan_period_end_date", "own", None, None,
        ),
    )
}  # fmt: skip

# -- values a filter can test -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """Something measurable on an event row.

    kind: "column" (a column of the domain table), "start"/"end" (the event dates), "age_start"/"age_end"
    (year of the date minus the person's year of birth), "length" (days from start to end), "person" (a PERSON
    column), "visit_concept" (visit_concept_id of the row's visit), "provider_specialty", "place_of_service"
    (place_of_service_concept_id of the row's care site), "ratio" (column /
    column2).
    """

    kind: str
    column: str = ""
    column2: str = ""


@dataclass(frozen=True)
class ConceptIn:
    value: Value
    concept_ids: tuple[int, ...]
    negate: bool = False


@dataclass(frozen=True)
class CodesetIn:
    value: Value
    codeset_id: int
    negate: bool = False


@dataclass(frozen=True)
class NumberIn:
    value: Value
    range: NumericRange


@dataclass(frozen=True)
class DateIn:
    value: Value
    range: DateRange


@dataclass(frozen=True)
class TextMatch:
    value: Value
    filter: TextFilter


@dataclass(frozen=True)
class Abnormal:
    """Measurement outside its reference range, or with an abnormal value concept (Circe's definition)."""


Filter = ConceptIn | CodesetIn | NumberIn | DateIn | TextMatch | Abnormal

ABNORMAL_VALUE_CONCEPTS = (4155142, 4155143)  # "Abnormally high", "Abnormally low"


@dataclass(frozen=True)
class EventQuery:
    """The rows one domain criterion selects, before they meet any index event."""

    domain: Domain
    path: str
    codeset_id: int | None = None
    source_codeset_id: int | None = None
    first: bool = False
    filters: tuple[Filter, ...] = ()
    date_adjustment: DateAdjustment | None = None
    correlated: CriteriaGroup | None = None
    correlated_path: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def needs_person(self) -> bool:
        return any(_value_of(f).kind in ("age_start", "age_end", "person") for f in self.filters)

    @property
    def needs_visit(self) -> bool:
        return any(_value_of(f).kind == "visit_concept" for f in self.filters)

    @property
    def needs_provider(self) -> bool:
        return any(_value_of(f).kind == "provider_specialty" for f in self.filters)


def _value_of(f: Filter) -> Value:
    return Value("abnormal") if isinstance(f, Abnormal) else f.value


# -- Circe attribute -> filter -----------------------------------------------------------------------------------

START, END = Value("start"), Value("end")
AGE_START, AGE_END, LENGTH = Value("age_start"), Value("age_end"), Value("length")
GENDER = Value("person", "gender_concept_id")


def _col(name: str) -> Value:
    return Value("column", name)


# Attributes every domain that has them maps the same way.
_COMMON: dict[str, Value] = {
    "occurrence_start_date": START,
    "occurrence_end_date": END,
    "age": AGE_START,
    "gender": GENDER,
    "provider_specialty": Value("provider_specialty"),
    "visit_type": Value("visit_concept"),
    "era_start_date": START,
    "era_end_date": END,
    "era_length": LENGTH,
    "age_at_start": AGE_START,
    "age_at_end": AGE_END,
    "period_start_date": START,
    "period_end_date": END,
    "period_length": LENGTH,
}

_BY_DOMAIN: dict[str, dict[str, Value]] = {
    "ConditionOccurrence": {
        "condition_type": _col("condition_type_concept_id"),
        "condition_status": _col("condition_status_concept_id"),
        "stop_reason": _col("stop_reason"),
    },
    "DrugExposure": {
        "drug_type": _col("drug_type_concept_id"),
        "stop_reason": _col("stop_reason"),
        "refills": _col("refills"),
        "quantity": _col("quantity"),
        "days_supply": _col("days_supply"),
        "route_concept": _col("route_concept_id"),
        "lot_number": _col("lot_number"),
    },
    "ProcedureOccurrence": {
        "procedure_type": _col("procedure_type_concept_id"),
        "modifier": _col("modifier_concept_id"),
        "quantity": _col("quantity"),
    },
    "Measurement": {
        "measurement_type": _col("measurement_type_concept_id"),
        "operator": _col("operator_concept_id"),
        "value_as_number": _col("value_as_number"),
        "value_as_concept": _col("value_as_concept_id"),
        "unit": _col("unit_concept_id"),
        "range_low": _col("range_low"),
        "range_high": _col("range_high"),
        "range_low_ratio": Value("ratio", "value_as_number", "range_low"),
        "range_high_ratio": Value("ratio", "value_as_number", "range_high"),
    },
    "Observation": {
        "observation_type": _col("observation_type_concept_id"),
        "value_as_number": _col("value_as_number"),
        "value_as_string": _col("value_as_string"),
        "value_as_concept": _col("value_as_concept_id"),
        "qualifier": _col("qualifier_concept_id"),
        "unit": _col("unit_concept_id"),
    },
    "DeviceExposure": {
        "device_type": _col("device_type_concept_id"),
        "unique_device_id": _col("unique_device_id"),
        "quantity": _col("quantity"),
        "unit": _col("unit_concept_id"),
    },
    "Specimen": {
        "specimen_type": _col("specimen_type_concept_id"),
        "quantity": _col("quantity"),
        "unit": _col("unit_concept_id"),
        "anatomic_site": _col("anatomic_site_concept_id"),
        "disease_status": _col("disease_status_concept_id"),
        "source_id": _col("specimen_source_id"),
    },
    "Death": {"death_type": _col("death_type_concept_id")},
    "VisitOccurrence": {
        "visit_type": _col("visit_type_concept_id"),
        "visit_length": LENGTH,
        "place_of_service": Value("place_of_service"),
    },
    "VisitDetail": {
        "visit_detail_start_date": START,
        "visit_detail_end_date": END,
        "visit_detail_type": _col("visit_detail_type_concept_id"),
        "visit_detail_length": LENGTH,
        "place_of_service": Value("place_of_service"),
    },
    "ConditionEra": {"occurrence_count": _col("condition_occurrence_count")},
    "DrugEra": {"occurrence_count": _col("drug_exposure_count")},
    "DoseEra": {"unit": _col("unit_concept_id"), "dose_value": _col("dose_value")},
    "ObservationPeriod": {"period_type": _col("period_type_concept_id")},
    "PayerPlanPeriod": {
        "payer_concept": _col("payer_concept_id"),
        "plan_concept": _col("plan_concept_id"),
        "sponsor_concept": _col("sponsor_concept_id"),
        "stop_reason_concept": _col("stop_reason_concept_id"),
        "payer_source_concept": _col("payer_source_concept_id"),
        "plan_source_concept": _col("plan_source_concept_id"),
        "sponsor_source_concept": _col("sponsor_source_concept_id"),
        "stop_reason_source_concept": _col("stop_reason_source_concept_id"),
    },
}

# Circe features that hygie refuses on purpose, with the reason shown to the user.
_REFUSED: dict[tuple[str, str], str] = {
    ("DrugExposure", "occurrence_end_date"): (
        "Circe filters DrugExposure.OccurrenceEndDate on the exposure *start* date (an upstream defect); "
        "hygie refuses it rather than silently differ from ATLAS. Use OccurrenceStartDate or a DateAdjustment"
    ),
    ("DrugEra", "gap_days"): (
        "Circe filters DrugEra.GapDays with the EraLength range (an upstream defect); hygie refuses it rather "
        "than silently differ from ATLAS"
    ),
}

_HANDLED = {"codeset_id", "first", "correlated_criteria", "date_adjustment"}


def plan_criterion(criteria: Criteria, path: str) -> EventQuery:
    """Map one Circe criterion to its event query; raises ``UnsupportedFeature`` naming any attribute it cannot
    execute."""
    domain_name = criteria.domain
    path = f"{path}.{domain_name}"
    if domain_name not in DOMAINS:
        raise UnsupportedFeature("", path, f"the {domain_name} criterion is not supported yet")
    domain = DOMAINS[domain_name]
    criterion = criteria.criterion
    by_domain = _BY_DOMAIN.get(domain_name, {})
    filters: list[Filter] = []
    source_codeset: int | None = None
    set_fields = [name for name in type(criterion).model_fields if name in criterion.model_fields_set]
    for name in set_fields:
        value = getattr(criterion, name)
        if name in _HANDLED or value is None or value == [] or name.endswith("_exclude"):
            continue
        attribute_path = f"{path}.{circe_alias(name)}"
        if (domain_name, name) in _REFUSED:
            raise UnsupportedFeature("", attribute_path, _REFUSED[(domain_name, name)])
        if name == "abnormal":
            if value:
                filters.append(Abnormal())
            continue
        if name.endswith("_source_concept") and domain_name != "PayerPlanPeriod":
            if domain.source_concept is None:
                raise UnsupportedFeature("", attribute_path, f"{domain.table} has no source concept column")
            source_codeset = value
            continue
        base = name.removesuffix("_cs")
        target = by_domain.get(base) or _COMMON.get(base)
        if target is None or (target.kind == "visit_concept" and domain.visit is None):
            raise UnsupportedFeature("", attribute_path, f"{domain_name}.{circe_alias(name)} is not supported yet")
        if target.kind == "provider_specialty" and domain.provider is None:
            raise UnsupportedFeature("", attribute_path, f"{domain.table} has no provider")
        filters.append(_filter(criterion, name, base, target, value, attribute_path))
    correlated = criterion.correlated_criteria
    return EventQuery(
        domain=domain,
        path=path,
        codeset_id=criterion.codeset_id,
        source_codeset_id=source_codeset,
        first=bool(criterion.first),
        filters=tuple(filters),
        date_adjustment=criterion.date_adjustment,
        correlated=correlated if correlated is not None and not correlated.is_empty else None,
        correlated_path=f"{path}.CorrelatedCriteria",
    )


def _filter(criterion: object, name: str, base: str, target: Value, value: object, path: str) -> Filter:
    if isinstance(value, ConceptSetSelection):
        return CodesetIn(target, value.codeset_id, value.is_exclusion)
    if isinstance(value, list) and all(isinstance(c, Concept) for c in value):
        exclude = bool(getattr(criterion, f"{base}_exclude", False))
        return ConceptIn(target, tuple(c.concept_id for c in value), exclude)
    if isinstance(value, NumericRange):
        return NumberIn(target, _checked_numeric(value, path))
    if isinstance(value, DateRange):
        return DateIn(target, _checked_dates(value, path))
    if isinstance(value, TextFilter):
        if value.text is None:
            raise UnsupportedFeature("", path, "a text filter needs Text")
        return TextMatch(target, value)
    if isinstance(value, int) and not isinstance(value, bool):  # PayerPlanPeriod concept attributes are codesets
        return CodesetIn(target, value)
    raise UnsupportedFeature("", path, f"{type(value).__name__} attribute is not supported yet")


def _checked_numeric(r: NumericRange, path: str) -> NumericRange:
    if r.value is None or (r.op in ("bt", "!bt") and r.extent is None):
        needs = "Value and Extent" if "bt" in r.op else "Value"
        raise UnsupportedFeature("", path, f"numeric range with op {r.op!r} needs {needs}")
    return r


def _checked_dates(r: DateRange, path: str) -> DateRange:
    for v in (r.value, r.extent if "bt" in r.op else r.value):
        try:
            dt.date.fromisoformat(str(v))
        except ValueError:
            raise UnsupportedFeature("", path, f"date range needs ISO dates (YYYY-MM-DD), got {v!r}") from None
    return r


def demographic_filters(demographic: DemographicCriteria, path: str) -> tuple[Filter, ...]:
    """Filters of a DemographicCriteria, over the index event and its person."""
    targets = {
        "age": AGE_START,
        "gender": GENDER,
        "race": Value("person", "race_concept_id"),
        "ethnicity": Value("person", "ethnicity_concept_id"),
        "occurrence_start_date": START,
        "occurrence_end_date": END,
    }
    filters: list[Filter] = []
    for name in type(demographic).model_fields:
        value = getattr(demographic, name)
        if value is None or value == []:
            continue
        attribute_path = f"{path}.{circe_alias(name)}"
        if name in ("race_cs", "ethnicity_cs"):
            raise UnsupportedFeature(
                "",
                attribute_path,
                "Circe compares RaceCS/EthnicityCS with the gender concept (an upstream "
                "defect); hygie refuses it rather than silently differ from ATLAS. Use Race/Ethnicity concept lists",
            )
        base = name.removesuffix("_cs")
        filters.append(_filter(demographic, name, base, targets[base], value, attribute_path))
    return tuple(filters)
