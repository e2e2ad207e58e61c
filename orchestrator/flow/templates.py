"""Sandboxed jinja2 templates for prompts, connector args and branch conditions.

Compile every template of a flow once per revision (`TemplateEngine.compile*`, ~400 µs
each) and only render on the hot path (~10 µs). Templates are written by business admins,
never built from a contact's words: a contact's answer is only ever a *value* in the
context, so it cannot inject template code.

The environment is jinja2's `ImmutableSandboxedEnvironment` (no `_`/dunder attributes, no
mutation of lists and dicts), with no loader (`include`, `extends`, `import` fail) and no
autoescape (the output is text, not HTML). A variable that is not set renders empty (and
`x.y` of it too) and logs a warning: `validate` proves statically that every variable is set
on every path, so at run time a gap never ends a conversation. On top of jinja's sandbox, operations that could allocate
without bound (`'a' * 10**9`, `10**10**10`, `'%999999999s' % x`, `'x'.center(10**9)`,
`range(10**9)`) are refused, and every render has a budget: at most MAX_WORK loop
iterations and calls (nested loops, recursive macros), no value longer than MAX_STRING
(`~`, `+`, `replace`, `join`, a list printed whole) and at most MAX_OUTPUT characters out,
counted while the output is produced. Over a budget the render fails with a TemplateError:
the turn takes the flow's error path, the worker never hangs.

Filters: `time`, `date`, `datetime` (in the flow's timezone and language), `join`
(lists of strings or of slot mappings, rendered by their `label`), `phone` (E.164 ->
national format), `label`. Every error raised while rendering is a `TemplateError`
(an `OrchestratorError`) naming the template text.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import babel
import babel.dates as babel_dates
import jinja2
import jinja2.environment
import jinja2.meta
import jinja2.nodes
import jinja2.parser
import phonenumbers
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from orchestrator.errors import ConfigError, OrchestratorError

__all__ = [
    "CompiledArgs",
    "CompiledValue",
    "Expression",
    "Template",
    "TemplateEngine",
    "TemplateError",
    "expression_variables",
    "template_variables",
]

log = logging.getLogger("orchestrator.flow.templates")

MAX_RANGE = 1_000  # items `range()` may produce in one call
MAX_STRING = 100_000  # characters a `*` / `%` may produce
MAX_POWER_BITS = 4_096  # bits a `**` result may have
MAX_OUTPUT = 200_000  # characters one render may produce
MAX_WORK = 10_000  # loop iterations plus calls one render may make


class TemplateError(OrchestratorError, ValueError):
    """A template failed to compile or render. `source` is the template text, `lineno`
    the line in it (1-based) when known."""

    def __init__(self, message: str, *, source: str, lineno: int | None = None) -> None:
        self.source = source
        self.lineno = lineno
        super().__init__(message)


def _excerpt(source: str, limit: int = 120) -> str:
    text = " ".join(source.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _fix_for(exc: BaseException) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        return (
            "define the variable under `vars:`, `save:` it in an earlier state, "
            "or guard it with `{% if name is defined %}`"
        )
    if isinstance(exc, SecurityError):
        return "templates may only read variables and use filters; Python internals are not reachable"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return "check the braces: `{{ variable }}` for values, `{% if ... %}...{% endif %}` for logic"
    if isinstance(exc, (TypeError, ValueError, OverflowError, ArithmeticError)):
        return "check the values the template combines (their types and sizes)"
    return "simplify the template"


def _wrap(exc: BaseException, source: str, what: str = "template") -> TemplateError:
    lineno = getattr(exc, "lineno", None)
    where = f" line {lineno}" if lineno and "\n" in source else ""
    detail = str(exc) if isinstance(exc, (jinja2.TemplateError, OrchestratorError)) else (
        f"{type(exc).__name__}: {exc}"
    )
    return TemplateError(
        f"{what} {_excerpt(source)}{where}: {detail} (fix: {_fix_for(exc)})",
        source=source,
        lineno=lineno if isinstance(lineno, int) else None,
    )


# ---------------------------------------------------------------- the sandbox

_UNSAFE_STR_METHODS = frozenset(
    {"format", "format_map", "center", "ljust", "rjust", "zfill", "expandtabs", "translate"}
)
_PRINTF_WIDTH = re.compile(r"%[-#0 +]*(\*|\d{4,})|%[-#0 +]*\d*\.(\*|\d{4,})")


def _check_printf(fmt: str) -> None:
    if _PRINTF_WIDTH.search(fmt):
        raise SecurityError("printf-style widths above 999 or `*` are not allowed in templates")


def _too_long(size: int) -> OverflowError:
    return OverflowError(f"a value of {size:,} characters or items is too long for a template (at most {MAX_STRING:,})")


def _check_size(value: Any) -> Any:
    """`value` when its length (strings) or its item count (containers, nested ones walked
    until the bound) is within MAX_STRING; else OverflowError. Cheap for short values."""
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise _too_long(len(value))
        return value
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        seen = 0
        todo: list[Any] = [value]
        while todo:
            item = todo.pop()
            seen += len(item) if not isinstance(item, str) else len(item) // 16
            if seen > MAX_STRING:
                raise _too_long(seen)
            if not isinstance(item, str):
                todo.extend(v for v in (item.values() if isinstance(item, dict) else item)
                            if isinstance(v, (str, list, tuple, dict, set, frozenset)))
    return value


class _Work:
    """The work budget of one render, kept on its jinja EvalContext."""

    @staticmethod
    def spend(eval_ctx: Any, units: int = 1) -> None:
        used = getattr(eval_ctx, "orchestrator_work", 0) + units
        if used > MAX_WORK:
            raise OverflowError(f"the template did more than {MAX_WORK:,} loop iterations and calls")
        eval_ctx.orchestrator_work = used


@jinja2.pass_eval_context
def _counted(eval_ctx: Any, iterable: Any) -> Any:
    """What a `{% for %}` iterates: one unit of the render's budget per item."""
    for item in iterable:
        _Work.spend(eval_ctx)
        yield item


