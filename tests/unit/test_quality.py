"""Data-quality checks run before any release is published; a fatal one stops the publication."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.ingest.cdm_load import load_cdm
from hygie.ingest.quality import QualityConfig, QualityError, checks
from hygie.releases import ReleaseStore
from tests.cdm_files import OBSERVATION_PERIOD, write_cdm

LABS = """\
measurement_id,person_id,measurement_concept_id,measurement_date,measurement_type_concept_id,value_as_number,measurement_source_value,unit_source_value
1,1,3016723,2010-01-01,32817,80,2160-0,umol/L
2,1,3016723,2010-02-01,32817,80000,2160-0,umol/L
3,2,3016723,2010-02-01,32817,1.1,2160-0,mmol/L
"""


def _by_name(release):
    return {r["name"]: r for r in release.manifest.quality}


def test_results_are_recorded_in_the_manifest(tmp_path, settings):
    release = load_cdm(write_cdm(tmp_path / "cdm", measurement__csv=LABS), "q", settings, synthetic=True)
    results = _by_name(release)
    assert results["implausible_lab_values"]["failing"] == 1  # 80,000 umol/L of creatinine
    assert results["implausible_lab_values"]["status"] == "warning"
    assert results["lab_units_unknown"]["failing"] == 1  # creatinine in mmol/L is not a listed unit
    assert results["person_without_observation_period"]["status"] == "pass"
    assert len(results) == len({c.name for c in checks(set(release.manifest.tables))})


def test_a_fatal_check_stops_publication(tmp_path, settings):
    overlapping = OBSERVATION_PERIOD + "4,1,2015-01-01,2016-01-01,44814724\n"
    with pytest.raises(QualityError, match="overlapping_observation_periods: 1 of 4 rows"):
        load_cdm(write_cdm(tmp_path / "cdm", observation_period__csv=overlapping), "q", settings, synthetic=True)
    assert ReleaseStore(settings).names() == []


def test_thresholds_and_severities_are_configurable(tmp_path, settings):
    config = tmp_path / "quality.json"
    config.write_text(json.dumps({"implausible_lab_values": {"severity": "fatal"}}))
    with pytest.raises(QualityError, match="implausible_lab_values"):
        load_cdm(
            write_cdm(tmp_path / "cdm", measurement__csv=LABS),
            "q",
            settings,
            synthetic=True,
            quality=QualityConfig.from_file(config),
        )
    config.write_text(json.dumps({"implausible_lab_values": {"severity": "fatal", "threshold_pct": 50}}))
    release = load_cdm(
        write_cdm(tmp_path / "cdm2", measurement__csv=LABS),
        "q2",
        settings,
        synthetic=True,
        quality=QualityConfig.from_file(config),
    )
    assert _by_name(release)["implausible_lab_values"]["status"] == "pass"


def test_cli_report(tmp_path, home):
    runner = CliRunner()
    assert (
        runner.invoke(
            app, ["cdm", "load", str(write_cdm(tmp_path / "cdm", measurement__csv=LABS)), "--release", "q"]
        ).exit_code
        == 0
    )
    shown = runner.invoke(app, ["release", "quality", "q"])
    assert "implausible_lab_values" in shown.stdout
    out = tmp_path / "q.html"
    assert runner.invoke(app, ["release", "quality", "q", "--html", str(out)]).exit_code == 0
    html = out.read_text()
    assert "<table>" in html and "implausible_lab_values" in html and "http" not in html
    data = json.loads(runner.invoke(app, ["release", "quality", "q", "--json"]).stdout)
    assert {r["status"] for r in data} <= {"pass", "warning"}


def _database(con, rows: dict[str, list[str]]) -> set[str]:
    """Every CDM 5.4 table, empty, typed; ``rows``: VALUES tuples (in column order) of some of them."""
    from hygie.cdm.schema import cdm_schema

    for table in cdm_schema("5.4"):
        cols = ", ".join(f'"{c.name}" {c.sql_type}' for c in table.columns)
        con.execute(f'CREATE TABLE "{table.name}" ({cols})')
        for values in rows.get(table.name, []):
            names = ", ".join(f'"{c}"' for c in values.split("|")[0].split(","))
            con.execute(f'INSERT INTO "{table.name}" ({names}) VALUES ({values.split("|")[1]})')
    return {t.name for t in cdm_schema("5.4")}


D2 = 2**48  # record ids of a release: deposit index * 2**48 + the site's id


def _rows(deposits: tuple[int, int]) -> dict[str, list[str]]:
    first, second = deposits
    m = "measurement_id,person_id,measurement_concept_id,measurement_date,measurement_type_concept_id,"
    m += "value_as_number,measurement_source_value,unit_source_value|"
    return {
        "person": [
            "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id|1, 8532, 1980, 0, 0",
            "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id|2, 8507, 2000, 0, 0",
        ],
        "concept": [
            "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,"
            "valid_start_date,valid_end_date|3016723, 'Creatinine', 'Measurement', 'LOINC', 'Lab Test', 'S', "
            "'2160-0', DATE '2000-01-01', DATE '2099-12-31'",
        ],
        "death": ["person_id,death_date,death_type_concept_id|2, DATE '2010-01-01', 32817"],
        "measurement": [
            m + f"{first * D2 + 1}, 1, 3016723, DATE '2010-01-01', 32817, 80, '2160-0', 'umol/L'",
            m + f"{second * D2 + 1}, 1, 3016723, DATE '2010-01-01', 32817, 80000, '2160-0', 'umol/L'",
            m + f"{first * D2 + 2}, 1, 3016723, DATE '2011-01-01', 32817, 1.1, '2160-0', 'mmol/L'",
            m + f"{first * D2 + 3}, 2, 0, DATE '1990-01-01', 32817, NULL, '2160-0', NULL",
            m + f"{first * D2 + 4}, 2, 3016723, DATE '2012-01-01', 32817, 5, 'other', 'x'",
            m + f"{first * D2 + 5}, 2, 999, DATE '2012-01-01', 32817, 5, '718-7', 'g/dL'",
        ],
    }


@pytest.mark.parametrize("deposits", [(1, 2), (1, 1)])
def test_checks_counted_together_equal_each_check_run_alone(deposits):
    """The shared scans (row checks with their denominators, lab checks, duplicates skipped when every id is
    of one deposit) count what each check's own SQL counts."""
    import duckdb

    from hygie.ingest.quality import run

    con = duckdb.connect()
    tables = _database(con, _rows(deposits))
    results = {r.name: r for r in run(con, tables)}
    for check in checks(tables):
        alone = (con.execute(check.failing).fetchone()[0], con.execute(check.applicable).fetchone()[0])
        assert (results[check.name].failing, results[check.name].applicable) == alone, check.name
    assert results["implausible_lab_values"].failing == 1  # 80,000 umol/L
    assert results["lab_units_unknown"].failing == 1  # creatinine in mmol/L
    assert results["measurement_standard_concepts"].applicable == 5
    assert results["measurement_before_birth"].failing == 1
    assert results["measurement_after_death"].failing == 2  # 2012, after a death in 2010
    # One (person, concept, date) recorded by deposits 1 and 2; none when every id is of deposit 1.
    assert results["measurement_duplicate_across_sites"].failing == (1 if deposits == (1, 2) else 0)


