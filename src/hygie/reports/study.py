"""The HTML report of a study run: one self-contained file (inline style, inline SVG, no script, nothing fetched).

Sections: the study, the release (a SYNTHETIC banner when so), the cohorts with their counts, then every result
table: its plot when ``ResultTable.plot`` names one, and its first rows, masked cells shown as "<11"-style marks.

Plot kinds and the columns they read (analyses follow these names):

- ``incidence``: x ``incidence_start_date``, y ``incidence_100000_pys``, band ``incidence_100000_pys_95ci_lower`` ..
  ``_upper``; one line per stratum;
- ``prevalence``: x ``prevalence_start_date``, y ``prevalence``, band ``prevalence_95ci_lower`` .. ``_upper``;
- ``attrition``: one flow diagram per cohort: ``reason``, ``number_subjects``, ``excluded_subjects``;
- ``km``: step curves per ``group``: ``time`` (days), ``survival``, band ``survival_lower`` .. ``survival_upper``;
- ``balance``: ``|smd_before|`` against ``|smd_after|`` per covariate, with the 0.1 threshold;
- ``ps``: overlapping histograms per ``group``: ``ps_bin`` (lower bound), ``fraction``.

Panels are split by the label columns present (analysis, outcome, interval...); lines by the strata columns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from hygie.analyses.base import ResultTable
from hygie.disclosure import Flag
from hygie.reports.svg import (
    Series,
    estimate_chart,
    flow_chart,
    histogram_chart,
    line_chart,
    number,
    scatter_chart,
)

if TYPE_CHECKING:
    from hygie.studies.runner import StudyRun

MAX_ROWS = 50  # rows of each table shown in the report (the CSV has them all)
MAX_PANELS, MAX_LINES, MAX_ESTIMATES = 12, 6, 24
PANEL_COLUMNS = ("analysis_id", "outcome_cohort_name", "outcome", "analysis_interval", "analysis_type")
OUTCOME_PANELS = ("analysis_id", "outcome_cohort_name", "outcome")  # km, balance, ps
STRATUM_COLUMNS = (
    "age_group",
    "sex",
    "days_prior_observation",
    "denominator_age_group",
    "denominator_sex",
    "denominator_days_prior_observation",
    "strata_name",
    "strata_level",
    "denominator_cohort_name",  # named in a label only when nothing above tells the lines apart
)
ATTRITION_PANELS = (
    "analysis_id",
    "cohort_name",
    "cohort",
    "outcome_cohort_name",
    "outcome",
    "denominator_cohort_name",
    "target_cohort_name",
    "comparator_cohort_name",
    "group",
    "analysis_interval",
)
ATTRITION_ORDER = ("reason_id", "step")
SPLIT_COLUMNS = ("sex", "denominator_sex", "strata_name", "days_prior_observation", "age_group")
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.2rem .5rem}
th{background:#f3f3f3;text-align:left}td.num{text-align:right}td.masked{color:#9a6700;font-style:italic}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:bold}dd{margin:0}
.banner{padding:.7rem 1rem;margin:1rem 0;font-weight:bold;border-radius:4px}
.synthetic{background:#fde7e9;border:2px solid #b42318;color:#b42318;font-size:1.2rem;letter-spacing:.05em}
.controlled{background:#eef6ee;border:1px solid #2e7d32;color:#1b5e20}
.scroll{overflow-x:auto}figcaption{font-weight:bold;font-size:.9rem;margin-bottom:.2rem}
.note{color:#666;font-size:.85rem}figure{margin:.5rem 0}
"""


def masked_cells(table: ResultTable, flags: Sequence[Flag]) -> dict[str, list[bool]]:
    """Which cells disclosure control masked: empty cells of a flagged count column and of what derives
    from it, in the rows where that count is empty."""
    flagged = {f.column for f in flags if f.table == table.name}
    cells: dict[str, list[bool]] = {}
    for count, derived in table.counts.items():
        if count not in flagged or count not in table.rows.column_names:
            continue
        empty = [v is None for v in table.rows.column(count).to_pylist()]
        for column in (count, *derived):
            if column in table.rows.column_names:
                previous = cells.get(column, [False] * len(empty))
                cells[column] = [a or b for a, b in zip(previous, empty, strict=True)]
    return cells