def _bounded_concat(value: Any) -> Any:
    return _check_size(value)


def _replaced_size(text: str, old: Any = "", new: Any = "", count: Any = -1) -> None:
    """Refuse a `replace` whose result would be longer than MAX_STRING, before it is built."""
    old, new = str(old), str(new)
    times = len(text) + 1 if not old else text.count(old)
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    size = len(text) + times * (len(new) - len(old))
    if size > MAX_STRING:
        raise _too_long(size)


def _bounded_replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    text = str(value)
    _replaced_size(text, old, new, -1 if count is None else count)
    return text.replace(str(old), str(new), -1 if count is None else count)


def _bound_work(tree: jinja2.nodes.Node) -> None:
    """Route every loop through `_counted` and check the size of every `~` result."""
    for loop in tree.find_all(jinja2.nodes.For):
        loop.iter = jinja2.nodes.Filter(loop.iter, "orchestrator_counted", [], [], None, None, lineno=loop.lineno)
    for concat in list(tree.find_all(jinja2.nodes.Concat)):
        concat.nodes = [jinja2.nodes.Filter(n, "orchestrator_sized", [], [], None, None, lineno=concat.lineno)
                        for n in concat.nodes]
    for parent in list(tree.find_all(jinja2.nodes.Node)):  # a snapshot: the new Filters are not revisited
        for name in parent.fields:
            child = getattr(parent, name, None)
            if isinstance(child, jinja2.nodes.Concat):
                setattr(parent, name, jinja2.nodes.Filter(child, "orchestrator_sized", [], [], None, None,
                                                          lineno=child.lineno))
            elif isinstance(child, list):
                setattr(parent, name, [
                    jinja2.nodes.Filter(c, "orchestrator_sized", [], [], None, None, lineno=c.lineno)
                    if isinstance(c, jinja2.nodes.Concat) else c for c in child])


def _bounded_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise OverflowError(f"range() of {len(rng)} items is too long (at most {MAX_RANGE})")
    return rng


