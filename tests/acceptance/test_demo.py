"""`hygie demo` runs the main job on embedded defaults, and can be run twice."""

from __future__ import annotations

from typer.testing import CliRunner

from hygie.cli.main import app


def test_demo_loads_gibleed_and_summarises_it(home):
    runner = CliRunner()
    first = runner.invoke(app, ["demo"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "published release demo-gibleed" in first.output
    assert "2,694 persons" in first.output
    second = runner.invoke(app, ["demo"], catch_exceptions=False)
    assert second.exit_code == 0
    assert "already exists" in second.output
