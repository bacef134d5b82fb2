"""A large synthetic OMOP CDM for the cohort benchmark, generated in DuckDB SQL and published as a release.

The full ingest (``hygie synth`` + ``hygie cdm load``) takes about half an hour at 600,000 persons; this
generator writes the same kind of release (every CDM 5.4 table, encrypted Parquet, a manifest) straight from
hash-based SQL through the release builder, in a few minutes. Per person, on average: 1.2 observation periods,
15 visits, 50 conditions, 50 drug exposures, 10 drug eras, 50 measurements (values and units), deaths for 1 in
20; at 600,000 persons that is about 106 million patient rows. The vocabulary holds the concepts of the
benchmark's definitions, two descendants of each (so descendant resolution matters), and 300,000 other
concepts with ancestors and 'Maps to' rows. Events mostly fall inside observation, some outside or in the gap
between two periods. Everything is deterministic in the person count.

The release lives in its own HYGIE_HOME under ``bench-results/data/`` and is reused by later runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from benchmarks.common import RESULTS
from hygie.cdm.schema import cdm_schema
from hygie.config import Settings
from hygie.releases import Release, ReleaseStore

# The concepts the typical definitions use (the same ids as GiBleed's vocabulary).
GI_BLEED, CELECOXIB, DICLOFENAC, ASPIRIN = 192671, 1118084, 1124300, 19059056
OSTEOARTHRITIS, SINUSITIS, PHARYNGITIS, BRONCHITIS, OTITIS = 80180, 40481087, 4112343, 260139, 372328
ORAL_TEMPERATURE = 3006322
MALE, FEMALE = 8507, 8532
CELSIUS = 586323

DESCENDANT_BASE = 1_900_000_000  # descendants of the i-th family: DESCENDANT_BASE + 10 i + 1, + 2
NOISE_BASE = {"Condition": 1_800_000_000, "Drug": 1_810_000_000, "Measurement": 1_820_000_000}
NOISE_CONCEPTS = 100_000  # per domain
GROUP_BASE = 1_830_000_000  # two levels of ancestors for the other concepts
FAMILIES = [
    (GI_BLEED, "Condition"),
    (OSTEOARTHRITIS, "Condition"),
    (SINUSITIS, "Condition"),
    (PHARYNGITIS, "Condition"),
    (BRONCHITIS, "Condition"),
    (OTITIS, "Condition"),
    (CELECOXIB, "Drug"),
    (DICLOFENAC, "Drug"),
    (ASPIRIN, "Drug"),
    (ORAL_TEMPERATURE, "Measurement"),
]
PER_PERSON = {"visit_occurrence": 15, "condition_occurrence": 50, "drug_exposure": 50, "drug_era": 10,
              "measurement": 50}  # fmt: skip


def _family(concept: int, k: str) -> str:
    """SQL: the concept itself when ``k`` is 0, else one of its two descendants."""
    i = [c for c, _ in FAMILIES].index(concept)
    return f"CASE {k} WHEN 0 THEN {concept} ELSE {DESCENDANT_BASE + 10 * i} + {k} END"


def _pick(r: str, salt: int, shares: list[tuple[int, int]], noise: str) -> str:
    """SQL: a concept drawn per row: each family with its share (per mille), else a noise concept."""
    h, k = f"hash({r}, {salt}) % 1000", f"hash({r}, {salt + 1}) % 3"
    cases, upto = [], 0
    for concept, share in shares:
        upto += share
        cases.append(f"WHEN {h} < {upto} THEN {_family(concept, k)}")
    return f"CAST(CASE {' '.join(cases)} ELSE {noise} END AS INTEGER)"


# Per-person macros: the first observation period, an optional second one (1 in 5), the span events fall in.
# (A hash is unsigned: reduce it before mixing it with signed arithmetic, which would go through HUGEINT.)
MACROS = """
CREATE OR REPLACE TEMP MACRO op1_start(p) AS DATE '2000-01-01' + CAST(hash(p, 5) % 4000 AS INTEGER);
CREATE OR REPLACE TEMP MACRO op1_end(p) AS
    least(op1_start(p) + CAST(365 + hash(p, 6) % 4000 AS INTEGER), DATE '2023-12-31');
