"""The optional language model that only parses (SPEC §8, #14 item 7), against a local fake
OpenAI-compatible server on 127.0.0.1 through the real `openai` client: right JSON, wrong
JSON, slow past the timeout, a 500. Never a real model."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fakes.http import FakeHTTPServer, Recorded, Reply, json_reply
from flowkit import FIXED_NOW, load_test_flow

from orchestrator import metrics
from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.turn import Engine
from orchestrator.errors import ConfigError
from orchestrator.model import Event, Session, TurnResult
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.settings import AppSettings
from orchestrator.understand import ModelUnderstander, understander_from_settings

FLOW = """\
flow: plumber
start: ask_name
settings: {timezone: America/New_York}
intents:
  agent: {match: [agent], goto: staff}
states:
  ask_name:
    ask: "Who am I speaking with?"
    input: name
    save: name
    next: ask_problem
  ask_problem:
    ask: "What's the problem?"
    choices:
      leak: {label: A leak}
      heat: {label: No heating}
    save: problem
    next: ask_when
  ask_when:
    ask: "When should we come?"
    input: datetime
    save: when
    next: done
  done:
    say: "Thanks {{ name }}: {{ problem }} at {{ when }}"
    end: booked
  staff:
    say: "Putting you through."
    end: handoff
"""


def completion(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "fake",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class FakeModel:
    """Answers every chat completion with the next queued content (or `{}`)."""

    def __init__(self) -> None:
        self.replies: list[Any] = []

    def __call__(self, request: Recorded) -> Reply:
        if not request.path.endswith("/chat/completions"):
            return json_reply(404, {"error": {"message": "not found"}})
        content = self.replies.pop(0) if self.replies else {}
        return json_reply(200, completion(content if isinstance(content, str) else json.dumps(content)))


@pytest.fixture
def model() -> FakeModel:
    return FakeModel()


@pytest.fixture
def server(model: FakeModel) -> Any:
    with FakeHTTPServer(model) as srv:
        yield srv


def engine_for(server: FakeHTTPServer, timeout_ms: float = 1500) -> Engine:
    understander = ModelUnderstander(model="fake-llm", base_url=f"{server.url}/v1", api_key="sk-test",
                                     timeout_ms=timeout_ms)
    return Engine(compile_flow(load_test_flow(FLOW, "plumber.yaml")), ConnectorRegistry(), understander)


class Talk:
    def __init__(self, engine: Engine) -> None:
        self.engine, self.now = engine, FIXED_NOW
        self.session: Session = engine.new_session("biz:+15555550123", business="biz", contact="+15555550123",
                                                   channel="sms", now=self.now)

    async def send(self, kind: str, text: str | None = None) -> TurnResult:
        self.now += 5
        result = await self.engine.turn(self.session, Event(kind=kind, text=text, channel="sms"), self.now)  # type: ignore[arg-type]
        self.session = result.session
        return result


def calls(outcome: str) -> float:
    return metrics.labelled(metrics.UNDERSTAND_CALLS, outcome)._value.get()  # type: ignore[no-any-return]


def understand_notes(result: TurnResult) -> list[dict[str, Any]]:
    return [e.data for e in result.transcript if e.dir == "note" and e.text == "understand"]


async def test_right_json_fills_the_answer_the_rules_missed(server: FakeHTTPServer, model: FakeModel) -> None:
    talk = Talk(engine_for(server))
    await talk.send("start")
    model.replies.append({"values": {"ask_name": "Maria Lopez", "ask_when": "2026-11-26T10:00"}})
    before = calls("ok")
    # the rules refuse it (a sentence, not a name); the model reads the name out of it
    result = await talk.send("text", "ugh my basement is flooding, maria lopez btw")
    assert talk.session.state == "ask_problem"
    assert talk.session.vars["name"] == "Maria Lopez"
    assert calls("ok") == before + 1
    # what the model was told: the current ask, the asks ahead with types and choices, the message
    body = server.requests[-1].json()
    assert body["model"] == "fake-llm" and body["response_format"] == {"type": "json_object"}
    assert server.requests[-1].headers["authorization"] == "Bearer sk-test"
    told = json.loads(body["messages"][1]["content"])
    assert told["current_ask"]["name"] == "ask_name" and told["current_ask"]["input"] == "name"
    assert [(a["name"], a["input"]) for a in told["asks_ahead"]] == [("ask_problem", "choice"),
                                                                     ("ask_when", "datetime")]
    assert told["asks_ahead"][0]["choices"] == [["leak", "A leak"], ["heat", "No heating"]]
    assert told["message"] == "ugh my basement is flooding, maria lopez btw" and told["intents"] == ["agent"]
    # recorded without the values; the bot's words are the flow's, never the model's
    notes = understand_notes(result)
    assert notes and notes[0]["outcome"] == "ok" and notes[0]["model"] == "fake-llm"
    assert notes[0]["fields"] == ["ask_name", "ask_when"] and "Maria" not in json.dumps(notes)
    assert result.messages[-1].text == "What's the problem?"


async def test_a_choice_and_an_intent(server: FakeHTTPServer, model: FakeModel) -> None:
    talk = Talk(engine_for(server))
    await talk.send("start")
    await talk.send("text", "Maria")
    model.replies.append({"choice": "heat"})
    await talk.send("text", "the radiators are stone cold")
    assert talk.session.vars["problem"] == "heat" and talk.session.state == "ask_when"
    model.replies.append({"intent": "agent"})
    result = await talk.send("text", "can i just talk to whoever is in charge")
    assert result.session.state == "staff" or result.ended


async def test_wrong_json_leaves_the_rules_answer(server: FakeHTTPServer, model: FakeModel) -> None:
    talk = Talk(engine_for(server))
    await talk.send("start")
    await talk.send("text", "Maria")
    await talk.send("text", "a leak")
    before_invalid, before_nothing = calls("invalid"), calls("nothing")
    model.replies.append("I think they mean tomorrow!")  # not JSON
    result = await talk.send("text", "let me check with my wife first")
    assert talk.session.state == "ask_when" and result.messages[-1].reprompt
    assert calls("invalid") == before_invalid + 1
    # JSON of the wrong shape, and values that fail the ask's type, are not used either
    model.replies.append({"values": ["2026-11-26"]})
    await talk.send("text", "let me check with my wife first")
    assert calls("invalid") == before_invalid + 2
    model.replies.append({"values": {"ask_when": "purple"}, "choice": "nope", "intent": "made_up"})
    result = await talk.send("text", "let me check with my wife first")
    assert calls("nothing") == before_nothing + 1
    assert "when" not in talk.session.vars
    assert understand_notes(result)[0]["outcome"] == "nothing"


async def test_slow_past_the_timeout_the_rules_answer_stands(server: FakeHTTPServer, model: FakeModel) -> None:
    talk = Talk(engine_for(server, timeout_ms=200))
    await talk.send("start")
    server.delay_seconds = 1.0
    model.replies.append({"values": {"ask_name": "Maria"}})
    before = calls("timeout")
    started = time.perf_counter()
    result = await talk.send("text", "ugh my basement is flooding")
    elapsed = time.perf_counter() - started
    assert elapsed < 0.6, elapsed  # bounded by the timeout, not the server
    assert talk.session.state == "ask_name" and result.messages[-1].reprompt
    assert "name" not in talk.session.vars
    assert calls("timeout") == before + 1
    assert understand_notes(result)[0]["outcome"] == "timeout"


async def test_a_500_leaves_the_rules_answer(server: FakeHTTPServer, model: FakeModel) -> None:
    talk = Talk(engine_for(server))
    await talk.send("start")
    server.script(500, {"error": {"message": "boom"}})
    before = calls("error")
    result = await talk.send("text", "my furnace is out")
    assert talk.session.state == "ask_name" and result.messages[-1].reprompt
    assert calls("error") == before + 1
    assert len(server.requests) == 1  # no retries: the customer is waiting


async def test_the_model_is_not_asked_when_the_rules_understood(server: FakeHTTPServer, model: FakeModel) -> None:
    talk = Talk(engine_for(server))
    await talk.send("start")
    await talk.send("text", "Hi, this is Maria Lopez")
    await talk.send("text", "a leak")
    await talk.send("text", "tomorrow at 10am")
    assert talk.session.vars["name"] == "Maria Lopez" and talk.session.vars["when"] == "2026-11-26T10:00:00-05:00"
    assert server.requests == []


def test_settings_choose_the_understander(server: FakeHTTPServer) -> None:
    assert understander_from_settings(AppSettings()) is None  # rules: no network
    env = {"ORCHESTRATOR_UNDERSTAND": "openai", "ORCHESTRATOR_UNDERSTAND_MODEL": "llama3.1",
           "OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": "sk-secret",
           "ORCHESTRATOR_UNDERSTAND_TIMEOUT_MS": "900"}
    settings = AppSettings.from_env(env)
    assert "sk-secret" not in repr(settings)
    understander = understander_from_settings(settings)
    assert isinstance(understander, ModelUnderstander)
    assert understander.model == "llama3.1" and understander.timeout == 0.9
    with pytest.raises(ConfigError, match="ORCHESTRATOR_UNDERSTAND_MODEL"):
        understander_from_settings(AppSettings.from_env({"ORCHESTRATOR_UNDERSTAND": "openai"}))
    with pytest.raises(ConfigError, match="rules or openai"):
        understander_from_settings(AppSettings.from_env({"ORCHESTRATOR_UNDERSTAND": "gpt"}))


def test_metrics_are_exposed() -> None:
    body, _ = metrics.render()
    assert b"orchestrator_understand_calls_total" in body and b"orchestrator_understand_seconds" in body
