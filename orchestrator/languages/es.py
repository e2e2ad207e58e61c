"""Spanish (Spain and Latin America): what people text and say, as tables.

Accents are optional ("mañana" / "manana", "miércoles" / "miercoles"): people often text
without them. Dates and times are rewritten into the reader's words before reading
("mañana a las 5 y media de la tarde" -> "tomorrow at 5:30 pm"), so the opening hours
settle an hour said bare ("a las 5") exactly as in English."""

from __future__ import annotations

from pathlib import Path

from orchestrator.languages import LanguagePack
from orchestrator.languages.rules import LanguageRules

WEEKDAYS = {
    "lunes": 0, "lun": 0, "martes": 1, "mar": 1, "miércoles": 2, "mié": 2, "mier": 2, "jueves": 3, "jue": 3,
    "viernes": 4, "vie": 4, "sábado": 5, "sáb": 5, "domingo": 6, "dom": 6,
}
MONTHS = {
    "enero": 1, "ene": 1, "febrero": 2, "feb": 2, "marzo": 3, "abril": 4, "abr": 4, "mayo": 5,
    "junio": 6, "jun": 6, "julio": 7, "jul": 7, "agosto": 8, "ago": 8, "septiembre": 9, "setiembre": 9,
    "sept": 9, "sep": 9, "octubre": 10, "oct": 10, "noviembre": 11, "nov": 11, "diciembre": 12, "dic": 12,
}
RELATIVE_DAYS = {
    "hoy": 0, "hoy mismo": 0, "mañana": 1, "mñn": 1, "mñna": 1, "pasado mañana": 2,
}
PARTS_OF_DAY = {
    "por la mañana": "morning", "de la mañana": "morning", "en la mañana": "morning", "a la mañana": "morning",
    "la mañana": "morning", "esta mañana": "this morning", "mañana por la mañana": "tomorrow morning",
    "temprano": "early morning", "a primera hora": "first thing", "primera hora": "first thing",
    "a primerísima hora": "first thing", "a media mañana": "mid morning", "media mañana": "mid morning",
    "a última hora": "end of the day", "última hora": "end of the day", "al final del día": "end of the day",
    "a mediodía": "noon", "al mediodía": "noon", "mediodía": "noon", "a medio día": "noon",
    "medio día": "noon", "a la hora de comer": "lunchtime", "a la hora de la comida": "lunchtime",
    "antes de comer": "before lunch", "después de comer": "after lunch", "después de la comida": "after lunch",
    "por la tarde": "afternoon", "de la tarde": "afternoon", "en la tarde": "afternoon",
    "a la tarde": "afternoon", "la tarde": "afternoon", "esta tarde": "this afternoon", "tarde": "afternoon",
    "a media tarde": "mid afternoon", "media tarde": "mid afternoon",
    "después del trabajo": "after work", "al salir del trabajo": "after work",
    "esta noche": "tonight", "por la noche": "evening", "de la noche": "evening", "en la noche": "evening",
    "a la noche": "evening", "la noche": "evening", "noche": "evening", "medianoche": "midnight",
}
MERIDIEM = {
    "de la mañana": "am", "de la madrugada": "am", "am": "am", "a m": "am",
    "de la tarde": "pm", "de la noche": "pm", "del mediodía": "pm", "pm": "pm", "p m": "pm",
}
PHRASES = {
    # at / around / before / after an hour
    "a las": "at", "a la": "at", "las": "at", "sobre las": "around", "sobre la": "around",
    "hacia las": "around", "hacia la": "around", "a eso de las": "around", "a eso de la": "around",
    "alrededor de las": "around", "tipo": "around", "como a las": "around", "para las": "at",
    "para la": "at", "antes de las": "before", "antes de la": "before", "no más tarde de las": "before",
    "después de las": "after", "despues de la": "after", "a partir de las": "after", "a partir de la": "after",
    "desde las": "after", "en punto": "",
    # days and weeks
    "primero de": "1st", "el primero de": "1st", "uno de": "1st",
    "la semana que viene": "next week", "semana que viene": "next week", "la próxima semana": "next week",
    "próxima semana": "next week", "la semana próxima": "next week", "la otra semana": "next week",
    "esta semana": "this week", "el fin de semana": "saturday", "este fin de semana": "saturday",
    "finde": "saturday", "dentro de una semana": "in a week", "en una semana": "in a week",
    "de hoy en ocho": "a week from today", "de hoy en quince": "two weeks from today",
    "de mañana en ocho": "a week from tomorrow",
    # offsets
    "dentro de": "in", "en": "in", "media hora": "half an hour", "una hora y media": "an hour and a half",
    "hora y media": "an hour and a half", "una hora": "an hour", "un día": "a day", "una semana": "a week",
    "un par de horas": "2 hours", "un par de días": "2 days", "horas": "hours", "hora": "hour",
    "minutos": "minutes", "minuto": "minute", "min": "minutes", "días": "days", "día": "day",
    "semanas": "weeks", "quincena": "fortnight",
    # the earliest / no preference
    "lo antes posible": "asap", "lo más pronto posible": "asap", "lo más pronto": "asap",
    "cuanto antes": "asap", "en cuanto se pueda": "asap", "en cuanto puedan": "asap",
    "ahora mismo": "right now", "ya mismo": "right now", "ahora": "now", "cuanto primero": "asap",
    "el primer hueco": "first available", "primer hueco": "first available",
    "lo primero que tengas": "first available", "lo primero que tengáis": "first available",
    "lo primero disponible": "first available", "la primera disponible": "first available",
    "la primera cita disponible": "first available", "urgente": "asap",
    "cuando sea": "any time", "cuando quieras": "any time", "cuando queráis": "any time",
    "cuando quiera": "any time", "cuando puedan": "any time", "me da igual": "doesn't matter",
    "me es igual": "doesn't matter", "da igual": "doesn't matter", "cualquier hora": "any time",
    "a cualquier hora": "any time", "cualquier momento": "any time", "en cualquier momento": "any time",
    "cualquier día": "any day", "sin preferencia": "no preference", "lo que sea": "whatever works",
    "como prefieras": "up to you", "como prefiera": "up to you", "lo que mejor os venga": "up to you",
    "lo que os venga mejor": "up to you",
    # "el próximo martes", "el martes que viene": the next one after today
    "próximo": "upcoming", "próxima": "upcoming", "que viene": "upcoming", "este": "this", "esta": "this",
}
MINUTES_AFTER = {"y media": 30, "y cuarto": 15, "y pico": 0}
MINUTES_BEFORE = {"menos cuarto": 15}
MINUTE_JOINERS = {"y": 1, "con": 1, "menos": -1}
FILLERS = frozenset({
    "el", "la", "los", "las", "lo", "de", "del", "a", "al", "por", "para", "que", "me", "nos", "te", "le",
    "mejor", "bien", "va", "iría", "vendría", "viene", "puede", "podría", "ser", "sería", "puedo", "podemos",
    "quiero", "querría", "quisiera", "necesito", "una", "un", "cita", "hora", "vale", "pues", "bueno",
    "si", "sí", "gracias", "porfa", "favor", "mismo", "ir", "pasar", "pasarme", "paso", "voy", "venir",
    "o", "u", "y", "sobre", "hacia", "eso", "con", "tengo", "tienes", "tenéis", "hay", "algo", "hueco",
})

