"""Comparative new-user cohort study (target versus comparator, propensity score, Cox): docs/comparative.md."""

from hygie.analyses.comparative.analysis import ComparativeAnalysis
from hygie.analyses.comparative.spec import ComparativeSpec

__all__ = ["ComparativeAnalysis", "ComparativeSpec"]
