"""The send step (`call: message.send`): a message to the contact or to staff, on the
conversation's channel or another one, as part of the turn.

    find_slots -> book -> confirm_by_sms:
      call: message.send
      args: {text: "Booked: {{ booking.label }}", channel: sms}   # to: contact (default) | staff | "+1..."
      on: {ok: done, error: done}

Nothing is sent here: the engine emits a `send` Outbound and the runtime puts it in the
outbox in the same atomic commit as the turn, so it goes out exactly once, after the turn is
saved, and the outbox sender drops it if the recipient has opted out (STOP) by then. On
WhatsApp outside the 24 h window it goes as the `template:` given (or the flow's
`settings.whatsapp_template`), since Meta refuses free text there.

`message` is built in: it is always installed and needs no configuration, so `validate`
knows its one action and its arguments (`ARGS`) without a connector registry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from orchestrator.model import Outbound
from orchestrator.plugins.connectors import ConnectorResult

CONNECTOR = "message"
ACTIONS = ("send",)
ARGS = ("text", "to", "channel", "template")
CHANNELS = ("same", "sms", "whatsapp")  # `same`: the conversation's channel (a call's texts go by SMS)
TO_CONTACT, TO_STAFF = "contact", "staff"
TEXT_LIMIT = 1600  # one SMS body's practical ceiling (10 segments); WhatsApp takes 4096
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def is_send(action: str) -> bool:
    return action.partition(".")[0] == CONNECTOR


def plan(state: str, args: Mapping[str, Any], *, staff: str | None, channel: str,
         text_back: str) -> tuple[Outbound | None, ConnectorResult]:
    """The Outbound for a `message.send` with rendered `args`, and the step's result (`ok`
    with what was queued, or `error` saying why nothing could be)."""
    text = str(args.get("text") or "").strip()
    template = str(args.get("template") or "").strip() or None
    if not text and not template:
        return None, ConnectorResult(outcome="error", detail="message.send: the text rendered empty")
    if len(text) > TEXT_LIMIT:
        return None, ConnectorResult(outcome="error", detail=f"message.send: the text is longer than {TEXT_LIMIT}")
    to = str(args.get("to") or TO_CONTACT).strip()
    if to == TO_STAFF:
        if not staff:
            return None, ConnectorResult(outcome="error", detail="message.send: to staff, but no settings.staff_notify")
        return (Outbound(kind="notify", text=text, state=state, target=staff),
                ConnectorResult(outcome="ok", value={"to": TO_STAFF, "channel": "staff"}))
    if to != TO_CONTACT and not _E164.match(to):
        return None, ConnectorResult(outcome="error", detail="message.send: `to` is not a phone number (E.164)")
    via = str(args.get("channel") or "same").strip()
    if via not in CHANNELS:
        return None, ConnectorResult(outcome="error", detail=f"message.send: unknown channel {via!r}")
    if via == "same":
        via = channel if channel in ("sms", "whatsapp") else text_back
    message = Outbound(kind="send", text=text, state=state, target=None if to == TO_CONTACT else to,
                       via=via, template=template)
    return message, ConnectorResult(outcome="ok", value={"to": TO_CONTACT if to == TO_CONTACT else "number",
                                                         "channel": via})
