"""Voice that never leaves a caller in silence (#20): a slow connector step answers Twilio with a
filler and a signed `<Redirect>` continuation; the continuation gives the turn's answer (here, in
another process sharing the store, after the turn was lost); a step past its bound takes
`on.error`. Real app, webhooks signed with twilio's RequestValidator, TwiML parsed."""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import msgspec
import pytest
from fakes.signing import CALLER, CLINIC, PUBLIC_URL, twilio_signature, voice_form
from fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

from orchestrator.flow.loader import load_flow_text
from orchestrator.flow.validate import validate
from orchestrator.plugins.connectors import Action, CallContext, Connector, ConnectorRegistry, ConnectorResult
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.stores.memory import MemoryStore
from orchestrator.web.app import build_channels, create_app

Client = httpx.AsyncClient

FLOW = """\
flow: slow_calendar
start: ask_day
settings: {voice_filler_after: 100ms}
states:
  ask_day: {ask: "Which day suits you?", input: text, save: day, next: look}
  look:
    call: calendar.find
    args: {day: "{{ day }}"}
    timeout: 2s
    save: found
    on: {ok: tell, error: sorry}
  tell: {say: "I have {{ found }}.", end: done}
  sorry: {say: "Sorry, the calendar is not answering.", end: error}
"""


class FindArgs(msgspec.Struct):
    day: str = ""


class SlowCalendar(Connector):
    """`calendar.find` answers when the test opens `gate` (or after `delay` seconds)."""

    name = "calendar"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.delay: float | None = None
        self.calls = 0
        self.actions = {"find": Action(FindArgs, self.find)}

    async def find(self, args: FindArgs, ctx: CallContext) -> ConnectorResult:
        self.calls += 1
        if self.delay is not None:
            await asyncio.sleep(self.delay)
        else:
            await self.gate.wait()
        return ConnectorResult(outcome="ok", value=f"Tuesday at 10 for {args.day}")


