"""Every phrase the voice guards say, keyed by language (the primary subtag of the flow's
`settings.language`), in one place so a message catalogue can take them over: the fillers
said while a slow step runs, the polite ends of a runaway call and their text-backs.
"""

from __future__ import annotations

from typing import Any

# language (primary subtag) -> connector name ("" any other) -> words
FILLERS: dict[str, dict[str, str]] = {
    "en": {"calendar": "One moment while I check the calendar.", "crm": "One moment while I look that up.",
           "": "One moment, please."},
    "es": {"calendar": "Un momento mientras reviso el calendario.", "crm": "Un momento mientras lo busco.",
           "": "Un momento, por favor."},
    "fr": {"calendar": "Un instant, je consulte l'agenda.", "crm": "Un instant, je vérifie.",
           "": "Un instant, s'il vous plaît."},
    "de": {"calendar": "Einen Moment, ich sehe im Kalender nach.", "crm": "Einen Moment, ich sehe nach.",
           "": "Einen Moment, bitte."},
}
STILL: dict[str, str] = {
    "en": "Thanks for waiting, I'm still on it.",
    "es": "Gracias por esperar, sigo en ello.",
    "fr": "Merci de patienter, je m'en occupe.",
    "de": "Danke für Ihre Geduld, ich bin noch dabei.",
}
GAVE_UP: dict[str, str] = {
    "en": "Sorry, that is taking too long. Please call again in a few minutes.",
    "es": "Lo siento, está tardando demasiado. Llame de nuevo en unos minutos, por favor.",
    "fr": "Désolé, cela prend trop de temps. Rappelez dans quelques minutes, s'il vous plaît.",
    "de": "Entschuldigung, das dauert zu lange. Bitte rufen Sie in ein paar Minuten wieder an.",
}


# why a call is ended by a guard -> what the caller hears
GUARD_ENDS: dict[str, dict[str, str]] = {
    "en": {"silence": "I can't hear anything, so I'll let you go. We'll text you so you can carry on there.",
           "stuck": "I'm sorry, I'm not able to help on this call. We'll text you so you can carry on there.",
           "call_too_long": "We're out of time on this call, sorry. We'll text you so you can carry on there."},
    "es": {"silence": "No le escucho, así que voy a colgar. Le enviaremos un mensaje para seguir por ahí.",
           "stuck": "Lo siento, no puedo ayudarle en esta llamada. Le enviaremos un mensaje para seguir por ahí.",
           "call_too_long": "Se nos acabó el tiempo de la llamada. Le enviaremos un mensaje para seguir por ahí."},
}
TEXT_BACK: dict[str, str] = {
    "en": "Sorry we couldn't finish on the phone. Reply here to carry on, or call us back any time.",
    "es": "Lamentamos no haber terminado por teléfono. Responda aquí para continuar, o llámenos cuando quiera.",
}


MACHINE_TEXT_BACK: dict[str, str] = {
    "en": "Sorry we missed each other on the phone. Reply here and we'll take it from there.",
    "es": "Lamentamos no haber podido hablar por teléfono. Responda aquí y seguimos por este medio.",
}
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


WHISPER: dict[str, tuple[str, str, str]] = {  # (line, "about" part, how to accept)
    "en": ("Call from {who}{about}.", " about {about}", "Press 1 to take the call."),
    "es": ("Llamada de {who}{about}.", " sobre {about}", "Pulse 1 para atender la llamada."),
}
WHISPER_DECLINED: dict[str, str] = {
    "en": "Not connected.",
    "es": "No conectada.",
}


def whisper(settings: Any, who: str, about: str | None) -> str:
    line, about_part, _ = WHISPER.get(_lang(settings)) or WHISPER["en"]
    return line.format(who=who, about=about_part.format(about=about) if about else "")


def whisper_accept(settings: Any) -> str:
    return (WHISPER.get(_lang(settings)) or WHISPER["en"])[2]


def sounds_like_machine(text: str, settings: Any) -> bool:
    """Whether a call's first answer is a voicemail greeting or a call-screening prompt."""
    heard = " ".join(text.lower().replace("\u2019", "'").split())
    phrases = MACHINE_PHRASES.get(_lang(settings), ()) + (MACHINE_PHRASES["en"] if _lang(settings) != "en" else ())
    return any(p in heard for p in phrases)


def _lang(settings: Any) -> str:
    return (getattr(settings, "language", None) or "en").split("-", 1)[0].lower()


def phrase(table: dict[str, str], settings: Any) -> str:
    return table.get(_lang(settings)) or table["en"]


def filler_text(settings: Any, action: str | None) -> str:
    """The filler for a turn waiting on `action` ("calendar.find_slots"): the flow's own
    `settings.voice_filler`, else the language's words for that connector, else generic."""
    own = getattr(settings, "voice_filler", None)
    if own:
        return str(own)
    words = FILLERS.get(_lang(settings)) or FILLERS["en"]
    connector = (action or "").partition(".")[0]
    return words.get(connector) or words[""]


def guard_end(settings: Any, why: str) -> str:
    words = GUARD_ENDS.get(_lang(settings)) or GUARD_ENDS["en"]
    return words.get(why) or GUARD_ENDS["en"][why]
