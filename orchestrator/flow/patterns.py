"""Owner-written regular expressions (`pattern:` on an ask, `says_re` in flow tests) on a
linear-time engine.

A flow is uploaded by an admin and a contact's text is matched against its patterns on
the worker that answers every webhook, so a backtracking engine lets one pattern such as
`(a+)+$` and one 31-character SMS freeze the process for seconds. RE2 (`google-re2`)
matches in time linear in the text whatever the pattern; it has no backreferences or
lookaround, so a pattern using them is refused when the flow is checked, with the way to
write it instead.

Python `re` semantics are kept where RE2 can express them: `\\d`, `\\w`, `\\s` (and `\\D`,
`\\W`, `\\S` outside a character class) match Unicode digits, letters and spaces as they do
in Python, and `\\Z` means the end of the text. `\\b` is ASCII-only on RE2 (a word boundary
next to "é" is not seen); nothing else the flow language documents differs.

    compile_pattern(r"^[0-9]{5}$").fullmatch("12345")
    problem(r"(\\w)\\1")   # -> PatternProblem(message, hint), None when the pattern is usable
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2
from re2 import _re2

__all__ = ["Pattern", "PatternProblem", "compile_pattern", "fullmatch", "problem", "search"]

MAX_REPEAT = 1000  # RE2's largest `{n}`
MAX_PROGRAM_BYTES = 8 << 20  # memory one pattern may use (RE2 `max_mem`; its DFA cache lives in it)

# Unicode classes as Python's `re` reads them in a str pattern; inside a class only the
# positive ones can be spliced in (a negated one would need class intersection).
_IN_CLASS = {"d": r"\p{Nd}", "w": r"\p{L}\p{N}_", "s": r"\s\p{Z}\x0b\x1c-\x1f\x85"}
_OUTSIDE = {
    **{k: f"[{v}]" for k, v in _IN_CLASS.items()},
    "D": r"[^\p{Nd}]", "W": r"[^\p{L}\p{N}_]", "S": r"[^\s\p{Z}\x0b\x1c-\x1f\x85]", "Z": r"\z",
}


_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED


@dataclass(frozen=True, slots=True)
class PatternProblem:
    message: str
    hint: str


class _Unsupported(ValueError):
    pass


def _translate(source: str) -> str:
    """`source` with Python's Unicode `\\d \\w \\s` and `\\Z` spelled the RE2 way."""
    out: list[str] = []
    i, n = 0, len(source)
    in_class = False
    while i < n:
        ch = source[i]
        if ch == "\\" and i + 1 < n:
            nxt = source[i + 1]
            table = _IN_CLASS if in_class else _OUTSIDE
            out.append(table.get(nxt, ch + nxt))
            i += 2
            continue
        if in_class:
            if ch == "[":  # literal for Python (`[[:digit:]]` is no POSIX class there)
                out.append("\\[")
                i += 1
                continue
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            out.append(ch)
            i += 1
            if i < n and source[i] == "^":
                out.append("^")
                i += 1
            if i < n and source[i] == "]":  # a leading ] is a literal
                out.append("\\]")
                i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _options(ignore_case: bool) -> Any:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = MAX_PROGRAM_BYTES
    options.case_sensitive = not ignore_case
    options.never_capture = True  # a yes/no answer: RE2 can stay on its DFA
    return options


class Pattern:
    """A compiled pattern answering yes or no. It calls RE2 directly (the `re2` module's
    match objects cost more than the match); a call costs about what `re.fullmatch` did."""

    __slots__ = ("_match", "source")

    def __init__(self, source: str, program: Any) -> None:
        self.source = source
        self._match = program.Match

    def fullmatch(self, text: str) -> bool:
        data = text.encode("utf-8", "surrogatepass")
        return bool(self._match(_BOTH, data, 0, len(data))[0][0] >= 0)

    def search(self, text: str) -> bool:
        data = text.encode("utf-8", "surrogatepass")
        return bool(self._match(_UNANCHORED, data, 0, len(data))[0][0] >= 0)

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"


_UNSUPPORTED = ", which the linear-time engine does not support"
_FEATURES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"\\[1-9]|\(\?P=|\\g<"), "uses a backreference (\\1, (?P=name))",
     "write the repeated part out, e.g. '(aa|bb)' instead of '(a|b)\\1'"),
    (re.compile(r"\(\?<[=!]"), "uses lookbehind ((?<=...), (?<!...))",
     "match the text before as part of the pattern, e.g. 'USD[0-9]+' instead of '(?<=USD)[0-9]+'"),
    (re.compile(r"\(\?[=!]"), "uses lookahead ((?=...), (?!...))",
     "match the text itself, e.g. '[0-9]{5}' for 'five digits'; a rule such as 'must contain a digit' "
     "becomes '.*[0-9].*'"),
    (re.compile(r"\(\?>|[*+?}]\+"), "uses an atomic group or possessive repeat ((?>...), a++)",
     "drop them: this engine never backtracks, so 'a+' already behaves like 'a++'"),
    (re.compile(r"\(\?\("), "uses a conditional group ((?(1)...|...))",
     "write the alternatives out with '|'"),
    (re.compile(r"\(\?[a-zA-Z]*x"), "uses verbose mode ((?x))",
     "write the pattern without spaces or comments"),
    (re.compile(r"\(\?#"), "holds a comment ((?#...))", "remove the comment"),
)


def problem(source: str) -> PatternProblem | None:
    """Why `source` cannot be used as a pattern (message and hint), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possible nested set": `[[` is valid, a literal [
            re.compile(source)
    except re.error as exc:
        return PatternProblem(f"is not a regular expression ({exc})",
                              "write a regular expression, e.g. '^[0-9]{5}$' for five digits")
    try:
        _compile(source, ignore_case=False, multiline=False)
    except _Unsupported as exc:
        for feature, message, hint in _FEATURES:
            if feature.search(source):
                return PatternProblem(f"{message}{_UNSUPPORTED}", hint)
        counts = [int(x) for m in re.finditer(r"\{(\d+)(?:,(\d*))?\}", source) for x in m.groups() if x]
        if counts and max(counts) > MAX_REPEAT:
            return PatternProblem(f"repeats something more than {MAX_REPEAT} times{_UNSUPPORTED}",
                                  "use a smaller count, or '+' / '*' for 'any number'")
        return PatternProblem(f"cannot run on the linear-time engine ({exc})",
                              "make it smaller (fewer nested or counted repeats)")
    return None


def _compile(source: str, *, ignore_case: bool, multiline: bool) -> Pattern:
    program = _re2.RE2((("(?m)" if multiline else "") + _translate(source)).encode("utf-8"), _options(ignore_case))
    if not program.ok():
        raise _Unsupported(program.error())
    return Pattern(source, program)


@lru_cache(maxsize=512)
def compile_pattern(source: str, ignore_case: bool = False, multiline: bool = False) -> Pattern:
    """The RE2 program of `source`; ValueError (with the hint) when `problem()` finds one."""
    found = problem(source)
    if found is not None:
        raise ValueError(f"{found.message} (hint: {found.hint})")
    return _compile(source, ignore_case=ignore_case, multiline=multiline)


def fullmatch(source: str, text: str) -> bool:
    return compile_pattern(source).fullmatch(text)


def search(source: str, text: str, *, ignore_case: bool = False, multiline: bool = False) -> bool:
    return compile_pattern(source, ignore_case, multiline).search(text)