GUARDS = """\
flow: slow_calendar
start: ask_name
settings: {max_call_seconds: 120}
answers:
  hours: {match: [open, hours], say: "We're open nine to five."}
states:
  ask_name: {ask: "What's your name?", input: name, save: name, next: bye}
  bye: {say: "Thanks {{ name }}.", end: done}
"""
GUARDS_ROUTED = GUARDS + """\
  front_desk: {say: "Let me pass you to the front desk.", end: handed_off}
defaults: {stuck: front_desk}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def flow_text() -> str:
    return FLOW


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runtimes() -> list[Runtime]:
    return []


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def settings(tmp_path: Path, twilio: FakeTwilio, flow_text: str) -> AppSettings:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "slow_calendar.yaml").write_text(flow_text)
    return AppSettings(
        flows_dir=str(flows), public_url=PUBLIC_URL, default_flow="slow_calendar", reload_seconds=0,
        retention_interval_seconds=0, admin_token="voice-admin-token-0123",
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
        twilio_from_number=CLINIC, twilio_api_base=twilio.url,
    )


@pytest.fixture
def calendar() -> SlowCalendar:
    return SlowCalendar()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


async def _client(settings: AppSettings, calendar: SlowCalendar, store: MemoryStore, clock: Clock,
                  runtimes: list[Runtime]) -> AsyncIterator[Client]:
    connectors = ConnectorRegistry()
    connectors.register(calendar, "calendar")
    runtime = await Runtime.create(settings, connectors, build_channels(settings), store=store, clock=clock)
    runtimes.append(runtime)
    # httpx's ASGI transport runs the app on the test's own loop (litestar's test client runs it
    # on a thread of its own per client): two "processes" here run truly side by side
    app = create_app(settings, runtime=runtime, start_background=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
            yield c
    finally:
        await runtime.close()


@pytest.fixture
async def client(settings: AppSettings, calendar: SlowCalendar, store: MemoryStore, clock: Clock,
                 runtimes: list[Runtime]) -> AsyncIterator[Client]:
    async for c in _client(settings, calendar, store, clock, runtimes):
        yield c


@pytest.fixture
async def other(settings: AppSettings, calendar: SlowCalendar, store: MemoryStore, clock: Clock,
                runtimes: list[Runtime]) -> AsyncIterator[Client]:
    """Another process: its own runtime (no in-process state shared), the same store."""
    async for c in _client(settings, calendar, store, clock, runtimes):
        yield c


async def post(client: Client, url: str, form: list[tuple[str, str]], *, signed: bool = True) -> Any:
    """POST to an absolute TwiML URL (or a path), signed for exactly that URL."""
    path = url[len(PUBLIC_URL):] if url.startswith(PUBLIC_URL) else url
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        headers["X-Twilio-Signature"] = twilio_signature(AUTH_TOKEN, f"{PUBLIC_URL}{path}", form)
    return await client.post(path, content=urlencode(form).encode(), headers=headers)


def twiml(response: Any) -> ET.Element:
    assert response.status_code == 200, (response.status_code, response.text)
    return ET.fromstring(response.content)


def spoken(root: ET.Element) -> str:
    return " ".join((e.text or "") for e in root.iter("Say"))


IN_PROGRESS = voice_form(status="in-progress")


async def ask_day(client: Client) -> ET.Element:
    root = twiml(await post(client, "/webhooks/twilio/voice", voice_form()))
    gather = root.find("Gather")
    assert gather is not None and "Which day" in spoken(gather)
    return gather


async def say_day(client: Client, gather: ET.Element) -> ET.Element:
    form = [*IN_PROGRESS, ("SpeechResult", "next tuesday"), ("Confidence", "0.9")]
    return twiml(await post(client, gather.get("action", ""), form))


def redirect_of(root: ET.Element) -> str:
    found = root.find("Redirect")
    assert found is not None, ET.tostring(root)
    assert found.get("method") == "POST"
    return found.text or ""


async def test_a_slow_connector_answers_with_a_filler_then_the_continuation_gives_the_answer(
    client: Client, calendar: SlowCalendar,
) -> None:
    gather = await ask_day(client)
    first = await say_day(client, gather)  # the connector is still running
    assert [e.tag for e in first] == ["Say", "Redirect"]
    assert spoken(first) == "One moment while I check the calendar."
    url = redirect_of(first)
    assert url.startswith(f"{PUBLIC_URL}/webhooks/twilio/voice/continue?")
    query = parse_qs(urlsplit(url).query)
    assert query["wait"][0].startswith("gather:") and query["n"] == ["1"]
    calendar.gate.set()
    raw = await post(client, url, IN_PROGRESS)
    answer = twiml(raw)
    assert spoken(answer) == "I have Tuesday at 10 for next tuesday."
    assert answer[-1].tag == "Hangup"
    again = await post(client, url, IN_PROGRESS)  # Twilio's retry of the continuation: the same answer
    assert again.content == raw.content
    assert calendar.calls == 1  # the step ran once


async def test_a_continuation_must_be_signed(client: Client, calendar: SlowCalendar) -> None:
    first = await say_day(client, await ask_day(client))
    calendar.gate.set()
    response = await post(client, redirect_of(first), IN_PROGRESS, signed=False)
    assert response.status_code == 403


async def test_a_fast_connector_answers_directly(client: Client, calendar: SlowCalendar) -> None:
    calendar.gate.set()
    root = await say_day(client, await ask_day(client))
    assert root.find("Redirect") is None
    assert spoken(root) == "I have Tuesday at 10 for next tuesday."


async def test_a_step_past_its_timeout_takes_the_error_route_and_the_caller_hears_it(
    client: Client, calendar: SlowCalendar,
) -> None:
    calendar.delay = 30.0  # never answers within the state's 2 s
    first = await say_day(client, await ask_day(client))
    answer = twiml(await post(client, redirect_of(first), IN_PROGRESS))
    assert spoken(answer) == "Sorry, the calendar is not answering."


async def test_the_continuation_at_another_process_waits_for_the_stored_answer(
    client: Client, other: Client, calendar: SlowCalendar,
) -> None:
    first = await say_day(client, await ask_day(client))
    waiting = asyncio.ensure_future(post(other, redirect_of(first), IN_PROGRESS))
    await asyncio.sleep(0.2)
    assert not waiting.done(), ""  # the other process waits on the conversation's lock
    calendar.gate.set()
    answer = twiml(await waiting)
    assert spoken(answer) == "I have Tuesday at 10 for next tuesday."


async def test_a_continuation_for_a_turn_that_was_lost_asks_again(other: Client, client: Client) -> None:
    gather = await ask_day(client)
    step = parse_qs(urlsplit(gather.get("action", "")).query)["step"][0]
    # a continuation for an answer whose turn never saved (its process died): asked again
    url = f"{PUBLIC_URL}/webhooks/twilio/voice/continue?wait=gather:{step}&n=1"
    root = twiml(await post(other, url, IN_PROGRESS))
    regather = root.find("Gather")
    assert regather is not None and "Which day" in spoken(regather)


def test_validate_refuses_a_connector_timeout_above_the_bound() -> None:
    text = FLOW.replace("timeout: 2s", "timeout: 30s")
    connectors = ConnectorRegistry()
    connectors.register(SlowCalendar(), "calendar")
    found = validate(load_flow_text(text, "slow.yaml"), connectors)
    errors = [d for d in found if d.severity == "error"]
    assert len(errors) == 1, found
    d = errors[0]
    assert (d.line, d.col) == (9, 14)
    assert "30s" in d.message and "8s" in d.message
    assert d.hint and "timeout: 8s or less" in d.hint


# ---- runaway guards ------------------------------------------------------------------------------


async def speak(client: Client, root: ET.Element, text: str) -> ET.Element:
    gather = root.find("Gather")
    assert gather is not None, ET.tostring(root)
    form = [*IN_PROGRESS, ("SpeechResult", text), ("Confidence", "0.9")]
    return twiml(await post(client, gather.get("action", ""), form))


async def texts_to_caller(runtime: Runtime, twilio: FakeTwilio) -> list[str]:
    await runtime.send_outbox()
    return [m["Body"][0] for m in twilio.messages() if m["To"] == [CALLER]]


@pytest.mark.parametrize("flow_text", [GUARDS])
async def test_answers_that_go_nowhere_end_the_call_politely_with_a_text_back(
    client: Client, runtimes: list[Runtime], twilio: FakeTwilio,
) -> None:
    root = twiml(await post(client, "/webhooks/twilio/voice", voice_form()))
    root = await speak(client, root, "are you open today?")
    assert "open nine to five" in spoken(root) and root.find("Gather") is not None
    root = await speak(client, root, "what are your hours?")
    assert root.find("Gather") is not None
    root = await speak(client, root, "are you open on sunday?")  # the third answer in a row going nowhere
    assert root.find("Gather") is None and root[-1].tag == "Hangup"
    assert "not able to help on this call" in spoken(root)
    [sent] = await texts_to_caller(runtimes[0], twilio)
    assert "Reply here to carry on" in sent


@pytest.mark.parametrize("flow_text", [GUARDS_ROUTED])
async def test_a_call_going_nowhere_takes_defaults_stuck_when_the_flow_has_it(
    client: Client, runtimes: list[Runtime], twilio: FakeTwilio,
) -> None:
    root = twiml(await post(client, "/webhooks/twilio/voice", voice_form()))
    root = await speak(client, root, "hello?")
    assert "name" in spoken(root)
    root = await post(client, root.find("Gather").get("action", ""), IN_PROGRESS)  # type: ignore[union-attr]
    root = twiml(root)  # a silence in a row after a re-ask: the second silence ends it
    root = await post(client, root.find("Gather").get("action", ""), IN_PROGRESS)  # type: ignore[union-attr]
    root = twiml(root)
    assert "front desk" in spoken(root)
    assert await texts_to_caller(runtimes[0], twilio) == []  # the flow's own route: no text-back


@pytest.mark.parametrize("flow_text", [GUARDS])
async def test_a_call_past_max_call_seconds_ends_at_its_next_answer(
    client: Client, clock: Clock, runtimes: list[Runtime], twilio: FakeTwilio,
) -> None:
    root = twiml(await post(client, "/webhooks/twilio/voice", voice_form()))
    clock.now += 121
    root = await speak(client, root, "Maria Lopez")
    assert "out of time on this call" in spoken(root) and root[-1].tag == "Hangup"
    assert len(await texts_to_caller(runtimes[0], twilio)) == 1


@pytest.mark.parametrize("flow_text", [GUARDS])
async def test_progress_resets_the_guards(client: Client) -> None:
    root = twiml(await post(client, "/webhooks/twilio/voice", voice_form()))
    root = await speak(client, root, "are you open today?")
    root = await speak(client, root, "are you open today?")
    root = await speak(client, root, "Maria Lopez")  # an answer: the call moves on
    assert "Thanks Maria" in spoken(root)


# ---- machines and screeners ----------------------------------------------------------------------

SCREENED = """\
flow: slow_calendar
title: Bright Smile
start: ask_name
settings: {on_machine: text_back}
states:
  ask_name: {ask: "Hello! What's your name?", input: name, save: name, next: bye}
  bye: {say: "Thanks {{ name }}.", end: done}