def _cell(value: Any, masked: bool, mark: str) -> str:
    if value is None:
        return f'<td class="masked" title="masked by disclosure control">{escape(mark)}</td>' if masked else "<td></td>"
    if isinstance(value, bool) or not isinstance(value, int | float):
        text = value.isoformat() if isinstance(value, dt.date) else str(value)
        return f"<td>{escape(text)}</td>"
    text = f"{value:,}" if isinstance(value, int) else f"{value:.6g}"
    return f'<td class="num">{escape(text)}</td>'


def html_table(table: ResultTable, flags: Sequence[Flag], mark: str, max_rows: int = MAX_ROWS) -> str:
    columns = table.rows.column_names
    masks = masked_cells(table, flags)
    shown = table.rows.slice(0, max_rows).to_pylist()
    out = ['<div class="scroll"><table><tr>', *(f"<th>{escape(c)}</th>" for c in columns), "</tr>"]
    for i, row in enumerate(shown):
        out.append("<tr>" + "".join(_cell(row[c], masks.get(c, [False] * (i + 1))[i], mark) for c in columns))
        out.append("</tr>")
    out.append("</table></div>")
    if table.rows.num_rows > max_rows:
        out.append(f'<p class="note">first {max_rows} of {table.rows.num_rows:,} rows; all are in {table.name}.csv</p>')
    return "".join(out)


# -- plots ---------------------------------------------------------------------------------------------------------


def _groups(rows: list[dict[str, Any]], columns: Sequence[str]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    present = [c for c in columns if rows and c in rows[0]]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple((c, row[c]) for c in present), []).append(row)
    return groups


def _label(key: tuple[Any, ...]) -> str:
    return ", ".join(f"{c.removeprefix('denominator_')}={v}" for c, v in key) or "all"


def _split(panel: tuple[Any, ...], rows: list[dict[str, Any]]) -> list[tuple[tuple[Any, ...], list[dict[str, Any]]]]:
    """A panel with too many lines, split by the first stratum column in ``SPLIT_COLUMNS`` that varies."""
    if len(_groups(rows, STRATUM_COLUMNS)) <= MAX_LINES:
        return [(panel, rows)]
    column = next((c for c in SPLIT_COLUMNS if c in rows[0] and len({r[c] for r in rows}) > 1), None)
    if column is None:
        return [(panel, rows)]
    return [((*panel, *key), part) for key, part in _groups(rows, (column,)).items()]


def _over_time(rows: list[dict[str, Any]], name: str, x: str, y: str, low: str, high: str, y_label: str) -> list[str]:
    """Lines over calendar time per stratum; a panel with one estimate per stratum (an overall interval) shows
    each estimate with its confidence interval instead."""
    panels = []
    for panel, panel_rows in _groups(rows, PANEL_COLUMNS).items():
        single = all(len(v) == 1 for v in _groups(panel_rows, STRATUM_COLUMNS).values())
        panels += [(panel, panel_rows)] if single else _split(panel, panel_rows)
    figures = []
    for panel, panel_rows in panels[:MAX_PANELS]:
        strata = _groups(panel_rows, STRATUM_COLUMNS)
        varying = _varying(list(strata))
        if all(len(v) == 1 for v in strata.values()):
            shown = list(strata.items())[:MAX_ESTIMATES]
            estimates = [
                (_label(tuple(k[i] for i in varying)), r[0].get(y), r[0].get(low), r[0].get(high)) for k, r in shown
            ]
            title = f"{name}: {_label(panel)}" + _note(len(shown), len(strata), "strata")
            figures.append(_figure(estimate_chart(estimates, title=title, y_label=y_label), title))
            continue
        series = []
        for key, lines in list(strata.items())[:MAX_LINES]:
            lines = sorted(lines, key=lambda r: number(r.get(x)) or 0.0)
            series.append(
                Series(
                    _label(tuple(key[i] for i in varying)),
                    [r.get(x) for r in lines],
                    [r.get(y) for r in lines],
                    [r.get(low) for r in lines],
                    [r.get(high) for r in lines],
                )
            )
        title = f"{name}: {_label(panel)}" + _note(len(series), len(strata), "strata")
        figures.append(_figure(line_chart(series, title=title, y_label=y_label, x_dates=True), title))
    return figures + ([_panels_note(len(panels))] if len(panels) > MAX_PANELS else [])


