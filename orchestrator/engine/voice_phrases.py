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
