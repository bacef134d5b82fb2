# hygie — two commands on a fresh machine: `make demo` and `make test` (see README).
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system
# uv from PATH, else as a Python module (installed from PyPI by the `uv` target when missing).
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

.PHONY: demo test lint bench bench-api uv sync docs clean

uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) --version >/dev/null 2>&1 || { echo "uv is not installed and could not be installed"; exit 1; }

sync: uv
	$(UV) sync --locked

demo: sync
	$(UV) run --locked hygie demo

lint: sync
	$(UV) run --locked ruff check src tests benchmarks

# PostgreSQL server programs for the metadata-store tests (installed when missing; the tests start their own cluster).
# One pytest worker per core (at most 4: each holds its own Spark JVM); CI must stay under 30 minutes.
test: lint
	scripts/postgres.sh >/dev/null
	$(UV) run --locked pytest --numprocesses=auto --maxprocesses=4 --dist=worksteal

bench: sync
	$(UV) run --locked python -m benchmarks.run

# The portal under load, 3 runs with 1 and 2 processes (BASELINE=<checkout with .venv> alternates its code): ~9 min.
bench-api: sync
	HYGIE_BENCH_API_WORKERS=1,2 HYGIE_BENCH_API_RUNS=3 HYGIE_BENCH_API_BASELINE=$(BASELINE) \
		$(UV) run --locked python -m benchmarks.bench_api

docs: sync
	$(UV) run --locked hygie cdm schema --out docs/cdm-schema.md

clean:
	rm -rf .venv .pytest_cache .ruff_cache .hygie