NUMBER_WORDS = {
    "cero": 0, "un": 1, "uno": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6,
    "siete": 7, "ocho": 8, "nueve": 9, "diez": 10, "once": 11, "doce": 12, "trece": 13, "catorce": 14,
    "quince": 15, "dieciséis": 16, "diecisiete": 17, "dieciocho": 18, "diecinueve": 19, "veinte": 20,
    "veintiuno": 21, "veintiún": 21, "veintiuna": 21, "veintidós": 22, "veintitrés": 23, "veinticuatro": 24,
    "veinticinco": 25, "veintiséis": 26, "veintisiete": 27, "veintiocho": 28, "veintinueve": 29,
    "treinta": 30, "cuarenta": 40, "cincuenta": 50, "sesenta": 60, "setenta": 70, "ochenta": 80,
    "noventa": 90, "cien": 100, "ciento": 100, "doscientos": 200, "doscientas": 200, "trescientos": 300,
    "trescientas": 300, "cuatrocientos": 400, "quinientos": 500, "seiscientos": 600, "setecientos": 700,
    "ochocientos": 800, "novecientos": 900,
}
NUMBER_SCALES = {"mil": 1000, "millón": 1_000_000, "millones": 1_000_000}

ORDINALS = {
    "primera": 0, "primero": 0, "primer": 0, "1a": 0, "1o": 0, "1ª": 0, "1º": 0,
    "segunda": 1, "segundo": 1, "2a": 1, "2o": 1, "2ª": 1, "2º": 1,
    "tercera": 2, "tercero": 2, "tercer": 2, "3a": 2, "3o": 2, "3ª": 2, "3º": 2,
    "cuarta": 3, "cuarto": 3, "4a": 3, "4o": 3, "quinta": 4, "quinto": 4, "5a": 4, "5o": 4,
    "sexta": 5, "sexto": 5, "séptima": 6, "séptimo": 6, "octava": 7, "octavo": 7,
    "novena": 8, "noveno": 8, "décima": 9, "décimo": 9, "última": -1, "último": -1,
}
CHOICE_LEAD_INS = (
    "opcion", "la opcion", "el numero", "la numero", "numero", "num", "no", "n", "la", "el", "pulso",
    "marco", "elijo", "elijo la", "elijo el", "quiero la", "quiero el", "me quedo con la",
    "me quedo con el", "prefiero la", "prefiero el", "#",
)
CHOICE_TRAILERS = ("opcion", "por favor", "porfa", "gracias", "hora", "cita")

