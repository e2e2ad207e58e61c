"""How long a text is for SMS: segment arithmetic (GSM 03.38).

A text made only of GSM-7 characters travels 160 per single segment, 153 per segment of a
concatenated message; the extension characters (`^{}\\[~]|€` and form feed) take two
septets. Any other character switches the whole message to UCS-2: 70 / 67 UTF-16 code
units (an emoji outside the BMP takes two). The SMS adapter splits by it; `validate`
warns by it.
"""

from __future__ import annotations

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
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
