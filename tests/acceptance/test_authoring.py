"""Acceptance: a clinic owner writes, checks, tries, draws and tests a flow with the CLI
(the real `orchestrator` console script, piped like a terminal user would)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from .conftest import FLOWS, ROOT

CLI = [str(Path(sys.executable).with_name("orchestrator"))]
SHIPPED = sorted(FLOWS.glob("*.yaml"))


def run(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, **(env or {})})


@pytest.fixture(autouse=True)
def _calendar_env(private_calendar: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_CALENDAR_DB", str(private_calendar))


def test_shipped_flows_validate_exit_0() -> None:
    result = run("validate", *map(str, SHIPPED))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all valid" in result.stdout


def test_misspelt_key_is_rejected_with_file_line_col_and_did_you_mean(tmp_path: Path) -> None:
    text = (FLOWS / "dental_booking.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("    save: patient_name", "    sav: patient_name", 1))
    line = bad.read_text().splitlines().index("    sav: patient_name") + 1
    result = run("validate", str(bad))
    assert result.returncode == 1
    assert re.search(rf"bad\.yaml:{line}:5: .*'sav'.*did you mean 'save'", result.stdout), result.stdout


def test_unknown_state_is_rejected_with_did_you_mean(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((FLOWS / "dental_booking.yaml").read_text().replace("next: ask_reason", "next: ask_reasn", 1))
    line = bad.read_text().splitlines().index("    next: ask_reasn") + 1
    result = run("validate", str(bad))
    assert result.returncode == 1
    assert re.search(rf"bad\.yaml:{line}:\d+: .*'ask_reasn'.*did you mean 'ask_reason'", result.stdout)


def test_one_typo_in_a_state_name_is_one_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((FLOWS / "dental_booking.yaml").read_text().replace("next: ask_reason", "next: ask_reasn", 1))
    result = run("validate", str(bad))
    assert re.search(r"invalid, 1 error\b", result.stdout), result.stdout


def test_many_mistakes_are_all_reported_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("""\
flow: t
start: a
settings: {timezone: Mars/Olympus}
states:
  a:
    ask: "Hi {{ nme }}"
    choices:
      x: {label: X, dtmf: "1"}
      y: {label: Y, dtmf: "1"}
    on: {x: b, y: c, fail: b}
  b:
    say: "ok"
    end: done
  c:
    call: calender.book
    on: {ok: b}
  orphan:
    say: hi
    end: x
""")
    result = run("validate", str(bad))
    assert result.returncode == 1
    out = result.stdout
    for needle in ("bad.yaml:3:", "timezone 'Mars/Olympus'", "bad.yaml:6:", "'nme'", "bad.yaml:9:",
                   "keypad key '1'", "bad.yaml:15:", "did you mean 'calendar'", "bad.yaml:17:", "'orphan'"):
        assert needle in out, (needle, out)


CHAT_CASES = {
    "sms": ("hi\nbook\nMaria Lopez\ncleaning\n{when}\n1\n", "You're booked for"),
    "voice": ("one\nMaria Lopez\n2\n{when}\n1\n", "You're all set, Maria Lopez"),
    "whatsapp": ("Book a visit\nMaria Lopez\nCheckup\n{when}\n1\n", "You're booked for"),
}


@pytest.mark.parametrize(("channel", "when"), [
    ("sms", "thursday at 4"), ("sms", "asap"), ("sms", "next Tuesday at 3pm"),
    ("voice", "tomorrow at 10"), ("whatsapp", "tomorrow at 10"), ("whatsapp", "thursday at 4"),
])
def test_piped_chat_books_on_every_channel_from_natural_dates(channel: str, when: str) -> None:
    script, booked = CHAT_CASES[channel]
    result = run("chat", str(FLOWS / "dental_booking.yaml"), "--channel", channel, stdin=script.format(when=when))
    assert result.returncode == 0, result.stderr
    assert booked in result.stdout, result.stdout
    assert "[conversation ended: booked]" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_chat_renders_each_channel_idiom() -> None:
    flow = str(FLOWS / "dental_booking.yaml")
    sms = run("chat", flow, "--channel", "sms").stdout
    voice = run("chat", flow, "--channel", "voice").stdout
    wa = run("chat", flow, "--channel", "whatsapp").stdout
    assert "1) Book a visit" in sms
    assert "For Book a visit, press 1." in voice
    assert "bot> [Choose]\nbot>   - Book a visit\nbot>   - Opening hours\nbot>   - Talk to someone\n" in wa
    assert "bot>   - Change or cancel a visit" in wa  # four choices: a WhatsApp list, not buttons


def test_chat_offers_slots_at_the_asked_time_in_the_clinic_timezone() -> None:
    script = "hi\nbook\nMaria\ncleaning\ntomorrow at 10\n"
    out = run("chat", str(FLOWS / "dental_booking.yaml"), "--channel", "sms", "--now", "2026-11-25T12:00:00-05:00",
              stdin=script).stdout
    assert re.search(r"1\) \w{3} \d{1,2} \w{3}, 10:00 AM", out), out


def test_shipped_flow_tests_pass_with_exit_0() -> None:
    tests = [*sorted((FLOWS / "tests").glob("*.yaml")), *sorted((ROOT / "examples" / "flow_tests").glob("*.yaml"))]
    assert {p.name.split(".")[0] for p in tests} >= {p.stem for p in SHIPPED}  # every shipped flow has tests
    result = run("test", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 failed" in result.stdout


def test_failing_flow_test_exits_1_with_location_and_diff(tmp_path: Path) -> None:
    spec = tmp_path / "failing.test.yaml"
    spec.write_text(f"""\