# An unset variable (and any attribute of it) renders as nothing, is false and empty, and
# logs one warning naming it: the turn goes on.
_Unset: type[jinja2.Undefined] = jinja2.make_logging_undefined(logger=log, base=jinja2.ChainableUndefined)


def _unset_value(value: Any) -> bool:
    """True for an unset variable handed to a filter (it renders empty, with the warning)."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # logs the warning once, like a plain `{{ x }}`
        return True
    return False


class _Sandbox(ImmutableSandboxedEnvironment):
    """jinja's immutable sandbox plus bounds on operations that could exhaust memory or CPU."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    intercepted_unops = frozenset()

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        # jinja hands back an undefined that would render empty here: refuse loudly instead
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__} is not allowed")

    def wrap_str_format(self, value: Any) -> None:
        return None  # no `str.format` at all (widths allocate); `is_safe_attribute` refuses it

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _UNSAFE_STR_METHODS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _Work.spend(__context.eval_ctx)
        if getattr(__obj, "__name__", None) == "join" and isinstance(getattr(__obj, "__self__", None), str) and args:
            items = args[0] if isinstance(args[0], (list, tuple)) else list(args[0])
            _check_size(items)
            size = sum(len(str(i)) for i in items) + len(__obj.__self__) * max(len(items) - 1, 0)
            if size > MAX_STRING:
                raise _too_long(size)
            args = (items, *args[1:])
        elif getattr(__obj, "__name__", None) == "replace" and isinstance(getattr(__obj, "__self__", None), str):
            _replaced_size(__obj.__self__, *args[:3])
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: jinja2.runtime.Context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                _check_size(left)
                _check_size(right)
                if len(left) + len(right) > MAX_STRING:
                    raise _too_long(len(left) + len(right))
            return operator.add(left, right)
        if operator_ == "**":
            big = isinstance(left, int) and isinstance(right, int) and right > 0 and (
                max(abs(left), 2).bit_length() * right > MAX_POWER_BITS
            )
            if big:
                raise OverflowError(f"{left} ** {right} is too large for a template")
            return operator.pow(left, right)
        if operator_ == "*":
            seq, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > MAX_STRING:
                raise OverflowError(f"repeating a sequence {count} times is too long for a template")
            return operator.mul(left, right)
        if operator_ == "%":
            if isinstance(left, str):
                _check_printf(left)
            return operator.mod(left, right)
        raise SecurityError(f"operator {operator_!r} is not allowed")  # pragma: no cover


# ------------------------------------------------------------------ formatting

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
# Countries whose English convention is a 12-hour clock and "Thursday, November 26".
_US_STYLE = frozenset({"US", "CA", "PH"})
_TWELVE_HOUR = frozenset({"US", "CA", "AU", "NZ", "IN", "PH", "PK", "EG", "SA"})


def language_region(language: str) -> str | None:
    """`"en-US"` / `"en_us"` -> `"US"`; `"en"` -> None."""
    parts = re.split(r"[-_]", language.strip())
    if len(parts) >= 2 and len(parts[-1]) == 2 and parts[-1].isalpha():
        return parts[-1].upper()
    return None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"settings.timezone: unknown time zone {name!r} (fix: use an IANA name like America/New_York)"
        ) from exc


def _as_datetime(value: Any, tz: ZoneInfo, filter_name: str) -> dt.datetime:
    """A slot mapping, ISO string, datetime or date -> an aware datetime in `tz`."""
    if isinstance(value, Mapping):
        if "start" not in value:
            raise ValueError(f"`{filter_name}` needs a date/time or a slot with a `start`, got keys {sorted(value)}")
        value = value["start"]
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text):
            t = dt.time.fromisoformat(text.zfill(5) if len(text) == 4 else text)
            value = dt.datetime.combine(dt.date.today(), t)
        else:
            try:
                value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"`{filter_name}` cannot read {value!r} as an ISO date/time") from None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), tzinfo=tz)
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    raise ValueError(f"`{filter_name}` needs a date/time, got {type(value).__name__} {value!r}")


def _is_preference(value: Any) -> bool:
    """An "asap" / "any time" answer (inputs `_when`): it names no clock time, so the time
    filters print its words ("as soon as possible"), never the earliest slot as a promise."""
    return isinstance(value, Mapping) and bool(value.get("preference")) and value.get("label") is not None


