"""Acceptance: appointment reminders (issue #18). A contact books a visit by SMS on the shipped
dental flow; the day before, the reminder goes out by itself (the timer poller, the outbox,
the fake Twilio REST), exactly once, and the contact answers C, X or R against the real
embedded calendar. A cancelled visit or a contact who said STOP gets no reminder. Run on the
in-memory store, on Redis and on a Redis Cluster (the reminder rides in the commit script)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fakes.graph import FakeGraph
from fakes.signing import CALLER, sms_form
from fakes.twilio import FakeTwilio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from orchestrator.web.app import create_app

from .conftest import conversation_of, make_settings, sms_texts, twilio_post, wait_for

NY = ZoneInfo("America/New_York")
WEDNESDAY_NOON = dt.datetime(2026, 11, 25, 12, 0, tzinfo=NY).timestamp()
DUE = dt.datetime(2026, 11, 29, 10, 0, 5, tzinfo=NY).timestamp()  # Sunday: 24 h before Monday 10:00


async def settle() -> None:
    """Long enough for the timer poller (every 0.05 s) and the outbox to have run many times."""
    await asyncio.sleep(0.6)


class Clinic:
    def __init__(self, client: AsyncTestClient[Litestar], now: list[float], twilio: FakeTwilio) -> None:
        self.client, self.now, self.twilio = client, now, twilio

    async def text(self, body: str) -> list[str]:
        self.now[0] += 5
        return sms_texts(await twilio_post(self.client, "/webhooks/twilio/sms",
                                           sms_form(body, sid="SM" + uuid.uuid4().hex)))

    async def book_monday_10(self) -> None:
        await self.text("hi")
        await self.text("1")
        await self.text("Alex Morgan")
        await self.text("cleaning")
        offer = await self.text("monday at 10am")
        assert any("Mon 30 Nov, 10:00 AM" in line for line in offer), offer
        [booked] = await self.text("1")
        assert "You're booked for Mon 30 Nov, 10:00 AM" in booked

    def reminders(self) -> list[str]:
        return [m["Body"][0] for m in self.twilio.messages()
                if m.get("To") == [CALLER] and m["Body"][0].startswith("Reminder from")]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("cluster", marks=pytest.mark.cluster)])
async def clinic(request: pytest.FixtureRequest, flows_copy: Path, fake_twilio: FakeTwilio, graph: FakeGraph,
                 redis_prefix: str) -> AsyncIterator[Clinic]:
    extra: dict[str, str] = {}
    if request.param == "redis":
        extra = {"redis_url": "redis://127.0.0.1:6379/0", "key_prefix": redis_prefix}
    elif request.param == "cluster":  # the reminder timers in the booking's bucket, on a 3-master cluster
        extra = {"redis_url": request.getfixturevalue("redis_cluster").url, "key_prefix": redis_prefix}
    settings = make_settings(flows_copy, fake_twilio, graph, **extra)
    now = [WEDNESDAY_NOON]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731
    async with AsyncTestClient(create_app(settings, clock=clock)) as client:
        yield Clinic(client, now, fake_twilio)


async def test_the_day_before_the_reminder_goes_out_once_and_c_confirms(clinic: Clinic) -> None:
    await clinic.book_monday_10()
    clinic.now[0] = DUE - 60
    await settle()
    assert clinic.reminders() == []  # not yet
    clinic.now[0] = DUE
    await wait_for(lambda: bool(clinic.reminders()))
    [reminder] = clinic.reminders()
    assert "your visit is on Mon 30 Nov, 10:00 AM" in reminder and "Reply C to confirm" in reminder
    clinic.now[0] += 130  # past the firing lease: it does not come round again
    await settle()
    assert len(clinic.reminders()) == 1
    [answer] = await clinic.text("C")
    assert "you're confirmed for Mon 30 Nov, 10:00 AM" in answer
    conversation = await conversation_of(clinic.client, CALLER)
    assert conversation["conversation"]["outcome"] == "confirmed"


async def test_x_cancels_the_visit_in_the_calendar(clinic: Clinic) -> None:
    await clinic.book_monday_10()
    clinic.now[0] = DUE
    await wait_for(lambda: bool(clinic.reminders()))
    [answer] = await clinic.text("X")
    assert "Your visit on Mon 30 Nov, 10:00 AM is cancelled" in answer
    # the calendar no longer has it: asking the dental flow to change a visit finds none
    await clinic.text("hi")
    lines = await clinic.text("4")
    assert any("couldn't find an upcoming visit" in line
               for line in lines), lines


async def test_r_moves_the_visit_and_the_old_reminder_time_is_gone(clinic: Clinic) -> None:
    await clinic.book_monday_10()
    clinic.now[0] = DUE
    await wait_for(lambda: bool(clinic.reminders()))
    assert "When would you like" in (await clinic.text("R"))[0]
    offer = await clinic.text("wednesday at 3pm")
    assert any("Wed 2 Dec, 3:00 PM" in line for line in offer), offer
    [moved] = await clinic.text("1")
    assert "moved to Wed 2 Dec, 3:00 PM" in moved
    # the moved visit has its own reminder the day before
    clinic.now[0] = dt.datetime(2026, 12, 1, 15, 0, 5, tzinfo=NY).timestamp()
    await wait_for(lambda: len(clinic.reminders()) == 2)
    assert "Wed 2 Dec, 3:00 PM" in clinic.reminders()[1]


async def test_a_visit_cancelled_before_the_reminder_gets_none(clinic: Clinic) -> None:
    await clinic.book_monday_10()
    await clinic.text("hi")
    await clinic.text("4")  # change or cancel a visit
    await clinic.text("1")  # that visit
    lines = await clinic.text("1")  # cancel it
    assert any("is cancelled" in line for line in lines), lines
    clinic.now[0] = DUE
    await settle()
    assert clinic.reminders() == []


async def test_a_contact_who_said_stop_gets_no_reminder(clinic: Clinic) -> None:
    await clinic.book_monday_10()
    await clinic.text("STOP")
    clinic.now[0] = DUE
    await settle()
    assert clinic.reminders() == []
