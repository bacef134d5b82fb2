"""``hygie ingest SITE DIR``: stage one site's extract as an encrypted, pseudonymised deposit.

An OMOP deposit folder holds the clinical tables in ``cdm/`` and the identities apart, in ``identities.csv``
(local_id, nir, family_name, given_name, birth_date, sex, postcode). Ingestion:
1. hashes the identities into linkage tokens with the hub's linkage key (``ingest.pseudonymise``);
2. loads the clinical tables with the CDM loader (same validation, rejects and flags; the columns where
   identifiers hide are emptied, ``ingest.identifiers``), and, for each table, replaces local person ids by
   keyed person keys and maps source codes of rows without a concept (``ingest.vocabulary``);
3. publishes the deposit atomically under ``HYGIE_HOME/sites/<site>/deposits/<id>``, where ``id`` is a digest
   of the extract: depositing the same extract again changes nothing.
No local id, name, NIR, address or birth date is written anywhere: the deposit holds person keys and tokens.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from hygie.cdm.schema import cdm_schema
from hygie.checksums import sha256_file
from hygie.config import Settings
from hygie.engine.duckdb import parquet_source, register_key
from hygie.errors import HygieError, InputError, Problem
from hygie.ingest.cdm_load import LoadHooks, load_cdm
from hygie.ingest.pseudonymise import (
    IDENTITY_COLUMNS,
    REQUIRED_IDENTITY_COLUMNS,
    TOKEN_COLUMNS,
    LinkageKey,
    TokenReport,
    tokenise,
)
from hygie.ingest.sites import Site, SiteRegistry
from hygie.ingest.staging import StagedTable
from hygie.ingest.vocabulary import create_source_maps, vocabulary_store
from hygie.releases import Release, ReleaseBuilder, ReleaseStore
from hygie.sources.fhir import FhirExtract
from hygie.sources.omop_files import SourceFile
from hygie.sql import ident, literal

# The tables a site deposits: everything but vocabularies (the hub installs its own) and results.
DEPOSIT_GROUPS = frozenset({"clinical", "health_system", "economics", "derived", "metadata"})
IDENTITY_FILE = "identities.csv"

# Event tables whose rows may arrive with source codes only: concept column, source code, source concept.
SOURCE_CODE_COLUMNS = {
    "person": ("gender_concept_id", "gender_source_value", "gender_source_concept_id"),
    "visit_occurrence": ("visit_concept_id", "visit_source_value", "visit_source_concept_id"),
    "condition_occurrence": ("condition_concept_id", "condition_source_value", "condition_source_concept_id"),
    "drug_exposure": ("drug_concept_id", "drug_source_value", "drug_source_concept_id"),
    "measurement": ("measurement_concept_id", "measurement_source_value", "measurement_source_concept_id"),
    "observation": ("observation_concept_id", "observation_source_value", "observation_source_concept_id"),
    "procedure_occurrence": ("procedure_concept_id", "procedure_source_value", "procedure_source_concept_id"),
}


@dataclass(frozen=True)
class DepositResult:
    deposit: Release
    created: bool  # False: the same extract had already been deposited


def linkage_key(settings: Settings) -> LinkageKey:
    """The hub's own linkage key (identities that reach the hub are hashed with it)."""
    path = Path(os.environ.get("HYGIE_LINKAGE_KEY_FILE", settings.home / "keys" / "linkage.key"))
    return LinkageKey.load(path) if path.exists() else LinkageKey.generate(path)


def person_key(key: LinkageKey, local_id: str) -> int:
    """A site's local person id as a 63-bit keyed pseudonym (the same id always gives the same key)."""
    token = key.token("local_id", local_id)
    assert token is not None
    return _person_key_of(token)


def _person_key_of(local_id_token: str) -> int:
    """The person key is the first 63 bits of the local id's token."""
    return int(local_id_token[:16], 16) >> 1