class Formats:
    """Date and time wording for one flow (English; the country picks 12/24 h and order)."""

    def __init__(self, timezone: str, language: str) -> None:
        self.tz = _zone(timezone)
        self.region = language_region(language)
        self.twelve_hour = self.region in _TWELVE_HOUR or self.region is None
        self.us_order = self.region in _US_STYLE or self.region is None

    def _moment(self, value: Any, what: str) -> dt.datetime | str:
        """The date-time `value` names, or the words that stand for it: "" for an unset value,
        an "asap" answer's own label (it names no clock time)."""
        if _unset_value(value):
            return ""
        if _is_preference(value):
            return str(value["label"])
        return _as_datetime(value, self.tz, what)

    def time(self, value: Any) -> str:
        when = self._moment(value, "time")
        if isinstance(when, str):
            return when
        if not self.twelve_hour:
            return f"{when.hour:02d}:{when.minute:02d}"
        hour = when.hour % 12 or 12
        return f"{hour}:{when.minute:02d} {'AM' if when.hour < 12 else 'PM'}"

    def date(self, value: Any) -> str:
        when = self._moment(value, "date")
        if isinstance(when, str):
            return when
        day, month = _DAYS[when.weekday()], _MONTHS[when.month - 1]
        return f"{day}, {month} {when.day}" if self.us_order else f"{day} {when.day} {month}"

    def datetime(self, value: Any) -> str:
        when = self._moment(value, "datetime")
        if isinstance(when, str):
            return when
        return f"{self.short_date(when)}, {self.time(when)}"

    def short_date(self, value: Any) -> str:
        """The day of a date-time, short: "Thu 26 Nov" (a read-back's "Thu 26 Nov at 10:00 AM")."""
        when = _as_datetime(value, self.tz, "date")
        return f"{_DAYS[when.weekday()][:3]} {when.day} {_MONTHS[when.month - 1][:3]}"


class LocaleFormats(Formats):
    """Date and time wording in a language other than English, from CLDR through babel (SPEC §9):
    "jueves, 3 de diciembre", "jue, 3 dic, 10:00". A catalogue may give its own patterns
    (`formats: {date, short_date, time}`); else the locale's skeletons and short time."""

    def __init__(self, timezone: str, language: str, patterns: Mapping[str, str] | None = None) -> None:
        super().__init__(timezone, language)
        self.locale = babel.Locale.parse(language.replace("-", "_"))
        own = patterns or {}
        self._date = own.get("date")
        self._short = own.get("short_date")
        self._time = own.get("time") or self.locale.time_formats["short"].pattern
        combining = self.locale.datetime_formats.get("short")
        self._joined = str(combining) if combining is not None else "{1}, {0}"
        self._labels: dict[str, str] = {}  # ISO date-time -> its label: slots are labelled again and again

    def time(self, value: Any) -> str:
        when = self._moment(value, "time")
        if isinstance(when, str):
            return when
        return _plain_spaces(babel_dates.format_time(when, self._time, locale=self.locale))

    def date(self, value: Any) -> str:
        when = self._moment(value, "date")
        if isinstance(when, str):
            return when
        if self._date:
            return _plain_spaces(babel_dates.format_date(when, self._date, locale=self.locale))
        return _plain_spaces(babel_dates.format_skeleton("MMMMEEEEd", when, locale=self.locale))

    def short_date(self, value: Any) -> str:
        when = _as_datetime(value, self.tz, "date")
        if self._short:
            return _plain_spaces(babel_dates.format_date(when, self._short, locale=self.locale))
        return _plain_spaces(babel_dates.format_skeleton("MMMEd", when, locale=self.locale))

    def datetime(self, value: Any) -> str:
        known = self._labels.get(value) if isinstance(value, str) else None
        if known is not None:
            return known
        when = self._moment(value, "datetime")
        if isinstance(when, str):
            return when
        label = self._joined.replace("{1}", self.short_date(when)).replace("{0}", self.time(when))
        if isinstance(value, str) and len(self._labels) < 4096:
            self._labels[value] = label
        return label


