"""SPEC §9 in the flow language: texts per language checked by `validate` at their line, the
flow compiled once per language, the contact's language chosen (their choice, their number's
country, the default) and kept, the engine's words from a catalogue per language, and a
third language added from outside the engine (a catalogue file + rules)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import languages
from orchestrator.engine import timeparse
from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.render import present, voice_menu
from orchestrator.engine.textsize import encoding, segments
from orchestrator.engine.turn import Engine
from orchestrator.flow.loader import load_flow, load_flow_text
from orchestrator.flow.localize import localize
from orchestrator.flow.validate import validate
from orchestrator.languages import LanguagePack, rules_for
from orchestrator.languages.messages import CATALOGUE_DIR, catalogue, load
from orchestrator.model import Event, Outbound, OutChoice
from orchestrator.plugins.channels import Capabilities
from orchestrator.plugins.connectors import ConnectorRegistry

ROOT = Path(__file__).resolve().parents[2]
NOW = 1796230800.0  # Wed 2 Dec 2026 12:00 in Miami

BILINGUAL = """\
flow: demo
start: pick
settings:
  timezone: America/New_York
  languages: [en, es]
  language_by_country: {"34": es}
states:
  pick:
    ask: {en: "Which language?", es: "¿Qué idioma?"}
    choices:
      en: {label: English}
      es: {label: Español}
    save: sys.language
    next: menu
    on: {fail: menu}
  menu:
    ask: {en: "Cut or colour?", es: "¿Corte o color?"}
    choices:
      cut: {label: {en: Cut, es: Corte}, match: {en: [haircut], es: [cortar]}, dtmf: "1"}
      colour: {label: {en: Colour, es: Color}, dtmf: "2"}
    save: service
    next: bye
    on: {fail: pick}
  bye:
    say: {en: "Bye {{ service }}!", es: "¡Adiós {{ service }}!"}
    end: done
