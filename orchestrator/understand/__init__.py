"""An optional language model that only parses (SPEC §8): when the rules understood nothing,
ask a model to extract the answer, and use it only once it passes the ask's own type check.

    understander = understander_from_settings(app_settings)   # None: rules only (the default)
    extraction = await understander.extract(ask, ahead, text, settings=flow_settings, now=now)

`extract` returns an `Extraction` (validated values keyed by ask name, the chosen choice
id, an intent name) or None: timed out, the server failed, or nothing it said held up.
Every value the model proposes goes back through `parse_input` for the ask's kind (a
datetime must read as a datetime, a choice must be one of the ask's ids), so a model can
never put into a flow what the rules would refuse. It never writes what the bot says.
Each call is counted and timed (`orchestrator_understand_calls_total{outcome}`,
`orchestrator_understand_seconds`) and described, without the values, by `record`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import msgspec

from orchestrator import metrics
from orchestrator.engine.inputs import choice_matcher, parse_input
from orchestrator.errors import ConfigError
from orchestrator.flow import schema
from orchestrator.model import OutChoice

__all__ = [
    "Ask",
    "Extraction",
    "ModelUnderstander",
    "Understander",
    "understander_from_settings",
]

log = logging.getLogger(__name__)

Outcome = Literal["ok", "nothing", "invalid", "timeout", "error"]


class Ask(msgspec.Struct, frozen=True, kw_only=True):
    """What the model is told about one ask: its name, what it asks, its type and choices."""

    name: str
    question: str = ""
    input: str = "text"
    choices: tuple[tuple[str, str], ...] = ()  # (id, label)


class Extraction(msgspec.Struct, frozen=True, kw_only=True):
    """Values that passed their ask's type check, keyed by ask name; a choice id of the
    current ask; an intent of the flow."""

    values: dict[str, Any] = {}
    choice: str | None = None
    intent: str | None = None


class Understander(Protocol):
    model: str

    async def extract(
        self, ask: Ask, ahead: Sequence[Ask], text: str, *, settings: schema.Settings, now: dt.datetime,
        intents: Sequence[str] = (),
    ) -> Extraction | None: ...


class _Reply(msgspec.Struct, kw_only=True):
    """The JSON the model must answer with."""

    values: dict[str, str | int | float | bool | None] = {}
    choice: str | None = None
    intent: str | None = None


_REPLY = msgspec.json.Decoder(_Reply)

SYSTEM = (
    "You read one message a customer sent to a business's booking assistant and extract answers. "
    "You never write a reply to the customer. Answer with one JSON object only: "
    '{"values": {<ask name>: <value as the customer gave it, or null>}, "choice": <choice id of the '
    'current ask or null>, "intent": <intent name or null>}. '
    "Only include an ask when the message clearly answers it. Dates and times: ISO 8601 in the given "
    "timezone (YYYY-MM-DDTHH:MM), or the customer's own words. Names: the person's name only. "
    "Choices: one of the listed ids. Never invent values."
)


def _prompt(ask: Ask, ahead: Sequence[Ask], text: str, settings: schema.Settings, now: dt.datetime,
            intents: Sequence[str]) -> str:
    payload = {
        "now": now.isoformat(timespec="minutes"),
        "timezone": settings.timezone,
        "language": settings.language,
        "current_ask": msgspec.to_builtins(ask),
        "asks_ahead": [msgspec.to_builtins(a) for a in ahead],
        "intents": list(intents),
        "message": text,
    }
    return msgspec.json.encode(payload).decode()


def _check(value: Any, ask: Ask, settings: schema.Settings, now: dt.datetime) -> tuple[bool, Any, str | None]:
    """The model's value through the rules for the ask's kind: (ok, typed value, choice id)."""
    if value is None or (isinstance(value, bool) and ask.input != "yes_no"):
        return False, None, None
    if ask.input == "yes_no" and isinstance(value, bool):
        return True, value, None
    text = str(value)
    if ask.choices or ask.input == "choice":
        ids = {cid for cid, _ in ask.choices}
        if text in ids:
            return True, text, text
        matcher = choice_matcher([OutChoice(id=cid, label=label) for cid, label in ask.choices])
        result = matcher.match(text, fuzzy=False, language=settings.language)
        return (True, result.value, result.choice_id) if result.ok else (False, None, None)
    result = parse_input(ask.input, text, settings=settings, now=now, language=settings.language)
    return (result.ok, result.value, result.choice_id) if result.ok else (False, None, None)


def validate(reply: _Reply, ask: Ask, ahead: Sequence[Ask], settings: schema.Settings, now: dt.datetime,
             intents: Sequence[str]) -> Extraction | None:
    by_name = {a.name: a for a in (ask, *ahead)}
    values: dict[str, Any] = {}
    choice: str | None = None
    for name, raw in reply.values.items():
        target = by_name.get(name)
        if target is None:
            continue
        ok, typed, cid = _check(raw, target, settings, now)
        if ok:
            values[name] = typed
            if target is ask and cid is not None:
                choice = cid
    if reply.choice is not None and ask.choices:
        ok, typed, cid = _check(reply.choice, ask, settings, now)
        if ok and cid is not None:
            choice = cid
            values.setdefault(ask.name, typed)
    intent = reply.intent if reply.intent in intents else None
    if not values and choice is None and intent is None:
        return None
    return Extraction(values=values, choice=choice, intent=intent)


class ModelUnderstander:
    """An OpenAI-compatible chat-completions server (OpenAI, a local Ollama, vLLM, llama.cpp)
    through the `openai` client, bounded by `timeout_ms`; any failure is None."""

    def __init__(self, *, model: str, base_url: str | None, api_key: str | None, timeout_ms: float) -> None:
        try:
            import openai
        except ImportError as exc:
            raise ConfigError(
                "ORCHESTRATOR_UNDERSTAND=openai needs the openai client "
                "(fix: pip install 'conversation-orchestrator[llm]', or set ORCHESTRATOR_UNDERSTAND=rules)"
            ) from exc
        self.model = model
        self.timeout = timeout_ms / 1000
        # no retries: the customer is waiting on this turn; past the timeout the rules' answer stands
        self.client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=self.timeout, max_retries=0,
        )
        self.last: dict[str, Any] = {}  # what the latest call did, for the transcript (`record`)

    async def _ask(self, prompt: str) -> str:
        response = await self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
            response_format={"type": "json_object"},
            temperature=0,
        )
        return response.choices[0].message.content or ""

    async def extract(
        self, ask: Ask, ahead: Sequence[Ask], text: str, *, settings: schema.Settings, now: dt.datetime,
        intents: Sequence[str] = (),
    ) -> Extraction | None:
        started = time.perf_counter()
        outcome: Outcome
        extraction: Extraction | None = None
        try:
            content = await asyncio.wait_for(
                self._ask(_prompt(ask, ahead, text, settings, now, intents)), self.timeout
            )
            extraction = validate(_REPLY.decode(_json_object(content)), ask, ahead, settings, now, intents)
            outcome = "ok" if extraction is not None else "nothing"
        except TimeoutError:
            outcome = "timeout"
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("understand: the model's answer is not the JSON asked for: %s", exc)
            outcome = "invalid"
        except Exception as exc:  # the server or the client failed: the rules' answer stands
            outcome = "timeout" if type(exc).__name__ == "APITimeoutError" else "error"
            log.warning("understand: %s call failed: %s", self.model, type(exc).__name__)
        seconds = time.perf_counter() - started
        metrics.labelled(metrics.UNDERSTAND_CALLS, outcome).inc()
        metrics.UNDERSTAND_SECONDS.observe(seconds)
        self.last = record(self.model, outcome, seconds, extraction)
        return extraction


def _json_object(content: str) -> bytes:
    """The JSON object in a reply (some servers wrap it in a ```json fence)."""
    start, end = content.find("{"), content.rfind("}")
    return content[start : end + 1].encode() if start != -1 and end > start else content.encode()


def record(model: str, outcome: str, seconds: float, extraction: Extraction | None) -> dict[str, Any]:
    """A transcript entry's data: what was asked and found, never the values (they are saved,
    and recorded, as the answer itself once the flow uses them)."""
    data: dict[str, Any] = {"model": model, "outcome": outcome, "ms": round(seconds * 1000, 1)}
    if extraction is not None:
        data["fields"] = sorted(extraction.values)
        if extraction.choice is not None:
            data["choice"] = extraction.choice
        if extraction.intent is not None:
            data["intent"] = extraction.intent
    return data


def understander_from_settings(settings: Any) -> Understander | None:
    """`ORCHESTRATOR_UNDERSTAND=rules` (default): None. `openai`: a `ModelUnderstander`."""
    mode = (getattr(settings, "understand", None) or "rules").strip().lower()
    if mode == "rules":
        return None
    if mode != "openai":
        raise ConfigError(f"ORCHESTRATOR_UNDERSTAND={mode!r} is not known (fix: use rules or openai)")
    model = getattr(settings, "understand_model", None)
    if not model:
        raise ConfigError("ORCHESTRATOR_UNDERSTAND=openai needs a model (fix: set ORCHESTRATOR_UNDERSTAND_MODEL, "
                          "e.g. gpt-4o-mini, or llama3.1 on a local Ollama)")
    return ModelUnderstander(
        model=model, base_url=getattr(settings, "openai_base_url", None),
        api_key=getattr(settings, "openai_api_key", None),
        timeout_ms=float(getattr(settings, "understand_timeout_ms", 1500.0)),
    )


def ask_of(name: str, question: str, kind: str, choices: Sequence[OutChoice]) -> Ask:
    return Ask(name=name, question=question, input=kind, choices=tuple((c.id, c.label) for c in choices))


def asks_ahead(states: Mapping[str, Any], start: str | None, limit: int = 4) -> list[Ask]:
    """The asks reached by following `next` from `start` through says and calls (a branch,
    a handoff or an end stops the walk): what the model is told the contact may also answer."""
    out: list[Ask] = []
    seen: set[str] = set()
    name = start
    while name is not None and name not in seen and len(out) < limit:
        seen.add(name)
        state = states.get(name)
        if state is None or state.kind not in ("ask", "say", "call"):
            break
        if state.kind == "ask" and not state.choices_from:
            question = state.spec.ask if isinstance(state.spec.ask, str) else ""
            out.append(ask_of(state.name, question, state.input, state.choices))
        name = state.routes.get("next") or state.routes.get("ok")
    return out