_NARROW_SPACES = str.maketrans({"\u202f": " ", "\u00a0": " "})


def _plain_spaces(text: str) -> str:
    """CLDR's no-break spaces ("5:30\u202fp.m.") as plain ones: one of them alone would make
    an SMS UCS-2 (70 characters a segment instead of 160)."""
    return str(text).translate(_NARROW_SPACES)


def formats_for(timezone: str, language: str, patterns: Mapping[str, str] | None = None) -> Formats:
    """English keeps its own wording (the country picks 12/24 h); any other language is CLDR's."""
    if re.split(r"[-_]", language.strip(), maxsplit=1)[0].lower() == "en":
        return Formats(timezone, language)
    try:
        return LocaleFormats(timezone, language, patterns)
    except (babel.UnknownLocaleError, ValueError):
        return Formats(timezone, language)  # a tag CLDR does not know: English wording, as before


def label_of(value: Any) -> Any:
    """A slot / choice / booking mapping -> its `label` (else `id`); anything else unchanged."""
    if isinstance(value, Mapping):
        for key in ("label", "title", "name", "id"):
            if value.get(key) is not None:
                return value[key]
    return value


ChoiceLabels = Mapping[str | None, Mapping[str, str]]


def _per_variable(flow: Any, pick: Any) -> dict[str | None, dict[str, str]]:
    """A fact of each of the flow's static choices (`pick(id, choice)`, None: none), per
    variable an ask saves into (`save: reason`) and under None for the whole flow, the first
    ask's winning when two asks share an id."""
    table: dict[str | None, dict[str, str]] = {None: {}}
    for state in getattr(flow, "states", {}).values():
        choices = getattr(state, "choices", None)
        if not isinstance(choices, Mapping):
            continue
        save = getattr(state, "save", None)
        for cid, choice in choices.items():
            fact = pick(cid, choice)
            if fact:
                table[None].setdefault(cid, fact)
                if save:
                    table.setdefault(save, {}).setdefault(cid, fact)
    return table


def flow_choice_labels(flow: Any) -> dict[str | None, dict[str, str]]:
    """The flow's static choices, id -> label (the `label` filter)."""
    return _per_variable(flow, lambda cid, choice: getattr(choice, "label", None) or cid.replace("_", " "))


def flow_choice_durations(flow: Any) -> dict[str | None, dict[str, str]]:
    """The flow's static choices that name a `duration` (a service's length), id -> duration."""
    return _per_variable(flow, lambda cid, choice: getattr(choice, "duration", None))


def _choice_fact(table: ChoiceLabels, choice_id: str, var: str | None) -> str | None:
    """A static choice's fact (`flow_choice_labels`, `flow_choice_durations`) for its saved id:
    the ask saving into `var` first, else any ask of the flow."""
    own = table.get(var) if var is not None else None
    if own is not None and choice_id in own:
        return own[choice_id]
    flow = table.get(None)
    return flow.get(choice_id) if flow is not None else None


class _Duration:
    """The `duration` filter: a chosen service's length (`{{ service | duration }}` -> "45m"),
    the `duration` of a mapping, else empty, so `calendar.find_slots` falls back to
    `slot_length` for a choice that names none."""

    def __init__(self, durations: ChoiceLabels) -> None:
        self.durations = durations

    def __call__(self, value: Any, var: str | None = None) -> str:
        if isinstance(value, Mapping):
            return str(value.get("duration") or "")
        if isinstance(value, str):
            return _choice_fact(self.durations, value, var) or ""
        return ""


class _Label:
    """The `label` filter: a mapping's label, or a static choice's label for its saved id
    (`{{ reason | label }}` -> "Teeth cleaning"). `var` (added at compile time when the filter
    is applied to a plain variable) prefers the ask that saves into that variable."""

    def __init__(self, labels: ChoiceLabels) -> None:
        self.labels = labels

    def __call__(self, value: Any, var: str | None = None) -> Any:
        if isinstance(value, str):
            fact = _choice_fact(self.labels, value, var)
            return value if fact is None else fact
        return label_of(value)