def _person_keys(key: LinkageKey, local_ids: list[str], tokens: list[dict]) -> list[int]:
    """Person keys of identity records, from their local id tokens when tokenise hashed the same text (a local
    id without surrounding spaces), else hashed again: the same keys, one HMAC fewer per identity."""
    return [
        _person_key_of(t["local_id_token"]) if i and i == i.strip() and t["local_id_token"] else person_key(key, i)
        for i, t in zip(local_ids, tokens, strict=True)
    ]


def ingest(
    site: Site,
    folder: Path,
    settings: Settings,
    *,
    vocabulary: str | None = None,
    synthetic: bool = False,
    identities: Path | None = None,
    step: Callable[[str], None] = lambda _s: None,
) -> DepositResult:
    if site.format == "fhir":
        return _ingest_fhir(site, folder, settings, vocabulary=vocabulary, synthetic=synthetic, step=step)
    clinical = folder / "cdm" if (folder / "cdm").is_dir() else folder
    identities = identities or folder / IDENTITY_FILE
    if not identities.is_file():
        raise InputError(Problem(identities.name, f"no identity file: expected {identities}"))
    if identities.parent.resolve() == clinical.resolve():
        raise InputError(Problem(identities.name, "keep the identity file outside the clinical folder (cdm/)"))
    store = SiteRegistry(settings).deposits(site)
    # The files are hashed (the deposit's id) on other threads while the identities are hashed into tokens
    # here: both are CPU-bound and hashlib releases the GIL. A repeated deposit wastes only the tokens.
    with ThreadPoolExecutor(max_workers=2) as pool:
        hashing = _start_digests(pool, [*sorted(p for p in clinical.iterdir() if p.is_file()), identities])
        records = _read_identities(identities)
        step("tokenising identities")
        key = linkage_key(settings)
        report = TokenReport()
        local_ids = [(r["local_id"] or "").strip() for r in records]
        tokens = list(tokenise(records, key, report))
        step("digesting files")
        digests = [(name, f.result()) for name, f in hashing]
    deposit_id = _deposit_id(digests)
    if store.exists(deposit_id):
        return DepositResult(store.get(deposit_id), created=False)
    vocab = _vocabulary(settings, vocabulary)
    hooks = _DepositHooks(site, key, local_ids, tokens, report, vocab, settings, identities.name)
    hooks.file_digests = dict(digests)  # the loader records them in the lineage without reading the files again
    step("opening the deposit")
    return _load_deposit(clinical, deposit_id, site, store, hooks, settings, synthetic=synthetic, step=step)


def _ingest_fhir(
    site: Site,
    folder: Path,
    settings: Settings,
    *,
    vocabulary: str | None,
    synthetic: bool,
    step: Callable[[str], None],
) -> DepositResult:
    """FHIR: convert the export to CDM tables on the deposit's own connection, then deposit them like OMOP
    tables (same staging, checks and writes), with no intermediate file."""
    export = folder / "fhir" if (folder / "fhir").is_dir() else folder
    store = SiteRegistry(settings).deposits(site)
    with ThreadPoolExecutor(max_workers=2) as pool:
        hashing = _start_digests(pool, sorted(p for p in export.iterdir() if p.is_file() and p.suffix == ".ndjson"))
        digests = [(name, f.result()) for name, f in hashing]
    deposit_id = _deposit_id(digests)
    if store.exists(deposit_id):
        return DepositResult(store.get(deposit_id), created=False)
    vocab = _vocabulary(settings, vocabulary)
    if vocab is None:
        raise HygieError("a FHIR deposit needs an installed vocabulary to map its codes: `hygie vocab load`")
    hooks = _FhirHooks(site, linkage_key(settings), vocab, settings, export, _export_digest(digests), step)
    return _load_deposit(export, deposit_id, site, store, hooks, settings, synthetic=synthetic, step=step, fhir=True)


