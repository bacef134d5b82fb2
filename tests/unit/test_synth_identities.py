"""NIR structure and keys, identity noise rates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hygie.synth.config import NoiseConfig
from hygie.synth.identities import DEPARTMENTS, make_identities, nir_is_valid, nir_key, noisy_copies, typo


def _persons(n: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    female = rng.random(n) < 0.5
    birth = np.datetime64("1930-01-01") + rng.integers(0, 34_000, n).astype("timedelta64[D]")
    return female, birth, rng


def test_nir_key_is_97_minus_the_number_mod_97() -> None:
    # 1 84 12 76 451 089: 1841276451089 mod 97 = 51, so the key is 46.
    assert 1841276451089 % 97 == 51
    assert nir_key("1841276451089") == 46
    assert nir_is_valid("184127645108946")
    assert not nir_is_valid("184127645108947")


def test_corsican_departments_count_as_19_and_18() -> None:
    assert nir_key("255082A123456") == 97 - 2550819123456 % 97
    body = "16203" + "2B" + "010020"
    assert nir_key(body) == 97 - int("16203" + "18" + "010020") % 97
    assert nir_is_valid(body + f"{nir_key(body):02d}")


def test_generated_nirs_are_valid_and_match_sex_and_birth() -> None:
    female, birth, rng = _persons(5000)
    deps = [("69", "01", "2A", "2B")] * len(female)
    ids = make_identities(rng, female, birth, deps)
    assert all(nir_is_valid(n) for n in ids.nir)
    assert {n[0] for n, f in zip(ids.nir, female, strict=True) if f} == {"2"}
    assert {n[0] for n, f in zip(ids.nir, female, strict=True) if not f} == {"1"}
    years = birth.astype("datetime64[Y]").astype(int) + 1970
    months = birth.astype("datetime64[M]").astype(int) % 12 + 1
    assert all(
        n[1:3] == f"{y % 100:02d}" and n[3:5] == f"{m:02d}" for n, y, m in zip(ids.nir, years, months, strict=True)
    )
    assert {n[5:7] for n in ids.nir} <= set(DEPARTMENTS)
    assert any(n[5:7] in ("2A", "2B") for n in ids.nir), "Corsica must occur in 5,000 persons"
    assert all(len(pc) == 5 and pc.isdigit() for pc in ids.postcode)
    assert all(pc.startswith("20") for pc, d in zip(ids.postcode, ids.residence_dept, strict=True) if d in ("2A", "2B"))


def test_a_changed_digit_breaks_the_key() -> None:
    female, birth, rng = _persons(200)
    ids = make_identities(rng, female, birth, [("54",)] * 200)
    for n in ids.nir:
        i = 8
        other = str((int(n[i]) + 1) % 10)
        assert not nir_is_valid(n[:i] + other + n[i + 1 :])


def test_typo_changes_the_name_by_one_edit() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        t = typo(rng, "FONTAINE")
        assert t != "FONTAINE"
        assert abs(len(t) - len("FONTAINE")) <= 1


@pytest.mark.parametrize("seed", [11, 12])
def test_noise_rates_are_realised_as_configured(seed: int) -> None:
    n = 40_000
    female, birth, rng = _persons(n, seed)
    ids = make_identities(rng, female, birth, [("75",)] * n)
    noise = NoiseConfig(
        missing_nir=0.15, family_name_typo=0.05, given_name_typo=0.03, day_month_swap=0.02, changed_family_name=0.08
    )
    rec = noisy_copies(rng, ids, female, birth, np.arange(n), noise)

    def close(observed: np.ndarray, rate: float) -> None:
        k = len(observed)
        assert abs(observed.sum() - rate * k) <= 5 * np.sqrt(k * rate * (1 - rate)), (observed.mean(), rate)

    close(rec.noise_missing_nir, noise.missing_nir)
    assert all((v is None) == m for v, m in zip(rec.nir, rec.noise_missing_nir, strict=True))
    close(rec.noise_family_typo, noise.family_name_typo)
    close(rec.noise_given_typo, noise.given_name_typo)
    close(rec.noise_day_month_swap, noise.day_month_swap)
    # Changed family names: women only, at the configured rate (minus draws of the same name).
    assert not rec.noise_changed_family[~female].any()
    close(rec.noise_changed_family[female], noise.changed_family_name * (1 - 1 / 50))
    changed = rec.noise_changed_family & ~rec.noise_family_typo
    assert (rec.family[changed] != ids.family[changed]).all()
    swapped = rec.noise_day_month_swap
    b, r = birth[swapped], rec.birth[swapped]
    assert ((b.astype("datetime64[M]").astype(int) % 12 + 1) == (r - r.astype("datetime64[M]")).astype(int) + 1).all()
    untouched = ~rec.noise_missing_nir
    assert all(nir_is_valid(v) for v in rec.nir[untouched])


@given(
    sex=st.integers(1, 2),
    year=st.integers(0, 99),
    month=st.integers(1, 12),
    dept=st.sampled_from(DEPARTMENTS),
    commune=st.integers(1, 999),
    order=st.integers(1, 999),
    position=st.integers(0, 12),
    delta=st.integers(1, 9),
)
def test_any_single_digit_error_is_detected(sex, year, month, dept, commune, order, position, delta) -> None:
    body = f"{sex}{year:02d}{month:02d}{dept}{commune:03d}{order:03d}"
    nir = body + f"{nir_key(body):02d}"
    assert nir_is_valid(nir)
    if not body[position].isdigit():
        return  # the A/B of Corsica
    altered = body[:position] + str((int(body[position]) + delta) % 10) + body[position + 1 :]
    assert not (nir_is_valid(altered + nir[13:]))
