"""Incidence and prevalence with DARWIN EU IncidencePrevalence's semantics (docs/incidence-prevalence.md)."""

from hygie.analyses.incidence_prevalence.incidence import IncidenceAnalysis
from hygie.analyses.incidence_prevalence.prevalence import PrevalenceAnalysis

__all__ = ["IncidenceAnalysis", "PrevalenceAnalysis"]
