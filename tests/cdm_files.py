"""Tiny hand-made CDM folders for tests: valid by default, each test breaks one thing."""

from __future__ import annotations

from pathlib import Path

PERSON = """person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id
1,8507,1950,0,0
2,8532,1961,0,0
3,8532,1975,0,0
"""
OBSERVATION_PERIOD = """\
observation_period_id,person_id,observation_period_start_date,observation_period_end_date,period_type_concept_id
1,1,2000-01-01,2019-12-31,44814724
2,2,2005-06-01,2019-12-31,44814724
3,3,2010-01-01,2018-12-31,44814724
"""
CONDITION_OCCURRENCE = """\
condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_type_concept_id
1,1,192671,2010-03-04,32020
2,2,192671,2012-07-08,32020
"""
# Athena style: tab-separated, YYYYMMDD dates, unquoted names that may contain quotes.
CONCEPT = (
    "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code"
    "\tvalid_start_date\tvalid_end_date\tinvalid_reason\n"
    "192671\tGastrointestinal hemorrhage\tCondition\tSNOMED\tClinical Finding\tS\t74474003\t19700101\t20991231\t\n"
    "8507\tMALE\tGender\tGender\tGender\tS\tM\t19700101\t20991231\t\n"
    '8532\tFEMALE "F"\tGender\tGender\tGender\tS\tF\t19700101\t20991231\t\n'
)

VALID = {
    "person.csv": PERSON,
    "observation_period.csv": OBSERVATION_PERIOD,
    "condition_occurrence.csv": CONDITION_OCCURRENCE,
    "CONCEPT.csv": CONCEPT,
}


def write_cdm(folder: Path, files: dict[str, str | bytes] | None = None, **overrides: str | bytes | None) -> Path:
    """Write VALID (or ``files``) into ``folder``; keyword overrides replace (or with None, drop) one file."""
    folder.mkdir(parents=True, exist_ok=True)
    content: dict[str, str | bytes | None] = dict(files if files is not None else VALID)
    for name, text in overrides.items():
        content[name.replace("__", ".")] = text
    for name, text in content.items():
        if text is None:
            continue
        path = folder / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    return folder
