"""The result tables of a comparative study: aggregates only (counts, estimates, means, curves)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from hygie.analyses.base import ResultTable
from hygie.analyses.comparative.balance import imbalanced
from hygie.analyses.comparative.calibration import Calibrated, NullDistribution
from hygie.analyses.comparative.cohorts import AttritionStep
from hygie.analyses.comparative.covariates import Covariates
from hygie.analyses.comparative.estimation import GroupCounts, OutcomeResult
from hygie.analyses.comparative.outcome_model import HazardRatio
from hygie.analyses.comparative.propensity import preference_score
from hygie.analyses.comparative.spec import ComparativeSpec

HR_COLUMNS = ("hr", "hr_95ci_lower", "hr_95ci_upper", "p_value", "log_hr", "se_log_hr")
PS_BINS = 50


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _estimate_row(
    spec: ComparativeSpec, r: OutcomeResult, analysis: str, counts: GroupCounts, hr: HazardRatio
) -> dict[str, object]:
    return {
        "target": spec.target,
        "comparator": spec.comparator,
        "outcome": r.outcome,
        "negative_control": r.negative_control,
        "analysis": analysis,
        "target_subjects": counts.target_subjects,
        "comparator_subjects": counts.comparator_subjects,
        "target_events": counts.target_events,
        "comparator_events": counts.comparator_events,
        "target_days": counts.target_days,
        "comparator_days": counts.comparator_days,
        "hr": hr.hr,
        "hr_95ci_lower": hr.lower,
        "hr_95ci_upper": hr.upper,
        "p_value": hr.p_value,
        "log_hr": hr.log_hr,
        "se_log_hr": hr.se_log_hr,
    }


ESTIMATE_SCHEMA = pa.schema(
    [("target", pa.string()), ("comparator", pa.string()), ("outcome", pa.string()), ("negative_control", pa.bool_()),
     ("analysis", pa.string()), ("target_subjects", pa.int64()), ("comparator_subjects", pa.int64()),
     ("target_events", pa.int64()), ("comparator_events", pa.int64()), ("target_days", pa.int64()),
     ("comparator_days", pa.int64())] + [(c, pa.float64()) for c in HR_COLUMNS]
)  # fmt: skip


def estimates(
    spec: ComparativeSpec, results: Sequence[OutcomeResult], calibrated: dict[str, Calibrated]
) -> ResultTable:
    rows = []
    for r in results:
        rows.append(_estimate_row(spec, r, "crude", r.crude_counts, r.crude))
        rows.append(_estimate_row(spec, r, "adjusted", r.adjusted_counts, r.adjusted))
        c = calibrated.get(r.outcome)
        if c is not None:
            cal = HazardRatio(math.exp(c.log_rr), c.lower, c.upper, c.p_value, c.log_rr, c.se)
            rows.append(_estimate_row(spec, r, "calibrated", r.adjusted_counts, cal))
    counts = {c: HR_COLUMNS for c in ("target_subjects", "comparator_subjects", "target_events", "comparator_events")}
    return ResultTable(
        "comparative_estimates",
        pa.Table.from_pylist(rows, schema=ESTIMATE_SCHEMA),
        counts=counts,
        description="Hazard ratios of target versus comparator new users: crude (everyone at risk), adjusted "
        "(Cox model stratified by matched set or PS stratum) and, with negative controls, empirically calibrated.",
    )


def attrition(spec: ComparativeSpec, common: list[AttritionStep], results: Sequence[OutcomeResult]) -> ResultTable:
    rows = []
    for r in results:
        steps = common + r.attrition
        for i, step in enumerate(steps):
            for group in ("target", "comparator"):
                n = getattr(step, group)
                before = getattr(steps[i - 1], group) if i else n
                rows.append(
                    {
                        "outcome": r.outcome,
                        "group": group,
                        "cohort": spec.target if group == "target" else spec.comparator,
                        "step": i + 1,
                        "reason": step.reason,
                        "number_subjects": n,
                        "excluded_subjects": before - n,
                    }
                )
    schema = pa.schema(
        [("outcome", pa.string()), ("group", pa.string()), ("cohort", pa.string()), ("step", pa.int64()),
         ("reason", pa.string()), ("number_subjects", pa.int64()), ("excluded_subjects", pa.int64())]
    )  # fmt: skip
    return ResultTable(
        "comparative_attrition",
        pa.Table.from_pylist(rows, schema=schema),
        counts={"number_subjects": (), "excluded_subjects": ()},
        plot="attrition",
        description="Persons remaining after each step, by exposure group and outcome.",
    )


def balance(covariates: Covariates, results: Sequence[OutcomeResult]) -> ResultTable:
    columns: dict[str, list] = {
        k: []
        for k in ("outcome", "covariate", "concept_id", "domain", "target_subjects_before",
                  "comparator_subjects_before", "target_mean_before", "comparator_mean_before", "smd_before",
                  "target_subjects_after", "comparator_subjects_after", "target_mean_after",
                  "comparator_mean_after", "smd_after")
    }  # fmt: skip
    for r in results:
        if r.balance is None or r.subjects_before is None or r.subjects_after is None:
            continue
        b = r.balance
        n = len(covariates)
        columns["outcome"] += [r.outcome] * n
        columns["covariate"] += covariates.names
        columns["concept_id"] += covariates.concept_ids
        columns["domain"] += covariates.domains
        columns["target_subjects_before"] += r.subjects_before[0].tolist()
        columns["comparator_subjects_before"] += r.subjects_before[1].tolist()
        columns["target_mean_before"] += b.target_before.mean.tolist()
        columns["comparator_mean_before"] += b.comparator_before.mean.tolist()
        columns["smd_before"] += b.smd_before.tolist()
        columns["target_subjects_after"] += r.subjects_after[0].tolist()
        columns["comparator_subjects_after"] += r.subjects_after[1].tolist()
        columns["target_mean_after"] += b.target_after.mean.tolist()
        columns["comparator_mean_after"] += b.comparator_after.mean.tolist()
        columns["smd_after"] += b.smd_after.tolist()
    floats = {k for k in columns if "mean" in k or k.startswith("smd")}
    ints = {k for k in columns if "subjects" in k} | {"concept_id"}
    table = pa.table(
        {
            k: pa.array(
                [_finite(x) for x in v] if k in floats else v,
                pa.float64() if k in floats else pa.int64() if k in ints else pa.string(),
            )
            for k, v in columns.items()
        }
    )
    return ResultTable(
        "comparative_balance",
        table,
        counts={
            "target_subjects_before": ("target_mean_before", "smd_before"),
            "comparator_subjects_before": ("comparator_mean_before", "smd_before"),
            "target_subjects_after": ("target_mean_after", "smd_after"),
            "comparator_subjects_after": ("comparator_mean_after", "smd_after"),
        },
        plot="balance",
        description="Mean of each baseline covariate by group and its standardised mean difference, before and "
        "after adjustment (after: comparators weighted to their matched set or stratum).",
    )


def km(results: Sequence[OutcomeResult]) -> ResultTable:
    rows = []
    for r in results:
        for group, curve in r.km.items():
            for i in range(len(curve.time)):
                rows.append(
                    {
                        "outcome": r.outcome,
                        "group": group,
                        "time": int(curve.time[i]),
                        "survival": _finite(curve.survival[i]),
                        "survival_lower": _finite(curve.lower[i]),
                        "survival_upper": _finite(curve.upper[i]),
                        "n_at_risk": int(curve.n_at_risk[i]),
                    }
                )
    schema = pa.schema(
        [("outcome", pa.string()), ("group", pa.string()), ("time", pa.int64()), ("survival", pa.float64()),
         ("survival_lower", pa.float64()), ("survival_upper", pa.float64()), ("n_at_risk", pa.int64())]
    )  # fmt: skip
    return ResultTable(
        "comparative_km",
        pa.Table.from_pylist(rows, schema=schema),
        counts={"n_at_risk": ()},
        plot="km",
        description="Kaplan-Meier survival (free of the outcome) by group in the adjusted population, days since "
        "index, with 95% CIs (Greenwood, log-log) and numbers at risk.",
    )


def ps_distribution(ps: np.ndarray, treated: np.ndarray) -> ResultTable:
    pref = preference_score(ps, treated) if len(ps) else ps
    rows = []
    edges = np.arange(PS_BINS) / PS_BINS
    bins = np.clip((pref * PS_BINS).astype(np.int64), 0, PS_BINS - 1)
    for group, members in (("target", treated.astype(bool)), ("comparator", ~treated.astype(bool))):
        counts = np.bincount(bins[members], minlength=PS_BINS)
        total = max(int(members.sum()), 1)
        for b in range(PS_BINS):
            rows.append(
                {"group": group, "ps_bin": float(edges[b]), "subjects": int(counts[b]),
                 "fraction": float(counts[b]) / total}
            )  # fmt: skip
    schema = pa.schema(
        [("group", pa.string()), ("ps_bin", pa.float64()), ("subjects", pa.int64()), ("fraction", pa.float64())]
    )
    return ResultTable(
        "comparative_ps",
        pa.Table.from_pylist(rows, schema=schema),
        counts={"subjects": ("fraction",)},
        plot="ps",
        description=f"Distribution of the preference score (the PS with group sizes factored out) by group, in "
        f"{PS_BINS} bins of width {1 / PS_BINS} (ps_bin: lower edge), before adjustment.",
    )


def diagnostics(
    results: Sequence[OutcomeResult],
    n_covariates: int,
    model: dict[str, object],
    null: NullDistribution | None,
) -> ResultTable:
    rows = []
    for r in results:
        row: dict[str, object] = {"outcome": r.outcome, "negative_control": r.negative_control}
        if r.balance is not None:
            before, after = r.balance.smd_before, r.balance.smd_after
            row |= {
                "max_abs_smd_before": _finite(float(np.nanmax(np.abs(before)))) if len(before) else None,
                "max_abs_smd_after": _finite(float(np.nanmax(np.abs(after)))) if np.isfinite(after).any() else None,
                "imbalanced_before": imbalanced(before),
                "imbalanced_after": imbalanced(after),
            }
        else:
            row |= {"max_abs_smd_before": None, "max_abs_smd_after": None, "imbalanced_before": None,
                    "imbalanced_after": None}  # fmt: skip
        row |= {"covariates": n_covariates, **model}
        row |= {
            "null_mean": None if null is None else null.mean,
            "null_sd": None if null is None else null.sd,
            "negative_controls_used": 0 if null is None else null.controls,
        }
        rows.append(row)
    schema = pa.schema(
        [("outcome", pa.string()), ("negative_control", pa.bool_()), ("max_abs_smd_before", pa.float64()),
         ("max_abs_smd_after", pa.float64()), ("imbalanced_before", pa.int64()), ("imbalanced_after", pa.int64()),
         ("covariates", pa.int64()), ("ps_auc", pa.float64()), ("equipoise", pa.float64()),
         ("ps_penalty", pa.string()), ("ps_penalty_strength", pa.float64()), ("ps_nonzero_coefficients", pa.int64()),
         ("null_mean", pa.float64()), ("null_sd", pa.float64()), ("negative_controls_used", pa.int64())]
    )  # fmt: skip
    return ResultTable(
        "comparative_diagnostics",
        pa.Table.from_pylist(rows, schema=schema),
        description="Study diagnostics per outcome: covariate balance (imbalanced: |SMD| >= 0.1), the PS model "
        "(AUC, empirical equipoise: share with preference score in [0.3, 0.7], penalty chosen by cross-validation) "
        "and the systematic-error null distribution fitted on the negative controls (log scale).",
    )
