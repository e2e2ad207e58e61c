"""SMS segment arithmetic (GSM 03.38) and splitting a long reply at sentence boundaries.

A text made only of GSM-7 characters travels 160 per single segment, 153 per segment of a
concatenated message; the extension characters (`^{}\\[~]|€` and form feed) take two
septets. Any other character switches the whole message to UCS-2: 70 / 67 UTF-16 code
units (an emoji outside the BMP takes two).
"""

from __future__ import annotations

import re

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
_SENTENCE_END = re.compile(r"((?<=[.!?…])[ \t]+|\s*\n\s*)")


GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION


def is_gsm7(text: str) -> bool:
    return GSM7_ALL.issuperset(text)


def encoding(text: str) -> str:
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def units(text: str) -> int:
    """Length in the encoding's units: septets for GSM-7, UTF-16 code units for UCS-2."""
    if is_gsm7(text):
        extension = GSM7_EXTENSION.intersection(text)
        return len(text) + (sum(text.count(c) for c in extension) if extension else 0)
    return len(text.encode("utf-16-le")) // 2


def segments(text: str) -> int:
    """How many SMS segments `text` is billed as (0 for an empty text)."""
    if not text:
        return 0
    gsm = is_gsm7(text)
    single, multi = (160, 153) if gsm else (70, 67)
    n = units(text) if gsm or not text.isascii() else len(text)
    return 1 if n <= single else -(-n // multi)


def fits(text: str, budget: int) -> bool:
    return segments(text) <= budget


def split_to_budget(text: str, budget: int) -> list[str]:
    """Split `text` into messages of at most `budget` segments each, at sentence boundaries
    and line breaks (then words, then characters when one word is too long). The order and
    the line breaks inside each message are kept."""
    budget = max(1, budget)
    text = text.strip()
    if fits(text, budget):
        return [text] if text else []
    parts: list[str] = []
    current = ""
    for sep, piece in _pieces(text, budget):
        candidate = f"{current}{sep}{piece}" if current else piece
        if fits(candidate, budget):
            current = candidate
        else:
            if current:
                parts.append(current)
            current = piece
    if current:
        parts.append(current)
    return parts


def _pieces(text: str, budget: int) -> list[tuple[str, str]]:
    """(separator before, sentence) pairs, each sentence within the budget (long ones cut at
    words, then characters)."""
    tokens = _SENTENCE_END.split(text)
    out: list[tuple[str, str]] = []
    for i in range(0, len(tokens), 2):
        sep = tokens[i - 1] if i else ""
        sentence = tokens[i].strip()
        if not sentence:
            continue
        if fits(sentence, budget):
            out.append((sep, sentence))
            continue
        for j, chunk in enumerate(_cut_words(sentence, budget)):
            out.append((sep if j == 0 else " ", chunk))
    return out


def _cut_words(sentence: str, budget: int) -> list[str]:
    out: list[str] = []
    current = ""
    for word in sentence.split(" "):
        while not fits(word, budget):  # one enormous "word" (a URL): hard cut
            if current:
                out.append(current)
                current = ""
            cut = _longest_prefix(word, budget)
            out.append(word[:cut])
            word = word[cut:]
        candidate = f"{current} {word}" if current else word
        if fits(candidate, budget):
            current = candidate
        else:
            out.append(current)
            current = word
    if current:
        out.append(current)
    return out


def _longest_prefix(word: str, budget: int) -> int:
    lo, hi = 1, len(word)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(word[:mid], budget):
            lo = mid
        else:
            hi = mid - 1
    return max(lo, 1)
