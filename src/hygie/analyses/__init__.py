"""Analyses: pure computations over a study's cohorts on a release (see ``base`` for the contract)."""
