"""Small inline-SVG charts for self-contained HTML reports: no script, no font or style fetched from anywhere.

Every function takes plain numbers (dates as ``datetime.date``) and returns an ``<svg>`` string. A missing value
(None or NaN, e.g. a masked cell) is skipped: a line breaks there, a band pauses, a point is not drawn.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
WIDTH, HEIGHT = 760, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 230, 16, 40  # the legend sits in the right margin

Number = float | int | dt.date | None


def number(value: object) -> float | None:
    """A plottable number, or None for a missing one (dates become day numbers)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return float(value.toordinal())
    if isinstance(value, int | float):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    return None


@dataclass(frozen=True)
class Series:
    """One line (or step curve, or histogram): ``x``, ``y`` and optionally a band ``low``..``high``."""

    label: str
    x: Sequence[Number]
    y: Sequence[Number]
    low: Sequence[Number] | None = None
    high: Sequence[Number] | None = None


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _date_ticks(low: float, high: float) -> list[float]:
    first, last = dt.date.fromordinal(int(low)), dt.date.fromordinal(math.ceil(high))
    years = last.year - first.year
    if years >= 2:
        step = max(1, math.ceil(years / 8))
        start = first.year if first == dt.date(first.year, 1, 1) else first.year + 1
        return [float(dt.date(y, 1, 1).toordinal()) for y in range(start, last.year + 1, step)]
    months = (last.year - first.year) * 12 + last.month - first.month
    step = max(1, math.ceil(months / 8))
    index = first.year * 12 + first.month - 1 + (first.day > 1)  # the first whole month in range
    ticks = []
    while index <= last.year * 12 + last.month - 1:
        ticks.append(float(dt.date(index // 12, index % 12 + 1, 1).toordinal()))
        index += step
    return ticks or nice_ticks(low, high)


def _format(value: float, dates: bool) -> str:
    if dates:
        day = dt.date.fromordinal(round(value))
        if day.day == 1:
            return str(day.year) if day.month == 1 else f"{day.year}-{day.month:02d}"
        return day.isoformat()
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


class Frame:
    """A plotting area: scales from data to pixels, axes with ticks, a legend."""

    def __init__(
        self,
        xs: Sequence[float],
        ys: Sequence[float],
        *,
        x_dates: bool = False,
        y_zero: bool = True,
        x_label: str = "",
        y_label: str = "",
        square: bool = False,
    ) -> None:
        self.x_dates = x_dates
        x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 1.0)
        y_low, y_high = (min(ys), max(ys)) if ys else (0.0, 1.0)
        if y_zero:
            y_low = min(0.0, y_low)
        if square:
            x_low = y_low = min(x_low, y_low)
            x_high = y_high = max(x_high, y_high)
        if x_high == x_low:
            x_low, x_high = x_low - 1, x_high + 1
        if y_high == y_low:
            y_high = y_low + 1
        self.x_ticks = _date_ticks(x_low, x_high) if x_dates else nice_ticks(x_low, x_high)
        self.y_ticks = nice_ticks(y_low, y_high)
        self.x_low, self.x_high = min(x_low, self.x_ticks[0]), max(x_high, self.x_ticks[-1])
        self.y_low, self.y_high = min(y_low, self.y_ticks[0]), max(y_high, self.y_ticks[-1])
        self.x_label, self.y_label = x_label, y_label
        self.parts: list[str] = []
        self.legend: list[tuple[str, str]] = []

    def px(self, x: float) -> float:
        return LEFT + (x - self.x_low) / (self.x_high - self.x_low) * (WIDTH - LEFT - RIGHT)

    def py(self, y: float) -> float:
        return HEIGHT - BOTTOM - (y - self.y_low) / (self.y_high - self.y_low) * (HEIGHT - TOP - BOTTOM)

    def axes(self) -> str:
        x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
        out = [
            f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>',
            f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>',
        ]
        for t in self.x_ticks:
            x = self.px(t)
            out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 4}" stroke="#333"/>')
            out.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">{_format(t, self.x_dates)}</text>')
        for t in self.y_ticks:
            y = self.py(t)
            out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>')
            out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{_format(t, False)}</text>')
        if self.x_label:
            out.append(f'<text x="{(x0 + x1) / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(self.x_label)}</text>')
        if self.y_label:
            out.append(
                f'<text x="12" y="{(y0 + y1) / 2}" text-anchor="middle" '
                f'transform="rotate(-90 12 {(y0 + y1) / 2})">{escape(self.y_label)}</text>'
            )
        return "".join(out)

    def svg(self, title: str) -> str:
        legend = []
        for i, (label, colour) in enumerate(self.legend):
            y = TOP + 8 + i * 16
            legend.append(
                f'<rect x="{WIDTH - RIGHT + 12}" y="{y - 8}" width="10" height="10" fill="{colour}"/>'
                f'<text x="{WIDTH - RIGHT + 26}" y="{y + 1}">{escape(label[:38])}</text>'
            )
        return (
            f'<svg role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" font-size="11" font-family="sans-serif">'
            f"<title>{escape(title)}</title>{self.axes()}{''.join(self.parts)}{''.join(legend)}</svg>"
        )


def _runs(points: Sequence[tuple[float | None, ...]]) -> list[list[tuple[float, ...]]]:
    """Consecutive points with every value present (a missing value ends a run)."""
    runs: list[list[tuple[float, ...]]] = [[]]
    for p in points:
        if any(v is None for v in p):
            runs.append([])
        else:
            runs[-1].append(p)  # type: ignore[arg-type]
    return [r for r in runs if r]


def _values(series: Sequence[Series], *, bands: bool) -> tuple[list[float], list[float]]:
    xs = [v for s in series for x in s.x if (v := number(x)) is not None]
    ys = [v for s in series for y in s.y if (v := number(y)) is not None]
    if bands:
        ys += [v for s in series for b in (s.low or [], s.high or []) for y in b if (v := number(y)) is not None]
    return xs, ys


def _band(frame: Frame, s: Series, colour: str, *, step: bool) -> None:
    if s.low is None or s.high is None:
        return
    points = [(number(x), number(lo), number(hi)) for x, lo, hi in zip(s.x, s.low, s.high, strict=True)]
    for run in _runs(points):
        if step:
            run = _stepped(run)
        upper = " ".join(f"{frame.px(x):.1f},{frame.py(hi):.1f}" for x, _, hi in run)
        lower = " ".join(f"{frame.px(x):.1f},{frame.py(lo):.1f}" for x, lo, _ in reversed(run))
        frame.parts.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.12" stroke="none"/>')


def _stepped(run: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """A step function through the points: each value holds until the next x."""
    out: list[tuple[float, ...]] = []
    for i, p in enumerate(run):
        if i:
            out.append((p[0], *run[i - 1][1:]))
        out.append(p)
    return out


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
    x_dates: bool = False,
    step: bool = False,
    markers: bool = True,
) -> str:
    """Lines (or step curves) with optional confidence bands."""
    xs, ys = _values(series, bands=True)
    frame = Frame(xs, ys, x_dates=x_dates, x_label=x_label, y_label=y_label)
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        frame.legend.append((s.label, colour))
        _band(frame, s, colour, step=step)
        for run in _runs([(number(x), number(y)) for x, y in zip(s.x, s.y, strict=True)]):
            path = _stepped(run) if step else run
            points = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in path)
            frame.parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
            if markers and not step:
                frame.parts += [
                    f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in run
                ]
    return frame.svg(title)


