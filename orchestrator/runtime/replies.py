"""What a turn answers, and what is kept to answer its duplicates the same way.

`TurnReply` is a turn's answer to the webhook; `StoredReply` the lean copy kept with the turn
(`encode_reply` / `decode_reply`: msgpack, what the flow revision gives back left out by
`compact_messages` and restored by `expand_messages`); `reply_context` what an adapter needs to
render or send it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from orchestrator.engine.compiler import CompiledFlow
from orchestrator.errors import NewerFormat
from orchestrator.model import Outbound, Session
from orchestrator.plugins.channels import ReplyContext
from orchestrator.stores.base import require_format


class TurnReply(msgspec.Struct, kw_only=True):
    messages: list[Outbound] = []
    duplicate: bool = False
    session_id: str | None = None
    context: ReplyContext = msgspec.field(default_factory=ReplyContext)
    opted_out: bool = False


class StoredReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What is kept with a delivery's turn to answer its duplicates identically. Kept lean
    (`compact_messages`): what the flow revision gives back (an ask's static choices, the
    flow's language) and the session id (the duplicate's own) are left out."""

    messages: list[Outbound] = []
    flow_choices: list[int] = []  # indexes of messages whose choices are their state's static ones
    revision: str | None = None
    event_kind: str | None = None
    within_window: bool = True
    opted_out: bool = False
    step: str | None = None  # voice action-URL nonce: a duplicate renders byte-identical TwiML
    fmt: int = 1  # stored format (store.FORMATS): stays 1 by default, a newer format sets it


_reply_encoder = msgspec.msgpack.Encoder()
_reply_decoder = msgspec.msgpack.Decoder(StoredReply)


def encode_reply(reply: StoredReply) -> bytes:
    """The stored form: a msgpack map (format in its `fmt` field; the store compresses it with the
    turn's transcript element)."""
    return _reply_encoder.encode(reply)


def decode_reply(raw: bytes) -> StoredReply:
    """A stored reply; NewerFormat when a newer release wrote it (a newer `fmt`, or not a msgpack
    map: b"\xc1" starts no msgpack, a later layout would take it as its mark)."""
    if raw[:1] == b"\xc1":
        raise NewerFormat(f"a stored reply is marked {raw[:2]!r}, which this process does not read; "
                          "left for a newer process")
    stored = _reply_decoder.decode(raw)
    require_format("reply", stored.fmt)
    return stored


def compact_messages(compiled: CompiledFlow, messages: list[Outbound]) -> tuple[list[Outbound], list[int]]:
    """Messages without what `expand_messages` restores from the revision; and which had choices."""
    language = compiled.settings.language
    out: list[Outbound] = []
    elided: list[int] = []
    for i, m in enumerate(messages):
        changes: dict[str, Any] = {}
        state = compiled.states.get(m.state) if m.choices else None
        if state is not None and not state.choices_from and m.choices == state.choices:
            changes["choices"] = []
            elided.append(i)
        if m.language == language:
            changes["language"] = None
        out.append(msgspec.structs.replace(m, **changes) if changes else m)
    return out, elided


def expand_messages(compiled: CompiledFlow | None, messages: list[Outbound], elided: list[int]) -> list[Outbound]:
    if compiled is None:
        return messages
    language = compiled.settings.language
    out: list[Outbound] = []
    for i, m in enumerate(messages):
        changes: dict[str, Any] = {}
        state = compiled.states.get(m.state) if i in elided else None
        if state is not None:
            changes["choices"] = state.choices
        if m.language is None:
            changes["language"] = language
        out.append(msgspec.structs.replace(m, **changes) if changes else m)
    return out


def turn_step(session: Session) -> str:
    """The voice action-URL nonce of a turn: from the session id, its start and its turn count,
    so each question gets a new one and a re-rendered duplicate the same."""
    key = f"{session.id}|{session.started_at!r}|{session.turns}".encode()
    return hashlib.blake2b(key, digest_size=4).hexdigest()


def reply_context(
    compiled: CompiledFlow | None, session_id: str | None, public_url: str, *, within_window: bool = True,
    event_kind: str | None = None, idempotency_key: str | None = None, step: str | None = None,
) -> ReplyContext:
    return ReplyContext(
        settings=compiled.settings if compiled else None, public_url=public_url, session_id=session_id,
        within_window=within_window, event_kind=event_kind, idempotency_key=idempotency_key, step=step,
    )
