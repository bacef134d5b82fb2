"""Governance: who may do what, what leaves, and the tamper-evident record of everything that happened."""
