"""Languages are data: the rules of a third language are added from outside the engine
(a pack registered at run time, or an installed package's entry point) and every reader
uses them at once; an unknown language reads with the English rules."""

from __future__ import annotations

import datetime as dt
import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from orchestrator import languages
from orchestrator.engine import extract
from orchestrator.engine.inputs import choice_matcher, parse_input, parse_number
from orchestrator.engine.timeparse import parse_when
from orchestrator.flow import schema
from orchestrator.languages import LanguagePack, LanguageRules, pack_for, packs, register_rules, rules_for
from orchestrator.model import OutChoice

TZ = "Europe/Paris"
NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=ZoneInfo(TZ))  # a Thursday
HOURS = schema.BusinessHours(mon="09:00-19:00", tue="09:00-19:00", wed="09:00-19:00", thu="09:00-19:00",
                             fri="09:00-19:00", sat="10:00-14:00")

FRENCH = LanguageRules(
    code="fr",
    weekdays={"lundi": 0, "mardi": 1, "mercredi": 2, "jeudi": 3, "vendredi": 4, "samedi": 5, "dimanche": 6},
    months={"janvier": 1, "février": 2, "mars": 3, "avril": 4, "mai": 5, "juin": 6, "juillet": 7, "août": 8,
            "septembre": 9, "octobre": 10, "novembre": 11, "décembre": 12},
    relative_days={"aujourd'hui": 0, "demain": 1, "après-demain": 2},
    parts_of_day={"le matin": "morning", "matin": "morning", "l'après-midi": "afternoon",
                  "après-midi": "afternoon", "ce soir": "tonight", "midi": "noon"},
    phrases={"à": "at", "vers": "around", "la semaine prochaine": "next week", "dès que possible": "asap"},
    minutes_after={"et demie": 30, "et quart": 15},
    minutes_before={"moins le quart": 15},
    hour_suffix="h",
    weekday_number_is_date=True,
    fillers=frozenset({"le", "la", "de", "du", "pour"}),
    number_words={"un": 1, "une": 1, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "dix": 10, "vingt": 20},
    number_joiners=frozenset({"et"}),
    ordinals={"premier": 0, "première": 0, "deuxième": 1, "second": 1, "dernier": -1},
    choice_lead_ins=("le", "la", "option", "numéro"),
    yes=frozenset({"oui", "ouais", "d'accord", "bien sûr", "parfait"}),
    no=frozenset({"non", "non merci", "pas du tout"}),
    name_greetings=(r"bonjour", r"salut"),
    name_lead_ins=(r"je\s+m'appelle", r"je\s+suis", r"c'est", r"moi\s+c'est"),
    negators=frozenset({"pas", "jamais", "sans"}),
)


@pytest.fixture
def french() -> Iterator[LanguagePack]:
    pack = LanguagePack(code="fr", rules=FRENCH)
    languages.register(pack)
    yield pack
    languages.unregister("fr")


def quand(text: str, language: str = "fr-FR") -> str | None:
    parsed = parse_when(text, now=NOW, tz=TZ, language=language, business_hours=HOURS)
    return parsed.value.strftime("%Y-%m-%d %H:%M") if parsed.value is not None else None


FRENCH_DATES: list[tuple[str, str]] = [
    ("demain à 10h", "2026-12-04 10:00"),
    ("demain à 10h30", "2026-12-04 10:30"),
    ("vendredi à 9h", "2026-12-04 09:00"),
    ("après-demain vers 11h", "2026-12-05 11:00"),
    ("demain à 4", "2026-12-04 16:00"),  # a bare hour against the opening hours
    ("mardi l'après-midi", "2026-12-08 14:00"),
    ("la semaine prochaine", "2026-12-07 09:00"),
    ("le 24 décembre à 15h", "2026-12-24 15:00"),
    ("demain à 5 et demie", "2026-12-04 17:30"),
]


