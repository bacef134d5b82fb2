"""Typed model of a Circe (ATLAS) cohort expression, the JSON that ATLAS exports.

The model covers the whole Circe 1.12 expression. Parsing is strict inside criteria (an attribute this model
does not know is an error, never silently dropped) and lenient where Circe carries display-only data (concept
captions, titles). Whether a parsed feature can also be *executed* is the compiler's business: see
``features.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hygie.errors import HygieError


def circe_alias(name: str) -> str:
    """snake_case field name -> the PascalCase key Circe writes ("gender_cs" -> "GenderCS")."""
    return "".join("CS" if part == "cs" else part.capitalize() for part in name.split("_"))


class CirceModel(BaseModel):
    model_config = ConfigDict(alias_generator=circe_alias, populate_by_name=True, extra="forbid", frozen=True)


class DefinitionError(HygieError):
    """A cohort definition cannot be read or is not supported: names the file, the JSON path and the reason."""

    def __init__(self, source: str, path: str, reason: str) -> None:
        self.source, self.path, self.reason = source, path, reason
        super().__init__(f"{source}: at {path}: {reason}" if source else f"at {path}: {reason}")

    def at(self, source: str) -> DefinitionError:
        """The same error, naming the definition it comes from."""
        return type(self)(source, self.path, self.reason)


class UnsupportedFeature(DefinitionError):
    """A valid Circe feature that hygie does not execute yet."""


# -- leaves ---------------------------------------------------------------------------------------------


class Concept(BaseModel):
    """A concept as ATLAS embeds it; only the id matters for execution, captions are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    concept_id: int = Field(alias="CONCEPT_ID")
    concept_name: str | None = Field(default=None, alias="CONCEPT_NAME")


NumericOp = Literal["lt", "lte", "eq", "!eq", "gt", "gte", "bt", "!bt"]


class NumericRange(CirceModel):
    value: int | float | None = None
    op: NumericOp = "eq"
    extent: int | float | None = None


class DateRange(CirceModel):
    value: str | None = None
    op: NumericOp = "eq"
    extent: str | None = None


class TextFilter(CirceModel):
    text: str | None = None
    op: Literal["startsWith", "contains", "endsWith", "!startsWith", "!contains", "!endsWith"] = "startsWith"


class ConceptSetSelection(CirceModel):
    codeset_id: int
    is_exclusion: bool = False


class DateAdjustment(CirceModel):
    start_with: Literal["START_DATE", "END_DATE"] = "START_DATE"
    start_offset: int = 0
    end_with: Literal["START_DATE", "END_DATE"] = "END_DATE"
    end_offset: int = 0


class UserDefinedPeriod(CirceModel):
    start_date: str | None = None
    end_date: str | None = None


# -- domain criteria --------------------------------------------------------------------------------------


class DomainCriterion(CirceModel):
    """Attributes most domain criteria share."""

    codeset_id: int | None = None
    first: bool | None = None
    correlated_criteria: CriteriaGroup | None = None
    date_adjustment: DateAdjustment | None = None


class _Person(CirceModel):
    age: NumericRange | None = None
    gender: list[Concept] | None = None
    gender_cs: ConceptSetSelection | None = None


class _Provider(CirceModel):
    provider_specialty: list[Concept] | None = None
    provider_specialty_cs: ConceptSetSelection | None = None


class _Visit(CirceModel):
    visit_type: list[Concept] | None = None
    visit_type_cs: ConceptSetSelection | None = None


class _Occurrence(CirceModel):
    occurrence_start_date: DateRange | None = None
    occurrence_end_date: DateRange | None = None


class ConditionOccurrence(DomainCriterion, _Person, _Provider, _Visit, _Occurrence):
    condition_type: list[Concept] | None = None
    condition_type_cs: ConceptSetSelection | None = None
    condition_type_exclude: bool = False
    stop_reason: TextFilter | None = None
    condition_source_concept: int | None = None
    condition_status: list[Concept] | None = None
    condition_status_cs: ConceptSetSelection | None = None


