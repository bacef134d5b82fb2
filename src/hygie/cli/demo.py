"""``hygie demo``: the whole data side on embedded defaults, for a first look.

Four synthetic hospital extracts (``hygie synth``) -> a vocabulary -> four sites -> four deposits ->
one linked release, with its summary, data-quality checks and linkage measured against the generator's
ground truth; then OHDSI's GiBleed sample as a second release, with two ATLAS cohort definitions generated
on it. Every step reuses what a previous run made.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import typer

from hygie import datasets as registry
from hygie.cli.cdm import print_summary, report_load
from hygie.cli.output import console, handle_errors, progress, settings, warn
from hygie.config import Settings
from hygie.engine.duckdb import DuckDBEngine
from hygie.errors import HygieError
from hygie.ingest.build import build_release
from hygie.ingest.cdm_load import load_cdm
from hygie.ingest.deposit import ingest
from hygie.ingest.linkage_evaluation import evaluate
from hygie.ingest.sites import SiteRegistry
from hygie.ingest.vocabulary import install_vocabulary, vocabulary_store
from hygie.releases import Release, ReleaseStore
from hygie.releases.summary import summarise
from hygie.synth.config import SynthConfig
from hygie.synth.generate import generate
from hygie.synth.vocabulary import LOCAL_VISIT_VOCABULARY

DEMO_SYNTH_PATIENTS = 20_000  # HYGIE_DEMO_PATIENTS overrides it (tests use fewer)
DEMO_VOCABULARY = "demo-synth"
DEMO_RELEASE = "demo-emc2"
GIBLEED_RELEASE = "demo-gibleed"
# The generator's four hospitals: (folder, hub site name, format).
SITES = (
    ("site_a", "demo-chu-lyon", "omop"),
    ("site_b", "demo-clb-lyon", "omop"),
    ("site_c", "demo-chu-nancy", "fhir"),
    ("site_d", "demo-psl-paris", "omop"),
)


def register(root: typer.Typer) -> None:
    root.command("demo")(demo)


def _demo_patients() -> int:
    value = os.environ.get("HYGIE_DEMO_PATIENTS", str(DEMO_SYNTH_PATIENTS))
    if not value.isdigit() or int(value) < 1:
        raise HygieError(f"HYGIE_DEMO_PATIENTS must be a positive whole number (got {value!r})")
    return int(value)


def extracts_folder(s: Settings) -> Path:
    """Where the demo's hospitals keep their extracts: beside HYGIE_HOME, never in it (identities stay out)."""
    return Path(os.environ.get("HYGIE_DEMO_EXTRACTS", s.home.parent / "hygie-demo-extracts")).absolute()


def _synthetic_extracts(s: Settings) -> Path:
    folder = extracts_folder(s)
    if (folder / "truth" / "truth.json").is_file():
        console.print(f"1. synthetic hospital extracts already in {folder}; reusing them")
        return folder
    if folder.exists():  # left by an interrupted run: generations are never mixed
        shutil.rmtree(folder)
    patients = _demo_patients()
    console.print(f"1. generating {patients:,} synthetic patients in four hospital extracts")
    with progress() as step:
        summary = generate(SynthConfig(patients=patients, seed=42), folder, step, workers=min(2, os.cpu_count() or 1))
    console.print(f"   {summary['clinical_rows']:,} records in {summary['seconds']} s, written to {folder}")
    return folder


def _deposits(s: Settings, folder: Path) -> None:
    if not vocabulary_store(s).exists(DEMO_VOCABULARY):
        install_vocabulary(folder / "vocabulary", DEMO_VOCABULARY, s, description="hygie synth vocabulary")
    console.print(f"2. vocabulary {DEMO_VOCABULARY} installed; depositing the four extracts")
    registry_ = SiteRegistry(s)
    known = {site.name for site in registry_.list()}
    for subfolder, name, format_ in SITES:
        # The extracts' visit codes are local (CONS, HOSP, URG), mapped by the vocabulary's source_to_concept_map.
        site = (
            registry_.get(name)
            if name in known
            else registry_.add(name, format_, {"visit_occurrence": LOCAL_VISIT_VOCABULARY})
        )
        with progress() as step:
            step(f"ingesting {name}")
            result = ingest(site, folder / subfolder, s, vocabulary=DEMO_VOCABULARY, synthetic=True)
        m = result.deposit.manifest
        rows = sum(t.rows for n, t in m.tables.items() if n != "identity_tokens")
        state = "deposited" if result.created else "already deposited"
        console.print(
            f"   {name} ({format_}): {state} as {m.name}, {rows:,} rows, "
            f"{m.tables['identity_tokens'].rows:,} identities hashed"
        )


