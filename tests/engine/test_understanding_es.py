"""A Spanish flow through the engine: the contact's messages read with the Spanish rules
(fill ahead, corrections, read-backs, choices). The bot's own words are the flow's."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flowkit import load_test_flow

from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.turn import Engine
from orchestrator.model import Event, Session, TurnResult
from orchestrator.plugins.connectors import ConnectorRegistry

SALON = """
flow: salon_es
start: servicio
settings:
  language: es-ES
  timezone: Europe/Madrid
  business_hours: {mon: "09:00-19:00", tue: "09:00-19:00", wed: "09:00-19:00", thu: "09:00-19:00",
                   fri: "09:00-19:00", sat: "10:00-14:00"}
intents:
  agente: {match: [agente, una persona], goto: persona}
states:
  servicio:
    ask: "¿Qué servicio quiere?"
    choices:
      corte: {label: Corte de pelo, match: [corte, cortar]}
      tinte: {label: Tinte, match: [tinte, color]}
    save: servicio
    on: {corte: nombre, tinte: nombre}
  nombre: {ask: "¿A nombre de quién?", input: name, save: nombre, next: personas}
  personas: {ask: "¿Cuántas personas?", input: number, save: personas, next: cuando}
  cuando: {ask: "¿Cuándo le viene bien?", input: datetime, save: cuando, next: seguro}
  seguro: {ask: "¿Lo confirmo?", input: yes_no, save: ok, on: {yes: fin, no: fin}}
  fin: {say: "Hecho, {{ nombre }}.", end: done}
  persona: {say: "Le paso con una persona.", end: handoff}
"""
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=ZoneInfo("Europe/Madrid")).timestamp()  # a Thursday


class Chat:
    def __init__(self) -> None:
        self.engine = Engine(compile_flow(load_test_flow(SALON, "salon.yaml")), ConnectorRegistry())
        self.now = NOW
        self.session: Session = self.engine.new_session("biz:+34600000000", business="biz",
                                                        contact="+34600000000", channel="sms", now=self.now)

    async def send(self, text: str | None = None, kind: str = "text") -> TurnResult:
        self.now += 5
        result = await self.engine.turn(self.session, Event(kind=kind, channel="sms", text=text),  # type: ignore[arg-type]
                                        self.now)
        self.session = result.session
        return result

    async def say(self, *lines: str) -> list[str]:
        out: list[str] = []
        for line in lines:
            out = [m.text for m in (await self.send(line)).messages if m.text]
        return out

    def var(self, name: str) -> Any:
        return self.session.vars.get(name)


async def test_one_message_fills_the_choice_the_name_and_the_time() -> None:
    chat = Chat()
    await chat.send(kind="start")
    await chat.say("Hola, soy Ana García y quiero un corte mañana a las 11")
    assert (chat.var("servicio"), chat.var("nombre")) == ("corte", "Ana García")
    assert chat.session.state == "personas"  # the time waits until its question is reached
    await chat.say("cuatro")
    assert chat.var("personas") == 4 and chat.var("cuando") == "2026-12-04T11:00:00+01:00"
    assert chat.session.state == "seguro"  # the time was not asked
    said = await chat.say("sí")
    assert chat.var("ok") is True and said == ["Hecho, Ana García."]


async def test_answers_one_at_a_time() -> None:
    chat = Chat()
    await chat.send(kind="start")
    await chat.say("la segunda", "me llamo Luis", "dos", "el jueves por la tarde", "no")
    assert (chat.var("servicio"), chat.var("nombre"), chat.var("cuando"), chat.var("personas"), chat.var("ok")) == (
        "tinte", "Luis", "2026-12-03T14:00:00+01:00", 2, False)


async def test_issue_15_examples_book_the_right_time() -> None:
    for said, wanted in [("jueves a las 11", "2026-12-10T11:00:00+01:00"),
                         ("la semana que viene el martes por la tarde", "2026-12-08T14:00:00+01:00"),
                         ("mañana por la tarde", "2026-12-04T14:00:00+01:00"),
                         ("sobre las 4", "2026-12-03T16:00:00+01:00")]:
        chat = Chat()
        await chat.send(kind="start")
        await chat.say("corte", "Ana", "3", said)
        assert chat.var("cuando") == wanted, said


async def test_a_spanish_correction_changes_the_time() -> None:
    chat = Chat()
    await chat.send(kind="start")
    await chat.say("corte", "Ana", "3", "mañana a las 11")
    await chat.say("perdón, mejor a las 5")
    assert chat.var("cuando") == "2026-12-04T17:00:00+01:00"  # the day already chosen stays
    assert chat.session.state == "seguro"


async def test_a_negated_intent_does_not_fire() -> None:
    chat = Chat()
    await chat.send(kind="start")
    await chat.say("no quiero un agente, quiero un corte")
    assert chat.var("servicio") == "corte"
    said = await chat.say("Ana", "quiero hablar con una persona")
    assert said == ["Le paso con una persona."]


async def test_a_spanish_name_correction_at_a_later_question() -> None:
    chat = Chat()
    await chat.send(kind="start")
    await chat.say("corte", "Luis")
    await chat.say("perdón, me llamo Ana")
    assert chat.var("nombre") == "Ana" and chat.session.state == "personas"
    await chat.say("3", "el viernes a las 10", "en realidad el lunes a las 10")
    assert chat.var("cuando") == "2026-12-07T10:00:00+01:00" and chat.session.state == "seguro"
