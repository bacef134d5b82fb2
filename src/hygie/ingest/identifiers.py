"""Where direct identifiers can hide in CDM tables, defined once, and what ingestion does with them.

No release or deposit keeps these values: every load (``hygie cdm load``, ``hygie ingest``) empties (or
coarsens) each column listed here before any check or write, whatever the source put in it. In deposits,
person ids themselves are replaced by keyed pseudonyms (``ingest.pseudonymise``).
"""

from __future__ import annotations

# (table, column) -> SQL expression of the value kept, over the column `value`; NULL drops it.
SCRUBBED_COLUMNS: dict[tuple[str, str], str] = {
    ("person", "person_source_value"): "NULL",  # often the hospital's patient number or the NIR
    ("location", "address_1"): "NULL",
    ("location", "address_2"): "NULL",
    ("location", "location_source_value"): "NULL",
    ("location", "zip"): "left(value, 2)",  # the department only: a full postcode with a birth date identifies
    ("location", "latitude"): "NULL",
    ("location", "longitude"): "NULL",
    ("note", "note_text"): "NULL",  # free text names people; notes need a de-identification step of their own
    ("note_nlp", "snippet"): "NULL",
    ("note_nlp", "lexical_variant"): "NULL",
    ("specimen", "specimen_source_id"): "NULL",  # a lab's sample number traces back to the patient
    ("device_exposure", "unique_device_id"): "NULL",  # an implant's serial number identifies its bearer
}


def scrubbed(table: str, column: str, expression: str) -> str:
    """The SQL for ``column`` of ``table`` once scrubbed (``expression`` is its current value)."""
    rule = SCRUBBED_COLUMNS.get((table, column))
    if rule is None:
        return expression
    return rule.replace("value", f"({expression})") if rule != "NULL" else "NULL"