class DrugExposure(DomainCriterion, _Person, _Provider, _Visit, _Occurrence):
    drug_type: list[Concept] | None = None
    drug_type_cs: ConceptSetSelection | None = None
    drug_type_exclude: bool = False
    stop_reason: TextFilter | None = None
    refills: NumericRange | None = None
    quantity: NumericRange | None = None
    days_supply: NumericRange | None = None
    route_concept: list[Concept] | None = None
    route_concept_cs: ConceptSetSelection | None = None
    effective_drug_dose: NumericRange | None = None
    dose_unit: list[Concept] | None = None
    dose_unit_cs: ConceptSetSelection | None = None
    lot_number: TextFilter | None = None
    drug_source_concept: int | None = None


class ProcedureOccurrence(DomainCriterion, _Person, _Provider, _Visit, _Occurrence):
    procedure_type: list[Concept] | None = None
    procedure_type_cs: ConceptSetSelection | None = None
    procedure_type_exclude: bool = False
    modifier: list[Concept] | None = None
    modifier_cs: ConceptSetSelection | None = None
    quantity: NumericRange | None = None
    procedure_source_concept: int | None = None


class Measurement(DomainCriterion, _Person, _Provider, _Visit, _Occurrence):
    measurement_type: list[Concept] | None = None
    measurement_type_cs: ConceptSetSelection | None = None
    measurement_type_exclude: bool = False
    operator: list[Concept] | None = None
    operator_cs: ConceptSetSelection | None = None
    value_as_number: NumericRange | None = None
    value_as_concept: list[Concept] | None = None
    value_as_concept_cs: ConceptSetSelection | None = None
    unit: list[Concept] | None = None
    unit_cs: ConceptSetSelection | None = None
    range_low: NumericRange | None = None
    range_high: NumericRange | None = None
    range_low_ratio: NumericRange | None = None
    range_high_ratio: NumericRange | None = None
    abnormal: bool | None = None
    measurement_source_concept: int | None = None


class Observation(DomainCriterion, _Person, _Provider, _Visit, _Occurrence):
    observation_type: list[Concept] | None = None
    observation_type_cs: ConceptSetSelection | None = None
    observation_type_exclude: bool = False
    value_as_number: NumericRange | None = None
    value_as_string: TextFilter | None = None
    value_as_concept: list[Concept] | None = None
    value_as_concept_cs: ConceptSetSelection | None = None
    qualifier: list[Concept] | None = None
    qualifier_cs: ConceptSetSelection | None = None
    unit: list[Concept] | None = None
    unit_cs: ConceptSetSelection | None = None
    observation_source_concept: int | None = None


class DeviceExposure(DomainCriterion, _Person, _Provider, _Visit, _Occurrence):
    device_type: list[Concept] | None = None
    device_type_cs: ConceptSetSelection | None = None
    device_type_exclude: bool = False
    unique_device_id: TextFilter | None = None
    quantity: NumericRange | None = None
    device_source_concept: int | None = None
    unit: list[Concept] | None = None
    unit_cs: ConceptSetSelection | None = None


class Specimen(DomainCriterion, _Person, _Occurrence):
    specimen_type: list[Concept] | None = None
    specimen_type_cs: ConceptSetSelection | None = None
    specimen_type_exclude: bool = False
    quantity: NumericRange | None = None
    unit: list[Concept] | None = None
    unit_cs: ConceptSetSelection | None = None
    anatomic_site: list[Concept] | None = None
    anatomic_site_cs: ConceptSetSelection | None = None
    disease_status: list[Concept] | None = None
    disease_status_cs: ConceptSetSelection | None = None
    source_id: TextFilter | None = None
    specimen_source_concept: int | None = None


class Death(DomainCriterion, _Person, _Occurrence):
    death_type: list[Concept] | None = None
    death_type_cs: ConceptSetSelection | None = None
    death_type_exclude: bool = False
    death_source_concept: int | None = None


