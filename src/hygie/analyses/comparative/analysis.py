"""The comparative new-user cohort study: SQL for the populations and covariates, then the propensity model,
adjustment, outcome models and calibration in the process. Only aggregates are returned."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import expit

from hygie.analyses.base import ResultTable, Spec, StudyContext, StudyDefinitions
from hygie.analyses.comparative import tables
from hygie.analyses.comparative.calibration import Calibrated, calibrate, fit_null
from hygie.analyses.comparative.cohorts import build_population, outcome_events
from hygie.analyses.comparative.covariates import extract
from hygie.analyses.comparative.estimation import OutcomeResult, estimate_outcome
from hygie.analyses.comparative.matching import logit_ps
from hygie.analyses.comparative.propensity import auc, equipoise, fit_propensity
from hygie.analyses.comparative.spec import ComparativeSpec
from hygie.errors import HygieError


class ComparativeAnalysis:
    """``analyses: - comparative: {...}`` (see ``ComparativeSpec`` and docs/comparative.md)."""

    key: ClassVar[str] = "comparative"
    spec: ClassVar[type[Spec]] = ComparativeSpec

    def run(self, context: StudyContext, spec: Spec, study: StudyDefinitions) -> list[ResultTable]:
        assert isinstance(spec, ComparativeSpec)
        population = build_population(context, spec)
        try:
            covariates = extract(context, population, spec.covariates, spec.propensity.max_covariates)
            events = outcome_events(context, population, spec, [*spec.outcomes, *spec.negative_controls])
        finally:
            context.runner.drop(population.table)
        treated = population.treatment.astype(bool)
        if not treated.any() or treated.all():
            raise HygieError(
                f"comparative study {spec.target} vs {spec.comparator}: no new users in "
                f"{'the comparator' if treated.any() else 'the target'} after the washout and exclusions"
            )
        x = covariates.matrix
        p = spec.propensity
        model = fit_propensity(x, treated, p.penalty, p.cv_folds, p.seed, p.strengths)
        eta = model.fit.linear_predictor(x)
        ps = expit(eta)
        logit = logit_ps(ps)
        results: list[OutcomeResult] = [
            estimate_outcome(
                spec, name, name in spec.negative_controls, events[name], treated, population.tar_end_day, ps, logit, x
            )
            for name in [*spec.outcomes, *spec.negative_controls]
        ]
        controls = [r for r in results if r.negative_control and r.adjusted.log_hr is not None]
        null = fit_null(
            np.array([r.adjusted.log_hr for r in controls], dtype=float),
            np.array([r.adjusted.se_log_hr for r in controls], dtype=float),
        )
        calibrated: dict[str, Calibrated] = {}
        if null is not None:
            for r in results:
                if not r.negative_control and r.adjusted.log_hr is not None and r.adjusted.se_log_hr is not None:
                    calibrated[r.outcome] = calibrate(r.adjusted.log_hr, r.adjusted.se_log_hr, null)
        summary = {
            "ps_auc": auc(ps, treated),
            "equipoise": equipoise(ps, treated),
            "ps_penalty": model.penalty,
            "ps_penalty_strength": model.strength,
            "ps_nonzero_coefficients": model.nonzero,
        }
        return [
            tables.estimates(spec, results, calibrated),
            tables.attrition(spec, population.attrition, results),
            tables.balance(covariates, results),
            tables.km(results),
            tables.ps_distribution(ps, treated),
            tables.diagnostics(results, len(covariates), summary, null),
        ]
