"""`orchestrator chat` end to end: the console script, piped, on every channel's rendering."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flowkit import FLOWS_DIR

SCRIPT = Path(sys.executable).with_name("orchestrator")
NOW = "2026-11-25T12:00-05:00"  # a Wednesday noon in New York
BOOKING = "1\nAlex Morgan\ncleaning\ntomorrow at 10am\n1\n"


def chat(flow: str, channel: str, stdin: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCHESTRATOR_CALENDAR_DB": str(tmp_path / "calendar.sqlite3")}
    return subprocess.run(
        [str(SCRIPT), "chat", str(FLOWS_DIR / flow), "--channel", channel, "--now", NOW, *extra],
        input=stdin, capture_output=True, text=True, timeout=60, env=env, check=False,
    )


def bot_lines(out: str) -> list[str]:
    return [line[len("bot> "):] for line in out.splitlines() if line.startswith("bot> ")]


@pytest.mark.parametrize(
    ("channel", "menu_line", "slot_line"),
    [
        ("sms", "1) Book a visit", "1) Thu 26 Nov, 10:00 AM"),
        ("whatsapp", "  - Change or cancel a visit", "  - Thu 26 Nov, 10:00 AM"),
        ("voice", "For Book a visit, press 1.", "For Thu 26 Nov, 10:00 AM, press 1."),
    ],
)
def test_dental_booking_books_on_every_channel(
    channel: str, menu_line: str, slot_line: str, tmp_path: Path
) -> None:
    done = chat("dental_booking.yaml", channel, BOOKING, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = bot_lines(done.stdout)
    assert any(menu_line in line for line in lines), done.stdout
    assert any(slot_line in line for line in lines), done.stdout
    assert "[conversation ended: booked]" in done.stdout
    assert any("Thu 26 Nov, 10:00 AM" in line and "Alex Morgan" in line for line in lines[-2:])
    greeting = lines[0]
    assert greeting == ("Thanks for calling Bright Smile Dental." if channel == "voice"
                        else "Hi! Thanks for contacting Bright Smile Dental.")


def test_the_booking_is_in_the_calendar_so_the_same_slot_is_taken_next_time(tmp_path: Path) -> None:
    first = chat("dental_booking.yaml", "sms", BOOKING, tmp_path)
    assert "[conversation ended: booked]" in first.stdout
    second = chat("dental_booking.yaml", "sms", BOOKING, tmp_path, "--contact", "+15555550124")
    slots = [line for line in bot_lines(second.stdout) if line.startswith("1) Thu")]
    assert slots and "10:00 AM" not in slots[0], second.stdout


def test_whatsapp_button_titles_are_tapped(tmp_path: Path) -> None:
    done = chat("dental_booking.yaml", "whatsapp", "Opening hours\nNo, thanks\n", tmp_path)
    assert done.returncode == 0 and "[conversation ended: info_given]" in done.stdout, done.stdout


def test_missed_call_textback_on_sms(tmp_path: Path) -> None:
    done = chat("missed_call_textback.yaml", "sms", "Dana Scully\nMy crown came loose\ntomorrow at 4pm\n", tmp_path)
    assert done.returncode == 0, done.stderr
    lines = bot_lines(done.stdout)
    assert lines[0].startswith("Sorry we missed your call at Bright Smile Dental!")
    staff = [line for line in lines if line.startswith("(to staff +15555550199:")]
    assert staff and "Dana Scully" in staff[0] and "My crown came loose" in staff[0]
    assert "[conversation ended: message_taken]" in done.stdout


def test_end_of_input_exits_zero_mid_conversation(tmp_path: Path) -> None:
    done = chat("dental_booking.yaml", "sms", "1\n", tmp_path)
    assert done.returncode == 0 and done.stdout.rstrip().endswith("[end of input]")


def test_cli_reports_a_missing_file(tmp_path: Path) -> None:
    done = chat("nope.yaml", "sms", "", tmp_path)
    assert done.returncode == 1 and "nope.yaml" in done.stderr


def chat_file(path: Path, stdin: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_HELP_TEXT"}
    env["ORCHESTRATOR_CALENDAR_DB"] = str(tmp_path / "calendar.sqlite3")
    return subprocess.run([str(SCRIPT), "chat", str(path), *extra], input=stdin, capture_output=True, text=True,
                          timeout=60, env=env, check=False)


CLOCK_FLOW = """\
flow: clock
title: Clock Shop
start: tell
settings: {timezone: America/Los_Angeles}
states:
  tell:
    say: "It is {{ now }}."
    end: told
"""


def test_an_invalid_flow_is_refused_with_every_error_at_its_place(tmp_path: Path) -> None:
    flow = tmp_path / "bad.yaml"
    flow.write_text(CLOCK_FLOW.replace("start: tell", "start: tel").replace("    end: told\n",
                                                                             "    next: nowhere\n"))
    done = chat_file(flow, "", tmp_path)
    assert done.returncode == 1 and "bot>" not in done.stdout
    assert f"{flow}:3:8: start state 'tel' does not exist" in done.stderr, done.stderr
    assert f"{flow}:8:11: state 'tell' goes to unknown state 'nowhere'" in done.stderr, done.stderr


def test_warnings_go_to_stderr_and_the_chat_runs(tmp_path: Path) -> None:
    flow = tmp_path / "warn.yaml"
    flow.write_text("""\
flow: warn
start: pick
states:
  pick:
    ask: "Tea or coffee?"
    choices: {tea: {label: Tea}, coffee: {label: Coffee}}
    on: {tea: bye, coffee: bye}
  bye:
    say: "Enjoy."
    end: served