class VisitOccurrence(DomainCriterion, _Person, _Provider, _Visit, _Occurrence):
    visit_type_exclude: bool = False
    visit_source_concept: int | None = None
    visit_length: NumericRange | None = None
    place_of_service: list[Concept] | None = None
    place_of_service_cs: ConceptSetSelection | None = None
    place_of_service_location: int | None = None
    place_of_service_distance: NumericRange | None = None


class VisitDetail(DomainCriterion, _Person, _Provider):
    visit_detail_start_date: DateRange | None = None
    visit_detail_end_date: DateRange | None = None
    visit_detail_type_cs: ConceptSetSelection | None = None
    visit_detail_source_concept: int | None = None
    visit_detail_length: NumericRange | None = None
    place_of_service_cs: ConceptSetSelection | None = None
    place_of_service_location: int | None = None


class _Era(CirceModel):
    era_start_date: DateRange | None = None
    era_end_date: DateRange | None = None
    era_length: NumericRange | None = None
    age_at_start: NumericRange | None = None
    age_at_end: NumericRange | None = None
    gender: list[Concept] | None = None
    gender_cs: ConceptSetSelection | None = None


class ConditionEra(DomainCriterion, _Era):
    occurrence_count: NumericRange | None = None


class DrugEra(DomainCriterion, _Era):
    occurrence_count: NumericRange | None = None
    gap_days: NumericRange | None = None


class DoseEra(DomainCriterion, _Era):
    unit: list[Concept] | None = None
    unit_cs: ConceptSetSelection | None = None
    dose_value: NumericRange | None = None


class ObservationPeriod(DomainCriterion):
    period_start_date: DateRange | None = None
    period_end_date: DateRange | None = None
    user_defined_period: UserDefinedPeriod | None = None
    period_type: list[Concept] | None = None
    period_type_cs: ConceptSetSelection | None = None
    period_length: NumericRange | None = None
    age_at_start: NumericRange | None = None
    age_at_end: NumericRange | None = None


class PayerPlanPeriod(DomainCriterion):
    period_start_date: DateRange | None = None
    period_end_date: DateRange | None = None
    user_defined_period: UserDefinedPeriod | None = None
    period_length: NumericRange | None = None
    age_at_start: NumericRange | None = None
    age_at_end: NumericRange | None = None
    gender: list[Concept] | None = None
    gender_cs: ConceptSetSelection | None = None
    payer_concept: int | None = None
    plan_concept: int | None = None
    sponsor_concept: int | None = None
    stop_reason_concept: int | None = None
    payer_source_concept: int | None = None
    plan_source_concept: int | None = None
    sponsor_source_concept: int | None = None
    stop_reason_source_concept: int | None = None


class LocationRegion(DomainCriterion):
    start_date: DateRange | None = None
    end_date: DateRange | None = None


DOMAIN_MODELS: dict[str, type[DomainCriterion]] = {
    "ConditionOccurrence": ConditionOccurrence,
    "ConditionEra": ConditionEra,
    "DrugExposure": DrugExposure,
    "DrugEra": DrugEra,
    "DoseEra": DoseEra,
    "ProcedureOccurrence": ProcedureOccurrence,
    "Observation": Observation,
    "Measurement": Measurement,
    "DeviceExposure": DeviceExposure,
    "Specimen": Specimen,
    "VisitOccurrence": VisitOccurrence,
    "VisitDetail": VisitDetail,
    "Death": Death,
    "ObservationPeriod": ObservationPeriod,
    "PayerPlanPeriod": PayerPlanPeriod,
    "LocationRegion": LocationRegion,
}


