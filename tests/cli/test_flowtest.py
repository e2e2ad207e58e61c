"""`orchestrator test`: the shipped flow tests pass; a wrong expectation fails with a diff."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from flowkit import ROOT

from orchestrator.cli.flowtest import main

SHIPPED = sorted((ROOT / "flows" / "tests").glob("*.test.yaml"))
EXAMPLE = ROOT / "examples" / "flow_tests" / "dental_smoke.test.yaml"
EXAMPLES = sorted((ROOT / "examples" / "flow_tests").glob("*.test.yaml"))


def run(*paths: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = main([str(p) for p in paths], out=out)
    return code, out.getvalue()


def test_every_shipped_flow_has_tests() -> None:
    flows = {p.stem for p in (ROOT / "flows").glob("*.yaml")}
    tested = {p.name.removesuffix(".test.yaml") for p in SHIPPED}
    assert flows and flows <= tested


@pytest.mark.parametrize("path", [*SHIPPED, *EXAMPLES], ids=lambda p: p.name)
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
    assert "-1) Thu 26 Nov, 11:30 AM" in out and "+1) Thu 26 Nov, 10:00 AM" in out
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
    assert code == 1 and "unknown key 'sayz' in an expect (did you mean 'says'?)" in out and f"{bad}:4:18:" in out


def test_the_cli_exit_status() -> None:
    ok = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "test", str(EXAMPLE)],
                        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 passed, 0 failed" in ok.stdout


CLOCK_FLOW = """\
flow: clock
title: Clock Shop
start: tell
settings: {timezone: America/Los_Angeles}
states:
  tell:
    say: "It is {{ now }}."
    next: ask
  ask:
    ask: "Anything else?"
    next: bye
  bye:
    say: Bye.
    end: done
"""


def write(tmp_path: Path, tests: str, flow: str = CLOCK_FLOW) -> Path:
    (tmp_path / "clock.yaml").write_text(flow)
    path = tmp_path / "clock.test.yaml"
    path.write_text("flow: clock.yaml\n" + tests)
    return path


def test_each_test_may_set_its_own_clock_read_in_the_flows_timezone(tmp_path: Path) -> None:
    code, out = run(write(tmp_path, """\
now: 2026-12-02T10:00
tests:
  - name: the file clock without an offset is Los Angeles wall-clock time
    turns:
      - expect: {says: "It is 2026-12-02T10:00:00-08:00."}
  - name: its own clock
    now: 2026-12-03T09:15:00
    turns:
      - expect: {says: "It is 2026-12-03T09:15:00-08:00."}
  - name: an offset stays as given
    now: "2026-12-03T09:15:00+00:00"
    turns:
      - expect: {says: "It is 2026-12-03T01:15:00-08:00."}
"""))
    assert code == 0, out
    assert "3 passed, 0 failed" in out


def test_an_unknown_key_anywhere_is_an_error_at_its_place_naming_the_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, """\
chanel: sms
tests:
  - name: typos
    nwo: 2026-12-02T10:00
    turns:
      - usr: hi
      - event: hang_up
      - expect: {says: It is, staet: ask}
""")
    code, out = run(path)
    assert code == 1 and "0 passed, 0 failed, 1 file error(s)" in out
    assert (f"{path}:2:1: unknown key 'chanel' in the test file (did you mean 'channel'?); "
            "allowed: flow, channel, now, contact, vars, tests") in out
    assert f"{path}:5:5: unknown key 'nwo' in a test (did you mean 'now'?); allowed: name, channel, now," in out
    assert f"{path}:7:9: unknown key 'usr' in a turn (did you mean 'user'?); allowed: user, expect, event" in out
    assert f"{path}:8:9: event 'hang_up' (did you mean 'hangup'?); use timeout, empty, hangup, no_answer," in out
    assert f"{path}:9:31: unknown key 'staet' in an expect (did you mean 'state'?); allowed: says, says_re," in out
    assert "ok " not in out  # nothing ran


def test_says_is_a_case_insensitive_substring_and_says_re_a_regular_expression(tmp_path: Path) -> None:
    code, out = run(write(tmp_path, """\
now: 2026-12-02T10:00
tests:
  - name: substring, any case
    turns:
      - expect: {says: "it is 2026-12-02", not_says: "It is 2026.12"}
  - name: a regular expression only when asked for
    turns:
      - expect: {says_re: "^It is \\\\d{4}-12-02T10", not_says_re: "^Bye"}
  - name: a regex in says is text
    turns:
      - expect: {says: "It is \\\\d{4}"}
  - name: a bad regex
    turns:
      - expect: {says_re: "(unclosed"}
"""))
    assert code == 1
    assert "ERROR" in out and "says_re: '(unclosed' is not a regular expression" in out
    path = write(tmp_path, """\
now: 2026-12-02T10:00
tests:
  - name: substring, any case
    turns:
      - expect: {says: "it is 2026-12-02", not_says: "It is 2026.12"}
  - name: a regular expression only when asked for
    turns:
      - expect: {says_re: "^It is \\\\d{4}-12-02T10", not_says_re: "^Bye"}
  - name: a regex in says is text
    turns:
      - expect: {says: "It is \\\\d{4}"}
""")
    code, out = run(path)
    assert code == 1 and "2 passed, 1 failed" in out, out
    assert 'the bot did not say "It is \\d{4}" (it matches as a regular expression: use says_re)' in out


def test_events_reach_every_route(tmp_path: Path) -> None:
    flow = """\
