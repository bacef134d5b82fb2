"""The study report: every plot kind drawn from small hand-made result tables, masked cells, banners, offline."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from html.parser import HTMLParser

import pyarrow as pa
import pytest

from hygie.analyses.base import ResultTable
from hygie.disclosure import DisclosurePolicy, apply_policy
from hygie.reports.study import masked_cells, render
from hygie.reports.svg import Series, line_chart, nice_ticks
from hygie.studies.cohorts import CohortCount
from hygie.studies.runner import SYNTHETIC_EXEMPTION, cohort_table


def manifest(synthetic: bool) -> dict:
    return {
        "study": {"name": "demo <study>", "file": "study.yaml", "sha256": "ab" * 32, "description": "a & b"},
        "release": {
            "name": "r1",
            "created_at": "2026-01-01T00:00:00+00:00",
            "manifest_sha256": "cd" * 32,
            "synthetic": synthetic,
        },
        "engine": "duckdb",
        "versions": {"hygie": "0.1.0", "python": "3.11", "duckdb": "1.5.5", "pyspark": None},
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:05+00:00",
        "disclosure": SYNTHETIC_EXEMPTION if synthetic else {"policy": {"min_count": 1, "max_masked": 10}, "flags": []},
    }


def years(*ys: int) -> list[dt.date]:
    return [dt.date(y, 1, 1) for y in ys]


def incidence() -> ResultTable:
    rows = pa.table(
        {
            "analysis_id": [1] * 6,
            "outcome_cohort_name": ["gi_bleed"] * 6,
            "analysis_interval": ["years"] * 6,
            "denominator_sex": ["Male"] * 3 + ["Female"] * 3,
            "incidence_start_date": years(2010, 2011, 2012) * 2,
            "outcome_count": [20, 5, 30, 40, 41, 42],
            "incidence_100000_pys": [120.0, 30.0, 180.0, 240.0, 246.0, 252.0],
            "incidence_100000_pys_95ci_lower": [90.0, 10.0, 150.0, 200.0, 206.0, 212.0],
            "incidence_100000_pys_95ci_upper": [150.0, 60.0, 210.0, 280.0, 286.0, 292.0],
        }
    )
    counts = {
        "outcome_count": ("incidence_100000_pys", "incidence_100000_pys_95ci_lower", "incidence_100000_pys_95ci_upper")
    }
    return ResultTable("incidence_estimates", rows, counts, plot="incidence")


def all_kinds() -> list[ResultTable]:
    prevalence = pa.table(
        {
            "prevalence_start_date": years(2010, 2011),
            "denominator_age_group": ["0 to 150", "0 to 150"],
            "prevalence": [0.1, None],  # a masked estimate: the point is skipped
            "prevalence_95ci_lower": [0.05, None],
            "prevalence_95ci_upper": [0.15, None],
        }
    )
    attrition = pa.table(
        {
            "cohort_name": ["target"] * 3,
            "reason_id": [1, 2, 3],
            "reason": ["Initial events", "Aged over 40", "Male"],
            "number_subjects": [569, 300, None],
            "excluded_subjects": [0, 269, None],
        }
    )
    km = pa.table(
        {
            "group": ["target"] * 3 + ["comparator"] * 3,
            "time": [0, 100, 200] * 2,
            "survival": [1.0, 0.95, 0.9, 1.0, 0.97, None],
            "survival_lower": [1.0, 0.92, 0.85, 1.0, 0.95, None],
            "survival_upper": [1.0, 0.98, 0.95, 1.0, 0.99, None],
            "n_at_risk": [100, 90, 80, 120, 110, 100],
        }
    )
    balance = pa.table(
        {
            "covariate_name": ["age", "sex", "diabetes"],
            "smd_before": [0.35, -0.2, 0.05],
            "smd_after": [0.02, -0.01, None],
        }
    )
    ps = pa.table(
        {
            "group": ["target"] * 3 + ["comparator"] * 3,
            "ps_bin": [0.0, 0.1, 0.2] * 2,
            "fraction": [0.2, 0.5, 0.3, 0.4, 0.4, 0.2],
        }
    )
    return [
        incidence(),
        ResultTable("prevalence_estimates", prevalence, plot="prevalence"),
        ResultTable("attrition", attrition, plot="attrition"),
        ResultTable("km", km, plot="km"),
        ResultTable("balance", balance, plot="balance"),
        ResultTable("ps", ps, plot="ps"),
    ]


def cohorts() -> ResultTable:
    return cohort_table(
        [CohortCount("gi_bleed", 1, "circe:gi_bleed.json", 479, 479), CohortCount("rare", 2, "file:rare.csv", 3, 4)]
    )


class _Parser(HTMLParser):
    """Collects tags and attributes (the page must parse, and nothing may point outside it)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += attrs