YES = frozenset({
    "si", "sí", "sii", "siii", "s", "vale", "val", "ok", "okay", "okey", "oki", "claro", "claro que si", "por supuesto",
    "de acuerdo", "perfecto", "correcto", "exacto", "eso es", "asi es", "efectivamente", "afirmativo",
    "genial", "estupendo", "muy bien", "bien", "venga", "dale", "sale", "va", "por favor", "si por favor",
    "si gracias", "adelante", "confirmo", "confirmado", "esta bien", "me parece bien", "me vale",
    "me va bien", "sin problema", "1", "yes",
})
NO = frozenset({
    "no", "n", "nop", "nope", "nel", "no gracias", "no, gracias", "para nada", "de ninguna manera",
    "negativo", "incorrecto", "no es correcto", "no es asi", "eso no", "claro que no", "tampoco",
    "mejor no", "no me va", "no me viene bien", "no puedo", "cancela", "cancelar", "nunca", "2",
})
UNSURE = frozenset({
    "no se", "no lo se", "no estoy seguro", "no estoy segura", "quizas", "quiza", "tal vez", "a lo mejor",
    "puede ser", "igual",
})

NAME_GREETINGS = (
    r"hola", r"buenas", r"buenos\s+d[ií]as", r"buenas\s+tardes", r"buenas\s+noches", r"s[ií]", r"vale",
    r"bueno", r"pues", r"mira", r"oye", r"eh+", r"em+", r"ok",
)
NAME_LEAD_INS = (
    r"me\s+llamo", r"mi\s+nombre\s+es", r"(?:mi\s+)?nombre\s*:", r"soy", r"aqu[ií]", r"habla", r"le\s+habla",
    r"te\s+habla", r"les\s+habla", r"te\s+escribe", r"le\s+escribe", r"de\s+parte\s+de",
    r"(?:ponlo|p[oó]ngalo|p[oó]nmela|ap[uú]ntalo|ap[uú]ntame)?\s*a\s+nombre\s+de", r"es\s+para",
    r"se\s+llama", r"su\s+nombre\s+es", r"ll[aá]mame",
)
NAME_SUFFIXES = (r"gracias", r"por\s+favor", r"hablando", r"aqu[ií]", r"al\s+habla")
NOT_NAME_WORDS = frozenset({
    "quiero", "quisiera", "querria", "necesito", "tengo", "tiene", "una", "un", "uno", "cita", "por", "favor",
    "para", "y", "pero", "que", "con", "en", "a", "al", "mi", "tu",
    "su", "yo", "es", "era", "estoy", "esta", "hoy", "manana", "lunes", "martes", "miercoles", "jueves",
    "viernes", "sabado", "domingo", "tarde", "noche", "semana", "hora", "hola", "buenas", "buenos", "dias",
    "gracias", "si", "no", "vale", "claro", "reservar", "reserva", "pedir", "cambiar", "anular", "cancelar",
    "corte", "tinte", "urgente", "ayuda", "llamo", "llamaba", "escribo", "bueno", "pues", "sobre", "cuando",
    "como", "donde", "quien", "cual", "porque", "muy", "bien", "mal", "nada", "todo", "algo",
})
NAME_PARTICLES = frozenset({"de", "del", "la", "las", "los", "el"})
COUNT_NOUNS = frozenset({
    "personas", "persona", "adultos", "adultas", "niños", "niñas", "niño", "niña", "mascotas", "perros",
    "perro", "gatos", "gato", "habitaciones", "cortes", "de nosotros", "invitados", "comensales",
})
NEGATORS = frozenset({"no", "nunca", "sin", "tampoco", "ni", "jamas", "nada"})
CORRECTIONS = (
    r"en\s+realidad", r"perd[oó]n", r"mejor", r"quiero\s+decir", r"quise\s+decir", r"o\s+sea",
    r"me\s+equivoqu[eé]", r"espera", r"rectifico", r"cambia(?:lo)?\s+a", r"mejor\s+a",
)

RULES = LanguageRules(
    code="es",
    weekdays=WEEKDAYS,
    months=MONTHS,
    relative_days=RELATIVE_DAYS,
    parts_of_day=PARTS_OF_DAY,
    meridiem=MERIDIEM,
    phrases=PHRASES,
    minutes_after=MINUTES_AFTER,
    minutes_before=MINUTES_BEFORE,
    minute_joiners=MINUTE_JOINERS,
    hour_suffix="h",
    weekday_number_is_date=True,
    day_number_lead_ins=("el", "el día", "día", "los días"),
    fillers=FILLERS,
    number_words=NUMBER_WORDS,
    number_scales=NUMBER_SCALES,
    number_joiners=frozenset({"y"}),
    decimal_comma=True,
    ordinals=ORDINALS,
    choice_lead_ins=CHOICE_LEAD_INS,
    choice_trailers=CHOICE_TRAILERS,
    yes=YES,
    no=NO,
    unsure=UNSURE,
    name_greetings=NAME_GREETINGS,
    name_lead_ins=NAME_LEAD_INS,
    name_suffixes=NAME_SUFFIXES,
    not_name_words=NOT_NAME_WORDS,
    name_particles=NAME_PARTICLES,
    count_nouns=COUNT_NOUNS,
    negators=NEGATORS,
    corrections=CORRECTIONS,
    clause_words=frozenset({"y", "e", "pero", "además", "ademas", "también", "tambien"}),
)

PACK = LanguagePack(code="es", rules=RULES, catalogue_path=Path(__file__).parent / "catalogue" / "es.yaml")
