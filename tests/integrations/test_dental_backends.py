"""flows/dental_booking.yaml end to end through Engine.turn, against each real calendar backend."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conn_helpers import FIXED_NOW, FLOWS_DIR
from fake_google import FakeGoogleCalendar

from integrations.calendar_base import CalendarConnector, CancelArgs, ListArgs
from integrations.embedded_calendar import EmbeddedCalendar
from integrations.google_calendar import GoogleCalendar
from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.turn import Engine
from orchestrator.errors import NoShowRefused
from orchestrator.flow.loader import load_flow
from orchestrator.model import Event, Session, TurnResult
from orchestrator.plugins.connectors import CallContext, ConnectorRegistry


def _service_account(tmp_path: Path, token_uri: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({"type": "service_account", "private_key": pem, "client_email": "b@demo.test",
                                "private_key_id": "k", "token_uri": token_uri}))
    return str(path)


@pytest.fixture(params=["embedded", "google"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CalendarConnector]:
    if request.param == "embedded":
        yield EmbeddedCalendar(path=tmp_path / "cal.sqlite3")
        return
    fake = FakeGoogleCalendar().start()
    try:
        yield GoogleCalendar("clinic@example.com", _service_account(tmp_path, fake.token_uri), api_base=fake.api_base,
                             timeout_seconds=2.0, retry_base_seconds=0.01)
    finally:
        fake.stop()


@pytest.fixture
def engine(backend: CalendarConnector) -> Engine:
    registry = ConnectorRegistry()
    registry.register(backend)
    return Engine(compile_flow(load_flow(FLOWS_DIR / "dental_booking.yaml"), connectors=registry), registry)


class Talk:
    def __init__(self, engine: Engine, contact: str) -> None:
        self.engine, self.now = engine, FIXED_NOW
        self.session: Session = engine.new_session(f"biz:{contact}", business="biz", contact=contact,
                                                   channel="sms", now=self.now)

    async def say(self, *lines: str, kind: str = "text") -> TurnResult:
        result: TurnResult | None = None
        for line in lines:
            self.now += 5
            result = await self.engine.turn(self.session, Event(kind=kind, channel="sms", text=line), self.now)  # type: ignore[arg-type]
            self.session = result.session
        assert result is not None
        return result

    async def start(self) -> TurnResult:
        return await self.say("hi", kind="start")


def offered(result: TurnResult) -> list[str]:
    return [c.label for c in result.messages[-1].choices]


def ctx_for(talk: Talk) -> CallContext:
    return CallContext(session_id=talk.session.id, flow="dental_booking", contact=talk.session.contact,
                       timezone="America/New_York", language="en-US", now=talk.now)


async def test_book_over_sms_then_the_slot_is_gone(engine: Engine, backend: Any) -> None:
    ann = Talk(engine, "+15550000001")
    await ann.start()
    offer = await ann.say("1", "Ann Lee", "cleaning", "tomorrow at 10am")
    assert ann.session.state == "offer"
    assert offered(offer) == ["Thu 26 Nov, 10:00 AM", "Thu 26 Nov, 10:30 AM", "Thu 26 Nov, 11:00 AM", "None of these"]
    done = await ann.say("2")
    assert done.ended and ann.session.outcome == "booked"
    assert "Thu 26 Nov, 10:30 AM" in done.messages[0].text
    [booking] = (await backend.list_bookings(ListArgs(), ctx_for(ann))).value
    assert booking["label"] == "Thu 26 Nov, 10:30 AM" and booking["start"] == "2026-11-26T10:30:00-05:00"

    bob = Talk(engine, "+15550000002")
    await bob.start()
    offer = await bob.say("1", "Bob Ray", "checkup", "tomorrow at 10:30am")
    assert offered(offer)[:3] == ["Thu 26 Nov, 11:00 AM", "Thu 26 Nov, 11:30 AM", "Thu 26 Nov, 12:00 PM"]


async def test_two_conversations_offered_the_same_slot(engine: Engine, backend: Any) -> None:
    ann, bob = Talk(engine, "+15550000001"), Talk(engine, "+15550000002")
    for talk in (ann, bob):
        await talk.start()
        assert offered(await talk.say("1", "Pat Kim", "cleaning", "tomorrow at 3pm"))[0] == "Thu 26 Nov, 3:00 PM"
    assert (await ann.say("1")).ended and ann.session.outcome == "booked"
    taken = await bob.say("1")  # the same 3 PM slot: conflict, apology, fresh offer without it
    assert not taken.ended and bob.session.state == "offer"
    texts = [m.text for m in taken.messages]
    assert "Sorry, that slot was just taken. Let me look again." in texts
    assert "Thu 26 Nov, 3:00 PM" not in offered(taken)
    assert (await bob.say("1")).ended and bob.session.outcome == "booked"
    ann_bookings = (await backend.list_bookings(ListArgs(), ctx_for(ann))).value
    bob_bookings = (await backend.list_bookings(ListArgs(), ctx_for(bob))).value
    assert len(ann_bookings) == len(bob_bookings) == 1 and ann_bookings[0]["start"] != bob_bookings[0]["start"]


@pytest.mark.parametrize(
    ("wanted", "notice"),
    [("Sunday at 10am", "We're closed on Sunday, November 29."),
     ("December 25 at 10am", "We're closed on Friday, December 25.")],
)
async def test_a_closed_day_or_holiday_is_said_before_the_nearest_times(
    engine: Engine, wanted: str, notice: str
) -> None:
    talk = Talk(engine, "+15550000003")
    await talk.start()
    offer = await talk.say("1", "Ann Lee", "cleaning", wanted)
    assert talk.session.state == "offer"
    texts = [m.text for m in offer.messages]
    assert notice in texts and texts.index(notice) < len(texts) - 1  # before the offer, not instead
    assert offer.messages[-1].kind == "ask" and len(offered(offer)) == 4


async def test_an_open_day_gets_no_closed_notice(engine: Engine) -> None:
    talk = Talk(engine, "+15550000004")
    await talk.start()
    offer = await talk.say("1", "Ann Lee", "cleaning", "Saturday at 10am")
    assert not any("closed" in (m.text or "") for m in offer.messages)


async def test_asap_offers_the_earliest_times(engine: Engine) -> None:
    talk = Talk(engine, "+15550000005")
    await talk.start()
    offer = await talk.say("1", "Ann Lee", "cleaning", "asap")
    assert talk.session.state == "offer"
    assert offered(offer)[:2] == ["Wed 25 Nov, 1:30 PM", "Wed 25 Nov, 2:00 PM"]  # noon + 1 h notice, on the grid


async def test_the_agenda_lists_every_booking_in_a_window_soonest_first(engine: Engine, backend: Any) -> None:
    """The console's calendar-wide list: both contacts' bookings, with who made them, and only
    those starting within the window."""
    ann, bob = Talk(engine, "+15550000001"), Talk(engine, "+15550000002")
    for talk, name, wanted in ((ann, "Ann Lee", "tomorrow at 3pm"), (bob, "Bob Ray", "tomorrow at 10am")):
        await talk.start()
        await talk.say("1", name, "cleaning", wanted)
        assert (await talk.say("1")).ended
    day = datetime(2026, 11, 26, tzinfo=UTC)
    agenda = await backend.agenda((day, day + timedelta(days=1)))
    assert [(b["label"], b["name"], b["phone"]) for b in agenda] == [
        ("Thu 26 Nov, 10:00 AM", "Bob Ray", "+15550000002"), ("Thu 26 Nov, 3:00 PM", "Ann Lee", "+15550000001")]
    assert agenda[0]["session_id"] == bob.session.id
    assert await backend.agenda((day + timedelta(days=1), day + timedelta(days=2))) == []


def _at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_a_past_booking_is_marked_a_no_show_once_and_still_holds_its_time(engine: Engine, backend: Any) -> None:
    """Staff's mark: refused before the start, then `no_show` with the conversation that booked
    it; again the same answer; the agenda shows it, the time stays busy, the contact can no
    longer list or cancel it; an unknown id is None."""
    ann = Talk(engine, "+15550000001")
    await ann.start()
    await ann.say("1", "Ann Lee", "cleaning", "tomorrow at 10am")
    assert (await ann.say("2")).ended
    [booking] = (await backend.list_bookings(ListArgs(), ctx_for(ann))).value
    assert booking["start"] == "2026-11-26T10:30:00-05:00"
    with pytest.raises(NoShowRefused, match=r"has not started yet.*once its start has passed"):
        await backend.mark_no_show(booking["id"], now=_at("2026-11-26T10:29:00-05:00"))
    agenda_day = (datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC))
    assert [b["status"] for b in await backend.agenda(agenda_day)] == ["confirmed"]

    later = _at("2026-11-26T10:45:00-05:00")
    marked = await backend.mark_no_show(booking["id"], now=later)
    assert marked == {**booking, "status": "no_show", "session_id": ann.session.id}
    assert await backend.mark_no_show(booking["id"], now=later + 3600) == marked  # idempotent
    [listed] = await backend.agenda(agenda_day)
    assert listed["status"] == "no_show" and listed["name"] == "Ann Lee" and listed["session_id"] == ann.session.id
    start = datetime.fromisoformat(booking["start"])
    assert await backend.busy_in((start, start + timedelta(minutes=30))) == [(start, start + timedelta(minutes=30))]
    during = msgspec.structs.replace(ctx_for(ann), now=later)
    assert (await backend.list_bookings(ListArgs(), during)).outcome == "empty"
    assert (await backend.cancel(CancelArgs(booking_id=booking["id"]), during)).outcome == "empty"
    assert [b["status"] for b in await backend.agenda(agenda_day)] == ["no_show"]
    assert await backend.mark_no_show("nosuchbooking0000", now=later) is None
    if isinstance(backend, GoogleCalendar):  # the mark is one private property; the booking's others stay
        event = backend._get_sync(booking["id"])
        assert event is not None
        private = event["extendedProperties"]["private"]
        assert private["orchestrator_status"] == "no_show" and private["phone"] == "+15550000001"
        assert private["session"] == ann.session.id


async def test_a_cancelled_booking_cannot_be_a_no_show(engine: Engine, backend: Any) -> None:
    bob = Talk(engine, "+15550000002")
    await bob.start()
    await bob.say("1", "Bob Ray", "checkup", "tomorrow at 3pm")
    assert (await bob.say("1")).ended
    [booking] = (await backend.list_bookings(ListArgs(), ctx_for(bob))).value
    assert (await backend.cancel(CancelArgs(booking_id=booking["id"]), ctx_for(bob))).outcome == "ok"
    with pytest.raises(NoShowRefused, match="was cancelled"):
        await backend.mark_no_show(booking["id"], now=_at("2026-11-27T09:00:00-05:00"))
    assert await backend.agenda((datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC))) == []