"""
SCREENED_ROUTED = SCREENED.replace("next: bye}", "next: bye, on: {machine: short}}") + """\
  short: {say: "Sorry we missed you, we'll call back.", end: machine_message}
"""
OUTBOUND = """\
flow: slow_calendar
title: Bright Smile
start: hello
vars: {who: there}
settings: {on_machine: leave_message}
states:
  hello: {ask: "Hi {{ who }}, this is Bright Smile calling about your visit. Is now a good time?", input: yes_no,
          save: ok, next: bye}
  bye: {say: "Thanks!", end: done}
"""


@pytest.mark.parametrize("flow_text", [SCREENED])
async def test_a_call_screening_assistant_is_not_interviewed(
    client: Client, runtimes: list[Runtime], twilio: FakeTwilio,
) -> None:
    root = twiml(await post(client, "/webhooks/twilio/voice", voice_form()))
    root = await speak(client, root, "Hi, the person you're calling is using a screening service from Google. "
                                     "Go ahead and say your name and why you're calling.")
    assert root.find("Gather") is None and [e.tag for e in root] == ["Hangup"]
    [sent] = await texts_to_caller(runtimes[0], twilio)
    assert "missed each other" in sent


@pytest.mark.parametrize("flow_text", [SCREENED])
async def test_a_voicemail_greeting_is_not_interviewed_but_a_caller_leaving_a_message_is(
    client: Client,
) -> None:
    root = twiml(await post(client, "/webhooks/twilio/voice", voice_form()))
    root = await speak(client, root, "I'd like to leave a message for the dentist")  # a person's words
    assert root.find("Gather") is not None  # asked for the name again, not hung up on
    other = voice_form(call_sid="CA" + "b2" * 16)
    root = twiml(await post(client, "/webhooks/twilio/voice", other))
    form = [*[(k, "in-progress" if k == "CallStatus" else v) for k, v in other],
            ("SpeechResult", "Please leave a message after the tone."), ("Confidence", "0.8")]
    root = twiml(await post(client, root.find("Gather").get("action", ""), form))  # type: ignore[union-attr]
    assert [e.tag for e in root] == ["Hangup"]


@pytest.mark.parametrize("flow_text", [SCREENED_ROUTED])
async def test_a_machine_takes_the_flows_declared_branch(client: Client, runtimes: list[Runtime],
                                                         twilio: FakeTwilio) -> None:
    root = twiml(await post(client, "/webhooks/twilio/voice", voice_form()))
    root = await speak(client, root, "You have reached the voicemail of Maria. Leave a message after the beep.")
    assert spoken(root) == "Sorry we missed you, we'll call back." and root[-1].tag == "Hangup"
    assert await texts_to_caller(runtimes[0], twilio) == []


def answered(call: dict[str, str], answered_by: str) -> list[tuple[str, str]]:
    """What Twilio posts to an outbound call's Url once it is answered."""
    return [("AccountSid", ACCOUNT_SID), ("CallSid", "CA" + "c3" * 16), ("CallStatus", "in-progress"),
            ("Direction", "outbound-api"), ("From", call["From"]), ("To", call["To"]),
            ("AnsweredBy", answered_by), ("ApiVersion", "2010-04-01")]