def _load_deposit(
    source: Path,
    deposit_id: str,
    site: Site,
    store: ReleaseStore,
    hooks: LoadHooks,
    settings: Settings,
    *,
    synthetic: bool,
    step: Callable[[str], None],
    fhir: bool = False,
) -> DepositResult:
    """Stage, check and write one deposit through the CDM loader (the same path for both formats)."""
    deposit = load_cdm(
        source,
        deposit_id,
        settings,
        synthetic=synthetic,
        description=f"deposit of site {site.name}",
        origin=f"deposit {site.name}" + (" (FHIR)" if fhir else ""),
        store=store,
        groups=DEPOSIT_GROUPS,
        hooks=hooks,
        step=step,
    )
    return DepositResult(deposit, created=True)


def _conversion_notes(extract: FhirExtract) -> list[str]:
    notes = ["FHIR resources read: " + ", ".join(f"{k} {v}" for k, v in sorted(extract.resources.items()))]
    if extract.unsupported:
        notes.append(
            "FHIR resource types not mapped (counted, not loaded): "
            + ", ".join(f"{k} {v}" for k, v in sorted(extract.unsupported.items()))
        )
    if extract.without_date_or_patient:
        notes.append(
            "FHIR resources set aside for want of a date or a patient: "
            + ", ".join(f"{k} {v}" for k, v in sorted(extract.without_date_or_patient.items()))
        )
    return notes


def _attach_vocabulary(con: duckdb.DuckDBPyConnection, vocabulary: Release, settings: Settings) -> None:
    register_key(con, "vocabulary_key", vocabulary.data_key(settings))
    for table in ("concept", "concept_relationship", "source_to_concept_map"):
        source = parquet_source(str(vocabulary.path / f"{table}.parquet"), "vocabulary_key")
        con.execute(f"CREATE TEMP VIEW _vocab_{table} AS SELECT * FROM {source}")
    create_source_maps(
        con,
        concept="_vocab_concept",
        concept_relationship="_vocab_concept_relationship",
        source_to_concept_map="_vocab_source_to_concept_map",
    )


def _start_digests(pool: ThreadPoolExecutor, files: list[Path]) -> list[tuple[str, Future[str]]]:
    """The files' sha256, largest first so that the threads finish together, returned in ``files`` order."""
    futures = {p: pool.submit(sha256_file, p) for p in sorted(files, key=lambda p: -p.stat().st_size)}
    return [(p.name, futures[p]) for p in files]


def _export_digest(digests: list[tuple[str, str]]) -> str:
    """The sha256 of the extract: of its files' names and digests."""
    return hashlib.sha256(json.dumps(digests).encode()).hexdigest()


def _deposit_id(digests: list[tuple[str, str]]) -> str:
    """A digest of the extract's files: the same extract always gets the same deposit id."""
    return "d-" + _export_digest(digests)[:16]


def _vocabulary(settings: Settings, name: str | None) -> Release | None:
    store = vocabulary_store(settings)
    if name is not None:
        return store.get(name)
    installed = store.list()
    return installed[-1] if installed else None


def _read_identities(path: Path) -> list[dict[str, str | None]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_IDENTITY_COLUMNS if c not in columns]
        unknown = [c for c in columns if c not in IDENTITY_COLUMNS]
        if missing or unknown:
            reason = "; ".join(
                part
                for part in (
                    f"required column(s) missing: {', '.join(missing)}" if missing else "",
                    f"unknown column(s): {', '.join(unknown)}" if unknown else "",
                )
                if part
            )
            raise InputError(Problem(path.name, reason, row=0))
        reader.fieldnames = columns
        rows = []
        seen: set[str] = set()
        for i, row in enumerate(reader, start=1):
            if None in row or any(v is None for v in row.values()):
                raise InputError(Problem(path.name, "wrong number of fields", row=i))
            local_id = (row["local_id"] or "").strip()
            if not local_id:
                raise InputError(Problem(path.name, "required value is missing", row=i, column="local_id"))
            if local_id in seen:
                raise InputError(Problem(path.name, "the same local_id appears twice", row=i, column="local_id"))
            seen.add(local_id)
            rows.append(row)
    return rows