"""


def diagnostics(text: str) -> list[tuple[int, int, str, str | None]]:
    return [(d.line, d.col, d.message, d.hint) for d in validate(load_flow_text(text, "f.yaml"))]


# ---- validate ------------------------------------------------------------------------------------


def test_a_bilingual_flow_is_valid() -> None:
    assert diagnostics(BILINGUAL) == []


def test_a_missing_translation_is_reported_at_its_text_with_a_hint() -> None:
    text = BILINGUAL.replace('es: "¿Corte o color?"', 'fr: "Coupe ou couleur ?"')
    found = diagnostics(text)
    assert (17, 10, "state 'menu' key 'ask' has no 'es' text",
            'add `es: "..."` (the flow speaks en, es)') in found
    assert (17, 33, "state 'menu' key 'ask' has a text in 'fr', which is not a declared language",
            "settings.languages is [en, es]") in found


def test_a_missing_label_translation_and_a_misspelt_language_key() -> None:
    text = BILINGUAL.replace("colour: {label: {en: Colour, es: Color}", "colour: {label: {en: Colour, se: Color}")
    found = diagnostics(text)
    assert (20, 36, "state 'menu' key 'choices.colour.label' has a text in 'se', which is not a declared language",
            "settings.languages is [en, es]") in found
    assert any(line == 20 and "has no 'es' text" in message for line, _, message, _ in found)


def test_text_maps_need_declared_languages() -> None:
    text = "flow: d\nstart: a\nstates:\n  a: {say: {en: Hi, es: Hola}, end: done}\n"
    [(line, col, message, hint)] = diagnostics(text)
    assert (line, col) == (4, 12)
    assert "written per language, but the flow declares no languages" in message
    assert hint == "add `languages: [en, es]` under settings, or write one text"


def test_a_language_choice_must_offer_declared_languages() -> None:
    text = BILINGUAL.replace("      es: {label: Español}", "      fr: {label: Français}")
    found = diagnostics(text)
    assert any("saves sys.language: its choices must be languages of the flow (en, es)" in m and h is not None
               and "not fr" in h for _, _, m, h in found)


def test_language_by_country_names_declared_languages() -> None:
    text = BILINGUAL.replace('{"34": es}', '{"34": sp, "+52": es}')
    found = diagnostics(text)
    assert any("language_by_country gives 'sp', which is not a declared language" in m for _, _, m, _ in found)
    assert not any("'+52'" in m for _, _, m, _ in found)  # a leading + is tolerated


def test_a_template_problem_in_one_language_is_shown_at_that_text() -> None:
    text = BILINGUAL.replace('es: "¡Adiós {{ service }}!"', 'es: "¡Adiós {{ servise }}!"')
    found = diagnostics(text)
    assert any(line == 25 and col == 41 and "servise" in message and message.endswith("(es)")
               for line, col, message, _ in found), found


def test_a_single_language_flow_stays_as_simple_as_before() -> None:
    flow = load_flow(ROOT / "flows" / "dental_booking.yaml")
    assert validate(flow) == []
    compiled = compile_flow(flow)
    assert compiled.variants == {} and compiled.language == "en-US" and compiled.voice is None
    assert localize(flow.flow) is flow.flow


# ---- compile and turn ----------------------------------------------------------------------------


def engine() -> Engine:
    return Engine(compile_flow(load_flow_text(BILINGUAL, "f.yaml")), ConnectorRegistry())


def test_the_flow_is_compiled_once_per_language_sharing_one_machine() -> None:
    compiled = engine().compiled
    assert set(compiled.variants) == {"en", "es"}
    es = compiled.variants["es"]
    assert es.machine is compiled.machine and es.revision == compiled.revision
    assert es.settings.language == "es-ES" and compiled.settings.language == "en-US"
    assert es.words.language == "es" and es.voice == "Polly.Lucia" and compiled.settings.voice == "Polly.Joanna"
    assert [c.label for c in es.states["menu"].choices] == ["Corte", "Color"]
    assert es.states["menu"].choices[0].match == ["cortar"]
    assert es.settings.reminder == catalogue("es")["reminder"]  # the schema's English default, in Spanish


async def test_the_number_s_country_picks_the_language_and_the_session_keeps_it() -> None:
    eng = engine()
    session = eng.new_session("b:+34600111222", business="b", contact="+34600111222", channel="sms", now=NOW)
    assert session.language == "es"
    result = await eng.turn(session, Event(kind="start", channel="sms"), NOW)
    [ask] = result.messages
    assert ask.text == "¿Qué idioma?" and ask.language == "es-ES" and ask.voice == "Polly.Lucia"
    later = await eng.turn(result.session, Event(kind="timeout"), NOW + 600)
    assert later.messages[0].text == catalogue("es")["reminder"]
    other = eng.new_session("b:+15550000000", business="b", contact="+15550000000", channel="sms", now=NOW)
    assert other.language is None


async def test_the_contact_s_choice_switches_the_conversation_and_staff_read_the_default() -> None:
    eng = engine()
    session = eng.new_session("b:+15550000000", business="b", contact="+15550000000", channel="sms", now=NOW)
    result = await eng.turn(session, Event(kind="start", channel="sms"), NOW)
    assert result.messages[0].text == "Which language?"
    result = await eng.turn(result.session, Event(kind="text", channel="sms", text="Español"), NOW)
    assert result.session.language == "es"
    assert [m.text for m in result.messages] == ["¿Corte o color?"]
    result = await eng.turn(result.session, Event(kind="text", channel="sms", text="pizza"), NOW)
    assert result.messages[0].text.startswith("Lo siento, no lo he entendido. Elija Corte o Color")
    result = await eng.turn(result.session, Event(kind="text", channel="sms", text="quiero cortar"), NOW)
    assert result.messages[0].text == "¡Adiós cut!" and result.ended
    assert result.summary is not None and "outcome done" in result.summary["text"]  # the business's words


# ---- the catalogue -------------------------------------------------------------------------------


def test_every_shipped_catalogue_has_every_english_key() -> None:
    english = load(CATALOGUE_DIR / "en.yaml")
    for path in CATALOGUE_DIR.glob("*.yaml"):
        own = load(path)  # no base: only the file's own words
        assert set(own.words) == set(english.words), (path.name, set(english.words) ^ set(own.words))


def test_a_missing_key_falls_back_to_english(tmp_path: Path) -> None:
    partial = tmp_path / "xx.yaml"
    partial.write_text('language: xx\nwords:\n  not_heard: "Nix gehört."\n', encoding="utf-8")
    words = load(partial, catalogue("en"))
    assert words["not_heard"] == "Nix gehört." and words["not_understood"] == catalogue("en")["not_understood"]


def test_the_english_examples_are_timeparse_s() -> None:
    for want, text in timeparse._EXAMPLES.items():
        assert catalogue("en")[f"example_{want}"] == text


def test_dates_are_cldr_s_in_the_language() -> None:
    es = engine().compiled.variants["es"].templates.formats
    assert es.datetime("2026-12-03T10:00:00-05:00") == "jue 3 dic, 10:00"
    assert es.date("2026-12-03") == "jueves 3 de diciembre"
    assert es.time("2026-12-03T17:30:00-05:00") == "17:30"
    mx = compile_flow(load_flow_text("flow: d\nstart: a\nsettings: {language: es-MX}\n"
                                     "states:\n  a: {say: Hola, end: done}\n")).templates.formats
    assert mx.time("2026-12-03T17:30:00+00:00") == "5:30 p.m."


def test_keypad_phrases_and_menus_follow_the_message_s_language() -> None:
    choices = [OutChoice(id="cut", label="Corte"), OutChoice(id="colour", label="Color")]
    assert voice_menu(choices, catalogue("es")) == "Para Corte, pulse 1. Para Color, pulse 2."
    voice = Capabilities(speech=True, dtmf=True)
    shown = present(Outbound(kind="ask", text="¿Qué servicio?", choices=choices, language="es-ES"), voice)
    assert shown.text == "¿Qué servicio? Para Corte, pulse 1. Para Color, pulse 2."
    english = present(Outbound(kind="ask", text="Which?", choices=choices), voice)
    assert english.text == "Which? For Corte, press 1. For Color, press 2."  # a message without a language: English


# ---- channel rules in every language -------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("¿Qué servicio desea? Mañana, jueves", "GSM-7"),  # é ñ ¿ are GSM-7
    ("Ünd Ñoño à la crème, ¡sí!", "UCS-2"),  # í is not
    ("Está bien", "UCS-2"),  # á is not
    ("¿Cuándo?", "UCS-2"),
    ("Perdone, ¿es un sí o un no?", "UCS-2"),
    ("Para Corte, pulse 1.", "GSM-7"),
])
def test_sms_encoding_of_spanish_text(text: str, expected: str) -> None:
    assert encoding(text) == expected


def test_sms_segments_of_accented_text() -> None:
    assert segments("ñ" * 160) == 1 and segments("ñ" * 161) == 2  # GSM-7
    assert segments("á" * 70) == 1 and segments("á" * 71) == 2  # UCS-2
    assert segments("Está " + "x" * 64) == 1 and segments("Está " + "x" * 66) == 2


def test_whatsapp_titles_are_counted_in_characters() -> None:
    caps = Capabilities(max_buttons=3, button_title_len=20, max_list_rows=10, row_title_len=24)
    choices = [OutChoice(id="a", label="Coloración éxtasis ñ"), OutChoice(id="b", label="Corte")]  # 20 characters
    shown = present(Outbound(kind="ask", text="¿Cuál?", choices=choices, language="es-ES"), caps)
    assert shown.mode == "buttons" and shown.choices[0].label == "Coloración éxtasis ñ"


# ---- a third language, from outside the engine -----------------------------------------------------

FRENCH_CATALOGUE = """\
language: fr
tag: fr-FR
voice: Polly.Lea
words:
  not_understood: "Désolé, je n'ai pas compris."
  choice_text: "Désolé, je n'ai pas compris. Choisissez {options} (ou répondez par son numéro)."
  or: " ou "
  press: "Pour {label}, tapez {digit}."
  list_button: "Choisir"
