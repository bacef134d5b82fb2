"""Airlock checks on output folders: what is refused, and findings that never carry a value."""

from __future__ import annotations

import json
import pickle
import sqlite3
import struct
import zipfile
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.disclosure import DisclosurePolicy
from hygie.disclosure.checks import check_folder, is_identifier_name, sniff

NIR = "269054958815780"  # shaped like a NIR (15 characters); must never appear in a finding
INCIDENCE = (
    "outcome_cohort_id,sex,age_group,outcome_count,incidence_100000_pys\n1,Both,0 to 150,120,35.5\n1,Male,0 to 150,,\n"
)


def png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")
    )


def clean_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "incidence.csv").write_text(INCIDENCE)
    pq.write_table(pa.table({"sex": ["Both"], "outcome_count": [120]}), folder / "incidence.parquet")
    (folder / "plot.png").write_bytes(png())
    (folder / "plot.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><text>GI bleed</text></svg>')
    (folder / "report.html").write_text("<html><body><h1>Incidence</h1><p>one = 1</p></body></html>")
    (folder / "README.md").write_text("# Study\nRates per 100 000 person-years.\n")
    (folder / "flags.json").write_text(json.dumps([{"table": "incidence", "rule": "primary", "cells": 2}]))
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("cohort 1: 120 persons\n")
    return folder


def reasons(findings) -> set[tuple[str, str | None, str]]:
    return {(f.file, f.column, f.reason.split(":")[0]) for f in findings}


def test_clean_outputs_pass(tmp_path):
    assert check_folder(clean_folder(tmp_path / "out")) == []


@pytest.mark.parametrize(
    ("name", "make", "kind"),
    [
        ("table.csv", lambda p: pq.write_table(pa.table({"n": [120]}), p), "parquet"),
        ("plot.png", lambda p: zipfile.ZipFile(p, "w").writestr("rows.csv", "1,2\n"), "zip archive"),
        ("notes.txt", lambda p: sqlite3.connect(p).execute("create table t (x)").connection.commit(), "SQLite"),
        ("result.json", lambda p: p.write_bytes(pickle.dumps({"rows": [1, 2]}, protocol=5)), "Python pickle"),
        ("plot.png", lambda p: p.write_text("not an image"), "text"),
        ("data.parquet", lambda p: p.write_text("a,b\n1,2\n"), "text"),
    ],
)
def test_disguised_files_are_refused(tmp_path, name, make, kind):
    folder = clean_folder(tmp_path / "out")
    path = folder / name
    path.unlink(missing_ok=True)
    make(path)
    (finding,) = check_folder(folder)
    assert finding.file == name and f"content is {kind}" in finding.reason


def test_types_outside_the_allowed_list(tmp_path):
    folder = clean_folder(tmp_path / "out")
    (folder / "model.rds").write_bytes(b"RDX3\n")
    (folder / "export").write_text("x")
    found = reasons(check_folder(folder))
    assert found == {
        ("model.rds", None, "file type '.rds' is not allowed (allowed"),
        ("export", None, "file type '.(none)' is not allowed (allowed"),
    }
    only_csv = DisclosurePolicy(file_types=("csv",))
    assert {f.file for f in check_folder(folder, only_csv)} >= {"plot.png", "report.html", "incidence.parquet"}


def test_size_and_row_limits(tmp_path):
    folder = clean_folder(tmp_path / "out")
    (folder / "big.csv").write_text("k,n\n" + "".join(f"{i},20\n" for i in range(30)))
    pq.write_table(pa.table({"n": list(range(30))}), folder / "big.parquet")
    (folder / "big.json").write_text(json.dumps({"rows": list(range(30))}))
    small = DisclosurePolicy(max_rows=25, max_file_bytes=200)
    assert {(f.file, f.reason) for f in check_folder(folder, small)} == {
        ("big.csv", "30 rows: more than the limit of 25"),
        ("big.json", "30 rows: more than the limit of 25"),
        ("big.parquet", f"{(folder / 'big.parquet').stat().st_size} bytes: more than the limit of 200"),
        ("incidence.parquet", f"{(folder / 'incidence.parquet').stat().st_size} bytes: more than the limit of 200"),
    }
    roomy = DisclosurePolicy(max_rows=25)
    assert {(f.file, f.rows) for f in check_folder(folder, roomy)} == {
        ("big.csv", 30),
        ("big.parquet", 30),
        ("big.json", 30),
    }


def test_identifier_columns_block_release(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "leak.csv").write_text(
        "person_id,condition_source_value,Family Name,date_of_birth,n\n1,K92.2,X,1950-01-01,3\n"
    )
    pq.write_table(pa.table({"subject_id": [1, 2], "visit_occurrence_id": [5, 6]}), folder / "leak.parquet")
    (folder / "leak.json").write_text(json.dumps({"rows": [{"cohort": 1, "given_name": "x"}]}))
    found = reasons(check_folder(folder))
    assert {(file, column) for file, column, _ in found} == {
        ("leak.csv", "person_id"),
        ("leak.csv", "condition_source_value"),
        ("leak.csv", "Family Name"),
        ("leak.csv", "date_of_birth"),
        ("leak.parquet", "subject_id"),
        ("leak.parquet", "visit_occurrence_id"),
        ("leak.json", "given_name"),
    }
    assert not any(is_identifier_name(c) for c in ("outcome_cohort_id", "denominator_count", "year_of_birth", "name"))


def test_nir_shaped_values_are_found_and_never_repeated(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "t.csv").write_text(f"note,n\n{NIR},20\nfine,30\n{NIR[:13]},40\n")
    (folder / "t.md").write_text(f"Patient {NIR} was seen.\nAnd 1234567 is a plain number.\n")
    pq.write_table(pa.table({"ref": [NIR[:13], "x"]}), folder / "t.parquet")
    (folder / "t.json").write_text(json.dumps({"rows": [{"ref": NIR}]}))
    findings = check_folder(folder)
    assert {(f.file, f.column, f.rows) for f in findings} == {
        ("t.csv", "note", 2),
        ("t.md", None, 1),
        ("t.parquet", "ref", 1),
        ("t.json", "$.rows[].ref", 1),
    }
    assert NIR[:13] not in repr(findings)


def test_active_content_and_links(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "a.html").write_text("<p>x</p><script>fetch('/x')</script>")
    (folder / "b.svg").write_text('<svg><rect onclick="go()"/></svg>')
    (folder / "c.svg").write_text("<html></html>")
    (folder / "link.csv").symlink_to(folder / "a.html")
    found = reasons(check_folder(folder))
    assert found == {
        ("a.html", None, "active content (script)"),
        ("b.svg", None, "active content (script)"),
        ("c.svg", None, "content is not SVG"),
        ("link.csv", None, "symbolic link"),
    }


def test_sniff_sees_through_extensions():
    assert sniff(b"PAR1....") == "parquet" and sniff(png()[:16]) == "png" and sniff(b"a,b\n1,2\n") is None
    assert sniff(b"abc\x00def") == "binary"


def test_cli_reports_places_not_values(tmp_path, home):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "t.csv").write_text(f"person_id,note\n1,{NIR}\n")
    result = CliRunner().invoke(app, ["disclosure", "check", str(folder)])
    assert result.exit_code == 1
    assert "t.csv" in result.stdout and "person_id" in result.stdout and NIR not in result.stdout
    result = CliRunner().invoke(app, ["disclosure", "check", str(clean_folder(tmp_path / "ok")), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == {"findings": [], "passed": True}
    policy = tmp_path / "policy.yaml"
    policy.write_text("disclosure:\n  max_masked: 2\n")
    result = CliRunner().invoke(app, ["disclosure", "check", str(folder), "--policy", str(policy)])
    assert result.exit_code == 1 and "policy.yaml: key 'max_masked'" in result.stderr