CREATE OR REPLACE TEMP MACRO op2_start(p) AS op1_end(p) + CAST(30 + hash(p, 8) % 300 AS INTEGER);
CREATE OR REPLACE TEMP MACRO has_op2(p) AS hash(p, 7) % 5 = 0 AND op2_start(p) < DATE '2023-11-30';
CREATE OR REPLACE TEMP MACRO op2_end(p) AS
    least(op2_start(p) + CAST(365 + hash(p, 9) % 1500 AS INTEGER), DATE '2023-12-31');
CREATE OR REPLACE TEMP MACRO last_end(p) AS CASE WHEN has_op2(p) THEN op2_end(p) ELSE op1_end(p) END;
CREATE OR REPLACE TEMP MACRO event_date(p, r, salt) AS
    op1_start(p) - 60 + CAST(hash(r, salt) % 1000000 AS INTEGER)
        % CAST(date_diff('day', op1_start(p), last_end(p)) + 90 AS INTEGER);
"""


def _events(table: str, n: int) -> str:
    """``FROM`` clause of an event table: ``r`` numbers the rows, ``p`` is the person (rows sorted by person)."""
    k = PER_PERSON[table]
    return f"FROM (SELECT range AS r, range // {k} + 1 AS p FROM range({n * k}))"


def generated_tables(n: int) -> dict[str, str]:
    """SELECT per generated table (columns by CDM name; the others are written as NULL)."""
    cond = _pick(
        "r",
        22,
        [(GI_BLEED, 5), (OSTEOARTHRITIS, 30), (SINUSITIS, 30), (PHARYNGITIS, 30), (BRONCHITIS, 30), (OTITIS, 30)],
        f"{NOISE_BASE['Condition']} + hash(r, 24) % {NOISE_CONCEPTS}",
    )
    drug = _pick(
        "r", 32, [(CELECOXIB, 20), (DICLOFENAC, 20), (ASPIRIN, 50)], f"{NOISE_BASE['Drug']} + hash(r, 34) % 2000"
    )
    era_drug = (
        f"CAST(CASE WHEN hash(r, 52) % 10 = 0 THEN {CELECOXIB} WHEN hash(r, 52) % 10 = 1 THEN {DICLOFENAC} "
        f"WHEN hash(r, 52) % 10 < 4 THEN {ASPIRIN} ELSE {NOISE_BASE['Drug']} + hash(r, 54) % 2000 END AS INTEGER)"
    )
    meas = _pick("r", 62, [(ORAL_TEMPERATURE, 50)], f"{NOISE_BASE['Measurement']} + hash(r, 64) % {NOISE_CONCEPTS}")
    visit = "p * 16 + hash(r, 25) % 15"
    return {
        "person": f"""SELECT range + 1 AS person_id,
            CASE WHEN hash(range + 1, 1) % 2 = 0 THEN {MALE} ELSE {FEMALE} END AS gender_concept_id,
            1930 + hash(range + 1, 2) % 80 AS year_of_birth, 1 + hash(range + 1, 3) % 12 AS month_of_birth,
            1 + hash(range + 1, 4) % 28 AS day_of_birth, 8527 AS race_concept_id,
            38003564 AS ethnicity_concept_id FROM range({n})""",
        "observation_period": f"""SELECT row_number() OVER (ORDER BY p, s) AS observation_period_id, p AS person_id,
            s AS observation_period_start_date, e AS observation_period_end_date,
            32817 AS period_type_concept_id FROM (
              SELECT range + 1 AS p, op1_start(range + 1) AS s, op1_end(range + 1) AS e FROM range({n})
              UNION ALL SELECT range + 1, op2_start(range + 1), op2_end(range + 1) FROM range({n})
              WHERE has_op2(range + 1))""",
        "visit_occurrence": f"""SELECT p * 16 + r % 15 AS visit_occurrence_id, p AS person_id,
            CASE hash(r, 11) % 10 WHEN 0 THEN 9201 WHEN 1 THEN 9203 ELSE 9202 END AS visit_concept_id,
            event_date(p, r, 12) AS visit_start_date,
            event_date(p, r, 12) + CAST(CASE WHEN hash(r, 11) % 10 = 0 THEN hash(r, 13) % 10 ELSE 0 END AS INTEGER)
              AS visit_end_date, 32817 AS visit_type_concept_id {_events("visit_occurrence", n)}""",
        "condition_occurrence": f"""SELECT r + 1 AS condition_occurrence_id, p AS person_id,
            {cond} AS condition_concept_id, event_date(p, r, 21) AS condition_start_date,
            CASE WHEN hash(r, 26) % 10 < 7 THEN event_date(p, r, 21) + CAST(hash(r, 27) % 30 AS INTEGER) END
              AS condition_end_date, 32817 AS condition_type_concept_id, {visit} AS visit_occurrence_id,
            0 AS condition_source_concept_id {_events("condition_occurrence", n)}""",
        "drug_exposure": f"""SELECT r + 1 AS drug_exposure_id, p AS person_id, {drug} AS drug_concept_id,
            event_date(p, r, 31) AS drug_exposure_start_date,
            CASE WHEN hash(r, 36) % 10 > 0 THEN event_date(p, r, 31) + CAST(6 + hash(r, 35) % 84 AS INTEGER) END
              AS drug_exposure_end_date, 32838 AS drug_type_concept_id, 7 + hash(r, 35) % 84 AS days_supply,
            CAST(30 AS DOUBLE) AS quantity, {visit} AS visit_occurrence_id, 0 AS drug_source_concept_id
            {_events("drug_exposure", n)}""",
        "drug_era": f"""SELECT r + 1 AS drug_era_id, p AS person_id, {era_drug} AS drug_concept_id,
            event_date(p, r, 51) AS drug_era_start_date,
            event_date(p, r, 51) + CAST(30 + hash(r, 53) % 300 AS INTEGER) AS drug_era_end_date,
            1 + hash(r, 55) % 10 AS drug_exposure_count, hash(r, 56) % 30 AS gap_days {_events("drug_era", n)}""",
        "measurement": f"""SELECT r + 1 AS measurement_id, p AS person_id, concept AS measurement_concept_id,
            event_date(p, r, 61) AS measurement_date, 32817 AS measurement_type_concept_id,
            CASE WHEN hash(r, 66) % 10 = 0 THEN NULL WHEN temperature THEN 35.5 + (hash(r, 67) % 60) / 10.0
                 ELSE (hash(r, 67) % 2000) / 10.0 END AS value_as_number,
            CASE WHEN temperature THEN {CELSIUS} ELSE 8840 END AS unit_concept_id,
            CASE WHEN temperature THEN 36.1 END AS range_low, CASE WHEN temperature THEN 37.8 END AS range_high,
            {visit} AS visit_occurrence_id, 0 AS measurement_source_concept_id
            FROM (SELECT *, concept < {NOISE_BASE["Measurement"]} AS temperature
                  FROM (SELECT r, p, {meas} AS concept {_events("measurement", n)}))""",
        "death": f"""SELECT range + 1 AS person_id, last_end(range + 1) AS death_date, 32817 AS death_type_concept_id,
            0 AS cause_concept_id FROM range({n}) WHERE hash(range + 1, 30) % 20 = 0""",
        **vocabulary(),
    }


def vocabulary() -> dict[str, str]:
    """CONCEPT, CONCEPT_ANCESTOR and CONCEPT_RELATIONSHIP for the families and the other concepts."""
    vocab = {"Condition": "SNOMED", "Drug": "RxNorm", "Measurement": "LOINC"}
    named = []
    for i, (concept, domain) in enumerate(FAMILIES):
        named += [f"({concept}, '{domain}', '{vocab[domain]}', {concept})"]
        named += [f"({DESCENDANT_BASE + 10 * i + k}, '{domain}', '{vocab[domain]}', {concept})" for k in (1, 2)]
    families = f"SELECT * FROM (VALUES {', '.join(named)}) t(concept_id, domain_id, vocabulary_id, family)"
    noise = " UNION ALL ".join(
        f"SELECT CAST({base} + range AS INTEGER) AS concept_id, '{domain}' AS domain_id, "
        f"'{vocab[domain]}' AS vocabulary_id FROM range({NOISE_CONCEPTS})"
        for domain, base in NOISE_BASE.items()
    )
    groups = f"SELECT CAST({GROUP_BASE} + range AS INTEGER) AS concept_id, 'Condition', 'SNOMED' FROM range(1100)"
    concepts = f"SELECT concept_id, domain_id, vocabulary_id FROM ({families}) UNION ALL {noise} UNION ALL {groups}"
    # The other concepts: self, a parent group (1 of 1,000) and a grand-parent (1 of 100).
    ancestors = f"""
        SELECT concept_id AS a, concept_id AS d, 0 AS lv FROM ({concepts})
        UNION ALL SELECT family, concept_id, 1 FROM ({families}) WHERE family <> concept_id
        UNION ALL SELECT {GROUP_BASE} + concept_id % 1000, concept_id, 1 FROM ({noise})
        UNION ALL SELECT {GROUP_BASE} + 1000 + concept_id % 100, concept_id, 2 FROM ({noise})"""
    return {
        "concept": f"""SELECT concept_id, 'bench concept ' || concept_id AS concept_name, domain_id, vocabulary_id,
            'Clinical Finding' AS concept_class_id, 'S' AS standard_concept,
            CAST(concept_id AS VARCHAR) AS concept_code,
            DATE '1970-01-01' AS valid_start_date, DATE '2099-12-31' AS valid_end_date, NULL AS invalid_reason
            FROM ({concepts})""",
        "concept_ancestor": f"""SELECT a AS ancestor_concept_id, d AS descendant_concept_id,
            lv AS min_levels_of_separation, lv AS max_levels_of_separation FROM ({ancestors})""",
        "concept_relationship": f"""SELECT concept_id AS concept_id_1, concept_id AS concept_id_2,
            'Maps to' AS relationship_id, DATE '1970-01-01' AS valid_start_date, DATE '2099-12-31' AS valid_end_date,
            NULL AS invalid_reason FROM ({concepts})""",
    }


def bench_settings(threads: int | None = None) -> Settings:
    home = RESULTS / "data" / "cohort-bench-home"
    return Settings(home=home, master_key_file=home / "keys" / "master.key", threads=threads)


def release_for(
    patients: int, settings: Settings | None = None, *, log: Callable[[str], None] = print
) -> tuple[Release, Settings]:
    """The benchmark release for this many persons: built once, then reused."""
    settings = settings or bench_settings()
    store = ReleaseStore(settings)
    name = f"cohort-bench-{patients}"
    if store.exists(name):
        return store.get(name), settings
    started = time.perf_counter()
    schema = cdm_schema("5.4")
    generated = generated_tables(patients)
    with store.build(name, synthetic=True, description=f"cohort benchmark, {patients} persons") as builder:
        con = builder.con
        con.execute(MACROS)
        for table in schema:
            select = generated.get(table.name)
            if select is None:
                columns = ", ".join(f'CAST(NULL AS {c.sql_type}) AS "{c.name}"' for c in table.columns)
                builder.write_table(table.name, f"SELECT {columns} WHERE false")
                continue
            present = {d[0] for d in con.execute(f"DESCRIBE {select}").fetchall()}
            columns = ", ".join(
                f'CAST("{c.name}" AS {c.sql_type}) AS "{c.name}"'
                if c.name in present
                else f'CAST(NULL AS {c.sql_type}) AS "{c.name}"'
                for c in table.columns
            )
            t0 = time.perf_counter()
            entry = builder.write_table(table.name, f"SELECT {columns} FROM ({select})")
            log(f"  {table.name}: {entry.rows:,} rows in {time.perf_counter() - t0:.1f} s")
        release = builder.publish()
    log(f"release {name} built in {time.perf_counter() - started:.0f} s")
    return release, settings


def patient_rows(release: Release) -> int:
    """Rows in the tables that hold patient data (the vocabulary excluded)."""
    vocabulary_tables = {t.name for t in cdm_schema("5.4") if t.is_vocabulary}
    return sum(e.rows for e in release.manifest.tables.values() if e.name not in vocabulary_tables)
