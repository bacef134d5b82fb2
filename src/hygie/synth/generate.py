"""``hygie synth``: generate the four hospital extracts, the vocabulary and the truth, chunk by chunk.

Layout of the output folder::

    site_a/cdm/*.csv + MANIFEST.csv      site_a/identities.csv     (OMOP CDM 5.4, CSV)
    site_b/cdm/*.parquet + MANIFEST.csv  site_b/identities.csv     (OMOP CDM 5.4, Parquet)
    site_c/fhir/<ResourceType>.ndjson                               (FHIR R4 Bulk Data; identities in Patient)
    site_d/cdm/*.csv + MANIFEST.csv      site_d/identities.csv     (OMOP CSV, source codes only, concept ids 0)
    vocabulary/*.csv + MANIFEST.csv                                 (CDM vocabulary tables, loadable)
    truth/truth.json, truth/linkage.csv, truth/nsaid_cohort.csv     (evaluation only, never deposited)

Memory stays bounded: one chunk of 10,000 persons is generated, written to every site and forgotten.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from hygie.errors import ConflictError, HygieError
from hygie.synth.clinical import Chunk, generate_chunk
from hygie.synth.config import SITES, SynthConfig
from hygie.synth.identities import noisy_copies
from hygie.synth.truth import Truth
from hygie.synth.vocabulary import vocabulary_tables
from hygie.synth.writers.common import local_ids, write_manifest
from hygie.synth.writers.fhir import FhirSiteWriter
from hygie.synth.writers.omop import OmopSiteWriter, identity_table

NOISE_FIELDS = ("missing_nir", "family_name_typo", "given_name_typo", "day_month_swap", "changed_family_name")


class OutputError(HygieError):
    """The output folder cannot be used."""


def prepare_output(out: Path) -> None:
    """Create ``out``; refuse a non-empty folder (never mix two generations) or one that cannot be written."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise ConflictError(f"{out} is not empty: choose a new or empty folder (generations are never mixed)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out}: {e.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {out}: permission denied")


def write_vocabulary(folder: Path) -> dict[str, int]:
    folder.mkdir(parents=True)
    rows, files = {}, {}
    for name, table in vocabulary_tables().items():
        path = folder / f"{name}.csv"
        pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))
        rows[name], files[name] = table.num_rows, path
    write_manifest(folder, rows, files)
    return rows


def site_identities(chunk: Chunk, site: int, config: SynthConfig) -> tuple[dict[str, np.ndarray], dict]:
    """The identity records a site holds for its patients of this chunk (with noise), and the noise applied."""
    p = chunk.persons
    idx = np.flatnonzero((p.sites == site).any(axis=1))
    rng = np.random.default_rng([config.seed, chunk.index, 7919, site])
    rec = noisy_copies(rng, chunk.identities, p.female, p.birth, idx, config.noise)
    ids = {
        "local_id": local_ids(p.pid[idx], site, config.seed),
        "nir": rec.nir,
        "family_name": rec.family,
        "given_name": rec.given,
        "birth_date": np.datetime_as_string(rec.birth, unit="D").astype(object),
        "sex": np.where(p.female[idx], "F", "M").astype(object),
        "postcode": chunk.identities.postcode[idx],
    }
    noise = {
        "missing_nir": rec.noise_missing_nir,
        "family_name_typo": rec.noise_family_typo,
        "given_name_typo": rec.noise_given_typo,
        "day_month_swap": rec.noise_day_month_swap,
        "changed_family_name": rec.noise_changed_family,
    }
    return ids | {"_person_key": p.pid[idx], "_female": p.female[idx]}, noise