@pytest.mark.parametrize("flow_text", [OUTBOUND])
async def test_an_outbound_call_is_placed_with_machine_detection_and_a_voicemail_gets_the_message(
    client: Client, settings: AppSettings, twilio: FakeTwilio,
) -> None:
    started = await client.post("/api/conversations", json={"contact": CALLER, "channel": "voice",
                                                              "flow": "slow_calendar"},
                                headers={"Authorization": f"Bearer {settings.admin_token}"})
    assert started.status_code == 201, started.text
    [call] = twilio.calls
    assert call["To"] == CALLER and call["From"] == CLINIC and call["MachineDetection"] == "DetectMessageEnd"
    assert call["Url"].startswith(f"{PUBLIC_URL}/webhooks/twilio/voice?flow=slow_calendar&o=")
    assert call["Method"] == "POST"
    machine = twiml(await post(client, call["Url"], answered(call, "machine_end_beep")))
    assert spoken(machine) == "Hello, this is Bright Smile. Sorry we missed you. We'll send you a text message."
    assert machine[-1].tag == "Hangup"


@pytest.mark.parametrize("flow_text", [OUTBOUND])
async def test_an_outbound_call_answered_by_a_person_starts_the_flow(client: Client, twilio: FakeTwilio,
                                                                      settings: AppSettings) -> None:
    await client.post("/api/conversations", json={"contact": CALLER, "channel": "voice", "flow": "slow_calendar",
                                                  "vars": {"who": "Maria"}},
                      headers={"Authorization": f"Bearer {settings.admin_token}"})
    [call] = twilio.calls
    human = twiml(await post(client, call["Url"], answered(call, "human")))
    assert human.find("Gather") is not None
    assert spoken(human).startswith("Hi Maria, this is Bright Smile")  # the vars the call was placed with


