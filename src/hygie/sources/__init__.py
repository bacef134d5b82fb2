"""Readers of what arrives at the hub: one module per input format.

Each reader finds the tables of a deposit and exposes them as SQL relations the ingest stage can validate.
"""