def estimate_chart(estimates: Sequence[tuple[str, Number, Number, Number]], *, title: str, y_label: str = "") -> str:
    """One point per stratum with its confidence interval as a whisker (estimates over a single interval).

    ``estimates``: (label, value, lower, upper); a missing value is not drawn, a missing limit not either."""
    ys = [v for _, *values in estimates for y in values if (v := number(y)) is not None]
    frame = Frame([0.0, float(max(len(estimates) - 1, 1))], ys, y_label=y_label)
    frame.x_ticks = []
    step = (WIDTH - LEFT - RIGHT) / max(len(estimates), 1)
    for i, (label, value, low, high) in enumerate(estimates):
        colour = COLOURS[i % len(COLOURS)]
        frame.legend.append((label, colour))
        x = LEFT + step * (i + 0.5)
        lo, hi, y = number(low), number(high), number(value)
        if lo is not None and hi is not None:
            frame.parts.append(
                f'<line x1="{x:.1f}" y1="{frame.py(lo):.1f}" x2="{x:.1f}" y2="{frame.py(hi):.1f}" '
                f'stroke="{colour}" stroke-width="1.5"/>'
            )
        if y is not None:
            frame.parts.append(f'<circle cx="{x:.1f}" cy="{frame.py(y):.1f}" r="3.5" fill="{colour}"/>')
    return frame.svg(title)


