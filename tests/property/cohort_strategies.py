"""Hypothesis strategies: tiny random CDMs and random Circe definitions over the same small vocabulary.

Record ids are unique across all tables and observation periods never overlap, so that every ordering the
engines perform ("first event", limits) has exactly one answer.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from hypothesis import strategies as st

BASE = dt.date(2000, 1, 1)
HORIZON = 300  # days: small, so that windows, periods and eras interact often


def day(n: int) -> dt.date:
    return BASE + dt.timedelta(days=n)


def _concept(concept_id: int, domain: str, invalid: str | None = None) -> dict[str, Any]:
    return {
        "concept_id": concept_id,
        "concept_name": f"concept {concept_id}",
        "domain_id": domain,
        "vocabulary_id": "Test",
        "concept_class_id": "Test",
        "concept_code": str(concept_id),
        "valid_start_date": day(0),
        "valid_end_date": day(10_000),
        "invalid_reason": invalid,
    }


# Vocabulary: 101 has descendants 102 (valid) and 103 (invalid); 301 has descendant 302; source 311 maps to 301.
VOCABULARY: dict[str, list[dict[str, Any]]] = {
    "concept": [
        _concept(101, "Condition"),
        _concept(102, "Condition"),
        _concept(103, "Condition", "D"),
        _concept(301, "Drug"),
        _concept(302, "Drug"),
        _concept(311, "Drug"),
        _concept(401, "Measurement"),
        _concept(9201, "Visit"),
        _concept(9203, "Visit"),
    ],
    "concept_ancestor": [
        {"ancestor_concept_id": a, "descendant_concept_id": d, "min_levels_of_separation": 0,
         "max_levels_of_separation": 0}
        for a, d in [(101, 101), (101, 102), (101, 103), (301, 301), (301, 302)]
    ],
    "concept_relationship": [
        {"concept_id_1": 311, "concept_id_2": 301, "relationship_id": "Maps to", "valid_start_date": day(0),
         "valid_end_date": day(10_000), "invalid_reason": None},
    ],
}  # fmt: skip

DATES = st.integers(0, HORIZON)
MAYBE = st.booleans()


@st.composite
def cdms(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    ids = itertools.count(1)
    n_persons = draw(st.integers(2, 4))
    person_ids = list(range(1, n_persons + 1))
    persons = [
        {
            "person_id": p,
            "gender_concept_id": draw(st.sampled_from([8507, 8532])),
            "year_of_birth": draw(st.integers(1950, 1990)),
            "race_concept_id": 0,
            "ethnicity_concept_id": 0,
        }
        for p in person_ids
    ]
    with_orphan = [*person_ids, 99]  # 99 has events and periods but no PERSON row (GiBleed quirk 1)
    periods = []
    for p in with_orphan:
        # Usually one long period (most events fall inside), sometimes a gap and a second one; never overlapping.
        bounds = [draw(st.integers(0, 40)), draw(st.integers(120, HORIZON - 60))]
        if draw(st.sampled_from([False, False, True])):
            bounds += sorted(draw(st.sets(st.integers(bounds[1] + 1, HORIZON), min_size=2, max_size=2)))
        if p == 99 and draw(MAYBE):
            bounds = []
        for i in range(0, len(bounds) - 1, 2):
            periods.append(
                {
                    "observation_period_id": next(ids),
                    "person_id": p,
                    "observation_period_start_date": day(bounds[i]),
                    "observation_period_end_date": day(bounds[i + 1]),
                    "period_type_concept_id": 32817,
                }
            )
    visits = []
    for _ in range(draw(st.integers(0, 4))):
        start = draw(DATES)
        visits.append(
            {
                "visit_occurrence_id": next(ids),
                "person_id": draw(st.sampled_from(with_orphan)),
                "visit_concept_id": draw(st.sampled_from([9201, 9203])),
                "visit_start_date": day(start),
                "visit_end_date": day(start + draw(st.integers(0, 5))),
                "visit_type_concept_id": 32817,
                "care_site_id": draw(st.sampled_from([None, 50, 51, 52])),  # 52 has no CARE_SITE row
            }
        )
    visit_ids = [v["visit_occurrence_id"] for v in visits]
    maybe_visit = st.sampled_from([None, *visit_ids])
    conditions = []
    for _ in range(draw(st.integers(3, 12))):
        start = draw(DATES)
        end = draw(st.one_of(st.none(), st.integers(0, 40)))
        conditions.append(
            {
                "condition_occurrence_id": next(ids),
                "person_id": draw(st.sampled_from(with_orphan)),
                "condition_concept_id": draw(st.sampled_from([101, 102, 103, 0])),
                "condition_start_date": day(start),
                "condition_end_date": None if end is None else day(start + end),
                "condition_type_concept_id": draw(st.sampled_from([32020, 32817])),
                "visit_occurrence_id": draw(maybe_visit),
            }
        )
    drugs = []
    for _ in range(draw(st.integers(1, 6))):
        start = draw(DATES)
        end = draw(st.one_of(st.none(), st.integers(0, 60)))
        drugs.append(
            {
                "drug_exposure_id": next(ids),
                "person_id": draw(st.sampled_from(with_orphan)),
                "drug_concept_id": draw(st.sampled_from([301, 302, 0])),
                "drug_source_concept_id": draw(st.sampled_from([0, 311])),
                "drug_exposure_start_date": day(start),
                "drug_exposure_end_date": None if end is None else day(start + end),
                "days_supply": draw(st.sampled_from([None, 0, 5, 30])),
                "drug_type_concept_id": 32817,
                "visit_occurrence_id": draw(maybe_visit),
            }
        )
    measurements = []
    for _ in range(draw(st.integers(0, 5))):
        measurements.append(
            {
                "measurement_id": next(ids),
                "person_id": draw(st.sampled_from(with_orphan)),
                "measurement_concept_id": 401,
                "measurement_date": day(draw(DATES)),
                "measurement_type_concept_id": 32817,
                "value_as_number": draw(st.one_of(st.none(), st.integers(0, 200).map(float))),
                "value_as_concept_id": draw(st.sampled_from([None, 4155142])),
                "range_low": 50.0,
                "range_high": 150.0,
                "visit_occurrence_id": draw(maybe_visit),
            }
        )
    eras = {"drug_era": [], "condition_era": []}
    for table, concept in (("drug_era", 301), ("condition_era", 101)):
        prefix = table.removesuffix("_era")
        for _ in range(draw(st.integers(0, 3))):
            start = draw(DATES)
            eras[table].append(
                {
                    f"{table}_id": next(ids),
                    "person_id": draw(st.sampled_from(with_orphan)),
                    f"{prefix}_concept_id": concept,
                    f"{table}_start_date": day(start),
                    f"{table}_end_date": day(start + draw(st.integers(0, 90))),
                    "drug_exposure_count" if prefix == "drug" else "condition_occurrence_count": draw(
                        st.integers(1, 4)
                    ),
                }
            )
    deaths = [
        {"person_id": p, "death_date": day(draw(DATES)), "death_type_concept_id": 32817,
         "cause_concept_id": draw(st.sampled_from([101, 0]))}
        for p in draw(st.sets(st.sampled_from(person_ids), max_size=1))
    ]  # fmt: skip
    providers = [{"provider_id": 7001, "specialty_concept_id": 38004446}]
    for c in conditions:
        c["provider_id"] = draw(st.sampled_from([None, 7001, 7002]))  # 7002 has no PROVIDER row
    return {
        **VOCABULARY,
        **eras,
        "death": deaths,
        "provider": providers,
        "care_site": [
            {"care_site_id": 50, "place_of_service_concept_id": 8717},
            {"care_site_id": 51, "place_of_service_concept_id": 8756},
        ],
        "person": persons,
        "observation_period": periods,
        "visit_occurrence": visits,
        "condition_occurrence": conditions,
        "drug_exposure": drugs,
        "measurement": measurements,
    }


# -- definitions ------------------------------------------------------------------------------------------------

OPS = st.sampled_from(["lt", "lte", "eq", "!eq", "gt", "gte", "bt", "!bt"])


@st.composite
def numeric(draw: st.DrawFn, low: int, high: int) -> dict[str, Any]:
    a, b = sorted(draw(st.lists(st.integers(low, high), min_size=2, max_size=2)))
    return {"Value": a, "Op": draw(OPS), "Extent": b}


@st.composite
def date_range(draw: st.DrawFn) -> dict[str, Any]:
    a, b = sorted(draw(st.lists(DATES, min_size=2, max_size=2)))
    return {"Value": day(a).isoformat(), "Op": draw(OPS), "Extent": day(b).isoformat()}


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def rarely(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """None three times out of four: filters are restrictive, and empty cohorts test little."""
    return st.sampled_from([False, False, False, True]).flatmap(lambda on: strategy if on else st.none())


DOMAINS = [
    "ConditionOccurrence",
    "DrugExposure",
    "VisitOccurrence",
    "Measurement",
    "ObservationPeriod",
    "DrugEra",
    "ConditionEra",
    "Death",
]


@st.composite
def criterion(draw: st.DrawFn, domain: str, depth: int) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "First": draw(rarely(MAYBE)),
        "Age": draw(rarely(numeric(0, 60))),
        "Gender": draw(rarely(st.just([{"CONCEPT_ID": 8507}]))),
        "DateAdjustment": draw(
            rarely(
                st.fixed_dictionaries(
                    {
                        "StartWith": st.sampled_from(["START_DATE", "END_DATE"]),
                        "StartOffset": st.integers(-5, 5),
                        "EndWith": st.sampled_from(["START_DATE", "END_DATE"]),
                        "EndOffset": st.integers(0, 20),
                    }
                )
            )
        ),
    }
    if domain == "ConditionOccurrence":
        attributes |= {
            "CodesetId": draw(st.sampled_from([0, 4, None])),
            "OccurrenceStartDate": draw(rarely(date_range())),
            "ConditionType": draw(rarely(st.just([{"CONCEPT_ID": 32020}]))),
            "ConditionTypeExclude": draw(MAYBE),
            "VisitType": draw(rarely(st.just([{"CONCEPT_ID": 9201}]))),
            "ProviderSpecialty": draw(rarely(st.just([{"CONCEPT_ID": 38004446}]))),
        }
    elif domain == "DrugExposure":
        attributes |= {
            "CodesetId": draw(st.sampled_from([1, None])),
            "DrugSourceConcept": draw(rarely(st.just(1))),
            "DaysSupply": draw(rarely(numeric(0, 30))),
            "OccurrenceStartDate": draw(rarely(date_range())),
        }
    elif domain == "VisitOccurrence":
        attributes |= {
            "CodesetId": draw(st.sampled_from([2, None])),
            "VisitLength": draw(rarely(numeric(0, 5))),
            "PlaceOfService": draw(rarely(st.just([{"CONCEPT_ID": 8717}]))),
        }
    elif domain in ("DrugEra", "ConditionEra"):
        del attributes["Age"]
        attributes |= {
            "CodesetId": 1 if domain == "DrugEra" else 0,
            "EraLength": draw(rarely(numeric(0, 90))),
            "OccurrenceCount": draw(rarely(numeric(1, 4))),
            "AgeAtEnd": draw(rarely(numeric(0, 60))),
        }
    elif domain == "Death":
        attributes |= {"CodesetId": draw(st.sampled_from([0, None]))}
    elif domain == "Measurement":
        attributes |= {
            "CodesetId": 3,
            "ValueAsNumber": draw(rarely(numeric(0, 200))),
            "Abnormal": draw(rarely(MAYBE)),
        }
    else:
        del attributes["Age"], attributes["Gender"]
        attributes |= {"PeriodLength": draw(rarely(numeric(0, 400))), "AgeAtStart": draw(rarely(numeric(0, 60)))}
    if depth > 0 and draw(st.sampled_from([False, False, False, True])):
        attributes["CorrelatedCriteria"] = draw(group(depth - 1))
    return {domain: {k: v for k, v in attributes.items() if v is not None}}


@st.composite
def window(draw: st.DrawFn) -> dict[str, Any]:
    def bound(coeff: int) -> st.SearchStrategy[dict[str, Any]]:
        days = optional(st.sampled_from([0, 1, 7, 30, 90]))
        return st.fixed_dictionaries({"Days": days, "Coeff": st.sampled_from([coeff, coeff, -coeff])})

    w = {"Start": draw(bound(-1)), "End": draw(bound(1))}
    for key in ("UseIndexEnd", "UseEventEnd"):
        value = draw(optional(MAYBE))
        if value is not None:
            w[key] = value
    return w


@st.composite
def correlated(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    c: dict[str, Any] = {
        "Criteria": draw(criterion(draw(st.sampled_from(DOMAINS)), depth)),
        "StartWindow": draw(window()),
        "RestrictVisit": draw(MAYBE),
        "IgnoreObservationPeriod": draw(MAYBE),
        "Occurrence": {
            "Type": draw(st.sampled_from([0, 1, 2])),
            "Count": draw(st.integers(0, 2)),
            "IsDistinct": draw(MAYBE),
            **(
                {"CountColumn": column}
                if (column := draw(st.sampled_from([None, "DOMAIN_CONCEPT", "START_DATE"])))
                else {}
            ),
        },
    }
    if draw(st.sampled_from([False, False, True])):
        c["EndWindow"] = draw(window())
    return c


@st.composite
def group(draw: st.DrawFn, depth: int = 1) -> dict[str, Any]:
    demographic = st.fixed_dictionaries(
        {},
        optional={
            "Age": numeric(20, 60),
            "Gender": st.just([{"CONCEPT_ID": 8532}]),
            "OccurrenceStartDate": date_range(),
        },
    )
    return {
        "Type": draw(st.sampled_from(["ALL", "ANY", "AT_LEAST", "AT_MOST"])),
        "Count": draw(st.integers(0, 2)),
        "CriteriaList": draw(st.lists(correlated(depth), max_size=2)),
        "DemographicCriteriaList": draw(st.lists(demographic, max_size=1)),
        "Groups": draw(st.lists(group(depth - 1), max_size=1)) if depth > 0 else [],
    }


@st.composite
def concept_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    def item(concept_id: int, **flags: bool) -> dict[str, Any]:
        return {"concept": {"CONCEPT_ID": concept_id}, **flags}

    conditions = [item(101, includeDescendants=draw(MAYBE))]
    if draw(MAYBE):
        conditions.append(item(102, isExcluded=True))
    return [
        {"id": 0, "name": "conditions", "expression": {"items": conditions}},
        {"id": 1, "name": "drugs", "expression": {"items": [
            item(301, includeDescendants=draw(MAYBE), includeMapped=draw(MAYBE))]}},
        {"id": 2, "name": "visits", "expression": {"items": [item(9201)]}},
        {"id": 3, "name": "measurements", "expression": {"items": [item(401)]}},
        {"id": 4, "name": "unknown and invalid", "expression": {"items": [item(103), item(555)]}},
    ]  # fmt: skip


LIMITS = st.sampled_from(["First", "Last", "All"])


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    primary_domains = draw(st.lists(st.sampled_from(DOMAINS), min_size=1, max_size=2, unique=True))
    end_strategy = draw(
        st.sampled_from(["none", "offset", "era"]).flatmap(
            lambda kind: {
                "none": st.none(),
                "offset": st.fixed_dictionaries(
                    {"DateOffset": st.fixed_dictionaries(
                        {"DateField": st.sampled_from(["StartDate", "EndDate"]), "Offset": st.integers(-10, 60)})}
                ),
                "era": st.fixed_dictionaries(
                    {"CustomEra": st.fixed_dictionaries({
                        "DrugCodesetId": st.just(1),
                        "GapDays": st.integers(0, 30),
                        "Offset": st.integers(0, 10),
                        "DaysSupplyOverride": optional(st.integers(0, 20)),
                    })}
                ),
            }[kind]
        )
    )  # fmt: skip
    expression: dict[str, Any] = {
        "ConceptSets": draw(concept_sets()),
        "PrimaryCriteria": {
            "CriteriaList": [draw(criterion(d, 1)) for d in primary_domains],
            "ObservationWindow": {
                "PriorDays": draw(st.sampled_from([0, 0, 7, 30])),
                "PostDays": draw(st.sampled_from([0, 0, 7, 30])),
            },
            "PrimaryCriteriaLimit": {"Type": draw(LIMITS)},
        },
        "QualifiedLimit": {"Type": draw(LIMITS)},
        "ExpressionLimit": {"Type": draw(LIMITS)},
        "InclusionRules": [
            {"name": f"rule {i}", "expression": g} for i, g in enumerate(draw(st.lists(group(), max_size=2)))
        ],
        "CensoringCriteria": draw(st.lists(st.sampled_from(DOMAINS).flatmap(lambda d: criterion(d, 0)), max_size=1)),
        "CollapseSettings": {"CollapseType": "ERA", "EraPad": draw(st.integers(0, 30))},
        "CensorWindow": {
            k: day(v).isoformat()
            for k, v in (("StartDate", draw(rarely(DATES))), ("EndDate", draw(rarely(DATES))))
            if v is not None
        },
    }
    if draw(st.sampled_from([False, False, True])):
        expression["AdditionalCriteria"] = draw(group())
    if end_strategy is not None:
        expression["EndStrategy"] = end_strategy
    return expression
