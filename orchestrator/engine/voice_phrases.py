"""What the voice guards say, in the conversation's language: the words are keys of the message
catalogues (`orchestrator/languages/catalogue/*.yaml`, `voice_*`), a language without its own
saying English; the voicemail / call-screening phrases a call's first words are checked
against are lists, so they are kept here, per language.
"""

from __future__ import annotations

from typing import Any

from orchestrator.flow.schema import plain
from orchestrator.languages.messages import Catalogue, catalogue


def words(settings: Any) -> Catalogue:
    return catalogue(getattr(settings, "language", None) or "en")


def filler_text(settings: Any, action: str | None) -> str:
    """The filler for a turn waiting on `action` ("calendar.find_slots"): the flow's own
    `settings.voice_filler`, else the language's words for that connector, else generic."""
    own = getattr(settings, "voice_filler", None)
    if own:
        return plain(own)
    said = words(settings)
    connector = (action or "").partition(".")[0]
    return said.words.get(f"voice_filler_{connector}") or said["voice_filler"]


def whisper(settings: Any, who: str, about: str | None) -> str:
    said = words(settings)
    return said.say("voice_whisper_about", who=who, about=about) if about else said.say("voice_whisper", who=who)


# What a voicemail greeting or a call-screening assistant says (the first answer of a call is
# checked), as lowercase phrases with straight apostrophes. Only what a person calling in would
# not say: "leave a message" alone is a caller's wish, "after the tone" is a machine's.
MACHINE_PHRASES: dict[str, tuple[str, ...]] = {
    "en": ("after the tone", "after the beep", "at the tone", "not available to take your call",
           "is not available right now", "isn't available right now", "can't take your call", "cannot take your call",
           "the person you're calling", "the person you are calling", "the number you have dialed",
           "the number you have reached", "you have reached the voicemail", "you've reached the voicemail",
           "voicemail box", "mailbox is full", "screening service", "call screening", "is using a screening",
           "record your name and reason", "say your name and why you're calling", "stay on the line while",
           "google assistant", "this call is being screened", "forwarded to an automated voice messaging"),
    "es": ("después del tono", "despues del tono", "buzón de voz", "buzon de voz", "no está disponible",
           "no esta disponible", "la persona a la que llama", "el número que usted marcó", "deje su mensaje después",
           "servicio de filtrado"),
    "fr": ("après le bip", "apres le bip", "messagerie vocale", "n'est pas disponible", "laissez votre message"),
    "de": ("nach dem signalton", "nach dem piepton", "mailbox", "nicht erreichbar", "ist zurzeit nicht"),
}


def _lang(settings: Any) -> str:
    return (getattr(settings, "language", None) or "en").split("-", 1)[0].lower()


def sounds_like_machine(text: str, settings: Any) -> bool:
    """Whether a call's first answer is a voicemail greeting or a call-screening prompt."""
    heard = " ".join(text.lower().replace("\u2019", "'").split())
    phrases = MACHINE_PHRASES.get(_lang(settings), ()) + (MACHINE_PHRASES["en"] if _lang(settings) != "en" else ())
    return any(p in heard for p in phrases)