def _note(shown: int, total: int, what: str) -> str:
    return f" (first {shown} of {total} {what})" if total > shown else ""


def _panels_note(total: int) -> str:
    return f'<p class="note">first {MAX_PANELS} of {total} panels drawn; the table and the CSV hold every row.</p>'


def _varying(keys: list[tuple[Any, ...]]) -> list[int]:
    """Positions of the key parts that tell the lines apart (the denominator's name only if nothing else does)."""
    if not keys:
        return []
    varying = [i for i in range(len(keys[0])) if len({k[i][1] for k in keys}) > 1]
    descriptive = [i for i in varying if keys[0][i][0] != "denominator_cohort_name"]
    return descriptive or varying


def plot_incidence(rows: list[dict[str, Any]], name: str, mark: str) -> list[str]:
    return _over_time(
        rows,
        name,
        "incidence_start_date",
        "incidence_100000_pys",
        "incidence_100000_pys_95ci_lower",
        "incidence_100000_pys_95ci_upper",
        "per 100,000 person-years",
    )


def plot_prevalence(rows: list[dict[str, Any]], name: str, mark: str) -> list[str]:
    return _over_time(
        rows,
        name,
        "prevalence_start_date",
        "prevalence",
        "prevalence_95ci_lower",
        "prevalence_95ci_upper",
        "prevalence",
    )


def plot_attrition(rows: list[dict[str, Any]], name: str, mark: str) -> list[str]:
    def count(value: Any) -> str:
        return mark if value is None else f"{int(value):,}"

    figures = []
    for panel, steps in list(_groups(rows, ATTRITION_PANELS).items())[:MAX_PANELS]:
        order = next((c for c in ATTRITION_ORDER if steps and c in steps[0]), None)
        if order is not None:
            steps = sorted(steps, key=lambda r: r[order] if r[order] is not None else 0)
        flow = [
            (str(r.get("reason", "")), count(r.get("number_subjects")), count(r.get("excluded_subjects")))
            for r in steps
        ]
        title = f"{name}: {_label(panel)}"
        figures.append(_figure(flow_chart(flow, title=title), title))
    return figures


def plot_km(rows: list[dict[str, Any]], name: str, mark: str) -> list[str]:
    figures = []
    for panel, panel_rows in list(_groups(rows, OUTCOME_PANELS).items())[:MAX_PANELS]:
        series = []
        for key, points in list(_groups(panel_rows, ("group",)).items())[:MAX_LINES]:
            points = sorted(points, key=lambda r: number(r.get("time")) or 0.0)
            series.append(
                Series(
                    _label(key),
                    [r.get("time") for r in points],
                    [r.get("survival") for r in points],
                    [r.get("survival_lower") for r in points],
                    [r.get("survival_upper") for r in points],
                )
            )
        title = f"{name}: {_label(panel)}"
        chart = line_chart(series, title=title, x_label="days", y_label="survival", step=True)
        figures.append(_figure(chart, title))
    return figures


def plot_balance(rows: list[dict[str, Any]], name: str, mark: str) -> list[str]:
    figures = []
    for panel, panel_rows in list(_groups(rows, OUTCOME_PANELS).items())[:MAX_PANELS]:
        points = [(_abs(r.get("smd_before")), _abs(r.get("smd_after"))) for r in panel_rows]
        title = f"{name}: {_label(panel)}"
        chart = scatter_chart(points, title=title, x_label="|SMD| before", y_label="|SMD| after", threshold=0.1)
        figures.append(_figure(chart, title))
    return figures


