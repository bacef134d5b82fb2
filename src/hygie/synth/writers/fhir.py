"""FHIR R4 Bulk Data export (site c): one NDJSON file per resource type, references as ``Patient/<id>``.

Identities travel inside Patient resources, as in real exports: name, birthDate, gender, address and the NIR as
an identifier of the French INS-NIR system. Lines are built from pre-serialised JSON fragments (codes are the
same few dozen values), which keeps the writer fast at EMC2 scale.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hygie.synth.clinical import Chunk, Records
from hygie.synth.config import Site
from hygie.synth.vocabulary import CODE_KEYS, CODES
from hygie.synth.writers.common import Counters, local_ids, site_records, visit_ids

NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
RESOURCE_TYPES = (
    "Patient", "Encounter", "Condition", "MedicationRequest", "MedicationAdministration", "Observation", "Procedure",
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
    [(f'"unit":{_dumps(CODES[k].unit.code)},"system":"{_UCUM}","code":{_dumps(CODES[k].unit.code)}'
      if CODES[k].unit else "") for k in CODE_KEYS],
    dtype=object,
)
_CLASS_JSON = np.array([
    _dumps({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": c, "display": d})
    for c, d in (("AMB", "ambulatory"), ("IMP", "inpatient encounter"), ("EMER", "emergency"))
], dtype=object)
_CLINICAL_ACTIVE = _dumps(
    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
)
_LAB_CATEGORY = _dumps(
    [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]
)


def _dates(a: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(a, unit="D").astype(object)


class FhirSiteWriter:
    def __init__(self, root: Path, site_index: int, site: Site, seed: int) -> None:
        self.site_index, self.site, self.seed = site_index, site, seed
        self.folder = root / f"site_{site.key}" / "fhir"
        self.folder.mkdir(parents=True)
        self.counters = Counters()
        self.rows: dict[str, int] = dict.fromkeys(RESOURCE_TYPES, 0)
        self._files = {r: (self.folder / f"{r}.ndjson").open("w", encoding="utf-8") for r in RESOURCE_TYPES}
        self.ipp_system = f"urn:hygie:site-{site.key}:ipp"

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def _emit(self, resource: str, lines: list[str]) -> None:
        if lines:
            self._files[resource].write("\n".join(lines))
            self._files[resource].write("\n")
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
        for lid, nir, fam, giv, birth, sex, pc, dead, dd in zip(
            ids["local_id"], ids["nir"], ids["family_name"], ids["given_name"], ids["birth_date"], ids["sex"],
            ids["postcode"], died, exit_dates, strict=True,
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
                f'"address":[{{"postalCode":"{pc}","country":"FR"}}]}}'
            )
        self._emit("Patient", lines)

    def _encounters(self, t: Records, local: np.ndarray) -> np.ndarray:
        ids = self.counters.take("Encounter", len(t["person"]))
        starts, ends = _dates(t["start"]), _dates(t["end"])
        lines = [
            f'{{"resourceType":"Encounter","id":"{i}","status":"finished","class":{_CLASS_JSON[k]},'
            f'"subject":{{"reference":"Patient/{pid}"}},"period":{{"start":"{s}","end":"{e}"}}}}'
            for i, k, pid, s, e in zip(ids, t["kind"], local[t["person"]], starts, ends, strict=True)
        ]
        self._emit("Encounter", lines)
        return ids

    @staticmethod
    def _encounter_refs(vmap: np.ndarray, visit: np.ndarray, field: str) -> list[str]:
        ids = np.where(visit >= 0, vmap[np.maximum(visit, 0)], -1)
        return [f',"{field}":{{"reference":"Encounter/{v}"}}' if v >= 0 else "" for v in ids]

    def _conditions(self, t: Records, local: np.ndarray, vmap: np.ndarray) -> None:
        ids = self.counters.take("Condition", len(t["person"]))
        refs = self._encounter_refs(vmap, t["visit"], "encounter")
        lines = [
            f'{{"resourceType":"Condition","id":"{i}","clinicalStatus":{_CLINICAL_ACTIVE},"code":{_CODE_JSON[c]},'
            f'"subject":{{"reference":"Patient/{pid}"}}{ref},"recordedDate":"{d}"}}'
            for i, c, pid, ref, d in zip(ids, t["code"], local[t["person"]], refs, _dates(t["date"]), strict=True)
        ]
        self._emit("Condition", lines)

    def _medications(self, t: Records, local: np.ndarray, vmap: np.ndarray) -> None:
        admin = t["admin"]
        rq = np.flatnonzero(~admin)
        ids = self.counters.take("MedicationRequest", len(rq))
        starts, ends = _dates(t["start"]), _dates(t["end"])
        lines = [
            f'{{"resourceType":"MedicationRequest","id":"{i}","status":"completed","intent":"order",'
            f'"medicationCodeableConcept":{_CODE_JSON[t["code"][j]]},'
            f'"subject":{{"reference":"Patient/{local[t["person"][j]]}"}},"authoredOn":"{starts[j]}",'
            f'"dispenseRequest":{{"validityPeriod":{{"start":"{starts[j]}","end":"{ends[j]}"}},'
            f'"expectedSupplyDuration":{{"value":{int(t["days"][j])},"unit":"days","system":"{_UCUM}","code":"d"}}}}}}'
            for i, j in zip(ids, rq, strict=True)
        ]
        self._emit("MedicationRequest", lines)
        ad = np.flatnonzero(admin)
        ids = self.counters.take("MedicationAdministration", len(ad))
        refs = self._encounter_refs(vmap, t["visit"][ad], "context")
        lines = [
            f'{{"resourceType":"MedicationAdministration","id":"{i}","status":"completed",'
            f'"medicationCodeableConcept":{_CODE_JSON[t["code"][j]]},'
            f'"subject":{{"reference":"Patient/{local[t["person"][j]]}"}}{ref},'
            f'"effectivePeriod":{{"start":"{starts[j]}","end":"{ends[j]}"}}}}'
            for i, j, ref in zip(ids, ad, refs, strict=True)
        ]
        self._emit("MedicationAdministration", lines)

    def _observations(self, t: Records, local: np.ndarray, vmap: np.ndarray) -> None:
        ids = self.counters.take("Observation", len(t["person"]))
        refs = self._encounter_refs(vmap, t["visit"], "encounter")
        values = t["value"].tolist()
        lines = [
            f'{{"resourceType":"Observation","id":"{i}","status":"final","category":{_LAB_CATEGORY},'
            f'"code":{_CODE_JSON[c]},"subject":{{"reference":"Patient/{pid}"}}{ref},"effectiveDateTime":"{d}",'
            f'"valueQuantity":{{"value":{v},{_UNIT_JSON[c]}}}}}'
            for i, c, pid, ref, d, v in zip(ids, t["code"], local[t["person"]], refs, _dates(t["date"]), values,
                                              strict=True)
        ]
        self._emit("Observation", lines)

    def _procedures(self, t: Records, local: np.ndarray, vmap: np.ndarray) -> None:
        ids = self.counters.take("Procedure", len(t["person"]))
        refs = self._encounter_refs(vmap, t["visit"], "encounter")
        lines = [
            f'{{"resourceType":"Procedure","id":"{i}","status":"completed","code":{_CODE_JSON[c]},'
            f'"subject":{{"reference":"Patient/{pid}"}}{ref},"performedDateTime":"{d}"}}'
            for i, c, pid, ref, d in zip(ids, t["code"], local[t["person"]], refs, _dates(t["date"]), strict=True)
        ]
        self._emit("Procedure", lines)
