"""Reading a study's output folder for display: its manifest, its tables (first rows) and its plots.

Plots are the study report's own inline-SVG figures (``reports.study.PLOTS``), so the portal and the offline
report draw the same thing. Only aggregate tables that the run wrote after disclosure control are read here;
callers check the permission (review or download) before calling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

MAX_ROWS = 50


@dataclass(frozen=True)
class TableView:
    name: str
    description: str
    columns: list[str]
    rows: list[list[Any]]
    total_rows: int
    flags: list[dict[str, Any]]
    figures: list[str] = field(default_factory=list)  # inline SVG, from reports.study


@dataclass(frozen=True)
class OutputView:
    manifest: dict[str, Any]
    tables: list[TableView]
    synthetic: bool
    mask: str


def _read(folder: Path, name: str) -> pa.Table | None:
    parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
    if parquet.is_file():
        import pyarrow.parquet as pq

        return pq.read_table(parquet)
    if csv.is_file():
        import pyarrow.csv as pacsv

        return pacsv.read_csv(csv)
    return None


def read_output(folder: Path) -> OutputView | None:
    """The output's tables and figures, or None when the folder holds no study manifest."""
    from hygie.reports.study import PLOTS, mask_mark

    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file():
        return None
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    mark = mask_mark(manifest)
    synthetic = bool(manifest.get("release", {}).get("synthetic"))
    views = []
    for name, meta in (manifest.get("tables") or {}).items():
        table = _read(folder, name)
        if table is None:
            continue
        flags = list(meta.get("disclosure_flags") or [])
        figures: list[str] = []
        plot = PLOTS.get(meta.get("plot") or "")
        if plot is not None and table.num_rows:
            figures = plot(table.to_pylist(), name, mark if flags else "n/a")
        head = table.slice(0, MAX_ROWS).to_pylist()
        views.append(
            TableView(
                name=name,
                description=str(meta.get("description") or ""),
                columns=table.column_names,
                rows=[[row[c] for c in table.column_names] for row in head],
                total_rows=table.num_rows,
                flags=flags,
                figures=figures,
            )
        )
    return OutputView(manifest=manifest, tables=views, synthetic=synthetic, mask=mark)
