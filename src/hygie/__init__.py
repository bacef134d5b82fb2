"""hygie: an open, self-hostable health data hub.

The package follows the pipeline, one sub-package per stage:

    sources -> ingest -> releases -> engine -> cohorts -> analyses -> disclosure -> governance -> api/web

plus ``cdm`` (the OMOP CDM schema as data) used by every stage, and ``cli`` which calls the same services.
"""

__version__ = "0.1.0"