@pytest.mark.parametrize("deposits", [(1, 2), (1, 1)])
def test_duplicates_across_sites_with_the_persons_linkage_found_in_several_deposits(deposits):
    """A release build tells the checks which persons linkage found in several deposits (a superset of those
    whose rows come from several): the counts are those the checks find from the rows alone."""
    import duckdb

    from hygie.ingest.quality import run

    con = duckdb.connect()
    tables = _database(con, _rows(deposits))
    con.execute("CREATE TABLE several AS SELECT * FROM (VALUES (1), (2)) p(person_id)")  # both, as a superset
    alone = {r.name: (r.failing, r.applicable) for r in run(con, tables)}
    hinted = {r.name: (r.failing, r.applicable) for r in run(con, tables, several_deposits="several")}
    assert hinted == alone
    assert hinted["measurement_duplicate_across_sites"][0] == (1 if deposits == (1, 2) else 0)


def test_a_row_after_two_recorded_deaths_is_counted_once():
    """A deposit may record two deaths of a person: a row after both is one failing row, not two."""
    import duckdb

    from hygie.ingest.quality import run

    con = duckdb.connect()
    rows = _rows((1, 2))
    rows["death"] = rows["death"] + ["person_id,death_date,death_type_concept_id|2, DATE '2010-06-01', 32817"]
    results = {r.name: r for r in run(con, _database(con, rows))}
    assert results["measurement_after_death"].failing == 2  # the two 2012 rows of person 2