def parse(page: str) -> _Parser:
    parser = _Parser()
    parser.feed(page)
    return parser


def test_every_plot_kind_is_drawn_inline():
    page = render(manifest(synthetic=True), cohorts(), all_kinds(), [])
    parsed = parse(page)
    assert parsed.tags.count("svg") == 6
    titles = re.findall(r"<svg[^>]*><title>([^<]*)</title>", page)
    assert [t.split(":")[0] for t in titles] == [
        "incidence_estimates",
        "prevalence_estimates",
        "attrition",
        "km",
        "balance",
        "ps",
    ]
    # incidence: one line per sex, with a band each; the legend names the strata
    incidence_svg = page[page.index("<svg") : page.index("</svg>")]
    assert incidence_svg.count("<polyline") == 2 and incidence_svg.count("<polygon") == 2
    assert "sex=Male" in incidence_svg and "sex=Female" in incidence_svg
    # attrition: three boxes, the masked count shown as a mark
    attrition_svg = page.split("<svg")[3]
    assert attrition_svg.count("<rect") == 3 and "569 persons" in attrition_svg and "excluded: 269" in attrition_svg
    # balance: the threshold and the two complete points (the masked one skipped)
    balance_svg = page.split("<svg")[5]
    assert "threshold 0.1" in balance_svg and balance_svg.count("<circle") == 2


def test_the_page_fetches_nothing():
    page = render(manifest(synthetic=False), cohorts(), all_kinds(), [])
    parsed = parse(page)
    assert not {"script", "link", "img", "iframe", "object"} & set(parsed.tags)
    assert not [v for k, v in parsed.attributes if k in ("src", "href") and v and "http" in v]
    assert "http" not in page and "url(" not in page and "@import" not in page


def test_synthetic_banner_and_controlled_banner():
    synthetic = render(manifest(synthetic=True), cohorts(), [incidence()], [])
    assert 'class="banner synthetic">SYNTHETIC RELEASE' in synthetic
    controlled = render(manifest(synthetic=False), cohorts(), [incidence()], [])
    assert "SYNTHETIC" not in controlled and "Disclosure control applied: counts from 1 to 10" in controlled


def test_masked_cells_are_marked_and_their_points_skipped():
    outcome = apply_policy([incidence(), cohorts()], DisclosurePolicy())
    table, counts = outcome.tables
    masks = masked_cells(table, outcome.flags)
    assert masks["outcome_count"] == [False, True, False, False, False, False]
    assert masks["incidence_100000_pys_95ci_upper"][1] and "denominator_sex" not in masks
    page = render(manifest(synthetic=False), counts, [table], outcome.flags)
    assert page.count('<td class="masked" title="masked by disclosure control">&lt;11</td>') == 4 + 2
    # the 2011 male point is masked: the male line breaks into two runs, the band too
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert svg.count("<polyline") == 3 and svg.count("<polygon") == 3
    assert ">60</td>" not in page and ">10</td>" not in page  # the masked limits are nowhere


def test_text_is_escaped():
    page = render(manifest(synthetic=True), cohorts(), [], [])
    assert "demo &lt;study&gt;" in page and "a &amp; b" in page and "<study>" not in page


def test_long_tables_are_cut_with_a_note():
    rows = pa.table({"x": list(range(120))})
    page = render(manifest(synthetic=True), cohorts(), [ResultTable("long", rows)], [])
    assert "first 50 of 120 rows; all are in long.csv" in page
    assert ">49</td>" in page and ">50</td>" not in page