def _write_sites(
    config: SynthConfig,
    out: Path,
    sites: tuple[int, ...],
    truth: Truth | None,
    step: Callable[[str], None] = lambda _s: None,
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Generate every chunk and write the given sites; with ``truth``, also account the truth of all sites.

    Runs in the main process or in a worker: chunks are pure functions of (config, index), so two processes
    writing different sites produce exactly the files one process would.
    """
    writers: dict[int, OmopSiteWriter | FhirSiteWriter] = {
        i: (FhirSiteWriter if SITES[i].format == "fhir" else OmopSiteWriter)(out, i, SITES[i], config.seed)
        for i in sites
    }
    persons = dict.fromkeys(sites, 0)
    for c in range(config.chunks):
        step(f"chunk {c + 1}/{config.chunks}")
        chunk = generate_chunk(config, c)
        links, noises, women = [], {k: [] for k in NOISE_FIELDS}, 0
        for i, site in enumerate(SITES):
            if i not in writers and truth is None:
                continue
            ids, noise = site_identities(chunk, i, config)
            public = {k: v for k, v in ids.items() if not k.startswith("_")}
            writer = writers.get(i)
            if isinstance(writer, FhirSiteWriter):
                writer.write_chunk(chunk, public)
            elif writer is not None:
                writer.write_chunk(chunk, identity_table(public))
            if writer is not None:
                persons[i] += len(ids["local_id"])
            if truth is not None:
                links.append(
                    pa.table(
                        {
                            "site": pa.array([site.key] * len(ids["local_id"]), pa.string()),
                            "local_id": pa.array(ids["local_id"], pa.int64()),
                            "person_key": pa.array(ids["_person_key"], pa.int64()),
                            **{k: pa.array(v, pa.bool_()) for k, v in noise.items()},
                        }
                    )
                )
                for k in NOISE_FIELDS:
                    noises[k].append(noise[k])
                women += int(ids["_female"].sum())
        if truth is not None:
            truth.add(chunk, pa.concat_tables(links), {k: np.concatenate(v) for k, v in noises.items()}, women)
    for w in writers.values():
        w.close()
    rows = {f"site_{SITES[i].key}": dict(sorted(w.rows.items())) for i, w in writers.items()}
    return rows, {f"site_{SITES[i].key}": n for i, n in persons.items()}


def _generate_into(
    config: SynthConfig, out: Path, step: Callable[[str], None], workers: int
) -> tuple[dict[str, dict[str, int]], dict[str, int], dict[str, int], Truth]:
    vocab_rows = write_vocabulary(out / "vocabulary")
    truth = Truth(config, out / "truth")
    groups = ((0, 1), (2, 3)) if workers == 2 else ((0, 1, 2, 3),)
    if workers == 2:
        # spawn, not fork: the parent holds Arrow thread pools, which must not be forked.
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            other = pool.submit(_write_sites, config, out, groups[1], None)
            rows, persons = _write_sites(config, out, groups[0], truth, step)
            step("waiting for the second worker")
            rows2, persons2 = other.result()
        return rows | rows2, persons | persons2, vocab_rows, truth
    rows, persons = _write_sites(config, out, groups[0], truth, step)
    return rows, persons, vocab_rows, truth


def generate(config: SynthConfig, out: Path, step: Callable[[str], None] = lambda _s: None, workers: int = 1) -> dict:
    """Generate everything under ``out`` (which must be new or empty); returns a summary (rows, persons, time).

    ``workers=2`` writes sites c and d in a second process (the output is byte-identical to ``workers=1``).
    """
    if workers not in (1, 2):
        raise HygieError(f"workers must be 1 or 2 (got {workers})")
    started = time.perf_counter()
    prepare_output(out)
    try:
        rows, persons, vocab_rows, truth = _generate_into(config, out, step, workers)
        rows = {f"site_{s.key}": rows[f"site_{s.key}"] for s in SITES}
        summary = {
            "patients": config.patients,
            "seed": config.seed,
            "persons_per_site": {f"site_{s.key}": persons[f"site_{s.key}"] for s in SITES},
            "rows": rows,
            "clinical_rows": sum(sum(r.values()) for r in rows.values()),
            "vocabulary_rows": vocab_rows,
        }
        truth.write(summary)
    except BaseException:
        # Never leave a half-written generation behind (it could be deposited by mistake); ``out`` was empty.
        for child in out.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        raise
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["workers"] = workers
    return summary