flow: {FLOWS / 'dental_booking.yaml'}
channel: sms
now: 2026-11-25T12:00:00-05:00
tests:
  - name: wrong expectation
    turns:
      - user: book
      - expect: {{says: "What is your favourite colour?", state: ask_name}}
""")
    result = run("test", str(spec))
    assert result.returncode == 1
    assert "failing.test.yaml:8:" in result.stdout
    assert "-What is your favourite colour?" in result.stdout
    assert "+Great! What's your name?" in result.stdout


def test_template_injection_renders_harmlessly(tmp_path: Path) -> None:
    flow = tmp_path / "inj.yaml"
    flow.write_text('flow: inj\nstart: a\nstates:\n  a:\n    say: "X{{ (\'\').__class__.__mro__ }}Y"\n'
                    "    end: done\n")
    result = run("chat", str(flow), stdin="hi\n")
    out = result.stdout + result.stderr
    assert "<class" not in out and "object" not in result.stdout
    assert "XY" not in result.stdout  # not silently rendered either


@pytest.mark.parametrize("fmt", ["mermaid", "dot", "html"])
def test_graph_draws_every_state_and_end_outcome(fmt: str) -> None:
    result = run("graph", str(FLOWS / "dental_booking.yaml"), "--format", fmt)
    assert result.returncode == 0, result.stderr
    for state in ("greet", "menu", "find_slots", "confirm", "take_message", "cancelled"):
        assert state in result.stdout, (fmt, state)
    for outcome in ("booked", "handed_off", "message_taken", "info_given"):
        assert outcome in result.stdout


def test_graph_html_is_a_self_contained_page_with_a_drawn_diagram() -> None:
    html = run("graph", str(FLOWS / "dental_booking.yaml"), "--format", "html").stdout
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "<svg" in html and "</svg>" in html
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?https?:""", html)  # nothing fetched
    assert "intent" in html.lower()  # the global intents are shown somewhere


def _edge_label_positions(html: str) -> Counter[tuple[str, str]]:
    return Counter(re.findall(r'<text class="edge-label" x="([\d.]+)" y="([\d.]+)"', html))


def test_graph_html_edge_labels_never_overlap() -> None:
    html = run("graph", str(FLOWS / "dental_booking.yaml"), "--format", "html").stdout
    stacked = {pos: n for pos, n in _edge_label_positions(html).items() if n > 1}
    assert not stacked, stacked


def test_schema_validates_shipped_flows_and_flags_a_misspelt_key() -> None:
    import jsonschema

    from orchestrator.flow.loader import yaml_data  # YAML 1.2 like editors: `on:` is a key, not True

    result = run("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    validator = jsonschema.Draft202012Validator(schema)
    for path in SHIPPED:
        errors = list(validator.iter_errors(yaml_data(path.read_text())))
        assert not errors, (path.name, [e.message for e in errors[:3]])
    doc = yaml_data((FLOWS / "dental_booking.yaml").read_text())
    doc["states"]["ask_name"]["sav"] = doc["states"]["ask_name"].pop("save")
    assert list(validator.iter_errors(doc)), "a misspelt key must be flagged for the editor"