def test_the_words_said_while_waiting_come_from_the_language_catalogues() -> None:
    from orchestrator.engine.voice_phrases import filler_text, sounds_like_machine
    from orchestrator.flow.schema import Settings

    spanish = Settings(language="es-MX")
    assert filler_text(spanish, "calendar.find_slots") == "Un momento mientras reviso el calendario."
    assert filler_text(Settings(), "crm.create_lead") == "One moment while I look that up."
    assert filler_text(Settings(language="fr-FR"), None) == "One moment, please."  # no French catalogue: English
    assert filler_text(Settings(voice_filler="Hold on."), "calendar.book") == "Hold on."
    assert sounds_like_machine("Deje su mensaje después del tono", spanish)
    assert sounds_like_machine("Please leave a message after the tone", spanish)  # English greetings too
    assert not sounds_like_machine("Quiero dejar un mensaje para la doctora", spanish)


def test_the_new_twiml_is_twilios_own() -> None:
    """The filler's <Redirect>, the warm transfer's <Dial><Number url> and the whisper's <Gather>,
    rendered by the adapter, byte for byte as twilio's VoiceResponse builds them."""
    from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

    from channels.twilio_voice import TwilioVoiceChannel
    from orchestrator.flow.schema import Settings
    from orchestrator.model import Outbound
    from orchestrator.plugins.channels import ReplyContext

    voice = TwilioVoiceChannel(auth_token=AUTH_TOKEN, public_url=PUBLIC_URL)
    sid = f"{CLINIC}:{CALLER}"
    quoted = sid.replace("+", "%2B")
    settings = Settings()
    say = {"voice": "Polly.Joanna", "language": "en-US"}

    filler = voice.render([Outbound(kind="say", text="One moment while I check the calendar.")], ReplyContext(
        settings=settings, public_url=PUBLIC_URL, session_id=sid, continuation="CA1:gather:ab12", continuation_round=1))
    r = VoiceResponse()
    r.say("One moment while I check the calendar.", **say)
    r.redirect(f"{PUBLIC_URL}/webhooks/twilio/voice/continue?wait=gather:ab12&n=1", method="POST")
    assert filler.body.decode() == r.to_xml()

    transfer = voice.render([Outbound(kind="handoff", text="Connecting you.", target="+15555550199", whisper=True,
                                      max_seconds=25)],
                            ReplyContext(settings=settings, public_url=PUBLIC_URL, session_id=sid, step="ab12"))
    r = VoiceResponse()
    r.say("Connecting you.", **say)
    d = Dial(action=f"{PUBLIC_URL}/webhooks/twilio/voice/dial?step=ab12&w=1", timeout=25)
    d.number("+15555550199", url=f"{PUBLIC_URL}/webhooks/twilio/voice/whisper?s={quoted}&step=ab12")
    r.append(d)
    assert transfer.body.decode() == r.to_xml()

    heard = voice.render([Outbound(kind="say", text="Call from Maria. Press 1 to take the call.")], ReplyContext(
        settings=settings, public_url=PUBLIC_URL, session_id=sid, step="ab12", whisper="ask"))
    r = VoiceResponse()
    g = Gather(action=f"{PUBLIC_URL}/webhooks/twilio/voice/whisper-accept?s={quoted}&step=ab12",
               action_on_empty_result=True, input="dtmf", method="POST", num_digits=1, timeout=8)
    g.say("Call from Maria. Press 1 to take the call.", **say)
    r.append(g)
    assert heard.body.decode() == r.to_xml()


