"""OMOP CDM 5.4 sites: CSV (site a), Parquet (site b), and CSV with source codes only (site d, mid-ETL).

Tables are built from the CDM schema (``hygie.cdm``), so columns and types are exactly the CDM's. Identities go to
a separate file next to the clinical folder (``<site>/identities.csv``), never into a CDM table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hygie.cdm import cdm_schema
from hygie.synth.clinical import Chunk, Records
from hygie.synth.config import Site
from hygie.synth.vocabulary import (
    CDM_VERSION,
    CODE_KEYS,
    CODES,
    GENDER,
    TYPE_ADMINISTRATION,
    TYPE_EHR,
    TYPE_PERIOD,
    TYPE_PRESCRIPTION,
    VISIT,
)
from hygie.synth.writers.common import Counters, local_ids, site_records, visit_ids, write_manifest

_STANDARD = np.array([CODES[k].standard.concept_id for k in CODE_KEYS], dtype=np.int64)
_SOURCE = np.array([CODES[k].source.concept_id for k in CODE_KEYS], dtype=np.int64)
_SOURCE_CODE = np.array([CODES[k].source.code for k in CODE_KEYS], dtype=object)
_UNIT = np.array([CODES[k].unit.concept_id if CODES[k].unit else 0 for k in CODE_KEYS], dtype=np.int64)
_UNIT_CODE = np.array([CODES[k].unit.code if CODES[k].unit else None for k in CODE_KEYS], dtype=object)
_VISIT_CONCEPT = np.array([VISIT["OP"].concept_id, VISIT["IP"].concept_id, VISIT["ER"].concept_id], dtype=np.int64)
# Each hospital's own visit codes (French: consultation, hospitalisation, urgences).
_VISIT_SOURCE = np.array(["CONS", "HOSP", "URG"], dtype=object)

IDENTITY_COLUMNS = ("local_id", "nir", "family_name", "given_name", "birth_date", "sex", "postcode")


def cdm_table(name: str, columns: dict[str, np.ndarray | pa.Array], n: int) -> pa.Table:
    """A CDM table in schema order; columns not given are empty (null)."""
    schema = cdm_schema("5.4")[name].arrow_schema()
    arrays = []
    for f in schema:
        if f.name in columns:
            arrays.append(pa.array(columns[f.name]).cast(f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class OmopSiteWriter:
    """Writes one OMOP site chunk by chunk; ``close`` finishes the files and writes MANIFEST.csv."""

    def __init__(self, root: Path, site_index: int, site: Site, seed: int) -> None:
        self.site_index, self.site, self.seed = site_index, site, seed
        self.parquet = site.format == "omop_parquet"
        self.source_only = site.format == "omop_source_csv"
        self.folder = root / f"site_{site.key}" / "cdm"
        self.folder.mkdir(parents=True)
        self.identity_path = root / f"site_{site.key}" / "identities.csv"
        self.counters = Counters()
        self.rows: dict[str, int] = {}
        self.files: dict[str, Path] = {}
        self._writers: dict[str, pacsv.CSVWriter | pq.ParquetWriter] = {}
        self._identity_writer: pacsv.CSVWriter | None = None

    # -- output ---------------------------------------------------------------------------------------

    def _write(self, name: str, table: pa.Table) -> None:
        w = self._writers.get(name)
        if w is None:
            path = self.folder / f"{name}.{'parquet' if self.parquet else 'csv'}"
            self.files[name] = path
            if self.parquet:
                w = pq.ParquetWriter(path, table.schema, compression="zstd")
            else:
                w = pacsv.CSVWriter(path, table.schema, write_options=pacsv.WriteOptions(quoting_style="needed"))
            self._writers[name] = w
        w.write_table(table)
        self.rows[name] = self.rows.get(name, 0) + table.num_rows

    def _concept(self, ids: np.ndarray) -> np.ndarray:
        return np.zeros(len(ids), dtype=np.int64) if self.source_only else ids

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        if self._identity_writer is not None:
            self._identity_writer.close()
        self._write_cdm_source()
        write_manifest(self.folder, self.rows, self.files)

    def _write_cdm_source(self) -> None:
        path = self.folder / f"cdm_source.{'parquet' if self.parquet else 'csv'}"
        table = cdm_table(
            "cdm_source",
            {
                "cdm_source_name": [self.site.name],
                "cdm_source_abbreviation": [f"SITE_{self.site.key.upper()}"],
                "cdm_holder": [self.site.name],
                "source_description": ["hygie synth: synthetic patients, not real people"],
                "source_release_date": np.array(["2025-01-15"], dtype="datetime64[D]"),
                "cdm_release_date": np.array(["2025-01-31"], dtype="datetime64[D]"),
                "cdm_version": ["5.4"],
                "cdm_version_concept_id": [0 if self.source_only else CDM_VERSION.concept_id],
                "vocabulary_version": ["source codes only" if self.source_only else "hygie-synth 1"],
            },
            1,
        )
        if self.parquet:
            pq.write_table(table, path, compression="zstd")
        else:
            pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))
        self.files["cdm_source"] = path
        self.rows["cdm_source"] = 1

    # -- one chunk ------------------------------------------------------------------------------------

    def write_chunk(self, chunk: Chunk, identities: pa.Table) -> None:
        p = chunk.persons
        s = self.site_index
        here = (p.sites == s).any(axis=1)
        idx = np.flatnonzero(here)
        local = np.zeros(len(p), dtype=np.int64)
        local[idx] = local_ids(p.pid[idx], s, self.seed)
        if self._identity_writer is None:
            self._identity_writer = pacsv.CSVWriter(
                # Every text value quoted: NIRs and postcodes are text, not numbers (leading zeros, 2A/2B).
                self.identity_path,
                identities.schema,
                write_options=pacsv.WriteOptions(quoting_style="all_valid"),
            )
        self._identity_writer.write_table(identities)
        gender = np.where(p.female[idx], GENDER["F"].concept_id, GENDER["M"].concept_id)
        birth = p.birth[idx]
        months = birth.astype("datetime64[M]")
        self._write(
            "person",
            cdm_table(
                "person",
                {
                    "person_id": local[idx],
                    "gender_concept_id": self._concept(gender),
                    "year_of_birth": birth.astype("datetime64[Y]").astype(np.int64) + 1970,
                    "month_of_birth": months.astype(np.int64) % 12 + 1,
                    "day_of_birth": (birth - months).astype(np.int64) + 1,
                    "race_concept_id": np.zeros(len(idx), dtype=np.int64),
                    "ethnicity_concept_id": np.zeros(len(idx), dtype=np.int64),
                    "person_source_value": local[idx].astype(str),
                    "gender_source_value": np.where(p.female[idx], "F", "M"),
                    "gender_source_concept_id": np.zeros(len(idx), dtype=np.int64),
                },
                len(idx),
            ),
        )
        r = site_records(chunk, s)
        self._periods(r["periods"], local)
        vids = self._visits(r["visits"], local)
        vmap = visit_ids(chunk.visits, s, vids)
        self._conditions(r["conditions"], local, vmap)
        self._drugs(r["drugs"], local, vmap)
        self._measurements(r["measurements"], local, vmap)
        self._procedures(r["procedures"], local, vmap)
        d = r["deaths"]
        self._write(
            "death",
            cdm_table(
                "death",
                {
                    "person_id": local[d["person"]],
                    "death_date": d["date"],
                    "death_type_concept_id": self._concept(np.full(len(d["person"]), TYPE_EHR.concept_id)),
                },
                len(d["person"]),
            ),
        )

    def _periods(self, t: Records, local: np.ndarray) -> None:
        n = len(t["person"])
        self._write(
            "observation_period",
            cdm_table(
                "observation_period",
                {
                    "observation_period_id": self.counters.take("observation_period", n),
                    "person_id": local[t["person"]],
                    "observation_period_start_date": t["start"],
                    "observation_period_end_date": t["end"],
                    "period_type_concept_id": self._concept(np.full(n, TYPE_PERIOD.concept_id)),
                },
                n,
            ),
        )

    def _visits(self, t: Records, local: np.ndarray) -> np.ndarray:
        n = len(t["person"])
        ids = self.counters.take("visit_occurrence", n)
        kind = t["kind"].astype(np.int64)
        self._write(
            "visit_occurrence",
            cdm_table(
                "visit_occurrence",
                {
                    "visit_occurrence_id": ids,
                    "person_id": local[t["person"]],
                    "visit_concept_id": self._concept(_VISIT_CONCEPT[kind]),
                    "visit_start_date": t["start"],
                    "visit_end_date": t["end"],
                    "visit_type_concept_id": self._concept(np.full(n, TYPE_EHR.concept_id)),
                    "visit_source_value": _VISIT_SOURCE[kind],
                    "visit_source_concept_id": np.zeros(n, dtype=np.int64),
                },
                n,
            ),
        )
        return ids

    @staticmethod
    def _visit(vmap: np.ndarray, visit: np.ndarray) -> pa.Array:
        ids = np.where(visit >= 0, vmap[np.maximum(visit, 0)], -1)
        return pa.array(ids, mask=ids < 0)

    def _conditions(self, t: Records, local: np.ndarray, vmap: np.ndarray) -> None:
        n = len(t["person"])
        code = t["code"]
        self._write(
            "condition_occurrence",
            cdm_table(
                "condition_occurrence",
                {
                    "condition_occurrence_id": self.counters.take("condition_occurrence", n),
                    "person_id": local[t["person"]],
                    "condition_concept_id": self._concept(_STANDARD[code]),
                    "condition_start_date": t["date"],
                    "condition_type_concept_id": self._concept(np.full(n, TYPE_EHR.concept_id)),
                    "visit_occurrence_id": self._visit(vmap, t["visit"]),
                    "condition_source_value": _SOURCE_CODE[code],
                    "condition_source_concept_id": self._concept(_SOURCE[code]),
                },
                n,
            ),
        )

    def _drugs(self, t: Records, local: np.ndarray, vmap: np.ndarray) -> None:
        n = len(t["person"])
        code = t["code"]
        kind = np.where(t["admin"], TYPE_ADMINISTRATION.concept_id, TYPE_PRESCRIPTION.concept_id)
        self._write(
            "drug_exposure",
            cdm_table(
                "drug_exposure",
                {
                    "drug_exposure_id": self.counters.take("drug_exposure", n),
                    "person_id": local[t["person"]],
                    "drug_concept_id": self._concept(_STANDARD[code]),
                    "drug_exposure_start_date": t["start"],
                    "drug_exposure_end_date": t["end"],
                    "drug_type_concept_id": self._concept(kind),
                    "quantity": t["quantity"],
                    "days_supply": t["days"],
                    "visit_occurrence_id": self._visit(vmap, t["visit"]),
                    "drug_source_value": _SOURCE_CODE[code],
                    "drug_source_concept_id": self._concept(_SOURCE[code]),
                },
                n,
            ),
        )

    def _measurements(self, t: Records, local: np.ndarray, vmap: np.ndarray) -> None:
        n = len(t["person"])
        code = t["code"]
        self._write(
            "measurement",
            cdm_table(
                "measurement",
                {
                    "measurement_id": self.counters.take("measurement", n),
                    "person_id": local[t["person"]],
                    "measurement_concept_id": self._concept(_STANDARD[code]),
                    "measurement_date": t["date"],
                    "measurement_type_concept_id": self._concept(np.full(n, TYPE_EHR.concept_id)),
                    "value_as_number": t["value"],
                    "unit_concept_id": self._concept(_UNIT[code]),
                    "visit_occurrence_id": self._visit(vmap, t["visit"]),
                    "measurement_source_value": _SOURCE_CODE[code],
                    "measurement_source_concept_id": self._concept(_SOURCE[code]),
                    "unit_source_value": _UNIT_CODE[code],
                },
                n,
            ),
        )

    def _procedures(self, t: Records, local: np.ndarray, vmap: np.ndarray) -> None:
        n = len(t["person"])
        code = t["code"]
        self._write(
            "procedure_occurrence",
            cdm_table(
                "procedure_occurrence",
                {
                    "procedure_occurrence_id": self.counters.take("procedure_occurrence", n),
                    "person_id": local[t["person"]],
                    "procedure_concept_id": self._concept(_STANDARD[code]),
                    "procedure_date": t["date"],
                    "procedure_type_concept_id": self._concept(np.full(n, TYPE_EHR.concept_id)),
                    "visit_occurrence_id": self._visit(vmap, t["visit"]),
                    "procedure_source_value": _SOURCE_CODE[code],
                    "procedure_source_concept_id": self._concept(_SOURCE[code]),
                },
                n,
            ),
        )


IDENTITY_SCHEMA = pa.schema([("local_id", pa.int64()), *((c, pa.string()) for c in IDENTITY_COLUMNS[1:])])


def identity_table(records: dict[str, np.ndarray]) -> pa.Table:
    """The identity file's rows; typed explicitly so that a chunk without any NIR (or patient) keeps the schema."""
    return pa.Table.from_arrays([pa.array(records[f.name], f.type) for f in IDENTITY_SCHEMA], schema=IDENTITY_SCHEMA)