class _DepositHooks(LoadHooks):
    narrow_tables = True  # a deposit stores only the columns its extract supplied (cdm.narrow)

    def __init__(
        self,
        site: Site,
        key: LinkageKey,
        local_ids: list[str],
        tokens: list[dict],
        report: TokenReport,
        vocabulary: Release | None,
        settings: Settings,
        identity_source: str,
        *,
        persons_keyed: bool = False,
    ) -> None:
        self.site, self.key, self.local_ids, self.tokens, self.report = site, key, local_ids, tokens, report
        self.vocabulary, self.settings = vocabulary, settings
        self.read_from = (vocabulary.path,) if vocabulary else ()
        self.identity_source = identity_source
        self.persons_keyed = persons_keyed  # person ids of the files are already person keys (FHIR route)
        self.builder: ReleaseBuilder | None = None
        self.notes: list[str] = []  # recorded in the deposit's warnings
        self.vocabulary_attached = False  # the vocabulary's views and source maps are on the connection

    def prepare(self, builder: ReleaseBuilder) -> None:
        self.builder = builder
        con = builder.con
        builder.warnings.extend(self.notes)
        keys = pa.table(
            {
                "local_id": pa.array(self.local_ids, pa.string()),
                "person_key": pa.array(_person_keys(self.key, self.local_ids, self.tokens), pa.int64()),
            }
        )
        con.register("_person_keys_arrow", keys)
        # local_number: the local id as the integer it spells exactly ('42', not '042'), so that tables join
        # their (integer) person ids on integers: the same matches as comparing text, without casting each row.
        con.execute(
            "CREATE TEMP TABLE _person_keys AS SELECT *, CASE WHEN CAST(TRY_CAST(local_id AS BIGINT) AS VARCHAR) "
            "= local_id THEN TRY_CAST(local_id AS BIGINT) END AS local_number FROM _person_keys_arrow"
        )
        con.unregister("_person_keys_arrow")
        token_table = pa.table(
            {
                "person_key": keys["person_key"],
                **{c: pa.array([t[c] for t in self.tokens], pa.string()) for c in TOKEN_COLUMNS},
            }
        )
        con.register("_tokens_arrow", token_table)
        builder.write_table("identity_tokens", "SELECT * FROM _tokens_arrow")
        con.unregister("_tokens_arrow")
        builder.warnings.append(
            f"{self.identity_source}: {self.report.records} identity record(s) hashed with linkage key "
            f"{self.key.key_id}; "
            + ", ".join(f"{field} absent or invalid in {n}" for field, n in sorted(self.report.missing.items()))
        )
        if self.vocabulary is not None:
            if not self.vocabulary_attached:
                _attach_vocabulary(con, self.vocabulary, self.settings)
            con.execute("CREATE TEMP TABLE _concept AS SELECT concept_id FROM _vocab_concept")
            builder.warnings.append(f"source codes mapped with vocabulary {self.vocabulary.name}")

    def after_stage(self, con: duckdb.DuckDBPyConnection, staged: StagedTable) -> None:
        table = staged.table
        replacements: dict[str, str] = {}
        joins = ""
        if "person_id" in table.column_names and not self.persons_keyed:
            self._add_missing_person_keys(con, staged)
            joins += " JOIN _person_keys k ON k.local_number = s.person_id"
            replacements["person_id"] = "k.person_key"
        if table.name in SOURCE_CODE_COLUMNS and self.vocabulary is not None:
            concept, code, source_concept = SOURCE_CODE_COLUMNS[table.name]
            vocabulary_id = self.site.source_vocabularies.get(table.name)
            if vocabulary_id:
                joins += (
                    f" LEFT JOIN (SELECT concept_code, min(concept_id) AS concept_id, "
                    f"min(source_concept_id) AS source_concept_id FROM _source_map "
                    f"WHERE vocabulary_id = {literal(vocabulary_id)} GROUP BY 1) m "
                    f"ON s.{concept} = 0 AND m.concept_code = s.{code}"
                )
                replacements[concept] = f"CASE WHEN s.{concept} = 0 THEN coalesce(m.concept_id, 0) ELSE s.{concept} END"
                replacements[source_concept] = (
                    f"CASE WHEN coalesce(s.{source_concept}, 0) = 0 THEN coalesce(m.source_concept_id, 0) "
                    f"ELSE s.{source_concept} END"
                )
                self._report_unmapped(con, staged, concept, code, vocabulary_id)
        if not replacements:
            return
        view = f"{staged.stage}_deposit"
        replace = ", ".join(f"{expr} AS {ident(col)}" for col, expr in replacements.items())
        con.execute(f'CREATE TEMP VIEW "{view}" AS SELECT s.* REPLACE ({replace}) FROM "{staged.stage}" s{joins}')
        staged.replace_stage(view, filled=replacements)

    def _add_missing_person_keys(self, con: duckdb.DuckDBPyConnection, staged: StagedTable) -> None:
        """Persons without an identity record still get a keyed pseudonym (they cannot be linked)."""
        missing = [
            r[0]
            for r in con.execute(
                f'SELECT DISTINCT CAST(person_id AS VARCHAR) FROM "{staged.stage}" WHERE person_id NOT IN '
                "(SELECT local_number FROM _person_keys WHERE local_number IS NOT NULL)"
            ).fetchall()
        ]
        if not missing:
            return
        keys = pa.table(
            {
                "local_id": pa.array(missing, pa.string()),
                "person_key": pa.array([person_key(self.key, i) for i in missing], pa.int64()),
            }
        )
        con.register("_more_keys", keys)
        con.execute("INSERT INTO _person_keys SELECT *, CAST(local_id AS BIGINT) FROM _more_keys")
        con.unregister("_more_keys")
        assert self.builder is not None
        self.builder.warnings.append(
            f"{staged.source.display}: {len(missing)} person(s) without an identity record "
            "(pseudonymised, but they cannot be linked to other sites)"
        )

    def _report_unmapped(
        self, con: duckdb.DuckDBPyConnection, staged: StagedTable, concept: str, code: str, vocabulary_id: str
    ) -> None:
        """Count unmapped source codes; the codes themselves go to an encrypted operator file, never to the
        manifest: a source value can be free text, and the manifest is stored in clear."""
        known = f"SELECT concept_code FROM _source_map WHERE vocabulary_id = {literal(vocabulary_id)}"
        select = (
            f"SELECT {literal(staged.table.name)} AS table_name, {literal(vocabulary_id)} AS vocabulary_id, "
            f's.{code} AS code, count(*) AS "rows" FROM "{staged.stage}" s WHERE s.{concept} = 0 '
            f"AND s.{code} IS NOT NULL AND s.{code} NOT IN ({known}) GROUP BY 1, 2, 3 ORDER BY 4 DESC, 3"
        )
        codes, rows = con.execute(f'SELECT count(*), coalesce(sum("rows"), 0) FROM ({select})').fetchone()
        if codes and self.builder is not None:
            file = self.builder.write_operator_file(f"unmapped_{staged.table.name}.parquet", select)
            self.builder.warnings.append(
                f"{staged.source.display}: {rows} row(s) with {codes} {vocabulary_id} "
                f"code(s) not mapped to a standard concept (concept id 0 kept); the codes are in {file} (encrypted)"
            )


