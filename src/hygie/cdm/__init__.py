"""The OMOP Common Data Model, defined once as data (``data/*.csv``) and read into typed objects here."""

from hygie.cdm.schema import CdmSchema, Column, ForeignKey, Table, cdm_schema

__all__ = ["CdmSchema", "Column", "ForeignKey", "Table", "cdm_schema"]
