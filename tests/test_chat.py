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
