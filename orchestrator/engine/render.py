"""Rich output degrades here, in one place, driven by a channel's declared capabilities.

An `ask` with choices becomes reply buttons (if they fit), a list (if that fits), a
spoken "press 1" menu (voice), or a numbered text menu. Adapters call `present` and
only translate the result into their provider's format.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from orchestrator.languages.messages import Catalogue, catalogue
from orchestrator.model import Outbound, OutChoice
from orchestrator.plugins.channels import Capabilities

Mode = Literal["text", "buttons", "list", "numbered", "voice_menu"]


class Presentation(msgspec.Struct, kw_only=True):
    mode: Mode
    text: str  # the body to show or say (a numbered/voice menu is already appended)
    choices: list[OutChoice] = []  # buttons or list rows, titles already shortened


def shorten(label: str, limit: int) -> str:
    """Cut a title to `limit` characters at a word boundary, marking the cut with an ellipsis.

    "Tuesday 2 December at 3:30 PM" at 20 -> "Tuesday 2 December…"."""
    label = " ".join(label.split())
    if len(label) <= limit:
        return label
    cut = label[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + "…"


def fits_as_buttons(choices: list[OutChoice], caps: Capabilities) -> bool:
    """Reply buttons show nothing but their titles: a title cut inside a word
    ("Emergency appointme…") breaks its meaning, so such choices go to a list instead,
    whose rows carry the full label as their description. A cut at a word boundary
    ("Teeth whitening…") is kept, unless it drops what follows a " · " (a slot's staff name)."""
    limit = caps.button_title_len
    for c in choices:
        label = " ".join(c.label.split())
        kept = shorten(label, limit).removesuffix("…") if limit else label
        if label[len(kept):][:1].isalnum():  # the cut fell inside a word
            return False
        if " · " in label and len(kept) < len(label):  # "10:00 AM · Ana" cut loses who the time is with
            return False
    return True


def choice_digit(choice: OutChoice, index: int) -> str:
    """The key a caller presses for a choice: its own dtmf digit, else its number in the list."""
    return choice.dtmf or str(index + 1)


def numbered_menu(choices: list[OutChoice]) -> str:
    return "\n".join(f"{i + 1}) {c.label}" for i, c in enumerate(choices))


def voice_menu(choices: list[OutChoice], words: Catalogue | None = None) -> str:
    """"For Cut, press 1. ..." in the message's language ("Para Corte, pulse 1.")."""
    words = words or catalogue()
    return " ".join(words.say("press", label=c.label, digit=choice_digit(c, i)) for i, c in enumerate(choices))


def words_of(message: Outbound) -> Catalogue:
    """The engine's words in the language of a message (its `language` tag; English without)."""
    return catalogue(message.language)


def present(message: Outbound, caps: Capabilities) -> Presentation:
    choices = message.choices
    if message.kind != "ask" or not choices:
        return Presentation(mode="text", text=message.text)
    if caps.speech or caps.dtmf:
        return Presentation(mode="voice_menu", text=f"{message.text} {voice_menu(choices, words_of(message))}".strip())
    if caps.max_buttons and len(choices) <= caps.max_buttons and fits_as_buttons(choices, caps):
        titles = [shorten(c.label, caps.button_title_len) for c in choices]
        if len(set(titles)) == len(titles):  # cutting must not make two buttons look alike
            return Presentation(
                mode="buttons",
                text=message.text,
                choices=[msgspec.structs.replace(c, label=t) for c, t in zip(choices, titles, strict=True)],
            )
    if caps.max_list_rows and len(choices) <= caps.max_list_rows:
        titles = [shorten(c.label, caps.row_title_len) for c in choices]
        if len(set(titles)) == len(titles):
            rows = [
                msgspec.structs.replace(c, label=t, description=c.description or (c.label if t != c.label else None))
                for c, t in zip(choices, titles, strict=True)
            ]
            return Presentation(mode="list", text=message.text, choices=rows)
    return Presentation(mode="numbered", text=f"{message.text}\n{numbered_menu(choices)}")