async def test_on_redis_a_continuation_at_another_process_gets_the_answer_during_and_after_the_turn(
    settings: AppSettings, calendar: SlowCalendar, clock: Clock,
) -> None:
    """Two processes of one deployment on a real Redis: the continuation reaches the one that
    did not run the turn, while the turn runs (it waits on the lock) and after it (the stored reply)."""
    from rediskit import redis_stores

    async with redis_stores("voice-continue", count=2) as (store_a, store_b):
        a_runs: list[Runtime] = []
        b_runs: list[Runtime] = []
        a_gen = _client(settings, calendar, store_a, clock, a_runs)  # type: ignore[arg-type]
        b_gen = _client(settings, calendar, store_b, clock, b_runs)  # type: ignore[arg-type]
        a, b = await a_gen.__anext__(), await b_gen.__anext__()
        try:
            first = await say_day(a, await ask_day(a))
            url = redirect_of(first)
            waiting = asyncio.ensure_future(post(b, url, IN_PROGRESS))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            calendar.gate.set()
            during = await waiting
            assert spoken(twiml(during)) == "I have Tuesday at 10 for next tuesday."
            after = await post(b, url, IN_PROGRESS)  # later, again: the stored reply, byte for byte
            assert after.content == during.content
        finally:
            for gen in (a_gen, b_gen):
                with contextlib.suppress(StopAsyncIteration):
                    await gen.__anext__()


BILINGUAL = """\
flow: slow_calendar
start: ask_day
settings:
  languages: [en, es]
  language_by_country: {"34": es}
  voice_filler_after: 100ms
states:
  ask_day:
    ask: {en: "Which day suits you?", es: "¿Qué día le viene bien?"}
    input: text
    save: day
    next: look
  look:
    call: calendar.find
    args: {day: "{{ day }}"}
    timeout: 2s
    save: found
    on: {ok: tell, error: sorry}
  tell: {say: {en: "I have {{ found }}.", es: "Tengo {{ found }}."}, end: done}
  sorry: {say: {en: "Sorry, the calendar is not answering.", es: "Lo siento, el calendario no responde."}, end: error}
"""


@pytest.mark.parametrize("flow_text", [BILINGUAL])
async def test_the_filler_is_in_the_callers_language(client: Client, calendar: SlowCalendar) -> None:
    spanish = [(k, "+34600111222" if k in ("From", "Caller") else v) for k, v in voice_form()]
    root = twiml(await post(client, "/webhooks/twilio/voice", spanish))
    gather = root.find("Gather")
    assert gather is not None and "Qué día" in spoken(gather)
    form = [*[(k, "in-progress" if k == "CallStatus" else v) for k, v in spanish],
            ("SpeechResult", "el martes"), ("Confidence", "0.9")]
    first = twiml(await post(client, gather.get("action", ""), form))
    assert spoken(first) == "Un momento mientras reviso el calendario."
    assert first.find("Say").get("language", "").startswith("es")  # type: ignore[union-attr]
    calendar.gate.set()
    answer = twiml(await post(client, redirect_of(first), spanish))
    assert spoken(answer).startswith("Tengo ")