def _release(s: Settings, store: ReleaseStore, folder: Path) -> Release:
    if store.exists(DEMO_RELEASE):
        console.print(f"3. release {DEMO_RELEASE} already built (releases are immutable); reusing it")
        return store.get(DEMO_RELEASE)
    console.print("3. linking the four sites into one release")
    with progress() as step:
        release = build_release(DEMO_RELEASE, s, vocabulary=DEMO_VOCABULARY, step=step)
    linkage = release.manifest.linkage or {}
    console.print(
        f"   {release.manifest.tables['person'].rows:,} persons from {linkage.get('records', 0):,} site records"
    )
    sites = {subfolder.removeprefix("site_"): name for subfolder, name, _ in SITES}
    measured = evaluate(release, s, folder / "truth" / "linkage.csv", sites)
    console.print(
        f"   linkage against the synthetic ground truth: precision {measured['precision']:.4f}, "
        f"recall {measured['recall']:.4f}"
    )
    return release


def _gibleed(s: Settings, store: ReleaseStore) -> Release:
    if store.exists(GIBLEED_RELEASE):
        return store.get(GIBLEED_RELEASE)
    d = registry.get("gibleed")
    with progress() as step:
        release = load_cdm(
            d.folder,
            GIBLEED_RELEASE,
            s,
            synthetic=True,
            description=d.description,
            origin="dataset gibleed",
            step=step,
            allow_duplicate_keys=d.allow_duplicate_keys,
        )
    report_load(release)
    return release


def _cohorts(s: Settings, release: Release) -> None:
    from hygie import cohorts

    folder = registry.get("gibleed").folder.parent / "cohorts"
    definitions = {p.stem: p for p in sorted(folder.glob("*.json"))}
    for name, result in cohorts.generate(release.name, definitions, settings=s).items():
        summary = result.summary()
        rules = ", ".join(f"{r['name']} {r['subjects']:,}" for r in summary["inclusion_rules"])
        console.print(
            f"   {name}: {summary['subjects']:,} persons, {summary['records']:,} records"
            + (f" (after each inclusion rule: {rules})" if rules else "")
        )


def study_folder(s: Settings) -> Path:
    """Where the demo study writes its results (aggregates only), beside HYGIE_HOME."""
    return Path(os.environ.get("HYGIE_DEMO_STUDY_OUT", s.home.parent / "hygie-demo-study")).absolute()


def _study(s: Settings) -> None:
    from hygie.studies import run_demo_study

    out = study_folder(s)
    console.print(f"8. a study on {DEMO_RELEASE}: GI bleeding incidence and prevalence (hygie study run)")
    run = run_demo_study(s, DEMO_RELEASE, out)
    console.print(f"   {len(run.results)} result table(s) in {out}")
    console.print(f"   report: [bold]{out / 'report.html'}[/]")


def _portal(s: Settings) -> None:
    from hygie.api.demo import create_demo_accounts

    console.print("9. demo accounts for the web portal (passwords in files; each TOTP secret shown once)")

    def show(username: str, secret: str) -> None:
        console.print(f"   {username}: TOTP secret {secret} (a code: uv run python -c \"import pyotp; "
                      f"print(pyotp.TOTP('{secret}').now())\")", highlight=False, soft_wrap=True)  # fmt: skip

    for username, role, password_file in create_demo_accounts(s, show=show):
        console.print(f"   {username} ({role}): password in {password_file}", highlight=False, soft_wrap=True)
    console.print(
        "   start the portal: [bold]uv run hygie serve[/] (http://127.0.0.1:8000/) and, to run submitted studies, "
        "[bold]uv run hygie job worker[/]"
    )


@handle_errors
def demo() -> None:
    """Synthetic hospital extracts -> deposits -> a linked release, with summary and quality; then GiBleed
    and two ATLAS cohorts on it."""
    s = settings()
    store = ReleaseStore(s)
    console.rule("[bold]hygie demo")
    console.print(f"HYGIE_HOME = {s.home}")
    folder = _synthetic_extracts(s)
    _deposits(s, folder)
    release = _release(s, store, folder)
    console.print("4. summary of the release")
    with DuckDBEngine(release, s) as engine:
        print_summary(summarise(engine))
    quality = release.manifest.quality
    passed = sum(1 for r in quality if r["status"] == "pass")
    console.print(f"5. data quality: {passed} of {len(quality)} checks passed")
    for r in quality:
        if r["status"] != "pass":
            warn(f"{r['name']}: {r['failing']:,} of {r['applicable']:,} rows ({r['percent']}%): {r['description']}")
    console.print(f"6. OHDSI's GiBleed sample as a second release: {GIBLEED_RELEASE}")
    gibleed = _gibleed(s, store)
    console.print("7. two ATLAS cohort definitions on it (hygie cohort generate)")
    _cohorts(s, gibleed)
    _study(s)
    _portal(s)
    console.rule()
    console.print(
        f"Next: [bold]uv run hygie release show {DEMO_RELEASE}[/], "
        f"[bold]uv run hygie release quality {DEMO_RELEASE} --html quality.html[/], "
        f"[bold]uv run hygie cdm summary --release {GIBLEED_RELEASE}[/]"
    )
