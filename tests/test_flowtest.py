"""`orchestrator test`: the shipped flow tests pass; a wrong expectation fails with a diff."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from flowkit import ROOT

from orchestrator.flowtest import main

SHIPPED = sorted((ROOT / "flows" / "tests").glob("*.test.yaml"))
EXAMPLE = ROOT / "examples" / "flow_tests" / "dental_smoke.test.yaml"


def run(*paths: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = main([str(p) for p in paths], out=out)
    return code, out.getvalue()


def test_every_shipped_flow_has_tests() -> None:
    flows = {p.stem for p in (ROOT / "flows").glob("*.yaml")}
    tested = {p.name.removesuffix(".test.yaml") for p in SHIPPED}
    assert flows and flows <= tested


@pytest.mark.parametrize("path", [*SHIPPED, EXAMPLE], ids=lambda p: p.name)
def test_shipped_flow_tests_pass(path: Path) -> None:
    code, out = run(path)
    assert code == 0, out
    assert " 0 failed" in out and "FAIL" not in out


def test_a_wrong_expectation_fails_with_position_and_diff(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("10:00 AM", "11:30 AM").replace("flow: ../../flows/", f"flow: {ROOT}/flows/")
    path = tmp_path / "wrong.test.yaml"
    path.write_text(text)
    code, out = run(path)
    assert code == 1
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "11:30 AM" in s)
    assert f"{path}:{line}:" in out
    assert "--- expected (says)" in out and "+++ actual bot lines" in out
    assert "-1\\) Thu 26 Nov, 11:30 AM" in out and "+1) Thu 26 Nov, 10:00 AM" in out
    assert out.rstrip().endswith("0 passed, 1 failed")


def test_state_vars_outcome_and_not_says_failures(tmp_path: Path) -> None:
    path = tmp_path / "more.test.yaml"
    path.write_text(f"""\
flow: {ROOT}/flows/dental_booking.yaml
now: 2026-11-25T12:00:00-05:00
tests:
  - name: all wrong
    turns:
      - user: hours
      - expect: {{state: menu, not_says: "We're open", outcome: booked, vars: {{clinic: Other}}}}
  - name: right
    turns:
      - user: hours
      - expect: {{state: anything_else}}
""")
    code, out = run(path)
    assert code == 1
    assert "state is 'anything_else', expected 'menu'" in out
    assert "the bot said \"We're open\", which it must not" in out
    assert "outcome is None, expected 'booked'" in out
    assert "variable 'clinic' is 'Bright Smile Dental', expected 'Other'" in out
    assert "1 passed, 1 failed" in out


def test_malformed_test_files_are_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.test.yaml"
    bad.write_text("flow: missing.yaml\ntests: []\n")
    code, out = run(bad)
    assert code == 1 and "flow file 'missing.yaml' not found" in out
    bad.write_text("tests: [\n")
    code, out = run(bad)
    assert code == 1 and f"{bad}:" in out and "not valid YAML" in out
    bad.write_text(f"flow: {ROOT}/flows/dental_booking.yaml\ntests:\n  - turns:\n      - expect: {{sayz: hi}}\n")
    code, out = run(bad)
    assert code == 1 and "unknown expectation 'sayz'" in out and f"{bad}:4:" in out


def test_the_cli_exit_status() -> None:
    ok = subprocess.run([sys.executable, "-m", "orchestrator.cli", "test", str(EXAMPLE)],
                        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 passed, 0 failed" in ok.stdout
