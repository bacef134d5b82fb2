"""Baseline covariates of the study population: a sparse person x covariate matrix built in the process.

Each (domain, window, concept) with a record in the window relative to the index date is a binary covariate
("condition [-365, -1]: Type 2 diabetes mellitus"); with ``demographics``, sex, 5-year age group and index year
are added. The SQL returns (study row, covariate) pairs, never a person id; the matrix stays in the analysis and
only aggregates (means, SMDs) leave it. Drug covariates use ``drug_exposure.drug_concept_id`` as recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hygie.analyses.base import StudyContext
from hygie.analyses.comparative.cohorts import Population
from hygie.analyses.comparative.spec import CovariatesSpec

# domain -> (table, concept column, date column)
DOMAINS = {
    "condition": ("condition_occurrence", "condition_concept_id", "condition_start_date"),
    "drug": ("drug_exposure", "drug_concept_id", "drug_exposure_start_date"),
    "procedure": ("procedure_occurrence", "procedure_concept_id", "procedure_date"),
    "measurement": ("measurement", "measurement_concept_id", "measurement_date"),
    "observation": ("observation", "observation_concept_id", "observation_date"),
}
AGE_GROUP_YEARS = 5


@dataclass(frozen=True)
class Covariates:
    matrix: sp.csr_matrix  # persons (study rows) x covariates, 0/1
    names: list[str]
    concept_ids: list[int | None]
    domains: list[str]

    def __len__(self) -> int:
        return len(self.names)


def _feature_sql(context: StudyContext, population: str, spec: CovariatesSpec) -> str:
    d = context.runner.dialect
    parts = []
    excluded = f" AND x.{{concept}} NOT IN ({', '.join(str(c) for c in spec.exclude_concept_ids)})"
    for code, domain in enumerate(spec.domains):
        table, concept, date = DOMAINS[domain]
        for w, (start, end) in enumerate(spec.windows):
            exclude = excluded.format(concept=concept) if spec.exclude_concept_ids else ""
            low, high = d.add_days("p.index_date", start), d.add_days("p.index_date", end)
            parts.append(
                f"SELECT p.row_id, {code} AS domain, {w} AS window_index, x.{concept} AS concept_id "
                f"FROM {population} p JOIN {table} x ON x.person_id = p.subject_id "
                f"AND x.{date} >= {low} AND x.{date} <= {high} "
                f"WHERE x.{concept} IS NOT NULL AND x.{concept} <> 0{exclude}"
            )
    return "SELECT DISTINCT row_id, domain, window_index, CAST(concept_id AS BIGINT) AS concept_id FROM (\n" + (
        "\nUNION ALL\n".join(parts) + "\n) f"
    )


def _concept_names(context: StudyContext, features: str) -> dict[int, str]:
    rows = context.runner.query(
        f"SELECT CAST(c.concept_id AS BIGINT) AS concept_id, c.concept_name FROM concept c "
        f"WHERE c.concept_id IN (SELECT DISTINCT concept_id FROM {features})"
    ).to_pylist()
    return {int(r["concept_id"]): str(r["concept_name"]) for r in rows}


def _demographics(population: Population) -> tuple[list[np.ndarray], list[str], list[int | None], list[str]]:
    columns, names, concepts, domains = [], [], [], []
    for gender in np.unique(population.gender_concept_id):
        columns.append(population.gender_concept_id == gender)
        names.append(f"gender = {int(gender)}")
        concepts.append(int(gender))
        domains.append("demographics")
    group = np.clip(population.age, 0, None) // AGE_GROUP_YEARS
    for g in np.unique(group):
        columns.append(group == g)
        low = int(g) * AGE_GROUP_YEARS
        names.append(f"age group: {low}-{low + AGE_GROUP_YEARS - 1}")
        concepts.append(None)
        domains.append("demographics")
    for year in np.unique(population.index_year):
        columns.append(population.index_year == year)
        names.append(f"index year: {int(year)}")
        concepts.append(None)
        domains.append("demographics")
    return columns, names, concepts, domains


def extract(
    context: StudyContext, population: Population, spec: CovariatesSpec, max_covariates: int | None
) -> Covariates:
    """The covariate matrix: covariates present in fewer than ``spec.min_subjects`` persons, or in everyone,
    are dropped (they carry no information); with ``max_covariates``, the most frequent are kept."""
    n = len(population)
    features = context.temp_name("cm_features")
    context.runner.materialize(features, _feature_sql(context, population.table, spec))
    try:
        pairs = context.runner.query(f"SELECT row_id, domain, window_index, concept_id FROM {features}")
        names_of = _concept_names(context, features)
    finally:
        context.runner.drop(features)
    row = pairs["row_id"].to_numpy(zero_copy_only=False).astype(np.int64)
    key = np.column_stack(
        [pairs[c].to_numpy(zero_copy_only=False).astype(np.int64) for c in ("domain", "window_index", "concept_id")]
    )
    keys, column = np.unique(key, axis=0, return_inverse=True) if len(row) else (np.empty((0, 3)), np.empty(0))
    matrix = sp.csc_matrix((np.ones(len(row)), (row, np.asarray(column, dtype=np.int64).ravel())), shape=(n, len(keys)))
    names, concepts, domains = [], [], []
    for domain, window, concept in keys.astype(np.int64).tolist():
        start, end = spec.windows[window]
        label = names_of.get(concept, f"concept {concept}")
        names.append(f"{spec.domains[domain]} [{start}, {end}]: {label}")
        concepts.append(concept)
        domains.append(spec.domains[domain])
    if spec.demographics and n:
        columns, dn, dc, dd = _demographics(population)
        matrix = sp.hstack([matrix, sp.csc_matrix(np.column_stack(columns).astype(np.float64))], format="csc")
        names, concepts, domains = names + dn, concepts + dc, domains + dd
    counts = np.asarray(matrix.sum(axis=0)).ravel()
    keep = (counts >= spec.min_subjects) & (counts < n)
    if max_covariates is not None and keep.sum() > max_covariates:
        ranked = np.argsort(-np.where(keep, counts, -1), kind="stable")[:max_covariates]
        keep = np.zeros(len(keep), dtype=bool)
        keep[ranked] = True
    index = np.flatnonzero(keep)
    return Covariates(
        matrix[:, index].tocsr(),
        [names[i] for i in index],
        [concepts[i] for i in index],
        [domains[i] for i in index],
    )
