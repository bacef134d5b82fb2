"""Every cohort definition saved for GiBleed, against the published (or documented) figures.

Figures come from tests/data/cohorts (copied from shared/data/cohorts-gibleed): CohortGenerator's
Results_Eunomia (published), and our computed counts for the CDMConnector definitions.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

from hygie.cohorts.service import CohortDefinition, CohortResult, generate
from hygie.config import Settings
from hygie.releases import Release

DATA = Path(__file__).parents[1] / "data" / "cohorts"
CG = DATA / "cohortgenerator"
EXPECTED = CG / "expected_eunomia"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


COHORT_NAMES = {row["cohort_id"]: row["cohort_name"] for row in read_csv(CG / "Cohorts.csv")}


@pytest.fixture(scope="module")
def results(gibleed: Release, gibleed_settings: Settings) -> dict[str, CohortResult]:
    files = sorted(DATA.rglob("*.json"))
    batch = generate(gibleed, [CohortDefinition.from_file(f) for f in files], gibleed_settings)
    return {r.name: r for r in batch}


def published_counts() -> list[tuple[str, int, int]]:
    return [
        (COHORT_NAMES[row["cohort_id"]], int(row["cohort_entries"]), int(row["cohort_subjects"]))
        for row in read_csv(EXPECTED / "cg_cohort_count.csv")
        if row["cohort_id"] in COHORT_NAMES  # ids 1001.. are CohortGenerator subsets, not Circe
    ]


@pytest.mark.parametrize(("name", "entries", "subjects"), published_counts())
def test_cohortgenerator_counts_match_published_results(results, name, entries, subjects):
    assert (results[name].records, results[name].subjects) == (entries, subjects)


def test_censor_window_loss_matches_published_censor_stats(results):
    (row,) = read_csv(EXPECTED / "cg_cohort_censor_stats.csv")
    assert results[COHORT_NAMES[row["cohort_definition_id"]]].censor_window_lost == int(row["lost_count"])


@pytest.mark.parametrize("mode", ["0", "1"])
def test_inclusion_rule_masks_match_published_inclusion_results(results, mode):
    published: dict[str, dict[int, int]] = {}
    for row in read_csv(EXPECTED / "cg_cohort_inc_result.csv"):
        if row["mode_id"] == mode:
            masks = published.setdefault(COHORT_NAMES[row["cohort_definition_id"]], {})
            masks[int(row["inclusion_rule_mask"])] = int(row["person_count"])
    assert len(published) == 2  # the file has rows for two cohorts in each mode
    for name, masks in published.items():
        result = results[name]
        assert (result.mask_counts if mode == "0" else result.best_mask_counts) == masks


def test_inclusion_rule_stats_match_published_inclusion_stats(results):
    names = read_csv(EXPECTED / "cg_cohort_inclusion.csv")
    rules = {(r["cohort_definition_id"], r["rule_sequence"]): r["name"] for r in names}
    rows = [r for r in read_csv(EXPECTED / "cg_cohort_inc_stats.csv") if r["mode_id"] == "0"]
    assert len(rows) == 3
    for row in rows:
        result = results[COHORT_NAMES[row["cohort_definition_id"]]]
        rule = result.inclusion_rules[int(row["rule_sequence"])]
        assert rule.name == rules[(row["cohort_definition_id"], row["rule_sequence"])]
        assert (rule.events_passing, rule.gain, result.qualified_events) == (
            int(row["person_count"]),
            int(row["gain_count"]),
            int(row["person_total"]),
        )


def test_summary_stats_match_published_summary(results):
    for row in read_csv(EXPECTED / "cg_cohort_summary_stats.csv"):
        if row["mode_id"] == "0":
            result = results[COHORT_NAMES[row["cohort_definition_id"]]]
            assert (result.qualified_events, result.records) == (int(row["base_count"]), int(row["final_count"]))


def test_subjects_remaining_after_each_rule_in_order(results):
    rules = results["celecoxibAge40Male"].inclusion_rules
    # rule 1 alone keeps mask 1|3 events (303 + 266); both rules keep mask 3 (266): published masks
    assert [(r.name, r.subjects) for r in rules] == [("Age > 40", 569), ("Gender = MALE", 266)]


@pytest.mark.parametrize("row", read_csv(DATA / "cdmconnector" / "expected_gibleed.csv"), ids=lambda r: r["name"])
def test_cdmconnector_definitions_match_documented_counts(results, row):
    result = results[row["name"]]
    assert (result.records, result.subjects) == (int(row["records"]), int(row["subjects"]))


def test_fixed_offset_exit_is_capped_at_the_end_of_observation(results):
    rows = results["gibleed_end_10"].rows.to_pylist()
    lengths = [(r["cohort_end_date"] - r["cohort_start_date"]).days for r in rows]
    assert max(lengths) == 10
    assert sum(1 for n in lengths if n < 10) == 12  # docs/gibleed-reference.md Q9


@pytest.mark.parametrize("name", ["77", "417", "482"])
def test_phenotype_library_definitions_run(results, name):
    rows = results[name].rows.to_pylist()
    assert rows, f"{name} found nobody on GiBleed"
    assert all(r["cohort_start_date"] <= r["cohort_end_date"] for r in rows)
    assert all(r["cohort_start_date"] >= dt.date(1900, 1, 1) for r in rows)


def test_missing_vocabulary_concepts_are_warnings_naming_the_concept_set(results):
    (warning,) = results["417"].warnings
    assert "concept set 0 ('Gastrointestinal hemorrhage')" in warning
    assert "28779" in warning
    assert results["celecoxib"].warnings == []


def test_cohorts_are_stored_encrypted_in_the_results_area(results, gibleed, gibleed_settings):
    from hygie.cohorts.service import read_stored, results_folder

    folder = results_folder(gibleed, gibleed_settings)
    assert folder.is_relative_to(gibleed_settings.results_dir)
    assert not folder.is_relative_to(gibleed.path)
    stored = read_stored(gibleed, gibleed_settings, "celecoxib")
    assert stored.equals(results["celecoxib"].rows)
    raw = (folder / "celecoxib.parquet").read_bytes()
    assert raw[-4:] == b"PARE"  # Parquet modular encryption, encrypted footer
