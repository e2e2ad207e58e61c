"""Staff notifications: the engine's `notify` messages and the end-of-conversation summary
go to the business's staff number through the channel send path (the outbox), in the same
atomic commit as the turn that produced them.

    staff_messages(compiled, result)   -> the notify Outbounds of this turn, with their targets
    split_contact(messages)            -> the messages meant for the contact (no notify)

A `notify` is never shown to the contact: the runtime sends it to `target` as its own
outbox item (`<session id>|staff-<uniq>`) through a text channel (SMS first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.engine.summary import default_text
from orchestrator.model import Outbound, TurnResult

if TYPE_CHECKING:
    from orchestrator.engine.compiler import CompiledFlow

# Outcomes staff act on: a booking, a handoff, a message taken, a contact the flow could not
# understand (the built-in fallback), a message that could not be delivered. Others (hours given,
# cancelled) are in the records and the analytics but page nobody.
NOTIFY_OUTCOMES = frozenset({"booked", "handed_off", "message_taken", "callback_requested", "not_understood",
                            "undelivered", "silence", "stuck", "call_too_long"})


def summary_text(compiled: CompiledFlow, summary: Mapping[str, Any]) -> str:
    """The summary's own text (`summary.build`: `settings.summary` or the default); a
    summary built without one is rendered the default way."""
    text = summary.get("text")
    if isinstance(text, str) and text:
        return text
    return default_text(compiled.summary, compiled.title, summary)


def staff_messages(compiled: CompiledFlow, result: TurnResult) -> list[Outbound]:
    """This turn's messages for staff: the engine's notify messages, plus, when the flow sets
    `settings.staff_notify` and the conversation ended with an outcome staff act on, its
    summary (unless the turn notified staff already)."""
    out = [m for m in result.messages if m.kind == "notify" and m.target]
    staff = compiled.settings.staff_notify
    summary = result.summary
    told = [m for m in out if m.target != result.session.contact]  # a text-back to the contact tells no staff
    if staff and result.ended and summary is not None and not told:
        outcome = summary.get("outcome")
        if outcome in NOTIFY_OUTCOMES or summary.get("booking"):
            out.append(Outbound(kind="notify", text=summary_text(compiled, summary),
                                state=result.session.state, target=staff))
    return out


def contact_messages(messages: list[Outbound]) -> list[Outbound]:
    """What the conversation itself shows the contact: not staff notes, not `message.send`s
    (those go out as their own outbox items, on their own channel)."""
    return [m for m in messages if m.kind not in ("notify", "send")]
