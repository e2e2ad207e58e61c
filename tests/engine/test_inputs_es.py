"""Spanish answers other than dates: numbers, yes/no, menu numbers and ordinals, names, and
the same read inside a longer message (SPEC §8 fill ahead and corrections)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from orchestrator.engine import extract
from orchestrator.engine.inputs import choice_matcher, match_intent, parse_input, parse_number
from orchestrator.flow import schema
from orchestrator.model import OutChoice

SETTINGS = schema.Settings(language="es-ES", timezone="Europe/Madrid")
NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=ZoneInfo("Europe/Madrid"))  # a Thursday


def read(kind: str, text: str, language: str | None = None) -> object:
    result = parse_input(kind, text, settings=SETTINGS, now=NOW, language=language)
    return result.value if result.ok else None


YES_NO = [
    ("sí", True), ("si", True), ("Sí, gracias", True), ("SI", True), ("vale", True), ("claro", True),
    ("claro que sí", True), ("de acuerdo", True), ("perfecto", True), ("correcto", True), ("exacto", True),
    ("eso es", True), ("venga", True), ("ok", True), ("me parece bien", True), ("1", True),
    ("no", False), ("no gracias", False), ("No, gracias", False), ("claro que no", False),
    ("no es correcto", False), ("para nada", False), ("mejor no", False), ("2", False),
    ("no sé", None), ("quizás", None), ("tal vez", None), ("plátano", None),
]


@pytest.mark.parametrize(("text", "expected"), YES_NO)
def test_yes_no(text: str, expected: bool | None) -> None:
    assert read("yes_no", text) is expected


NUMBERS = [
    ("uno", 1), ("dos", 2), ("tres", 3), ("cuatro", 4), ("cinco", 5), ("seis", 6), ("siete", 7), ("ocho", 8),
    ("nueve", 9), ("diez", 10), ("once", 11), ("doce", 12), ("quince", 15), ("dieciséis", 16),
    ("dieciseis", 16), ("veinte", 20), ("veintiuno", 21), ("veintidós", 22), ("treinta y dos", 32),
    ("cien", 100), ("ciento veinte", 120), ("dos mil trescientos", 2300), ("mil", 1000),
    ("somos cuatro", 4), ("4", 4), ("1.200", 1200), ("2,5", 2.5), ("ninguno", None),
]


@pytest.mark.parametrize(("text", "expected"), NUMBERS)
def test_numbers(text: str, expected: int | None) -> None:
    assert parse_number(text, "es") == expected
    assert read("number", text) == expected


def test_english_number_words_stay_english() -> None:
    assert parse_number("twenty five") == 25 and parse_number("veinticinco") is None
    assert parse_number("veinticinco", "es-MX") == 25


SERVICES = [OutChoice(id="corte", label="Corte de pelo"), OutChoice(id="tinte", label="Tinte"),
            OutChoice(id="peinado", label="Peinado")]
CHOICES = [
    ("la primera", "corte"), ("el primero", "corte"), ("la segunda", "tinte"), ("el segundo", "tinte"),
    ("la tercera opción", "peinado"), ("la última", "peinado"), ("la 2", "tinte"), ("la dos", "tinte"),
    ("opción 3", "peinado"), ("el número 2", "tinte"), ("tres", "peinado"), ("2", "tinte"),
    ("quiero un corte", "corte"), ("Tinte por favor", "tinte"), ("peinado", "peinado"),
    ("la cuarta", None), ("la verde", None),
]


@pytest.mark.parametrize(("text", "expected"), CHOICES)
def test_choices(text: str, expected: str | None) -> None:
    result = choice_matcher(SERVICES).match(text, language="es")
    assert (result.choice_id if result.ok else None) == expected
    via = parse_input("choice", text, choices=SERVICES, settings=SETTINGS, now=NOW)
    assert (via.choice_id if via.ok else None) == expected


NAMES = [
    ("me llamo Ana", "Ana"), ("Me llamo Ana García", "Ana García"), ("soy Ana García", "Ana García"),
    ("mi nombre es Juan Pérez", "Juan Pérez"), ("Hola, soy María de la Cruz", "María de la Cruz"),
    ("Buenos días, me llamo Carlos", "Carlos"), ("buenas tardes, soy lucía", "Lucía"), ("aquí Pedro", "Pedro"),
    ("de parte de Luis Gómez", "Luis Gómez"), ("a nombre de Marta", "Marta"), ("Ana", "Ana"),
    ("Lucía, gracias", "Lucía"), ("José Luis", "José Luis"),
    ("de la Cruz", None), ("quiero una cita", None), ("soy de Madrid", None), ("mañana", None),
]


@pytest.mark.parametrize(("text", "expected"), NAMES)
def test_names(text: str, expected: str | None) -> None:
    assert read("name", text) == expected


def test_dates_through_parse_input() -> None:
    assert read("datetime", "mañana a las 11") == "2026-12-04T11:00:00+01:00"
    assert read("date", "el 4 de diciembre") == "2026-12-04"
    assert read("time", "a las 5 y media") == "17:30"
    asap = read("datetime", "lo antes posible")
    assert isinstance(asap, dict) and asap["preference"] == "asap"


def test_the_language_argument_wins_over_the_flow() -> None:
    english = schema.Settings(language="en-US", timezone="Europe/Madrid")
    said = parse_input("yes_no", "vale", settings=english, now=NOW, language="es")
    assert said.ok and said.value is True
    assert not parse_input("yes_no", "vale", settings=english, now=NOW).ok


IN_A_MESSAGE = [
    # (message, name, datetime)
    ("Hola, soy Ana García y quiero un corte mañana a las 11", "Ana García", "2026-12-04T11:00:00+01:00"),
    ("me llamo Carlos, para el jueves por la tarde", "Carlos", "2026-12-03T14:00:00+01:00"),
    ("Soy María de la Cruz, pasado mañana a las 12", "María de la Cruz", "2026-12-05T12:00:00+01:00"),
    ("buenas, quiero cita para la semana que viene el martes a las 10", None, "2026-12-08T10:00:00+01:00"),
    ("soy de Madrid", None, None),
    ("mi nombre es Juan Pérez, gracias", "Juan Pérez", None),
]


@pytest.mark.parametrize(("text", "name", "when"), IN_A_MESSAGE)
def test_values_inside_a_message(text: str, name: str | None, when: str | None) -> None:
    found_name = extract.find("name", text, choices=None, settings=SETTINGS, now=NOW)
    found_when = extract.find("datetime", text, choices=None, settings=SETTINGS, now=NOW)
    assert (found_name.value if found_name else None, found_when.value if found_when else None) == (name, when)


def test_a_name_alone_before_y() -> None:
    # at the name question itself: the first clause is the name ("Ana y mañana a las 10")
    found = extract.find("name", "Ana y mañana a las 10", choices=None, settings=SETTINGS, now=NOW, lead_in=False)
    assert found is not None and found.value == "Ana"
    assert extract.clauses("Ana y mañana a las 10, pero tarde", "es") == ["Ana", "mañana a las 10", "tarde"]


def test_a_choice_and_a_number_inside_a_message() -> None:
    found = extract.find("choice", "hola, quiero un tinte mañana", choices=SERVICES, settings=SETTINGS, now=NOW)
    assert found is not None and found.choice_id == "tinte"
    number = extract.find("number", "mañana a las 5, cuatro personas", choices=None, settings=SETTINGS, now=NOW)
    assert number is not None and number.value == 4


CORRECTIONS = [
    ("en realidad a las 5", "a las 5", False),
    ("perdón, mejor el viernes", "el viernes", True),
    ("no, me llamo Ana", "me llamo Ana", False),
    ("quiero decir el lunes a las 6", "el lunes a las 6", True),
    ("o sea, pasado mañana", "pasado mañana", True),
]


@pytest.mark.parametrize(("text", "correction", "names_a_day"), CORRECTIONS)
def test_corrections(text: str, correction: str, names_a_day: bool) -> None:
    split = extract.split_correction(text, "es")
    assert split is not None and split[1] == correction
    assert extract.names_a_day(correction, "es") is names_a_day


def test_english_reading_is_unchanged_by_spanish() -> None:
    assert extract.split_correction("en realidad a las 5") is None  # English markers only
    assert extract.has_date_word("el miércoles", "es") and not extract.has_date_word("el miércoles")


def test_negated_intents_in_spanish() -> None:
    intents = {"agent": schema.Intent(goto="agent", match=["agente", "una persona"])}
    assert match_intent("quiero hablar con un agente", intents, language="es") == "agent"
    assert match_intent("no quiero un agente", intents, language="es") is None
    assert match_intent("nunca he pedido una persona", intents, language="es") is None