@pytest.mark.parametrize(("text", "expected"), FRENCH_DATES)
def test_a_third_language_reads_dates(french: LanguagePack, text: str, expected: str) -> None:
    assert quand(text) == expected


def test_a_third_language_reads_everything_else(french: LanguagePack) -> None:
    settings = schema.Settings(language="fr-FR", timezone=TZ)

    def read(kind: str, text: str) -> object:
        result = parse_input(kind, text, settings=settings, now=NOW)
        return result.value if result.ok else None

    assert read("yes_no", "oui") is True and read("yes_no", "Non merci") is False and read("yes_no", "bof") is None
    assert read("name", "Bonjour, je m'appelle Camille") == "Camille"
    assert parse_number("vingt et un", "fr") == 21 and read("number", "trois") == 3
    services = [OutChoice(id="coupe", label="Coupe"), OutChoice(id="couleur", label="Couleur")]
    assert choice_matcher(services).match("la deuxième", language="fr").choice_id == "couleur"
    found = extract.find("datetime", "je suis Camille, demain à 10h", choices=None, settings=settings, now=NOW)
    assert found is not None and found.value == "2026-12-04T10:00:00+01:00"
    name = extract.find("name", "je suis Camille, demain à 10h", choices=None, settings=settings, now=NOW)
    assert name is not None and name.value == "Camille"


def test_registered_packs_are_found_by_tag(french: LanguagePack) -> None:
    assert pack_for("fr-CA") is french and rules_for("fr_BE") is FRENCH
    assert {"en", "es", "fr"} <= set(packs())
    languages.unregister("fr")
    assert rules_for("fr") is rules_for("en") and pack_for("fr") is None
    languages.register(french)  # the fixture removes it again


def test_rules_alone_can_be_registered() -> None:
    register_rules("fr", FRENCH)
    try:
        assert quand("demain à 10h") == "2026-12-04 10:00"
    finally:
        languages.unregister("fr")
    assert rules_for("fr").code == "en"  # English rules again (and dateparser, asked in French)


def test_an_unknown_language_reads_with_the_english_rules() -> None:
    assert rules_for("de-DE").code == "en" and rules_for(None).code == "en" and rules_for("").code == "en"
    assert quand("tomorrow at 10", language="de-DE") == "2026-12-04 10:00"
    assert parse_input("yes_no", "yes", settings=schema.Settings(language="de"), now=0.0).value is True


def test_the_built_in_languages() -> None:
    assert pack_for("en-US") is not None and pack_for("es-MX") is not None
    assert rules_for("es").code == "es" and rules_for("es-419").code == "es"
    assert rules_for("EN-gb").canonical and not rules_for("es").canonical


ESPERANTO = '''
    from orchestrator.languages import LanguagePack, LanguageRules

    PACK = LanguagePack(code="eo", rules=LanguageRules(
        code="eo", relative_days={"hodiaŭ": 0, "morgaŭ": 1}, phrases={"je": "at"},
        yes=frozenset({"jes"}), no=frozenset({"ne"}),
    ))
'''


def _install(root: Path, entries: str) -> None:
    """A package on sys.path with its dist-info, as pip would leave it."""
    (root / "eo_pack.py").write_text(textwrap.dedent(ESPERANTO), encoding="utf-8")
    info = root / "eo_pack-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: eo-pack\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[orchestrator.languages]\n{entries}\n", encoding="utf-8")


def test_an_installed_package_adds_a_language(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    _install(tmp_path, "eo = eo_pack:PACK\nbroken = eo_pack:MISSING")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with caplog.at_level(logging.WARNING, logger="orchestrator.languages"):
            languages.load_entry_points(again=True)
        assert rules_for("eo").code == "eo"
        assert quand("morgaŭ je 10", language="eo") == "2026-12-04 10:00"
        settings = schema.Settings(language="eo")
        assert parse_input("yes_no", "jes", settings=settings, now=0.0).value is True
        assert "broken" in caplog.text and "could not be loaded" in caplog.text  # the others still load
    finally:
        languages.unregister("eo")