"""


@pytest.fixture
def french(tmp_path: Path) -> Iterator[LanguagePack]:
    path = tmp_path / "fr.yaml"
    path.write_text(FRENCH_CATALOGUE, encoding="utf-8")
    pack = LanguagePack(code="fr", rules=rules_for("en"), catalogue_path=path)
    languages.register(pack)
    yield pack
    languages.unregister("fr")


async def test_a_third_language_is_a_catalogue_and_rules_from_outside(french: LanguagePack) -> None:
    text = textwrap.dedent("""\
        flow: salon
        start: menu
        settings: {languages: [en, fr], language_by_country: {"33": fr}}
        states:
          menu:
            ask: {en: "Cut or colour?", fr: "Coupe ou couleur ?"}
            choices:
              cut: {label: {en: Cut, fr: Coupe}}
              colour: {label: {en: Colour, fr: Couleur}}
            save: service
            next: bye
            on: {fail: bye}
          bye: {say: {en: Bye, fr: Au revoir}, end: done}
        """)
    loaded = load_flow_text(text, "f.yaml")
    assert validate(loaded) == []
    eng = Engine(compile_flow(loaded), ConnectorRegistry())
    session = eng.new_session("b:+33612345678", business="b", contact="+33612345678", channel="voice", now=NOW)
    result = await eng.turn(session, Event(kind="start", channel="voice"), NOW)
    [ask] = result.messages
    assert ask.language == "fr-FR" and ask.voice == "Polly.Lea"
    assert present(ask, Capabilities(speech=True, dtmf=True)).text == \
        "Coupe ou couleur ? Pour Coupe, tapez 1. Pour Couleur, tapez 2."
    result = await eng.turn(result.session, Event(kind="text", channel="sms", text="pizza"), NOW)
    assert result.messages[0].text.startswith("Désolé, je n'ai pas compris. Choisissez Coupe ou Couleur")
    assert eng.compiled.variants["fr"].words["sorry_error"] == catalogue("en")["sorry_error"]  # not translated yet


def test_a_region_speaks_with_its_own_voice() -> None:
    text = BILINGUAL.replace("languages: [en, es]", "languages: [en, es-MX]").replace(" es:", " es-MX:").replace(
        '{"34": es}', '{"52": es-MX}').replace("      es-MX: {label: Español}", "      es-MX: {label: Español}")
    compiled = compile_flow(load_flow_text(text, "f.yaml"))
    mx = compiled.variants["es-MX"]
    assert mx.settings.language == "es-MX" and mx.voice == "Polly.Mia"
    assert catalogue("es").voice_for("es-ES") == "Polly.Lucia" and catalogue("en").voice_for("en-GB") == "Polly.Joanna"


def test_a_declared_language_without_a_catalogue_is_a_warning() -> None:
    text = BILINGUAL.replace("languages: [en, es]", "languages: [en, es, xx]").replace(
        'es: "¿Corte o color?"', 'es: "¿Corte o color?", xx: "Xx?"').replace(
        'es: "¿Qué idioma?"', 'es: "¿Qué idioma?", xx: "Xx?"').replace(
        'es: "¡Adiós {{ service }}!"', 'es: "¡Adiós {{ service }}!", xx: "Xx"').replace(
        "es: Corte}", "es: Corte, xx: Xa}").replace("es: Color}", "es: Color, xx: Xb}").replace(
        "es: [cortar]}", "es: [cortar], xx: [xa]}")
    found = validate(load_flow_text(text, "f.yaml"))
    assert [(d.severity, d.line) for d in found] == [("warning", 5)]
    assert "language 'xx' has no catalogue" in found[0].message and "Adding a language" in str(found[0].hint)


def test_settings_language_must_be_one_of_the_languages() -> None:
    found = diagnostics(BILINGUAL.replace("  timezone: America/New_York\n", "  timezone: America/New_York\n"
                                                                            "  language: fr-FR\n"))
    assert any("settings.language 'fr-FR' is none of settings.languages" in m for _, _, m, _ in found)
    assert diagnostics(BILINGUAL.replace("  timezone: America/New_York\n",
                                         "  timezone: America/New_York\n  language: en-GB\n")) == []


def test_a_spanish_text_over_the_sms_budget_is_warned_at_that_text() -> None:
    long_es = "¿Qué servicio quería? " + "Está " * 60  # á: UCS-2, 67 characters a segment
    text = BILINGUAL.replace('es: "¿Corte o color?"', f'es: "{long_es}"')
    found = validate(load_flow_text(text, "f.yaml"))
    warned = [d for d in found if d.severity == "warning" and "(es)" in d.message]
    assert warned and warned[0].line == 17 and "segment" in warned[0].message, [d.format() for d in found]
