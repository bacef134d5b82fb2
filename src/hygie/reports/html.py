"""Self-contained HTML pages: inline style, no script, no asset fetched from anywhere."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;font-size:.9rem}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
th{background:#f3f3f3}.pass{color:#176b2c}.warning{color:#9a6700;font-weight:bold}.fail{color:#b42318;font-weight:bold}
.banner{background:#fff4d6;border:1px solid #e0b84f;padding:.5rem 1rem;margin-bottom:1rem}
"""


def page(title: str, sections: Sequence[str], *, banner: str | None = None) -> str:
    head = f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
    head += f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
    if banner:
        head += f'<p class="banner">{escape(banner)}</p>'
    return head + "".join(sections) + "</body></html>\n"


def table(columns: Sequence[str], rows: Sequence[Sequence[object]], *, status_column: str | None = None) -> str:
    out = ["<table><tr>", *(f"<th>{escape(c)}</th>" for c in columns), "</tr>"]
    index = columns.index(status_column) if status_column else -1
    for row in rows:
        out.append("<tr>")
        for i, value in enumerate(row):
            css = f' class="{escape(str(value))}"' if i == index else ""
            out.append(f"<td{css}>{escape('' if value is None else str(value))}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)
