"""The comparative new-user study on a synthetic release recovers the planted hazard ratio.

``hygie synth`` plants HR 1.5 for GI bleeding, diclofenac versus celecoxib, in the 365 days after the first
prescription (intention to treat), with celecoxib channelled to older and more comorbid patients: the crude
ratio is biased below 1 and adjustment for age and comorbidities recovers 1.5 (docs/synth.md, truth.json).
MI, stroke and AKI are negative controls (no effect). So are incident type 2 diabetes, hypertension, atrial
fibrillation and CKD: their onsets are drawn from age and sex alone, before and independently of the NSAID
choice (src/hygie/synth/clinical.py), so their true HR is 1 too; they give the calibration enough controls.

The release is site a (OMOP CSV) loaded with the synthetic vocabulary, as ``hygie cdm load`` would; only the
tables the study reads are copied (measurements and visits are neither cohort criteria nor covariates here).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from hygie.analyses.base import COHORT_TABLE_COLUMNS, ResultTable, StudyCohort, StudyContext, StudyDefinitions
from hygie.analyses.comparative import ComparativeAnalysis, ComparativeSpec
from hygie.cohorts.service import CohortDefinition, DuckDBRunner, run_batch
from hygie.config import Settings
from hygie.engine.duckdb import DuckDBEngine
from hygie.ingest.cdm_load import load_cdm
from hygie.synth.config import SynthConfig
from hygie.synth.generate import generate

PATIENTS = 60_000  # about 2,300 new users of the two drugs and 80 GI bleeds at site a
SEED = 42
DEFINITIONS = Path(__file__).parents[1] / "data" / "comparative"
EXPOSURES = ("diclofenac_users", "celecoxib_users")
NEGATIVE_CONTROLS = ("mi", "stroke", "aki", "t2d", "hypertension", "af", "ckd")
TABLES = ("person", "observation_period", "condition_occurrence", "drug_exposure", "procedure_occurrence", "death",
          "cdm_source")  # fmt: skip


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Settings, dict[str, Any]]:
    root = tmp_path_factory.mktemp("comparative")
    out = root / "synth"
    generate(SynthConfig(patients=PATIENTS, seed=SEED), out, workers=2)
    combined = root / "site_a"
    combined.mkdir()
    for table in TABLES:
        shutil.copy(out / "site_a" / "cdm" / f"{table}.csv", combined)
    for path in (out / "vocabulary").glob("*.csv"):
        if path.name != "MANIFEST.csv":
            shutil.copy(path, combined)
    home = root / "home"
    settings = Settings(home=home, master_key_file=home / "keys" / "master.key")
    release = load_cdm(combined, "synth-site-a", settings, synthetic=True)
    truth = json.loads((out / "truth" / "truth.json").read_text())
    return release, settings, truth


@pytest.fixture(scope="session")
def study(synthetic: tuple[Any, Settings, dict[str, Any]]) -> dict[str, ResultTable]:
    release, settings, _ = synthetic
    names = [*EXPOSURES, "gi_bleed", *NEGATIVE_CONTROLS]
    spec = ComparativeSpec.model_validate(
        {
            "target": "diclofenac_users",
            "comparator": "celecoxib_users",
            "outcomes": ["gi_bleed"],
            "negative_controls": list(NEGATIVE_CONTROLS),
            "washout_days": 365,
            # The planted design: days 0 to 364 after the first prescription, intention to treat.
            "time_at_risk": {"start": 0, "end": 364, "design": "intention_to_treat"},
            "covariates": {"windows": [[-365, -1]], "domains": ["condition", "drug", "procedure"]},
            "propensity": {"penalty": "l1", "cv_folds": 5},
            "adjustment": {"method": "matching", "ratio": 1, "caliper": 0.2},
        }
    )
    with DuckDBEngine(release, settings) as engine:
        runner = DuckDBRunner(engine.con)
        generated = run_batch(runner, [CohortDefinition.from_file(DEFINITIONS / f"{n}.json") for n in names])
        parts, cohorts = [], {}
        for cohort_id, (name, result) in enumerate(zip(names, generated, strict=True), 1):
            rows = result.rows.append_column("cohort_definition_id", pa.array([cohort_id] * result.rows.num_rows))
            parts.append(rows.select(list(COHORT_TABLE_COLUMNS)))
            cohorts[name] = StudyCohort(name, cohort_id, f"circe:{name}.json")
        runner.register("study_cohort", pa.concat_tables(parts))
        tables = ComparativeAnalysis().run(StudyContext(runner, cohorts), spec, StudyDefinitions())
    return {t.name: t for t in tables}


def _estimate(study: dict[str, ResultTable], outcome: str, analysis: str) -> dict[str, Any]:
    rows = study["comparative_estimates"].rows.to_pylist()
    (row,) = [r for r in rows if r["outcome"] == outcome and r["analysis"] == analysis]
    return row


def test_adjusted_hr_covers_the_planted_hr_and_the_crude_one_is_biased(study, synthetic) -> None:
    _, _, truth = synthetic
    (planted,) = [t for t in truth["hazard_ratios"] if t["outcome"] == "gi_bleed"]
    assert (planted["target"], planted["comparator"], planted["planted"]) == ("diclofenac", "celecoxib", 1.5)
    hr = planted["planted"]
    crude = _estimate(study, "gi_bleed", "crude")
    adjusted = _estimate(study, "gi_bleed", "adjusted")
    assert crude["target_events"] + crude["comparator_events"] >= 60  # enough events to mean something
    # Crude: below 1, as the truth file says of the crude ratio, and its CI excludes the planted HR.
    assert crude["hr"] < 1.0 and crude["hr_95ci_upper"] < hr
    assert planted["realised_crude_rate_ratio"] < 1.0
    # Adjusted: the CI covers the planted HR, and the estimate is nearer to it than the crude one.
    assert adjusted["hr_95ci_lower"] <= hr <= adjusted["hr_95ci_upper"]
    assert abs(math.log(adjusted["hr"] / hr)) < abs(math.log(crude["hr"] / hr))
    assert adjusted["target_subjects"] == adjusted["comparator_subjects"]  # 1:1 matching


def test_matching_balances_the_confounders(study) -> None:
    (diag,) = [r for r in study["comparative_diagnostics"].rows.to_pylist() if r["outcome"] == "gi_bleed"]
    assert diag["imbalanced_before"] > 5  # age, comorbidities, their drugs: the confounding is visible
    assert diag["imbalanced_after"] <= diag["imbalanced_before"] // 5
    assert 0.6 < diag["ps_auc"] < 0.9 and diag["equipoise"] > 0.5
    balance = [r for r in study["comparative_balance"].rows.to_pylist() if r["outcome"] == "gi_bleed"]
    assert len(balance) == diag["covariates"]
    adjusted = _estimate(study, "gi_bleed", "adjusted")
    matched = adjusted["target_subjects"] + adjusted["comparator_subjects"]
    for row in balance:
        if abs(row["smd_after"]) >= 0.1:  # left imbalanced: only rare covariates, which the L1 model may drop
            assert row["target_subjects_after"] + row["comparator_subjects_after"] < 0.01 * matched, row
    by_name = {r["covariate"]: r for r in balance}
    confounders = [n for n in by_name if n.startswith("age group")] + [
        f"condition [-365, -1]: {c}"
        for c in ("Type 2 diabetes mellitus", "Hypertensive disorder", "Atrial fibrillation", "Chronic kidney disease")
    ]
    for name in confounders:
        assert abs(by_name[name]["smd_after"]) < 0.1, name
    assert by_name["condition [-365, -1]: Hypertensive disorder"]["smd_before"] < -0.2  # celecoxib: hypertensives


def test_negative_controls_behave(study) -> None:
    estimable = 0
    for outcome in NEGATIVE_CONTROLS:
        adjusted = _estimate(study, outcome, "adjusted")
        if adjusted["hr"] is None:  # no event in a group: not estimable, reported as such
            assert adjusted["target_events"] == 0 or adjusted["comparator_events"] == 0
            continue
        estimable += 1
        assert adjusted["hr_95ci_lower"] <= 1.0 <= adjusted["hr_95ci_upper"], outcome
    assert estimable >= 3
    (diag,) = [r for r in study["comparative_diagnostics"].rows.to_pylist() if r["outcome"] == "gi_bleed"]
    assert diag["negative_controls_used"] == estimable
    assert abs(diag["null_mean"]) < 0.5
    calibrated = _estimate(study, "gi_bleed", "calibrated")
    adjusted = _estimate(study, "gi_bleed", "adjusted")
    # Calibration widens the interval (systematic error added to the sampling error) and keeps 1.5 inside.
    width = math.log(adjusted["hr_95ci_upper"] / adjusted["hr_95ci_lower"])
    assert math.log(calibrated["hr_95ci_upper"] / calibrated["hr_95ci_lower"]) >= width - 1e-9
    assert calibrated["hr_95ci_lower"] <= 1.5 <= calibrated["hr_95ci_upper"]


def test_kaplan_meier_curves_and_attrition(study) -> None:
    km = study["comparative_km"].rows.to_pylist()
    for group in ("target", "comparator"):
        curve = [r for r in km if r["outcome"] == "gi_bleed" and r["group"] == group]
        assert curve[0]["time"] == 0 and curve[0]["survival"] == 1.0
        survival = [r["survival"] for r in curve]
        assert survival == sorted(survival, reverse=True) and 0.8 < survival[-1] < 1.0
        assert all(r["survival_lower"] <= r["survival"] <= r["survival_upper"] for r in curve[1:])
        assert max(r["time"] for r in curve) <= 364
    attrition = [r for r in study["comparative_attrition"].rows.to_pylist() if r["outcome"] == "gi_bleed"]
    last = {r["group"]: r["number_subjects"] for r in attrition if r["step"] == max(a["step"] for a in attrition)}
    adjusted = _estimate(study, "gi_bleed", "adjusted")
    assert (last["target"], last["comparator"]) == (adjusted["target_subjects"], adjusted["comparator_subjects"])


def test_only_aggregates_leave_the_analysis(study) -> None:
    for table in study.values():
        assert not {"subject_id", "person_id", "row_id"} & set(table.rows.column_names), table.name
        for count, derived in table.counts.items():
            assert count in table.rows.column_names and set(derived) <= set(table.rows.column_names)
