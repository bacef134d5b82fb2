"""Every supported domain reads its CDM table, with Circe's default end dates (semantics §2.2).

One record per domain, exit at the record's end date (DateOffset EndDate + 0), checked on DuckDB and the
reference evaluator."""

from __future__ import annotations

import pytest
from spec_helpers import D, concept_set, definition, period, person, run

START = D("2005-03-01")

# domain -> (table, record, expected end date)
RECORDS = {
    "ConditionOccurrence": ("condition_occurrence", {"condition_occurrence_id": 1, "condition_concept_id": 100,
        "condition_start_date": START, "condition_end_date": None, "condition_type_concept_id": 0}, "2005-03-02"),
    "DrugExposure": ("drug_exposure", {"drug_exposure_id": 1, "drug_concept_id": 100,
        "drug_exposure_start_date": START, "drug_exposure_end_date": None, "days_supply": 30,
        "drug_type_concept_id": 0}, "2005-03-31"),
    "ProcedureOccurrence": ("procedure_occurrence", {"procedure_occurrence_id": 1, "procedure_concept_id": 100,
        "procedure_date": START, "procedure_end_date": D("2005-04-01"), "procedure_type_concept_id": 0}, "2005-03-02"),
    "Measurement": ("measurement", {"measurement_id": 1, "measurement_concept_id": 100, "measurement_date": START,
        "measurement_type_concept_id": 0}, "2005-03-02"),
    "Observation": ("observation", {"observation_id": 1, "observation_concept_id": 100, "observation_date": START,
        "observation_type_concept_id": 0}, "2005-03-02"),
    "DeviceExposure": ("device_exposure", {"device_exposure_id": 1, "device_concept_id": 100,
        "device_exposure_start_date": START, "device_exposure_end_date": D("2005-03-10"),
        "device_type_concept_id": 0}, "2005-03-10"),
    "Specimen": ("specimen", {"specimen_id": 1, "specimen_concept_id": 100, "specimen_type_concept_id": 0,
        "specimen_date": START}, "2005-03-02"),
    "Death": ("death", {"cause_concept_id": 100, "death_date": START, "death_type_concept_id": 0}, "2005-03-02"),
    "VisitOccurrence": ("visit_occurrence", {"visit_occurrence_id": 1, "visit_concept_id": 100,
        "visit_start_date": START, "visit_end_date": D("2005-03-04"), "visit_type_concept_id": 0}, "2005-03-04"),
    "VisitDetail": ("visit_detail", {"visit_detail_id": 1, "visit_detail_concept_id": 100,
        "visit_detail_start_date": START, "visit_detail_end_date": D("2005-03-03"), "visit_detail_type_concept_id": 0,
        "visit_occurrence_id": 1}, "2005-03-03"),
    "ConditionEra": ("condition_era", {"condition_era_id": 1, "condition_concept_id": 100,
        "condition_era_start_date": START, "condition_era_end_date": D("2005-05-01")}, "2005-05-01"),
    "DrugEra": ("drug_era", {"drug_era_id": 1, "drug_concept_id": 100, "drug_era_start_date": START,
        "drug_era_end_date": D("2005-06-01")}, "2005-06-01"),
    "DoseEra": ("dose_era", {"dose_era_id": 1, "drug_concept_id": 100, "unit_concept_id": 0, "dose_value": 1.0,
        "dose_era_start_date": START, "dose_era_end_date": D("2005-07-01")}, "2005-07-01"),
    "PayerPlanPeriod": ("payer_plan_period", {"payer_plan_period_id": 1, "payer_plan_period_start_date": START,
        "payer_plan_period_end_date": D("2005-08-01")}, "2005-08-01"),
}  # fmt: skip


@pytest.mark.parametrize("domain", sorted(RECORDS))
def test_domain_records_enter_with_circe_default_end_dates(domain):
    table, record, end = RECORDS[domain]
    tables = {
        "person": [person(1)],
        "observation_period": [period(1, "2000-01-01", "2010-12-31")],
        table: [{"person_id": 1, **record}],
    }
    criterion = {} if domain == "PayerPlanPeriod" else {"CodesetId": 0}
    circe = definition(
        [{domain: criterion}],
        [concept_set(0, 100)],
        EndStrategy={"DateOffset": {"DateField": "EndDate", "Offset": 0}},
    )
    rows = [tuple(r.values()) for r in run(tables, circe).rows.to_pylist()]
    assert rows == [(1, START, D(end))]


def test_observation_period_criterion_uses_the_period_itself():
    tables = {"person": [person(1)], "observation_period": [period(1, "2000-01-01", "2010-12-31")]}
    circe = definition(
        [{"ObservationPeriod": {}}], [], EndStrategy={"DateOffset": {"DateField": "StartDate", "Offset": 30}}
    )
    rows = [tuple(r.values()) for r in run(tables, circe).rows.to_pylist()]
    assert rows == [(1, D("2000-01-01"), D("2000-01-31"))]
