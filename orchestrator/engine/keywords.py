"""Carrier keywords (STOP / START / HELP) as people really type them, on every text channel.

    keyword_kind("\uff33\uff34\uff2f\uff30")    -> "opt_out"   (fullwidth STOP: NFKC)
    keyword_kind("St\u200bop 🛑")     -> "opt_out"   (zero-width and format characters, emoji)
    keyword_kind("stop!!")             -> "opt_out"   (punctuation around the word)
    keyword_kind("don't stop the booking") -> None (a sentence is never a keyword)

A message is a keyword only when, once normalised, the whole of it is one of the words:
NFKC (fullwidth and compatibility forms), format characters (Unicode Cf: zero-width space,
joiners, BOM, bidi marks) removed anywhere, then emoji, symbols, punctuation and marks stripped
from both ends, runs of white space made one space, and case folded. Letters and digits inside
the message are never touched, so a sentence that merely contains "stop" stays a sentence.
SMS (`channels/twilio_sms`), WhatsApp (`channels/whatsapp`), `orchestrator chat` and
`orchestrator test` all call `keyword_kind`, so they agree on what opts a contact out.
"""

from __future__ import annotations

import string
import unicodedata

OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
OPT_IN_WORDS = frozenset({"START", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
_KINDS = {**dict.fromkeys(OPT_OUT_WORDS, "opt_out"), **dict.fromkeys(OPT_IN_WORDS, "opt_in"),
          **dict.fromkeys(HELP_WORDS, "help")}
# No keyword with its decoration (emoji with modifiers, a few zero-width characters, punctuation)
# comes near this length; longer messages are answers, and skip the Unicode work.
MAX_KEYWORD_MESSAGE = 64
_ASCII_EDGES = string.punctuation + string.whitespace
# Categories stripped from the ends of a message: punctuation (P*), symbols (S*: emoji, arrows,
# skin-tone modifiers), marks (M*: variation selectors, the combining keycap), separators (Z*),
# format and other controls (C*: tags of flag sequences, ZWJ)
_EDGE_CATEGORIES = frozenset("PSMZC")


def normalize_keyword(text: str) -> str:
    """The message as compared with the keyword lists (upper case; see the module doc)."""
    if text.isascii():
        return " ".join(text.strip(_ASCII_EDGES).upper().split())
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    start, end = 0, len(text)
    while start < end and unicodedata.category(text[start])[0] in _EDGE_CATEGORIES:
        start += 1
    while end > start and unicodedata.category(text[end - 1])[0] in _EDGE_CATEGORIES:
        end -= 1
    return " ".join(text[start:end].casefold().upper().split())


def keyword_kind(body: str) -> str | None:
    """'opt_out' | 'opt_in' | 'help' when the whole message is a carrier keyword, else None."""
    if not body or len(body) > MAX_KEYWORD_MESSAGE:
        return None
    return _KINDS.get(normalize_keyword(body))