class Criteria(BaseModel):
    """A one-key object naming the domain: ``{"ConditionOccurrence": {...}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    condition_occurrence: ConditionOccurrence | None = Field(default=None, alias="ConditionOccurrence")
    condition_era: ConditionEra | None = Field(default=None, alias="ConditionEra")
    drug_exposure: DrugExposure | None = Field(default=None, alias="DrugExposure")
    drug_era: DrugEra | None = Field(default=None, alias="DrugEra")
    dose_era: DoseEra | None = Field(default=None, alias="DoseEra")
    procedure_occurrence: ProcedureOccurrence | None = Field(default=None, alias="ProcedureOccurrence")
    observation: Observation | None = Field(default=None, alias="Observation")
    measurement: Measurement | None = Field(default=None, alias="Measurement")
    device_exposure: DeviceExposure | None = Field(default=None, alias="DeviceExposure")
    specimen: Specimen | None = Field(default=None, alias="Specimen")
    visit_occurrence: VisitOccurrence | None = Field(default=None, alias="VisitOccurrence")
    visit_detail: VisitDetail | None = Field(default=None, alias="VisitDetail")
    death: Death | None = Field(default=None, alias="Death")
    observation_period: ObservationPeriod | None = Field(default=None, alias="ObservationPeriod")
    payer_plan_period: PayerPlanPeriod | None = Field(default=None, alias="PayerPlanPeriod")
    location_region: LocationRegion | None = Field(default=None, alias="LocationRegion")

    @model_validator(mode="after")
    def _exactly_one_domain(self) -> Criteria:
        present = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(present) != 1:
            raise ValueError(f"a criterion names exactly one domain, found {len(present)}")
        return self

    @property
    def domain(self) -> str:
        """The Circe domain name, e.g. "ConditionOccurrence"."""
        for name, info in type(self).model_fields.items():
            if getattr(self, name) is not None:
                return str(info.alias)
        raise AssertionError("validated to hold one domain")

    @property
    def criterion(self) -> DomainCriterion:
        return getattr(self, _FIELD_OF_DOMAIN[self.domain])

    @classmethod
    def of(cls, criterion: DomainCriterion) -> Criteria:
        domain = next(d for d, m in DOMAIN_MODELS.items() if type(criterion) is m)
        return cls(**{domain: criterion})


# -- groups and windows -----------------------------------------------------------------------------------


class WindowBound(CirceModel):
    days: int | None = None
    coeff: Literal[-1, 1] = 1


class Window(CirceModel):
    start: WindowBound = WindowBound(coeff=-1)
    end: WindowBound = WindowBound(coeff=1)
    use_index_end: bool | None = None
    use_event_end: bool | None = None


class Occurrence(CirceModel):
    type: Literal[0, 1, 2]  # 0 exactly, 1 at most, 2 at least
    count: int
    is_distinct: bool = False
    count_column: str | None = None


EXACTLY, AT_MOST, AT_LEAST = 0, 1, 2


class CorrelatedCriteria(CirceModel):
    criteria: Criteria
    start_window: Window = Window()
    end_window: Window | None = None
    restrict_visit: bool = False
    ignore_observation_period: bool = False
    occurrence: Occurrence = Occurrence(type=AT_LEAST, count=1)


class DemographicCriteria(CirceModel):
    age: NumericRange | None = None
    gender: list[Concept] | None = None
    gender_cs: ConceptSetSelection | None = None
    race: list[Concept] | None = None
    race_cs: ConceptSetSelection | None = None
    ethnicity: list[Concept] | None = None
    ethnicity_cs: ConceptSetSelection | None = None
    occurrence_start_date: DateRange | None = None
    occurrence_end_date: DateRange | None = None


class CriteriaGroup(CirceModel):
    type: Literal["ALL", "ANY", "AT_LEAST", "AT_MOST"] = "ALL"
    count: int | None = None
    criteria_list: list[CorrelatedCriteria] = []
    demographic_criteria_list: list[DemographicCriteria] = []
    groups: list[CriteriaGroup] = []

    @property
    def is_empty(self) -> bool:
        return not (self.criteria_list or self.demographic_criteria_list or self.groups)


# -- concept sets -------------------------------------------------------------------------------------------


class ConceptSetItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    concept: Concept
    is_excluded: bool = Field(default=False, alias="isExcluded")
    include_descendants: bool = Field(default=False, alias="includeDescendants")
    include_mapped: bool = Field(default=False, alias="includeMapped")


class ConceptSetExpression(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    items: list[ConceptSetItem] = []


class ConceptSet(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    id: int
    name: str = ""
    expression: ConceptSetExpression = ConceptSetExpression()


# -- top level ---------------------------------------------------------------------------------------------


class ObservationWindow(CirceModel):
    prior_days: int = 0
    post_days: int = 0


class Limit(CirceModel):
    type: Literal["First", "Last", "All"] = "First"

    @field_validator("type", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:  # ATLAS exports "First"; hand-written files often say "first"
        return value.capitalize() if isinstance(value, str) else value


class PrimaryCriteria(CirceModel):
    criteria_list: list[Criteria]
    observation_window: ObservationWindow = ObservationWindow()
    primary_criteria_limit: Limit = Limit()


class InclusionRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = ""
    description: str | None = None
    expression: CriteriaGroup = CriteriaGroup()


class DateOffset(CirceModel):
    date_field: Literal["StartDate", "EndDate"] = "StartDate"
    offset: int = 0


class CustomEra(CirceModel):
    drug_codeset_id: int
    gap_days: int = 0
    offset: int = 0
    days_supply_override: int | None = None


class EndStrategy(CirceModel):
    date_offset: DateOffset | None = None
    custom_era: CustomEra | None = None


class CollapseSettings(CirceModel):
    collapse_type: Literal["ERA"] = "ERA"
    era_pad: int = 0


class CensorWindow(CirceModel):
    start_date: str | None = None
    end_date: str | None = None


class CohortExpression(CirceModel):
    # Display-only keys Circe writes and ignores when generating.
    model_config = ConfigDict(alias_generator=circe_alias, populate_by_name=True, extra="ignore", frozen=True)

    concept_sets: list[ConceptSet] = []
    primary_criteria: PrimaryCriteria
    additional_criteria: CriteriaGroup | None = None
    qualified_limit: Limit = Limit()
    expression_limit: Limit = Limit()
    inclusion_rules: list[InclusionRule] = []
    end_strategy: EndStrategy | None = None
    censoring_criteria: list[Criteria] = []
    collapse_settings: CollapseSettings = CollapseSettings()
    censor_window: CensorWindow = CensorWindow()

    def to_json(self) -> dict[str, Any]:
        """The Circe JSON of this expression (what ATLAS imports)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