flow: routes
title: Routes
start: menu
settings: {staff_notify: "+15555550199", on_hangup: text_back}
states:
  menu:
    ask: "Talk to someone?"
    choices: {talk: {label: Talk}}
    on: {talk: transfer, timeout: timed_out, fail: failed, undelivered: lost}
  transfer:
    handoff: "+15555550199"
    say: "Connecting you."
    on: {no_answer: voicemail}
    next: after
  after:
    say: "Thanks for calling."
    end: handed_off
  voicemail:
    record: "Leave a message."
    notice: true
    end: voicemail
  timed_out: {say: "Bye for now.", end: timed_out}
  failed: {say: "Sorry.", end: failed}
  lost: {handoff: "+15555550199", end: unreachable}
"""
    code, out = run(write(tmp_path, """\
channel: voice
tests:
  - name: no_answer
    turns: [{user: talk}, {event: no_answer}, {expect: {state: voicemail, says: Leave a message}}]
  - name: busy
    turns: [{user: talk}, {event: busy}, {expect: {state: voicemail}}]
  - name: answered
    turns: [{user: talk}, {event: answered}, {expect: {outcome: handed_off, says: Thanks for calling}}]
  - name: empty is asked again once, a second silence in a row ends the call politely (voice guard)
    turns: [{event: empty}, {expect: {says: "didn't hear anything"}}, {event: empty},
            {expect: {outcome: silence, says: "can't hear anything"}}]
  - name: hangup texts back
    turns: [{event: hangup}, {expect: {says: "Let's continue by text", ended: false}}]
  - name: timeout, twice
    channel: sms
    turns: [{event: timeout}, {expect: {state: menu}}, {event: timeout}, {expect: {outcome: timed_out}}]
  - name: undelivered
    channel: sms
    turns: [{event: undelivered}, {expect: {outcome: unreachable, notifies: "Routes"}}]
""", flow))
    assert code == 0, out
    assert "7 passed, 0 failed" in out


def test_notifies_checks_what_staff_got(tmp_path: Path) -> None:
    path = write(tmp_path, """\
tests:
  - name: wrong text
    turns: [{event: undelivered}, {expect: {notifies: "outcome booked"}}]
  - name: none expected
    turns: [{event: undelivered}, {expect: {notifies: false}}]
  - name: none sent
    turns: [{user: hi}, {expect: {notifies: "anything"}}]
""", CLOCK_FLOW.replace("settings: {", 'settings: {staff_notify: "+15555550199", '))
    code, out = run(path)
    assert code == 1 and "0 passed, 3 failed" in out, out
    assert 'no staff message says "outcome booked"' in out and "+Clock Shop: A contact" in out
    assert "staff were told, which they must not be" in out
    assert "staff were not told\n" in out



def test_the_spec_example_test_file_runs_and_passes(tmp_path: Path) -> None:
    """docs/SPEC.md §4.2 lists every key of a test file in one example: it must stay true."""
    spec = (ROOT / "docs" / "SPEC.md").read_text()
    section = spec[spec.index("### 4.2 Flow tests"):]
    example = section[section.index("```yaml\n") + len("```yaml\n"):]
    example = example[:example.index("```")]
    path = tmp_path / "spec.test.yaml"
    path.write_text(example.replace("flow: ../dental_booking.yaml", f"flow: {ROOT}/flows/dental_booking.yaml"))
    code, out = run(path)
    assert code == 0, out
    assert "1 passed, 0 failed" in out


def test_sends_checks_what_message_send_queued(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text("""\
flow: confirm
start: ask_name
states:
  ask_name: {ask: "Name?", input: name, save: name, next: confirm}
  confirm:
    call: message.send
    args: {text: "See you, {{ name }}", channel: sms}
    on: {ok: bye, error: bye}
  bye: {say: "Done.", end: booked}
""")
    (tmp_path / "f.test.yaml").write_text("""\
flow: f.yaml
channel: voice
tests:
  - name: confirmed by sms
    turns:
      - user: Maria Lopez
      - expect: {says: "Done.", sends: "sms: See you, Maria Lopez", not_says: "See you"}
  - name: wrong text
    turns:
      - user: Maria Lopez
      - expect: {sends: "whatsapp:"}
""")
    code, out = run(tmp_path / "f.test.yaml")
    assert code == 1, out
    assert 'no sent message says "whatsapp:"' in out and "+sms: See you, Maria Lopez" in out
    assert out.rstrip().endswith("1 passed, 1 failed")


def test_templates_read_the_contacts_language_for_texts_that_are_not_maps(tmp_path: Path) -> None:
    """`language` (also `sys.language`): a message.send's text, which is an argument and not a
    text map, in the contact's language."""
    (tmp_path / "f.yaml").write_text("""\
flow: confirm
start: ask_name
settings: {languages: [en, es], language_by_country: {"34": es}}
states:
  ask_name: {ask: {en: "Name?", es: "¿Nombre?"}, input: name, save: name, next: confirm}
  confirm:
    call: message.send
    args: {text: "{{ 'Hasta pronto' if language == 'es' else 'See you' }}, {{ name }} ({{ sys.language }})"}
    on: {ok: bye, error: bye}
  bye: {say: {en: "Done.", es: "Listo."}, end: booked}
""")
    (tmp_path / "f.test.yaml").write_text("""\
flow: f.yaml
channel: sms
tests:
  - name: in Spanish for a Spanish number
    contact: "+34600111222"
    turns:
      - user: Ana García
      - expect: {says: "Listo.", sends: "sms: Hasta pronto, Ana García (es)"}
  - name: in English otherwise
    turns:
      - user: Ann Lee
      - expect: {says: "Done.", sends: "sms: See you, Ann Lee (en)"}
""")
    code, out = run(tmp_path / "f.test.yaml")
    assert code == 0, out
