"""Planted truths are realised within statistical tolerance on a mid-size population (generation only, no files)."""

from __future__ import annotations

import numpy as np
import pytest

from hygie.synth.clinical import generate_chunk
from hygie.synth.config import STUDY_END, STUDY_START, SynthConfig
from hygie.synth.population import NO_SITE
from hygie.synth.truth import Truth, realised_incidence

MID_SIZE = 60_000


@pytest.fixture(scope="module")
def mid() -> tuple[SynthConfig, list]:
    config = SynthConfig(patients=MID_SIZE, seed=2024)
    return config, [generate_chunk(config, c) for c in range(config.chunks)]


def test_incidence_rates_match_the_planted_rates(mid) -> None:
    config, chunks = mid
    checked = 0
    for outcome in config.incidence_truth_outcomes:
        events = sum(realised_incidence(c, outcome)[0] for c in chunks)
        days = sum(realised_incidence(c, outcome)[1] for c in chunks)
        for k in range(events.shape[0]):
            for j, sex in enumerate(("M", "F")):
                expected = config.incidence[outcome][sex][k] / 1e5 * days[k, j] / 365.25
                if expected < 20:
                    continue
                # Poisson count: within 4 standard deviations of the planted expectation.
                assert abs(events[k, j] - expected) <= 4 * np.sqrt(expected), (outcome, k, sex, events[k, j], expected)
                checked += 1
    assert checked >= 30


def test_adjusted_hazard_ratio_recovers_the_truth_and_crude_is_biased(mid) -> None:
    config, chunks = mid
    parts = []
    for c in chunks:
        u = c.nsaid
        parts.append(
            {
                "drug": np.array(("celecoxib", "diclofenac", "ibuprofen"), dtype=object)[u.drug],
                "age": u.age,
                "female": c.persons.female[u.person],
                "comorbidities": u.comorbidities,
                "tar_days": u.tar_days,
                "gi_bleed_day": u.event_day,
                "prior_gi_bleed": u.prior_bleed,
            }
        )
    cohort = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    planted = config.hazard_ratios[0]
    est = Truth._hr(planted, cohort, "gi_bleed_day")
    se = np.sqrt(1 / est["events_target"] + 1 / est["events_comparator"])
    assert abs(np.log(est["realised_adjusted_rate_ratio"]) - np.log(planted.hazard_ratio)) < 3.5 * se, est
    # Channelling of celecoxib to older, sicker patients makes the crude ratio clearly wrong.
    assert est["realised_crude_rate_ratio"] < 1.0, est
    users = cohort["drug"] != "ibuprofen"
    older = cohort["age"][users & (cohort["drug"] == "celecoxib")].mean()
    assert older > cohort["age"][users & (cohort["drug"] == "diclofenac")].mean()


def test_overlap_and_follow_up_are_as_configured(mid) -> None:
    config, chunks = mid
    sites = np.concatenate([(c.persons.sites != NO_SITE).sum(axis=1) for c in chunks])
    share = (sites >= 2).mean()
    target = config.two_sites + config.three_sites
    assert abs(share - target) <= 4 * np.sqrt(target * (1 - target) / len(sites))
    for c in chunks:
        p = c.persons
        assert (p.entry <= p.exit).all() and (p.entry >= STUDY_START).all() and (p.exit <= STUDY_END).all()
        assert (p.birth <= p.entry).all()
        for s in range(p.sites.shape[1]):
            used = p.sites[:, s] != NO_SITE
            assert (p.site_entry[used, s] <= p.exit[used]).all()
        # Every record lies in the follow-up of its person, at a site that person attends.
        for table, date in (("visits", "start"), ("conditions", "date"), ("drugs", "start"), ("measurements", "date")):
            r = getattr(c, table)
            assert (r[date] >= p.entry[r["person"]]).all() and (r[date] <= p.exit[r["person"]]).all(), table
            assert (p.sites[r["person"]] == r["site"][:, None]).any(axis=1).all(), table


def test_same_seed_same_chunk_other_seed_other_chunk() -> None:
    a = generate_chunk(SynthConfig(patients=3000, seed=9), 0)
    b = generate_chunk(SynthConfig(patients=3000, seed=9), 0)
    c = generate_chunk(SynthConfig(patients=3000, seed=10), 0)
    assert (a.persons.birth == b.persons.birth).all() and (a.measurements["value"] == b.measurements["value"]).all()
    assert not np.array_equal(a.persons.birth, c.persons.birth)


def test_pyramid_sex_ratio_and_cancer_centre(mid) -> None:
    _config, chunks = mid
    female = np.concatenate([c.persons.female for c in chunks])
    assert 0.50 < female.mean() < 0.53  # France: 51.5% women
    age = np.concatenate([c.persons.age_at(np.full(len(c.persons), STUDY_START)) for c in chunks])
    born_before = age >= 0
    assert 38 < np.median(age[born_before]) < 44  # median age in France, 2015: about 41
    assert (age[born_before] >= 80).mean() > 0.04
    main_b = np.concatenate([c.persons.sites[:, 0] == 1 for c in chunks])
    cancer = np.concatenate(
        [
            np.any(
                [~np.isnat(c.onsets[k]) for k in ("breast_cancer", "prostate_cancer", "lung_cancer", "colon_cancer")],
                axis=0,
            )
            for c in chunks
        ]
    )
    assert main_b[cancer].mean() > 0.5 > 0.1 > main_b[~cancer].mean()