def plot_ps(rows: list[dict[str, Any]], name: str, mark: str) -> list[str]:
    figures = []
    for panel, panel_rows in list(_groups(rows, OUTCOME_PANELS).items())[:MAX_PANELS]:
        series = []
        for key, bins in list(_groups(panel_rows, ("group",)).items())[:MAX_LINES]:
            bins = sorted(bins, key=lambda r: number(r.get("ps_bin")) or 0.0)
            series.append(Series(_label(key), [r.get("ps_bin") for r in bins], [r.get("fraction") for r in bins]))
        title = f"{name}: {_label(panel)}"
        chart = histogram_chart(series, title=title, x_label="propensity score", y_label="fraction")
        figures.append(_figure(chart, title))
    return figures


def _abs(value: Any) -> float | None:
    n = number(value)
    return None if n is None else abs(n)


def _figure(svg: str, title: str) -> str:
    return f"<figure><figcaption>{escape(title)}</figcaption>{svg}</figure>"


PLOTS: dict[str, Callable[[list[dict[str, Any]], str, str], list[str]]] = {
    "incidence": plot_incidence,
    "prevalence": plot_prevalence,
    "attrition": plot_attrition,
    "km": plot_km,
    "balance": plot_balance,
    "ps": plot_ps,
}


# -- the page ------------------------------------------------------------------------------------------------------


def _facts(items: Sequence[tuple[str, Any]]) -> str:
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in items) + "</dl>"


def mask_mark(manifest: dict[str, Any]) -> str:
    disclosure = manifest.get("disclosure")
    if isinstance(disclosure, dict):
        return f"<{int(disclosure['policy']['max_masked']) + 1}"
    return "<11"


def render(
    manifest: dict[str, Any], cohorts: ResultTable, results: Sequence[ResultTable], flags: Sequence[Flag]
) -> str:
    """The report page from what the run recorded (its manifest) and its tables after disclosure control."""
    study, release = manifest["study"], manifest["release"]
    mark = mask_mark(manifest)
    title = f"Study {study['name']}"
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>",
    ]
    if release["synthetic"]:
        parts.append(
            '<div class="banner synthetic">SYNTHETIC RELEASE: these results come from synthetic data, '
            "not from patients. Disclosure control was not applied.</div>"
        )
    else:
        policy = manifest["disclosure"]["policy"]
        parts.append(
            f'<div class="banner controlled">Disclosure control applied: counts from {policy["min_count"]} to '
            f"{policy['max_masked']} and what is computed from them are masked (shown as {escape(mark)}).</div>"
        )
    if study.get("description"):
        parts.append(f"<p>{escape(study['description'])}</p>")
    parts.append("<h2>Study</h2>")
    parts.append(_facts([("name", study["name"]), ("file", study["file"]), ("sha256", study["sha256"])]))
    parts.append("<h2>Release</h2>")
    parts.append(
        _facts(
            [
                ("name", release["name"]),
                ("created", release["created_at"]),
                ("synthetic", "yes" if release["synthetic"] else "no"),
                ("manifest sha256", release["manifest_sha256"]),
            ]
        )
    )
    versions = ", ".join(f"{k} {v}" for k, v in manifest["versions"].items() if v)
    parts.append("<h2>Run</h2>")
    parts.append(
        _facts(
            [
                ("engine", manifest["engine"]),
                ("started", manifest["started_at"]),
                ("finished", manifest.get("finished_at") or ""),
                ("versions", versions),
            ]
        )
    )
    parts.append("<h2>Cohorts</h2>")
    parts.append(html_table(cohorts, flags, mark))
    for table in results:
        parts.append(f'<h2 id="{escape(table.name)}">{escape(table.name)}</h2>')
        if table.description:
            parts.append(f"<p>{escape(table.description)}</p>")
        plot = PLOTS.get(table.plot or "")
        if plot is not None and table.rows.num_rows:
            masked = any(f.table == table.name for f in flags)  # else an empty count is just missing
            parts += plot(table.rows.to_pylist(), table.name, mark if masked else "n/a")
        parts.append(html_table(table, flags, mark))
    parts.append('<p class="note">Written by hygie. This page fetches nothing: it can be read offline.</p>')
    parts.append("</body></html>\n")
    return "".join(parts)


def render_report(run: StudyRun) -> str:
    return render(run.manifest, run.cohorts, run.results, run.flags)
