"""FHIR R4 Bulk Data export (site c): one NDJSON file per resource type, references as ``Patient/<id>``.

Identities travel inside Patient resources, as in real exports: name, birthDate, gender, address and the NIR as
an identifier of the French INS-NIR system. Lines are built from pre-serialised JSON fragments (codes are the
same few dozen values), which keeps the writer fast at EMC2 scale.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hygie.synth.clinical import Chunk, Records
from hygie.synth.config import Site
from hygie.synth.vocabulary import CODE_KEYS, CODES
from hygie.synth.writers.common import Counters, local_ids, site_records, visit_ids

NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
EXTRACT_TIME = "2025-01-15T00:00:00Z"
BASE_URL = "https://fhir.site-c.example/r4"
RESOURCE_TYPES = (
    "Patient",
    "Encounter",
    "Condition",
    "MedicationRequest",
    "MedicationAdministration",
    "Observation",
    "Procedure",
)
_SYSTEMS = {
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "ATC": "http://www.whocc.no/atc",
    "LOINC": "http://loinc.org",
    "CCAM": "urn:oid:1.2.250.1.213.2.5",
}
_UCUM = "http://unitsofmeasure.org"


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _codeable(key: str) -> str:
    src = CODES[key].source
    return _dumps({"coding": [{"system": _SYSTEMS[src.vocabulary], "code": src.code, "display": src.name}]})


_CODE_JSON = np.array([_codeable(k) for k in CODE_KEYS], dtype=object)
_UNIT_JSON = np.array(
    [
        (
            f'"unit":{_dumps(CODES[k].unit.code)},"system":"{_UCUM}","code":{_dumps(CODES[k].unit.code)}'
            if CODES[k].unit
            else ""
        )
        for k in CODE_KEYS
    ],
    dtype=object,
)
_CLASS_JSON = np.array(
    [
        _dumps({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": c, "display": d})
        for c, d in (("AMB", "ambulatory"), ("IMP", "inpatient encounter"), ("EMER", "emergency"))
    ],
    dtype=object,
)
_CLINICAL_ACTIVE = _dumps(
    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
)
_LAB_CATEGORY = _dumps(
    [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]
)


def _dates(a: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(a, unit="D").astype(object)


Part = pa.Array | str


def _str(a: np.ndarray) -> pa.Array:
    """Arrow text of numbers or dates (dates as YYYY-MM-DD, numbers in their shortest JSON-valid form)."""
    return pa.array(a).cast(pa.string())


def _pick(fragments: np.ndarray, index: np.ndarray) -> pa.Array:
    return pa.array(list(fragments), pa.string()).take(pa.array(index.astype(np.int64)))


def _ndjson(parts: list[Part]) -> bytes:
    """One NDJSON line per row, by concatenating text columns and constants in Arrow (no Python loop)."""
    n = next(len(p) for p in parts if isinstance(p, pa.Array))
    if n == 0:
        return b""
    joined = pc.binary_join_element_wise(*parts, "\n", "")
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32)[joined.offset : joined.offset + n + 1]
    return joined.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]


def _refs(vmap: np.ndarray, visit: np.ndarray, field: str) -> pa.Array:
    """``,"encounter":{"reference":"Encounter/<id>"}`` where the record has a visit at this site, else empty."""
    ids = np.where(visit >= 0, vmap[np.maximum(visit, 0)], -1)
    text = pc.binary_join_element_wise(f',"{field}":{{"reference":"Encounter/', _str(ids), '"}', "")
    return pc.if_else(pa.array(ids >= 0), text, "")


class FhirSiteWriter:
    def __init__(self, root: Path, site_index: int, site: Site, seed: int) -> None:
        self.site_index, self.site, self.seed = site_index, site, seed
        self.folder = root / f"site_{site.key}" / "fhir"
        self.folder.mkdir(parents=True)
        self.counters = Counters()
        self.rows: dict[str, int] = dict.fromkeys(RESOURCE_TYPES, 0)
        self._files = {r: (self.folder / f"{r}.ndjson").open("wb") for r in RESOURCE_TYPES}
        self.ipp_system = f"urn:hygie:site-{site.key}:ipp"

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        # The Bulk Data "complete" response (the export manifest), with a fixed time so output stays deterministic.
        manifest = {
            "transactionTime": EXTRACT_TIME,
            "request": f"{BASE_URL}/$export?_type={','.join(RESOURCE_TYPES)}",
            "requiresAccessToken": False,
            "output": [{"type": r, "url": f"{r}.ndjson", "count": self.rows[r]} for r in RESOURCE_TYPES],
            "error": [],
        }
        (self.folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    def _emit(self, resource: str, lines: list[str]) -> None:
        if lines:
            self._files[resource].write(("\n".join(lines) + "\n").encode("utf-8"))
        self.rows[resource] += len(lines)

    def write_chunk(self, chunk: Chunk, identities: dict[str, np.ndarray]) -> None:
        p = chunk.persons
        s = self.site_index
        idx = np.flatnonzero((p.sites == s).any(axis=1))
        local = np.zeros(len(p), dtype=np.int64)
        local[idx] = local_ids(p.pid[idx], s, self.seed)
        self._patients(identities, p.died[idx], _dates(p.exit[idx]))
        r = site_records(chunk, s)
        enc_ids = self._encounters(r["visits"], local)
        vmap = visit_ids(chunk.visits, s, enc_ids)
        self._conditions(r["conditions"], local, vmap)
        self._medications(r["drugs"], local, vmap)
        self._observations(r["measurements"], local, vmap)
        self._procedures(r["procedures"], local, vmap)

    def _patients(self, ids: dict[str, np.ndarray], died: np.ndarray, exit_dates: np.ndarray) -> None:
        lines = []
        for lid, nir, fam, giv, birth, sex, postcode, dead, dd in zip(
            ids["local_id"],
            ids["nir"],
            ids["family_name"],
            ids["given_name"],
            ids["birth_date"],
            ids["sex"],
            ids["postcode"],
            died,
            exit_dates,
            strict=True,
        ):
            identifiers = f'{{"system":"{self.ipp_system}","value":"{lid}"}}'
            if nir is not None:
                identifiers += f',{{"system":"{NIR_SYSTEM}","value":"{nir}"}}'
            gender = "female" if sex == "F" else "male"
            deceased = f',"deceasedDateTime":"{dd}"' if dead else ""
            lines.append(
                f'{{"resourceType":"Patient","id":"{lid}","identifier":[{identifiers}],'
                f'"name":[{{"use":"official","family":{_dumps(fam)},"given":[{_dumps(giv)}]}}],'
                f'"gender":"{gender}","birthDate":"{birth}"{deceased},'
                f'"address":[{{"postalCode":"{postcode}","country":"FR"}}]}}'
            )
        self._emit("Patient", lines)

    def _emit_bytes(self, resource: str, data: bytes, n: int) -> None:
        self._files[resource].write(data)
        self.rows[resource] += n

    def _encounters(self, t: Records, local: np.ndarray) -> np.ndarray:
        n = len(t["person"])
        ids = self.counters.take("Encounter", n)
        self._emit_bytes(
            "Encounter",
            _ndjson(
                [
                    '{"resourceType":"Encounter","id":"',
                    _str(ids),
                    '","status":"finished","class":',
                    _pick(_CLASS_JSON, t["kind"]),
                    ',"subject":{"reference":"Patient/',
                    _str(local[t["person"]]),
                    '"},"period":{"start":"',
                    _str(t["start"]),
                    '","end":"',
                    _str(t["end"]),
                    '"}}',
                ]
            ),
            n,
        )
        return ids

    def _conditions(self, t: Records, local: np.ndarray, vmap: np.ndarray) -> None:
        n = len(t["person"])
        ids = self.counters.take("Condition", n)
        self._emit_bytes(
            "Condition",
            _ndjson(
                [
                    '{"resourceType":"Condition","id":"',
                    _str(ids),
                    f'","clinicalStatus":{_CLINICAL_ACTIVE},"code":',
                    _pick(_CODE_JSON, t["code"]),
                    ',"subject":{"reference":"Patient/',
                    _str(local[t["person"]]),
                    '"}',
                    _refs(vmap, t["visit"], "encounter"),
                    ',"recordedDate":"',
                    _str(t["date"]),
                    '"}',
                ]
            ),
            n,
        )

    def _medications(self, t: Records, local: np.ndarray, vmap: np.ndarray) -> None:
        rq = np.flatnonzero(~t["admin"])
        ids = self.counters.take("MedicationRequest", len(rq))
        start = _str(t["start"][rq])
        self._emit_bytes(
            "MedicationRequest",
            _ndjson(
                [
                    '{"resourceType":"MedicationRequest","id":"',
                    _str(ids),
                    '","status":"completed","intent":"order","medicationCodeableConcept":',
                    _pick(_CODE_JSON, t["code"][rq]),
                    ',"subject":{"reference":"Patient/',
                    _str(local[t["person"][rq]]),
                    '"},"authoredOn":"',
                    start,
                    '","dispenseRequest":{"validityPeriod":{"start":"',
                    start,
                    '","end":"',
                    _str(t["end"][rq]),
                    '"},"expectedSupplyDuration":{"value":',
                    _str(t["days"][rq]),
                    f',"unit":"days","system":"{_UCUM}","code":"d"}}}}}}',
                ]
            ),
            len(rq),
        )
        ad = np.flatnonzero(t["admin"])
        ids = self.counters.take("MedicationAdministration", len(ad))
        self._emit_bytes(
            "MedicationAdministration",
            _ndjson(
                [
                    '{"resourceType":"MedicationAdministration","id":"',
                    _str(ids),
                    '","status":"completed","medicationCodeableConcept":',
                    _pick(_CODE_JSON, t["code"][ad]),
                    ',"subject":{"reference":"Patient/',
                    _str(local[t["person"][ad]]),
                    '"}',
                    _refs(vmap, t["visit"][ad], "context"),
                    ',"effectivePeriod":{"start":"',
                    _str(t["start"][ad]),
                    '","end":"',
                    _str(t["end"][ad]),
                    '"}}',
                ]
            ),
            len(ad),
        )

    def _observations(self, t: Records, local: np.ndarray, vmap: np.ndarray) -> None:
        n = len(t["person"])
        ids = self.counters.take("Observation", n)
        self._emit_bytes(
            "Observation",
            _ndjson(
                [
                    '{"resourceType":"Observation","id":"',
                    _str(ids),
                    f'","status":"final","category":{_LAB_CATEGORY},"code":',
                    _pick(_CODE_JSON, t["code"]),
                    ',"subject":{"reference":"Patient/',
                    _str(local[t["person"]]),
                    '"}',
                    _refs(vmap, t["visit"], "encounter"),
                    ',"effectiveDateTime":"',
                    _str(t["date"]),
                    '","valueQuantity":{"value":',
                    _str(t["value"]),
                    ",",
                    _pick(_UNIT_JSON, t["code"]),
                    "}}",
                ]
            ),
            n,
        )

    def _procedures(self, t: Records, local: np.ndarray, vmap: np.ndarray) -> None:
        n = len(t["person"])
        ids = self.counters.take("Procedure", n)
        self._emit_bytes(
            "Procedure",
            _ndjson(
                [
                    '{"resourceType":"Procedure","id":"',
                    _str(ids),
                    '","status":"completed","code":',
                    _pick(_CODE_JSON, t["code"]),
                    ',"subject":{"reference":"Patient/',
                    _str(local[t["person"]]),
                    '"}',
                    _refs(vmap, t["visit"], "encounter"),
                    ',"performedDateTime":"',
                    _str(t["date"]),
                    '"}',
                ]
            ),
            n,
        )