""")
    done = chat_file(flow, "tea\n", tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{flow}:4:3: warning:" in done.stderr and "fail" in done.stderr, done.stderr
    assert "warning" not in done.stdout and "bot> Enjoy." in done.stdout


@pytest.mark.parametrize(("now", "said"), [
    ("2026-12-02T10:00", "It is 2026-12-02T10:00:00-08:00."),  # no offset: the flow's timezone
    ("2026-12-02T10:00:00+00:00", "It is 2026-12-02T02:00:00-08:00."),  # an offset stays as given
])
def test_now_without_an_offset_is_the_flows_wall_clock(now: str, said: str, tmp_path: Path) -> None:
    flow = tmp_path / "clock.yaml"
    flow.write_text(CLOCK_FLOW)
    done = chat_file(flow, "", tmp_path, "--now", now)
    assert done.returncode == 0, done.stderr
    assert bot_lines(done.stdout) == [said]


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_carrier_keywords_play_as_on_the_server(channel: str, tmp_path: Path) -> None:
    done = chat("missed_call_textback.yaml", channel, "help\nSTART\nAnn Lee\nSTOP\nmy crown\n", tmp_path)
    assert done.returncode == 0, done.stderr
    lines = bot_lines(done.stdout)
    assert lines[2].startswith("Bright Smile Dental: answer the question to leave us a message")  # help_text
    assert lines[3] == "You are subscribed again. Reply STOP to opt out."
    assert lines[4] == "Thanks! What can we help you with?"  # HELP and START were no answers
    assert lines[5] == "You have been unsubscribed and will get no more messages. Reply START to opt back in."
    assert done.stdout.rstrip().endswith("[opted out: the server sends this contact nothing more until START]")
    assert "my crown" not in done.stdout


def test_help_without_help_text_gives_the_servers_default(tmp_path: Path) -> None:
    flow = tmp_path / "ask.yaml"
    flow.write_text(CLOCK_FLOW.replace("say: \"It is {{ now }}.\"\n    end: told",
                                       "ask: \"Your name?\"\n    next: bye\n  bye:\n    say: Bye.\n    end: told"))
    done = chat_file(flow, "HELP\n", tmp_path)
    assert ("bot> Clock Shop: answer the last question to go on, or call us. Reply STOP to opt out, START to opt "
            "back in.") in done.stdout, done.stdout
    voice = chat_file(flow, "help\n", tmp_path, "--channel", "voice")  # a call has no carrier keywords
    assert "bot> Bye." in voice.stdout


def test_staff_see_the_summary_of_every_outcome_they_are_told_about(tmp_path: Path) -> None:
    booked = chat("dental_booking.yaml", "sms", BOOKING, tmp_path)
    staff = [line for line in bot_lines(booked.stdout) if line.startswith("(to staff +15555550199:")]
    assert len(staff) == 1 and "outcome booked" in staff[0] and "Alex Morgan" in staff[0], booked.stdout
    flow = tmp_path / "fallback.yaml"
    flow.write_text("""\
flow: fallback
title: Fallback Co
start: pick
settings: {max_retries: 0, staff_notify: "+15555550199"}
states:
  pick:
    ask: "Tea or coffee?"
    choices: {tea: {label: Tea}, coffee: {label: Coffee}}
    on: {tea: bye, coffee: bye}
  bye:
    say: "Enjoy."
    end: served
""")
    lost = chat_file(flow, "banana\n", tmp_path)
    assert "[conversation ended: not_understood]" in lost.stdout
    assert "bot> (to staff +15555550199: Fallback Co: A contact ((555) 555-0123) via sms, outcome not_understood." \
        in lost.stdout, lost.stdout
    flow.write_text(flow.read_text().replace(', staff_notify: "+15555550199"', ""))
    untold = chat_file(flow, "banana\n", tmp_path)
    assert "[staff not told of not_understood: set settings.staff_notify]" in untold.stdout


@pytest.mark.parametrize("args", [
    ["chat", str(FLOWS_DIR / "dental_booking.yaml")],
    ["validate", str(FLOWS_DIR / "dental_booking.yaml")],
    ["test", str(FLOWS_DIR / "tests" / "missed_call_textback.test.yaml")],
    ["graph", str(FLOWS_DIR / "dental_booking.yaml")],
    ["schema"],
])
def test_output_into_a_closed_pipe_ends_quietly(args: list[str], tmp_path: Path) -> None:
    """`orchestrator ... | head -1`: the reader is gone before the first line is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([str(SCRIPT), *args], input="1\nAnn\n", stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60, check=False,
                              env={**os.environ, "ORCHESTRATOR_CALENDAR_DB": str(tmp_path / "c.sqlite3")})
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_chat_says_when_a_booking_scheduled_its_reminder() -> None:
    """The dental flow's `settings.reminders`: a visit on Monday 10:00 booked on Wednesday gets
    its reminder on Sunday at 10:00, and chat says so (a visit tomorrow gets none)."""

    def run(when: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli.main", "chat", str(FLOWS_DIR / "dental_booking.yaml"),
             "--channel", "sms", "--now", "2026-11-25T12:00-05:00"],
            input=f"1\nAlex Morgan\ncleaning\n{when}\n1\n", capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "ORCHESTRATOR_CALENDAR_DB": "", "HOME": "/tmp"},
        ).stdout

    assert "[reminder scheduled: appointment_reminder by sms at Sun 29 Nov 10:00]" in run("monday at 10am")
    assert "[reminder scheduled" not in run("tomorrow at 10am")