_FIELD_OF_DOMAIN = {str(info.alias): name for name, info in Criteria.model_fields.items()}

for _model in (DomainCriterion, *DOMAIN_MODELS.values(), CorrelatedCriteria, CriteriaGroup, Criteria):
    _model.model_rebuild()


# -- reading ---------------------------------------------------------------------------------------------------


def json_path(loc: tuple[int | str, ...]) -> str:
    """Pydantic's error location as a JSON path: ("A", 0, "B") -> "$.A[0].B"."""
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def parse_expression(data: Any, source: str = "<definition>") -> CohortExpression:
    """Validate Circe JSON (already decoded); errors name the source, the JSON path and the reason."""
    if not isinstance(data, dict):
        raise DefinitionError(source, "$", "a cohort definition is a JSON object")
    if "expression" in data and "PrimaryCriteria" not in data and isinstance(data["expression"], dict):
        data = data["expression"]  # a WebAPI cohort-definition envelope
    try:
        return CohortExpression.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        raise DefinitionError(source, json_path(loc), first["msg"]) from None


def read_definition(path: Path) -> CohortExpression:
    """Read a Circe JSON file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DefinitionError(str(path), "$", f"cannot be read ({e.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DefinitionError(str(path), "$", f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    return parse_expression(data, str(path))
