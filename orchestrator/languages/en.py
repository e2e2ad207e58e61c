"""English: the reader's own words. Dates and times are read by the grammar of
`orchestrator.engine.timeparse` directly (`canonical=True`); the tables here are the ones
the readers of answers use (yes/no, choice numbers and ordinals, names, negations)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.languages import LanguagePack
from orchestrator.languages.rules import LanguageRules

WEEKDAYS: dict[str, int] = {
    "monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2, "weds": 2,
    "thursday": 3, "thu": 3, "thur": 3, "thurs": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5,
    "sunday": 6, "sun": 6,
}
MONTHS: dict[str, int] = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
    "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}
RELATIVE_DAYS: dict[str, int] = {"today": 0, "tomorrow": 1, "day after tomorrow": 2}

UNITS: dict[str, int] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
TENS: dict[str, int] = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
                        "eighty": 80, "ninety": 90}
SCALES: dict[str, int] = {"hundred": 100, "thousand": 1000, "million": 1_000_000}

ORDINALS: dict[str, int] = {
    "first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3, "4th": 3, "fifth": 4,
    "5th": 4, "sixth": 5, "6th": 5, "seventh": 6, "7th": 6, "eighth": 7, "8th": 7, "ninth": 8, "9th": 8,
    "tenth": 9, "10th": 9, "last": -1,
}
CHOICE_LEAD_INS = ("option", "number", "no", "num", "press", "pressed", "choice", "item", "#")
ORDINAL_LEAD_INS = ("i ?ll take", "i want", "id like", "give me", "lets do", "let s do", "the", "option", "choice")
CHOICE_TRAILERS = ("one", "option", "choice", "slot", "time", "please")

YES = frozenset({
    "yes", "y", "yeah", "yea", "ya", "yep", "yup", "sure", "ok", "okay", "k", "correct", "right", "affirmative",
    "absolutely", "definitely", "certainly", "indeed", "confirm", "confirmed", "1", "si", "oui", "please",
    "thats right", "that is right", "sounds good", "go ahead", "of course", "yes please", "why not", "true",
    "that works", "works for me", "perfect", "great",
})
NO = frozenset({
    "no", "n", "nope", "nah", "negative", "incorrect", "wrong", "2", "non", "not really", "no thanks",
    "no thank you", "dont", "do not", "never", "false", "cancel", "not", "thats wrong", "not right",
    "not correct",
})
UNSURE = frozenset({"not sure", "maybe", "dont know", "i dont know", "perhaps", "unsure", "no idea"})

# Regular-expression fragments (case ignored) of what comes before a name. Spanish lead-ins
# stay here too: a Spanish speaker on an English flow still says "me llamo Ana".
NAME_GREETINGS = (
    r"hi", r"hello", r"hey", r"hiya", r"yes", r"yeah", r"yep", r"sure", r"ok", r"okay", r"well", r"so",
    r"oh", r"um+", r"uh+", r"er+", r"hola", r"buenas", r"good\s+(?:morning|afternoon|evening)",
    r"hi\s+there", r"hello\s+there",
)
NAME_LEAD_INS = (
    r"(?:my|the|his|her|their|our|its|pet'?s|dog'?s|cat'?s)\s+(?:full\s+|first\s+|last\s+)?"
    r"name(?:'s|\s+is|\s+will\s+be)",
    r"name(?:'s|\s+is)", r"it'?s", r"it\s+is", r"this\s+is", r"that'?s", r"i'?m", r"i\s+am",
    r"(?:he|she|it)(?:'s|\s+is)(?:\s+called)?", r"(?:he|she|it)'?s\s+called", r"we\s+call\s+(?:him|her|it)",
    r"(?:you\s+can\s+|they\s+|just\s+)?call\s+me", r"put\s+(?:me\s+)?(?:down\s+)?(?:as|under)",
    r"under", r"called", r"named", r"goes\s+by", r"me\s+llamo", r"mi\s+nombre\s+es", r"soy", r"aqu[ií]",
    r"habla",
)
NAME_SUFFIXES = (r"here", r"speaking", r"calling", r"thanks", r"thank you", r"please", r"hablando")

NEGATORS = frozenset({
    "not", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "wont", "never", "nothing",
    "neither", "nor", "without", "nunca", "sin", "tampoco",
})

RULES = LanguageRules(
    code="en",
    canonical=True,
    weekdays=WEEKDAYS,
    months=MONTHS,
    relative_days=RELATIVE_DAYS,
    number_words={**UNITS, **TENS},
    number_scales=SCALES,
    number_joiners=frozenset({"and"}),
    ordinals=ORDINALS,
    choice_lead_ins=CHOICE_LEAD_INS,
    choice_trailers=CHOICE_TRAILERS,
    yes=YES,
    no=NO,
    unsure=UNSURE,
    name_greetings=NAME_GREETINGS,
    name_lead_ins=NAME_LEAD_INS,
    name_suffixes=NAME_SUFFIXES,
    negators=NEGATORS,
)

PACK = LanguagePack(code="en", rules=RULES, catalogue_path=Path(__file__).parent / "catalogue" / "en.yaml")
