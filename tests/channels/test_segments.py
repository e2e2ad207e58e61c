"""SMS segment counting (GSM-7 160/153, UCS-2 70/67) and sentence-boundary splitting."""

from __future__ import annotations

import pytest

from channels.sms_segments import encoding, segments, split_to_budget, units


@pytest.mark.parametrize(
    ("text", "expected_encoding", "expected_segments"),
    [
        ("", "GSM-7", 0),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("[" * 80, "GSM-7", 1),  # extension characters take two septets
        ("[" * 81, "GSM-7", 2),
        ("€" + "a" * 158, "GSM-7", 1),
        ("é" * 160, "GSM-7", 1),  # é is in the GSM basic table
        ("ć" * 70, "UCS-2", 1),
        ("ć" * 71, "UCS-2", 2),
        ("ć" * 134, "UCS-2", 2),
        ("ć" * 135, "UCS-2", 3),
        ("😀" * 35, "UCS-2", 1),  # astral characters are two UTF-16 units
        ("😀" * 36, "UCS-2", 2),
    ],
)
def test_segment_counts(text: str, expected_encoding: str, expected_segments: int) -> None:
    assert encoding(text) == expected_encoding
    assert segments(text) == expected_segments


def test_units_count_extension_and_astral() -> None:
    assert units("a{b") == 4
    assert units("a😀") == 3


def test_short_text_is_one_part() -> None:
    assert split_to_budget("  Hello there.  ", 1) == ["Hello there."]
    assert split_to_budget("", 3) == []


def test_split_at_sentence_boundaries_within_budget() -> None:
    sentences = [f"Sentence number {i} is here." for i in range(40)]
    text = " ".join(sentences)
    parts = split_to_budget(text, 1)
    assert len(parts) > 1
    assert all(segments(p) == 1 for p in parts)
    assert all(p.endswith(".") for p in parts)  # never cut inside a sentence
    assert " ".join(parts) == text  # nothing lost, order kept


def test_split_keeps_menu_line_breaks() -> None:
    text = "Lorem ipsum dolor sit amet. " * 8 + "Which one?\n1) Book a visit\n2) Opening hours"
    parts = split_to_budget(text, 1)
    assert parts[-1].endswith("Which one?\n1) Book a visit\n2) Opening hours")
    assert all(segments(p) <= 1 for p in parts)


def test_unicode_text_uses_ucs2_limits() -> None:
    text = "Merci beaucoup, ça marche très bien 🙂. " * 6
    parts = split_to_budget(text, 1)
    assert all(segments(p) == 1 for p in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")


def test_one_huge_word_is_cut_hard() -> None:
    url = "https://example.com/" + "x" * 400
    parts = split_to_budget(url, 1)
    assert "".join(parts) == url
    assert all(segments(p) == 1 for p in parts)


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_budget_larger_than_one(budget: int) -> None:
    text = "This is a fairly ordinary sentence for testing. " * 30
    parts = split_to_budget(text, budget)
    assert all(segments(p) <= budget for p in parts)
    assert len(parts) == pytest.approx(segments(text) / budget, abs=2)