class _FhirHooks(_DepositHooks):
    """A FHIR export converted on the deposit's own connection (``sources.fhir.convert``): the CDM tables are
    relations there, read by the loader like files; persons are keyed by their FHIR ids before staging."""

    supplies_sources = True

    def __init__(
        self,
        site: Site,
        key: LinkageKey,
        vocabulary: Release,
        settings: Settings,
        export: Path,
        export_digest: str,
        step: Callable[[str], None],
    ) -> None:
        super().__init__(site, key, [], [], TokenReport(), vocabulary, settings, "Patient.ndjson", persons_keyed=True)
        self.export, self.export_digest, self.step = export, export_digest, step
        self.relations: dict[str, str] = {}  # CDM table -> view of its keyed rows
        self.converted: dict[str, str] = {}  # CDM table -> the conversion's temp table or view behind the view
        self.backing: dict[str, str] = {}  # a conversion's view -> the temp table it reads

    def prepare(self, builder: ReleaseBuilder) -> None:
        from hygie.sources.fhir import convert

        con = builder.con
        assert self.vocabulary is not None
        _attach_vocabulary(con, self.vocabulary, self.settings)
        self.step("converting FHIR resources")
        extract = convert(con, self.export)
        self.step("keying persons")
        self.local_ids = [str(i["local_id"]) for i in extract.identities]
        # Every subject once, in one query over all the tables (rather than one list per table).
        everyone = " UNION ALL ".join(f"SELECT person_id FROM {t}" for t in extract.tables.values())
        subjects = {
            r[0]
            for r in con.execute(f"SELECT DISTINCT person_id FROM ({everyone}) WHERE person_id IS NOT NULL").fetchall()
        }
        ids = sorted(subjects | set(self.local_ids))
        con.register(
            "_keys_arrow",
            pa.table(
                {
                    "fhir_id": pa.array(ids, pa.string()),
                    "person_key": pa.array([person_key(self.key, i) for i in ids], pa.int64()),
                }
            ),
        )
        con.execute("CREATE TEMP TABLE _keys AS SELECT * FROM _keys_arrow")
        con.unregister("_keys_arrow")
        self.backing = extract.backing
        for table, name in extract.tables.items():
            columns = cdm_schema("5.4")[table].column_names
            present = {c for c, _ in con.execute(f"SELECT column_name, 1 FROM (DESCRIBE {name})").fetchall()}
            # Only the columns the conversion fills: staging adds the others as NULLs, the deposit leaves them out.
            select = ", ".join(
                "k.person_key AS person_id" if c == "person_id" else f"t.{ident(c)}" for c in columns if c in present
            )
            join = " JOIN _keys k ON k.fhir_id = t.person_id" if "person_id" in present else ""
            view = f"_fhir_cdm_{table}"
            con.execute(f"CREATE TEMP VIEW {view} AS SELECT {select} FROM {name} t{join}")
            self.relations[table], self.converted[table] = view, name
        self.file_digests = dict.fromkeys(self.relations, self.export_digest)
        self.step("tokenising identities")
        self.tokens = list(tokenise(extract.identities, self.key, self.report))
        self.notes = _conversion_notes(extract)
        self.vocabulary_attached = True
        super().prepare(builder)

    def sources(self) -> list[SourceFile]:
        return [
            SourceFile(self.export / table, table, "relation", relation=view, origin="fhir")
            for table, view in self.relations.items()
        ]

    def after_stage(self, con: duckdb.DuckDBPyConnection, staged: StagedTable) -> None:
        # The staged copy holds the rows now: the conversion's table is no longer needed (a table several
        # converted views read, the events', once the last of them is staged).
        table = staged.table.name
        if table in self.relations:
            con.execute(f"DROP VIEW {self.relations[table]}")
            name = self.converted.pop(table)
            backing = self.backing.get(name)
            if backing is None:
                con.execute(f"DROP TABLE {name}")
            else:
                con.execute(f"DROP VIEW {name}")
                if all(self.backing.get(other) != backing for other in self.converted.values()):
                    con.execute(f"DROP TABLE {backing}")
        super().after_stage(con, staged)