def _name_label_filters(tree: jinja2.nodes.Node) -> None:
    """`x | label` -> `x | label("x")` (and `duration`): the filter learns which variable its id
    came from."""
    for node in tree.find_all(jinja2.nodes.Filter):
        if node.name in ("label", "duration") and isinstance(node.node, jinja2.nodes.Name) \
                and not node.args and not node.kwargs:
            node.args = [jinja2.nodes.Const(node.node.name, lineno=node.lineno)]


def _join(value: Iterable[Any], d: str = "", attribute: str | None = None, last: str | None = None) -> str:
    """jinja's `join`, rendering mappings by their label; `last` separates the final pair:
    `slots | join(', ', last=' or ')` -> "Thu 10 AM, Thu 11 AM or Fri 9 AM"."""
    if isinstance(value, (str, Mapping)):
        value = [value]
    items = [str(label_of(item[attribute] if attribute else item)) for item in _check_size(list(value))]
    size = sum(map(len, items)) + len(d) * len(items) + len(last or "")
    if size > MAX_STRING:
        raise _too_long(size)
    if last is not None and len(items) > 1:
        return d.join(items[:-1]) + last + items[-1]
    return d.join(items)


class _Phone:
    def __init__(self, region: str | None) -> None:
        self.region = region

    def __call__(self, value: Any, style: str = "national") -> str:
        text = str(label_of(value))
        try:
            number = phonenumbers.parse(text, self.region)
        except phonenumbers.NumberParseException:
            return text
        if not phonenumbers.is_possible_number(number):
            return text
        region = phonenumbers.region_code_for_country_code(number.country_code or 0)
        if style == "e164":
            fmt = phonenumbers.PhoneNumberFormat.E164
        elif style == "international" or (self.region and region != self.region):
            fmt = phonenumbers.PhoneNumberFormat.INTERNATIONAL
        else:
            fmt = phonenumbers.PhoneNumberFormat.NATIONAL
        return str(phonenumbers.format_number(number, fmt))


def _safe_format(value: str, *args: Any, **kwargs: Any) -> str:
    if args and kwargs:
        raise TypeError("format: use positional or keyword arguments, not both")
    _check_printf(value)
    return str(value % (kwargs or args))


def _finalize(value: Any) -> Any:
    """What `{{ x }}` prints: nothing for None, a mapping's label for a slot/booking (a
    container too large to print is refused before `str()` builds it)."""
    if value is None:
        return ""
    if isinstance(value, Mapping) and "label" in value:
        return value["label"]
    return _check_size(value)


_DROPPED_FILTERS = ("center", "indent", "wordwrap", "xmlattr", "urlize", "filesizeformat", "pprint")


# ------------------------------------------------------------------ compiled objects


class Template:
    """A compiled text template. `render(context)` -> str, raising `TemplateError`."""

    __slots__ = ("_template", "constant", "source")

    def __init__(self, source: str, template: jinja2.Template | None) -> None:
        self.source = source
        self._template = template
        self.constant = template is None  # plain text: rendering returns it unchanged

    def render(self, context: Mapping[str, Any]) -> str:
        if self._template is None:
            return self.source
        template = self._template
        parts: list[str] = []
        size = 0
        try:
            for part in template.root_render_func(template.new_context(dict(context))):
                size += len(part)
                if size > MAX_OUTPUT:  # stop while producing it, not after building it whole
                    raise TemplateError(
                        f"template {_excerpt(self.source)} rendered more than {MAX_OUTPUT:,} characters "
                        "(fix: shorten the text or the loop)",
                        source=self.source,
                    )
                parts.append(part)
        except TemplateError:
            raise
        except Exception as exc:
            raise _wrap(exc, self.source) from None
        return "".join(parts)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


class Expression:
    """A compiled expression (a branch `when:`); `evaluate(context)` -> its native value."""

    __slots__ = ("_fn", "source")

    def __init__(self, source: str, fn: Callable[..., Any]) -> None:
        self.source = source
        self._fn = fn

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        try:
            value = self._fn(context)
            if _unset_value(value):
                return None
            return value
        except TemplateError:
            raise
        except Exception as exc:
            raise _wrap(exc, self.source, "expression") from None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