def test_a_chart_with_every_value_missing_still_renders():
    svg = line_chart([Series("empty", [None, None], [None, None])], title="nothing")
    assert svg.startswith("<svg") and "<polyline" not in svg


@pytest.mark.parametrize(("low", "high"), [(0, 1), (0.001, 0.004), (13, 987), (5, 5)])
def test_ticks_cover_the_range_with_round_steps(low, high):
    ticks = nice_ticks(low, high)
    assert 2 <= len(ticks) <= 12
    steps = {round(b - a, 12) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1


def test_strata_are_labelled_by_what_tells_them_apart():
    rows = pa.table(
        {
            "denominator_cohort_name": ["general_1", "general_1", "general_2", "general_2", "general_1", "general_2"],
            "outcome_cohort_name": ["gi_bleed"] * 6,
            "age_group": ["0 to 64", "0 to 64", "65 to 150", "65 to 150", "0 to 64", "65 to 150"],
            "sex": ["Both"] * 6,
            "analysis_interval": ["years"] * 4 + ["overall"] * 2,
            "incidence_start_date": years(2010, 2011, 2010, 2011, 2010, 2010),
            "incidence_100000_pys": [10.0, 12.0, 50.0, 55.0, 11.0, 52.0],
        }
    )
    page = render(manifest(synthetic=True), cohorts(), [ResultTable("incidence", rows, plot="incidence")], [])
    titles = re.findall(r"<svg[^>]*><title>([^<]*)</title>", page)
    assert titles == [
        "incidence: outcome_cohort_name=gi_bleed, analysis_interval=years",
        "incidence: outcome_cohort_name=gi_bleed, analysis_interval=overall",
    ]
    assert "age_group=0 to 64" in page and "age_group=65 to 150" in page and "cohort_name=general_1" not in page


def test_attrition_by_outcome_and_group_in_step_order():
    rows = pa.table(
        {
            "outcome": ["gi_bleed"] * 4,
            "group": ["target", "comparator", "target", "comparator"],
            "cohort": ["diclofenac", "celecoxib", "diclofenac", "celecoxib"],
            "step": [2, 2, 1, 1],
            "reason": ["Matched", "Matched", "New users", "New users"],
            "number_subjects": [140, 70, 145, 71],
            "excluded_subjects": [5, 1, 0, 0],
        }
    )
    page = render(manifest(synthetic=True), cohorts(), [ResultTable("attrition", rows, plot="attrition")], [])
    flows = page.split("<svg")[1:]
    assert len(flows) == 2
    assert flows[0].index("New users") < flows[0].index("Matched") and "145 persons" in flows[0]
    assert "excluded: 5" in flows[0] and "excluded: 1" in flows[1]


def test_many_strata_are_split_by_sex_and_overall_estimates_drawn_with_whiskers():
    sexes, ages = ["Both", "Male", "Female"], ["0 to 39", "40 to 64", "65 to 150"]
    strata = [(s, a) for s in sexes for a in ages]
    rows = pa.table(
        {
            "outcome_cohort_name": ["gi_bleed"] * 27,
            "analysis_interval": ["years"] * 18 + ["overall"] * 9,
            "sex": [s for s, _ in strata] * 3,
            "age_group": [a for _, a in strata] * 3,
            "incidence_start_date": years(2010) * 9 + years(2011) * 9 + years(2010) * 9,
            "incidence_100000_pys": [float(i) for i in range(27)],
            "incidence_100000_pys_95ci_lower": [i - 0.5 for i in range(27)],
            "incidence_100000_pys_95ci_upper": [i + 0.5 for i in range(27)],
        }
    )
    page = render(manifest(synthetic=True), cohorts(), [ResultTable("incidence", rows, plot="incidence")], [])
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    assert captions == [f"incidence: outcome_cohort_name=gi_bleed, analysis_interval=years, sex={s}" for s in sexes] + [
        "incidence: outcome_cohort_name=gi_bleed, analysis_interval=overall"
    ]
    svgs = page.split("<svg")[1:]
    assert all(svg.count("<polyline") == 3 for svg in svgs[:3])  # three age groups per sex
    overall = svgs[3]
    assert "<polyline" not in overall and overall.count("<circle") == 9 and overall.count('stroke-width="1.5"') == 9
