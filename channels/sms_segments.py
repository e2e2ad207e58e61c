"""Splitting a long SMS reply at sentence boundaries, within a segment budget (the segment
arithmetic itself, GSM 03.38, is `orchestrator.engine.textsize`)."""

from __future__ import annotations

import re

# The arithmetic lives with the validator's checks of per-channel limits; splitting is ours.
from orchestrator.engine.textsize import GSM7_ALL, GSM7_BASIC, GSM7_EXTENSION, encoding, fits, is_gsm7, segments, units

__all__ = ["GSM7_ALL", "GSM7_BASIC", "GSM7_EXTENSION", "encoding", "fits", "is_gsm7", "segments",
           "split_to_budget", "units"]

_SENTENCE_END = re.compile(r"((?<=[.!?…])[ \t]+|\s*\n\s*)")


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