class CompiledValue:
    """A connector argument: `"{{ slot }}"` renders to the slot itself (a dict stays a dict),
    `"{{ a }} - {{ b }}"` to a string, a constant to itself, containers recursively."""

    __slots__ = ("_kind", "_part", "source")

    def __init__(self, source: Any, kind: str, part: Any) -> None:
        self.source = source
        self._kind = kind  # const | expr | text | dict | list
        self._part = part

    def render(self, context: Mapping[str, Any]) -> Any:
        kind, part = self._kind, self._part
        if kind == "const":
            return part
        if kind == "expr":
            return part.evaluate(context)
        if kind == "text":
            return part.render(context)
        if kind == "dict":
            return {key: value.render(context) for key, value in part.items()}
        return [value.render(context) for value in part]

    @property
    def constant(self) -> bool:
        return self._kind == "const"


class CompiledArgs:
    """A `call:` state's `args`, compiled once; `render(context)` -> a fresh dict."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, CompiledValue]) -> None:
        self._items = items

    def render(self, context: Mapping[str, Any]) -> dict[str, Any]:
        return {key: value.render(context) for key, value in self._items.items()}


# ------------------------------------------------------------------ the engine

_LOADING_NODES = (jinja2.nodes.Include, jinja2.nodes.Import, jinja2.nodes.FromImport, jinja2.nodes.Extends)


def _refuse_unsafe_nodes(tree: jinja2.nodes.Template) -> None:
    """Refuse at compile time what could only fail (or leak) at render time."""
    for node in tree.find_all(_LOADING_NODES):
        raise SecurityError(
            f"line {node.lineno}: `{type(node).__name__.lower()}` is not available: "
            "flows are single files; put shared text in `vars:`"
        )
    for name in tree.find_all(jinja2.nodes.Name):
        if name.name == "self":
            raise SecurityError(f"line {name.lineno}: `self` is reserved; rename the variable")

_SINGLE_EXPR = re.compile(r"^\s*\{\{-?(?P<expr>.*?)-?\}\}\s*$", re.DOTALL)
_MARKERS = ("{{", "{%", "{#")


class TemplateEngine:
    """One per flow revision (timezone and language come from the flow's settings)."""

    def __init__(
        self, timezone: str = "UTC", language: str = "en-US", choice_labels: ChoiceLabels | None = None,
        date_patterns: Mapping[str, str] | None = None, choice_durations: ChoiceLabels | None = None,
    ) -> None:
        self.timezone = timezone
        self.language = language
        self.formats = formats_for(timezone, language, date_patterns)
        self.choice_labels: ChoiceLabels = choice_labels or {}
        self.choice_durations: ChoiceLabels = choice_durations or {}
        self.env = self._make_env(finalize=True)

    def _make_env(self, *, finalize: bool) -> _Sandbox:
        env = _Sandbox(
            loader=None,
            autoescape=False,
            undefined=_Unset,
            finalize=_finalize if finalize else None,
            keep_trailing_newline=True,
            auto_reload=False,
            cache_size=0,
        )
        for name in _DROPPED_FILTERS:
            env.filters.pop(name, None)
        env.filters.update(
            time=self.formats.time,
            date=self.formats.date,
            datetime=self.formats.datetime,
            join=_join,
            phone=_Phone(self.formats.region),
            label=_Label(self.choice_labels),
            duration=_Duration(self.choice_durations),
            format=_safe_format,
            replace=_bounded_replace,
            orchestrator_counted=_counted,
            orchestrator_sized=_bounded_concat,
        )
        env.globals = {"range": _bounded_range, "dict": dict, "namespace": jinja2.utils.Namespace}
        return env

    # -- compiling

    def compile(self, source: str) -> Template:
        if not any(marker in source for marker in _MARKERS):
            return Template(source, None)
        try:
            tree = self.env.parse(source)
            _refuse_unsafe_nodes(tree)
            _name_label_filters(tree)
            _bound_work(tree)
            return Template(source, self.env.from_string(tree))
        except Exception as exc:
            raise _wrap(exc, source) from None

    def compile_expression(self, source: str) -> Expression:
        text = source.strip()
        single = _SINGLE_EXPR.match(text)
        if single and "{{" not in single.group("expr") and "}}" not in single.group("expr"):
            text = single.group("expr").strip()  # tolerate `when: "{{ x > 1 }}"`
        try:
            _refuse_unsafe_nodes(self.env.parse("{{ " + text + " }}"))
            parser = jinja2.parser.Parser(self.env, text, state="variable")
            expr = parser.parse_expression()
            if not parser.stream.eos:
                raise jinja2.TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
            expr.set_environment(self.env)
            _name_label_filters(expr)
            _bound_work(expr)
            body = [jinja2.nodes.Assign(jinja2.nodes.Name("result", "store"), expr, lineno=1)]
            compiled = jinja2.environment.TemplateExpression(
                self.env.from_string(jinja2.nodes.Template(body, lineno=1)), False
            )
        except Exception as exc:
            raise _wrap(exc, source, "expression") from None
        return Expression(source, compiled)

    def compile_value(self, source: Any) -> CompiledValue:
        if isinstance(source, str):
            if not any(marker in source for marker in _MARKERS):
                return CompiledValue(source, "const", source)
            single = _SINGLE_EXPR.match(source)
            if single and "{{" not in single.group("expr") and "}}" not in single.group("expr"):
                return CompiledValue(source, "expr", self.compile_expression(single.group("expr")))
            return CompiledValue(source, "text", self.compile(source))
        if isinstance(source, Mapping):
            parts = {str(key): self.compile_value(value) for key, value in source.items()}
            if all(part.constant for part in parts.values()):
                return CompiledValue(source, "const", source)
            return CompiledValue(source, "dict", parts)
        if isinstance(source, (list, tuple)):
            items = [self.compile_value(value) for value in source]
            if all(item.constant for item in items):
                return CompiledValue(source, "const", source)
            return CompiledValue(source, "list", items)
        return CompiledValue(source, "const", source)

    def compile_args(self, args: Mapping[str, Any]) -> CompiledArgs:
        return CompiledArgs({str(key): self.compile_value(value) for key, value in args.items()})

    # -- static analysis (the validator)

    def template_variables(self, source: str) -> set[str]:
        """Names a template reads from its context (excluding globals such as `range`).
        Raises `jinja2.TemplateSyntaxError` (with `lineno`) on malformed source."""
        return set(jinja2.meta.find_undeclared_variables(self.env.parse(source))) - set(self.env.globals)

    def expression_variables(self, expr: str) -> set[str]:
        text = expr.strip()
        single = _SINGLE_EXPR.match(text)
        if single and "{{" not in single.group("expr"):
            text = single.group("expr")
        tree = self.env.parse("{{ " + text + " }}")
        body = tree.body
        if len(body) != 1 or not isinstance(body[0], jinja2.nodes.Output) or len(body[0].nodes) != 1:
            raise jinja2.TemplateSyntaxError(f"expected one expression, got {expr!r}", 1)
        return set(jinja2.meta.find_undeclared_variables(tree)) - set(self.env.globals)


def bare_expression(expr: str) -> str:
    """A branch condition without the `{{ }}` some authors put around it."""
    text = expr.strip()
    single = _SINGLE_EXPR.match(text)
    if single and "{{" not in single.group("expr") and "}}" not in single.group("expr"):
        return single.group("expr").strip()
    return text


@lru_cache(maxsize=1)
def _default_engine() -> TemplateEngine:
    return TemplateEngine()


def template_variables(source: str) -> set[str]:
    """Variables a template reads; raises `jinja2.TemplateSyntaxError` with `lineno`."""
    return _default_engine().template_variables(source)


def expression_variables(expr: str) -> set[str]:
    """Variables an expression (a branch `when:`) reads; raises `jinja2.TemplateSyntaxError`."""
    return _default_engine().expression_variables(expr)