def scatter_chart(
    points: Sequence[tuple[Number, Number]], *, title: str, x_label: str, y_label: str, threshold: float | None = None
) -> str:
    """Points, the diagonal, and dashed threshold lines on both axes (covariate balance)."""
    kept = [(x, y) for a, b in points if (x := number(a)) is not None and (y := number(b)) is not None]
    extra = [threshold] if threshold is not None else []
    frame = Frame(
        [p[0] for p in kept] + extra, [p[1] for p in kept] + extra, x_label=x_label, y_label=y_label, square=True
    )
    low, high = frame.x_low, frame.x_high
    frame.parts.append(
        f'<line x1="{frame.px(low):.1f}" y1="{frame.py(low):.1f}" x2="{frame.px(high):.1f}" '
        f'y2="{frame.py(high):.1f}" stroke="#bbb"/>'
    )
    if threshold is not None:
        frame.parts.append(
            f'<line x1="{frame.px(threshold):.1f}" y1="{frame.py(frame.y_low):.1f}" '
            f'x2="{frame.px(threshold):.1f}" y2="{frame.py(frame.y_high):.1f}" stroke="#b42318" '
            'stroke-dasharray="4 3"/>'
        )
        frame.parts.append(
            f'<line x1="{frame.px(frame.x_low):.1f}" y1="{frame.py(threshold):.1f}" '
            f'x2="{frame.px(frame.x_high):.1f}" y2="{frame.py(threshold):.1f}" stroke="#b42318" '
            'stroke-dasharray="4 3"/>'
        )
        frame.legend.append((f"threshold {threshold:g}", "#b42318"))
    frame.parts += [
        f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="3" fill="{COLOURS[0]}" fill-opacity="0.6"/>'
        for x, y in kept
    ]
    return frame.svg(title)


def histogram_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str) -> str:
    """Overlapping histograms: ``x`` is each bin's lower bound, ``y`` its height; bins are as wide as the gap
    to the next bin."""
    xs, ys = _values(series, bands=False)
    bins = sorted(set(xs))
    width = min((b - a for a, b in itertools.pairwise(bins)), default=1.0)
    frame = Frame([*xs, *(x + width for x in xs)], ys, x_label=x_label, y_label=y_label)
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        frame.legend.append((s.label, colour))
        present = _runs([(number(a), number(b)) for a, b in zip(s.x, s.y, strict=True)])
        for x, y in (p for run in present for p in run):
            left, right, top = frame.px(x), frame.px(x + width), frame.py(y)
            frame.parts.append(
                f'<rect x="{left:.1f}" y="{top:.1f}" width="{max(right - left, 0.5):.1f}" '
                f'height="{max(frame.py(0) - top, 0):.1f}" fill="{colour}" fill-opacity="0.4" '
                f'stroke="{colour}"/>'
            )
    return frame.svg(title)


def flow_chart(steps: Sequence[tuple[str, str, str | None]], *, title: str) -> str:
    """A vertical attrition diagram: one box per step (reason, persons remaining), exclusions to the side.

    Counts come formatted (the caller knows which are masked); an exclusion of None is not drawn."""
    box_w, box_h, gap, side_w = 300, 38, 22, 170
    height = len(steps) * (box_h + gap) + 10
    width = box_w + side_w + 60
    parts = []
    for i, (reason, remaining, excluded) in enumerate(steps):
        y = 6 + i * (box_h + gap)
        left = 10
        parts.append(
            f'<rect x="{left}" y="{y}" width="{box_w}" height="{box_h}" rx="4" fill="#f3f6fb" '
            f'stroke="#4a6fa5"/><text x="{left + 8}" y="{y + 15}">{escape(str(reason)[:48])}</text>'
            f'<text x="{left + 8}" y="{y + 31}" font-weight="bold">{escape(remaining)} persons</text>'
        )
        if i + 1 < len(steps):
            cx = left + box_w / 2
            parts.append(
                f'<line x1="{cx}" y1="{y + box_h}" x2="{cx}" y2="{y + box_h + gap - 4}" stroke="#4a6fa5"/>'
                f'<polygon points="{cx - 4},{y + box_h + gap - 6} {cx + 4},{y + box_h + gap - 6} '
                f'{cx},{y + box_h + gap}" fill="#4a6fa5"/>'
            )
        if i and excluded is not None:
            parts.append(
                f'<text x="{left + box_w + 14}" y="{y - gap / 2 + 4}" fill="#b42318">'
                f"excluded: {escape(excluded)}</text>"
            )
    return (
        f'<svg role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" font-size="11" font-family="sans-serif"><title>{escape(title)}</title>'
        f"{''.join(parts)}</svg>"
    )
