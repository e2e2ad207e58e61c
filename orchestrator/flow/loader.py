"""YAML flow files -> `schema.Flow`, remembering where every node sits in the source.

msgspec decodes plain data and reports a bad value by its path (`$.states[...].on`); it
knows no line numbers and hides mapping keys as `[...]`. So the loader composes the YAML
node tree once (libyaml when available), builds the plain data and a `$.path -> (line,
col)` map in the same walk, and turns a msgspec error back into a `Diagnostic` at the
right line: `[...]` is resolved by re-decoding one mapping entry at a time.

Numbers and booleans written where the schema wants text (`dtmf: 1`, `match: [yes, no]`)
are accepted as the text the author wrote: YAML 1.1 reads `yes` as true and `01` as 1,
which no admin means.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import yaml

from orchestrator.errors import Diagnostic, FlowError
from orchestrator.flow import schema

Position = tuple[int, int]
PathKey = tuple[str | int, ...]  # concrete path: mapping keys and list indexes

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Limits on a flow file, checked before any node is built (docs/SPEC.md "Limits"). A real
# flow is a few hundred states and a few thousand YAML values, five or six levels deep.
MAX_FLOW_BYTES = 1 << 20  # UTF-8 bytes of one flow file
MAX_YAML_NODES = 100_000  # YAML values once every alias (*name) is expanded
MAX_YAML_DEPTH = 50  # nested mappings / lists
MAX_STATES = 2_000  # states of one flow
_MAX_PROBLEMS = 20
_MAX_TEXT_FIXES = 1000
_MSGSPEC_ERROR = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.S)
_PATH_SEGMENT = re.compile(r"\.([^.\[\]]+)|\[(\d+|\.\.\.)\]")
_TYPE_WORDS = {
    "str": "text", "int": "a whole number", "float": "a number", "bool": "true or false",
    "null": "nothing", "object": "a mapping (key: value lines)", "array": "a list",
}


@dataclass(slots=True)
class LoadedFlow:
    """A decoded flow with its source and the position of every YAML node."""

    flow: schema.Flow
    source: str
    revision: str  # sha256 of the source, first 12 hex
    filename: str
    positions: dict[str, Position] = field(default_factory=dict)  # `$.states.book` -> value node
    key_positions: dict[str, Position] = field(default_factory=dict)  # `$.states.book` -> its key
    warnings: list[Diagnostic] = field(default_factory=list)  # set by validate.check


    def position(self, path: str, *, key: bool = False) -> Position:
        """The line:col of `path`, or of its nearest known ancestor."""
        return position_of(self.positions, self.key_positions, path, key=key)

    def diagnostic(
        self, path: str, message: str, hint: str | None = None, *, key: bool = False, severity: str = "error"
    ) -> Diagnostic:
        line, col = self.position(path, key=key)
        return Diagnostic(file=self.filename, line=line, col=col, message=message, hint=hint, path=path,
                          severity=severity)


def revision_of(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]


def path_str(parts: PathKey) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def parent_path(path: str) -> str | None:
    if path == "$":
        return None
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else "$"


def position_of(
    positions: dict[str, Position], key_positions: dict[str, Position], path: str, *, key: bool = False
) -> Position:
    current: str | None = path
    while current is not None:
        if key and current in key_positions:
            return key_positions[current]
        if current in positions:
            return positions[current]
        current = parent_path(current)
    return (1, 1)


def closest(word: str, options: Any, *, cutoff: float = 0.6) -> str | None:
    """The option closest to `word` (difflib), or None."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(word: str, options: Any, *, cutoff: float = 0.6) -> str | None:
    """`"did you mean 'offer'?"` for the closest of `options`, or None."""
    close = closest(word, options, cutoff=cutoff)
    return f"did you mean '{close}'?" if close else None


# -- YAML -> plain data + positions ---------------------------------------------------------


class _Builder:
    def __init__(self, filename: str, text: str = "") -> None:
        self.filename = filename
        self.lines = text.splitlines()
        self.positions: dict[str, Position] = {}
        self.key_positions: dict[str, Position] = {}
        self.scalar_text: dict[PathKey, str] = {}  # what the author wrote, for non-string scalars
        self.problems: list[Diagnostic] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, parts: PathKey) -> Any:
        self.positions[path_str(parts)] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, parts)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*parts, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, parts)

    def _scalar(self, node: yaml.Node, parts: PathKey) -> Any:
        if node.tag == "tag:yaml.org,2002:timestamp":
            return node.value  # ISO text; the schema wants strings for dates
        value = self._constructor.construct_object(node)
        if not isinstance(value, str) and value is not None:
            self.scalar_text[parts] = node.value
        return value

    def _mapping(self, node: yaml.MappingNode, parts: PathKey) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        seen: dict[Any, Position] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                for source in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                    if isinstance(source, yaml.MappingNode):
                        for k, v in self._mapping(source, parts).items():
                            merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                template = self._template_value(node)
                if template is not None:  # `say: {{ name }}` parsed as a mapping
                    self.problems.append(self._diag(node, parts, "a value starting with {{ must be in quotes",
                                                    template))
                    return result
                message = "a mapping key must be plain text, not a list or mapping"
                self.problems.append(self._diag(key_node, parts, message))
                continue
            key = key_node.value if key_node.tag != "tag:yaml.org,2002:null" else "null"
            if key in seen:
                line, col = seen[key]
                self.problems.append(self._diag(
                    key_node, parts,
                    f"duplicate key '{key}' in {describe(path_str(parts))} (first at line {line}:{col})",
                    "YAML would silently keep only the last one; merge them or rename one",
                ))
                continue
            seen[key] = _mark(key_node)
            child = (*parts, key)
            self.key_positions[path_str(child)] = _mark(key_node)
            result[key] = self.build(value_node, child)
        for k, v in merged.items():
            result.setdefault(k, v)
        return result

    def _template_value(self, node: yaml.Node) -> str | None:
        """The fix when `node` is a `{{ ... }}` template YAML read as a flow mapping."""
        line, col = node.start_mark.line, node.start_mark.column
        rest = self.lines[line][col:] if 0 <= line < len(self.lines) else ""
        if not rest.startswith("{{"):
            return None
        close = rest.find("}}")
        value = rest[: close + 2] if close >= 0 else rest
        key = re.search(r"([^\s{,:]+):\s*$", self.lines[line][:col])
        name = key.group(1) if key else "say"
        return TEMPLATE_HINT % (name, value.replace('"', '\\"'))

    def _diag(self, node: yaml.Node, parts: PathKey, message: str, hint: str | None = None) -> Diagnostic:
        line, col = _mark(node)
        return Diagnostic(file=self.filename, line=line, col=col, message=message, hint=hint, path=path_str(parts))


def _mark(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


_TEMPLATE_VALUE = re.compile(r"^\s*(?:-\s+)?(?P<key>[^\s:#'\"][^:#]*?):\s+(?P<value>\{\{.*)$")
_KEY_VALUE = re.compile(r"^(?P<indent>\s*)(?P<dash>-\s+)?(?P<key>[^\s:#'\"][^:]*?):\s+(?P<value>.*?)\s*$")
TEMPLATE_HINT = "quote a value that starts with {{: write %s: \"%s\" (YAML reads {{ ... }} as a mapping)"


def _template_fix(line: str) -> str | None:
    """The quoted form of a `key: {{ ... }}` line, or None when the line is not one."""
    match = _TEMPLATE_VALUE.match(line)
    if match is None:
        return None
    value = match.group("value").strip().replace('"', '\\"')
    return TEMPLATE_HINT % (match.group("key").strip(), value)


def _syntax_diagnostic(exc: yaml.YAMLError, filename: str, text: str) -> Diagnostic:
    """A YAML syntax error in the owner's words, at the parser's line:col, with the fix."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None) or ""
    opened = getattr(exc, "context_mark", None)
    opened_at = f"line {opened.line + 1}:{opened.column + 1}" if opened is not None else "above"
    lines = text.splitlines()

    def at(n: int) -> str:
        return lines[n - 1] if 0 < n <= len(lines) else ""

    here = at(line)
    bad_char = here[col - 1 : col]
    message: str | None = None
    hint: str | None = None
    template = _template_fix(here) or (_template_fix(at(opened.line + 1)) if opened is not None else None)
    if bad_char == "\t" or "\\t" in problem or here[: len(here) - len(here.lstrip())].count("\t"):
        message = f"line {line} is indented with a tab"
        hint = "indent with spaces, not tabs (YAML does not allow tabs; 2 spaces per level)"
    elif template is not None:
        message = "a value starting with {{ must be in quotes"
        hint = template
    elif "quoted scalar" in context:
        message = f"the quote opened at {opened_at} is never closed"
        hint = "end the text with the same quote mark it starts with; inside \"...\" write \\\" for a quote"
    elif "flow mapping" in context or "flow sequence" in context:
        bracket, closing = ("{", "}") if "mapping" in context else ("[", "]")
        message = f"the '{bracket}' opened at {opened_at} is not closed (or a ',' is missing between items)"
        hint = (f"close it with '{closing}' on the same value, or put text containing "
                f"{bracket} or , in quotes")
    elif "mapping values are not allowed" in problem:
        before = here[: col - 1]
        key = _KEY_VALUE.match(here)
        if ": " in before.strip() + " " and key is not None and ": " in before:
            message = "this text contains ': ', which YAML reads as the start of another key"
            value = key.group("value").replace('"', '\\"')
            hint = f'put the whole text in quotes: {key.group("key")}: "{value}"'
        else:
            message = f"line {line} is indented further than the key above it"
            hint = "line up the keys of one state under each other (the same number of spaces)"
    elif "expected a single document" in problem or "but found another document" in problem:
        message = "a flow file holds one document, but this line starts another ('---')"
        hint = "remove the extra '---'"
    elif "found undefined alias" in problem:
        alias = re.match(r"\*[^\s,\]}]*", here[col - 1 :])
        message = f"'{alias.group() if alias else '*'}' refers to an anchor that is not defined"
        hint = "define the anchor (&name) before using *name"
    elif "did not find expected key" in problem or "expected <block end>" in problem:
        stripped = here.lstrip()
        indent = len(here) - len(stripped)
        if stripped.startswith("- ") or stripped == "-":
            message = "a list item ('- ') is mixed into a mapping of 'key: value' lines"
            hint = ("write it as 'key: value' at the indentation of the keys above, without the '-', "
                    "or make every entry of this block a '- ' item")
        else:
            above = next((n for n in range(line - 1, 0, -1) if at(n).strip() and not at(n).lstrip().startswith("#")), 0)
            above_indent = len(at(above)) - len(at(above).lstrip())
            message = f"line {line} is indented {indent} spaces, which does not line up with the lines above"
            hint = (f"line its key up with the key it belongs with ({above_indent} spaces, like line {above})"
                    + (f" or with the block at {opened_at} ({opened.column} spaces)" if opened is not None else ""))
    elif "could not find expected ':'" in problem or "could not find expected" in problem:
        message = f"line {line} is neither 'key: value' nor a continuation of the line above"
        hint = "check the indentation and that every key ends with ':'"
    detail = f"{problem}" + (f" ({context})" if context else "")
    text_out = f"YAML syntax error: {message} [parser: {detail}]" if message else f"YAML syntax error: {detail}"
    return Diagnostic(file=filename, line=line, col=col, message=text_out, hint=hint)


# -- plain data -> Flow ---------------------------------------------------------------------


def describe(path: str) -> str:
    """`$.states.book.on.ok` -> `state 'book' key 'on.ok'`: how an admin names the place."""
    parts = [m.group(1) if m.group(1) is not None else f"[{m.group(2)}]" for m in _PATH_SEGMENT.finditer(path)]
    if not parts:
        return "the flow file"
    head = {"states": "state", "intents": "intent", "answers": "answer"}.get(parts[0])
    if head and len(parts) >= 2:
        where = f"{head} '{parts[1]}'"
        rest = _join(parts[2:])
        return f"{where} key '{rest}'" if rest else where
    return f"'{_join(parts)}'"


def _join(parts: list[str]) -> str:
    text = ""
    for p in parts:
        text += p if p.startswith("[") or not text else f".{p}"
    return text


def _parse_error(exc: msgspec.ValidationError) -> tuple[str, list[str]]:
    match = _MSGSPEC_ERROR.match(str(exc))
    assert match is not None  # the pattern accepts every string
    raw_path = match.group("path") or "$"
    segments = [m.group(1) if m.group(1) is not None else f"[{m.group(2)}]" for m in _PATH_SEGMENT.finditer(raw_path)]
    return match.group("msg"), segments


def _get(data: Any, parts: PathKey) -> Any:
    for p in parts:
        data = data[p]
    return data


def _replace(data: Any, parts: PathKey, value: Any) -> Any:
    """A copy of `data` with the node at `parts` replaced (copying only along the path)."""
    if not parts:
        return value
    head, rest = parts[0], parts[1:]
    copy: Any = dict(data) if isinstance(data, dict) else list(data)
    copy[head] = _replace(data[head], rest, value)
    return copy


def _try(raw: Any) -> str | None:
    try:
        schema.decode_flow(raw)
    except msgspec.ValidationError as exc:
        return str(exc)
    return None


def _resolve(raw: dict[str, Any], exc: msgspec.ValidationError) -> tuple[str, PathKey]:
    """msgspec's message and the concrete path it speaks of (`[...]` -> the real key)."""
    message, segments = _parse_error(exc)
    full = str(exc)
    parts: list[str | int] = []
    data: Any = raw
    narrowed: Any = raw  # raw with every mapping resolved so far cut down to the culprit entry
    for seg in segments:
        if seg == "[...]":
            found: Any = None
            if isinstance(data, dict):
                for key in data:
                    trial = _replace(narrowed, tuple(parts), {key: data[key]})
                    if _try(trial) == full:
                        found, narrowed = key, trial
                        break
            if found is None:
                break
            parts.append(found)
            data = data[found]
        elif seg.startswith("["):
            index = int(seg[1:-1])
            if not isinstance(data, list) or index >= len(data):
                break
            parts.append(index)
            data = data[index]
        else:
            if not isinstance(data, dict) or seg not in data:
                # msgspec names fields by their YAML name, so a miss means a missing field
                break
            parts.append(seg)
            data = data[seg]
    return message, tuple(parts)


def _struct_at(raw: Any, parts: PathKey) -> type[msgspec.Struct] | None:
    """The Struct class that decodes the node at `parts`, if any."""
    info: Any = msgspec.inspect.type_info(schema.Flow)
    data: Any = raw
    for p in (*parts, None):
        info = _unwrap(info, data)
        if p is None:
            break
        if isinstance(info, msgspec.inspect.StructType):
            info = next((f.type for f in info.fields if f.encode_name == p), None)
        elif isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        elif isinstance(info, msgspec.inspect.ListType):
            info = info.item_type
        else:
            return None
        try:
            data = data[p]
        except (KeyError, IndexError, TypeError):
            data = None
    return info.cls if isinstance(info, msgspec.inspect.StructType) else None


def _unwrap(info: Any, data: Any) -> Any:
    if isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    if isinstance(info, msgspec.inspect.UnionType):
        structs = [t for t in info.types if isinstance(t, msgspec.inspect.StructType)]
        if isinstance(data, dict) and structs:
            kind = data.get("kind") or schema.infer_kind(data)
            for s in structs:
                if s.tag == kind or len(structs) == 1:
                    return s
        others = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        return others[0] if others else info
    return info


def _literal_values(raw: Any, parts: PathKey) -> list[str]:
    if not parts:
        return []
    info: Any = msgspec.inspect.type_info(_struct_at(raw, parts[:-1]) or schema.Flow)
    if isinstance(info, msgspec.inspect.StructType):
        for f in info.fields:
            if f.encode_name == parts[-1]:
                t = f.type
                if isinstance(t, msgspec.inspect.UnionType):
                    t = next((x for x in t.types if isinstance(x, msgspec.inspect.LiteralType)), t)
                if isinstance(t, msgspec.inspect.LiteralType):
                    return [str(v) for v in t.values]
    return []


def _type_words(text: str) -> str:
    names = [n.strip() for n in text.split("|")]
    if "str" in names and "object" in names:  # a text of the flow language: one string, or one per language
        return "text" + (" or true/false" if "bool" in names else "")
    return " or ".join(_TYPE_WORDS.get(n, n) for n in names if n != "null") or "nothing"


def _field_names(cls: type[msgspec.Struct]) -> list[str]:
    return [f.encode_name for f in msgspec.structs.fields(cls)]


def _diagnose(raw: dict[str, Any], exc: msgspec.ValidationError, b: _Builder) -> Diagnostic:
    message, parts = _resolve(raw, exc)
    path = path_str(parts)
    where = describe(path)

    def at(p: str, msg: str, hint: str | None = None, *, key: bool = False) -> Diagnostic:
        line, col = position_of(b.positions, b.key_positions, p, key=key)
        return Diagnostic(file=b.filename, line=line, col=col, message=msg, hint=hint, path=p)

    if m := re.match(r"Object contains unknown field `(.+)`", message):
        name = m.group(1)
        cls = _struct_at(raw, parts)
        allowed = [n for n in _field_names(cls) if n != "kind"] if cls else []
        hint = did_you_mean(name, allowed) or (f"allowed here: {', '.join(allowed)}" if allowed else None)
        return at(f"{path}.{name}", f"unknown key '{name}' in {where}", hint, key=True)
    if m := re.match(r"Object missing required field `(.+)`", message):
        name = m.group(1)
        if name == "kind" and len(parts) == 2 and parts[0] == "states":
            body = _get(raw, parts)
            kinds = ", ".join(schema.STATE_KINDS)
            hint = next(filter(None, (did_you_mean(k, schema.STATE_KINDS, cutoff=0.5) for k in body)), None)
            return at(path, f"{where} has no kind: give it one of the keys {kinds}", hint, key=True)
        return at(path, f"{where} is missing the required key '{name}'", f"add '{name}:'", key=True)
    if m := re.match(r"Invalid enum value '?(.*?)'?$", message):
        value = m.group(1)
        options = _literal_values(raw, parts)
        hint = did_you_mean(value, options) or (f"use one of: {', '.join(options)}" if options else None)
        return at(path, f"{where}: '{value}' is not allowed", hint)
    if "matching regex" in message:
        value = _get(raw, parts)
        if parts == ("flow",):
            return at(path, f"flow id '{value}' may only hold lowercase letters, digits and _",
                      f"e.g. {re.sub(r'[^a-z0-9_]+', '_', str(value).lower()).strip('_') or 'my_flow'}")
        return at(path, f"{where}: bad duration '{value}'", "write a number and a unit, e.g. 30s, 10m, 2h, 1d")
    if m := re.match(r"Expected `(.+?)`, got `(.+?)`", message):
        wanted, got = _type_words(m.group(1)), _TYPE_WORDS.get(m.group(2), m.group(2))
        return at(path, f"{where} should be {wanted}, found {got}")
    return at(path, f"{where}: {message}")


def _as_text(data: Any, info: Any, parts: PathKey, texts: dict[PathKey, str]) -> Any:
    """Put back the text the author wrote wherever the schema wants a string but YAML
    produced a number or boolean (`dtmf: 1`, `match: [yes]`). One pass over the data."""
    info = _unwrap(info, data)
    if isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    if isinstance(data, dict):
        if isinstance(info, msgspec.inspect.StructType):
            fields = {f.encode_name: f.type for f in info.fields}
            return {k: _as_text(v, fields[k], (*parts, k), texts) if k in fields else v for k, v in data.items()}
        if isinstance(info, msgspec.inspect.DictType):
            return {k: _as_text(v, info.value_type, (*parts, k), texts) for k, v in data.items()}
        return data
    if isinstance(data, list):
        if isinstance(info, msgspec.inspect.ListType):
            return [_as_text(v, info.item_type, (*parts, i), texts) for i, v in enumerate(data)]
        return data
    if isinstance(info, msgspec.inspect.StrType) and parts in texts:
        return texts[parts]
    return data


_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(?P<key>[^`]+)`")


def _neutralise(raw: dict[str, Any], parts: PathKey, message: str) -> dict[str, Any] | None:
    """`raw` with the bad node set aside so decoding can go on and find the next problem:
    an unknown key is dropped, a bad state becomes a placeholder end state, a bad setting,
    intent or variable is dropped. None when nothing sensible can be set aside."""
    unknown = _UNKNOWN_FIELD.match(message)
    if unknown:
        node = _get(raw, parts)
        if isinstance(node, dict) and unknown.group("key") in node:
            trimmed = {k: v for k, v in node.items() if k != unknown.group("key")}
            result: dict[str, Any] = _replace(raw, parts, trimmed)
            return result
    if len(parts) < 2 or not isinstance(parts[0], str) or not isinstance(raw.get(parts[0]), dict):
        return None
    section, name = parts[0], parts[1]
    if section == "states":
        placeholder: dict[str, Any] = _replace(raw, parts[:2], {"end": "invalid"})
        return placeholder
    if section in ("settings", "intents", "answers", "vars"):
        return {**raw, section: {k: v for k, v in raw[section].items() if k != name}}
    return None


def _decode(raw: dict[str, Any], b: _Builder) -> schema.Flow:
    """Decode, reporting every structural problem at once (up to _MAX_PROBLEMS), not only the
    first: an admin fixes a file in one go."""
    if b.scalar_text:
        raw = _as_text(raw, msgspec.inspect.type_info(schema.Flow), (), b.scalar_text)
    problems: list[Diagnostic] = []
    for _ in range(_MAX_TEXT_FIXES + _MAX_PROBLEMS):
        try:
            flow = schema.decode_flow(raw)
        except msgspec.ValidationError as exc:
            message, parts = _resolve(raw, exc)
            if (
                message.startswith("Expected `str")
                and parts in b.scalar_text
                and not isinstance(_get(raw, parts), (dict, list))
            ):
                raw = _replace(raw, parts, b.scalar_text[parts])  # `dtmf: 1` means "1"
                continue
            problems.append(_diagnose(raw, exc, b))
            neutral = _neutralise(raw, parts, message)
            if neutral is None or len(problems) >= _MAX_PROBLEMS:
                break
            raw = neutral
        else:
            if not problems:
                return flow
            break
    if not problems:
        problems.append(Diagnostic(file=b.filename, line=1, col=1, message="too many values need quoting"))
    raise FlowError(sorted(problems, key=lambda d: (d.line, d.col)))


def _limit(filename: str, mark: Any, message: str, hint: str) -> FlowError:
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return FlowError([Diagnostic(file=filename, line=line, col=col, message=message, hint=hint)])


def check_limits(text: str, filename: str = "<flow>") -> None:
    """Refuse (FlowError at file:line:col) a text over the size cap, nested deeper than
    MAX_YAML_DEPTH, or whose aliases expand to more than MAX_YAML_NODES values: an alias
    bomb is a few hundred bytes that a naive walk turns into gigabytes. One pass over the
    parser's events, before any node tree exists; a YAML syntax error is left to the
    composer, which words it."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FLOW_BYTES:
        raise _limit(filename, None, f"the flow file is {size:,} bytes, more than the {MAX_FLOW_BYTES:,} allowed",
                     "split it into several flows")
    expanded: dict[str, int] = {}  # anchor -> how many values it stands for
    opened: list[tuple[str | None, int]] = []  # (anchor, values counted before it) per open collection
    count = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent):
                count += expanded.get(event.anchor or "", 1)
            elif isinstance(event, yaml.ScalarEvent):
                count += 1
                if event.anchor:
                    expanded[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                count += 1
                opened.append((event.anchor, count - 1))
                if len(opened) > MAX_YAML_DEPTH:
                    raise _limit(filename, event.start_mark, f"the YAML nests more than {MAX_YAML_DEPTH} levels deep",
                                 "a flow is a few levels deep (states > name > key: value); flatten this part")
            elif isinstance(event, yaml.CollectionEndEvent) and opened:
                anchor, before = opened.pop()
                if anchor:
                    expanded[anchor] = count - before
            else:
                continue
            if count > MAX_YAML_NODES:
                what = (f"the alias *{event.anchor} brings the file to" if isinstance(event, yaml.AliasEvent)
                        else "the file holds")
                raise _limit(filename, event.start_mark, f"{what} more than {MAX_YAML_NODES:,} YAML values",
                             "write the values out instead of repeating anchors (&name) with aliases (*name); "
                             "a flow needs far fewer values")
    except yaml.YAMLError:
        return


def _check_states(raw: dict[str, Any], b: _Builder) -> None:
    states = raw.get("states")
    if isinstance(states, dict) and len(states) > MAX_STATES:
        line, col = position_of(b.positions, b.key_positions, "$.states", key=True)
        message = f"the flow has {len(states):,} states, more than the {MAX_STATES:,} allowed"
        raise FlowError([Diagnostic(file=b.filename, line=line, col=col, path="$.states", message=message,
                                    hint="split it into several flows")])


def yaml_data(text: str, filename: str = "<yaml>") -> Any:
    """Plain data of a YAML text as the loader sees it: keys stay text (`on:` is not True,
    unlike `yaml.safe_load`), dates stay ISO text, duplicate keys are refused, and the
    limits of `check_limits` hold."""
    check_limits(text, filename)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise FlowError([_syntax_diagnostic(exc, filename, text)]) from None
    if node is None:
        return None
    b = _Builder(filename, text)
    data = b.build(node, ())
    if b.problems:
        raise FlowError(b.problems)
    return data


def load_flow_text(text: str, filename: str = "<flow>") -> LoadedFlow:
    """YAML text -> LoadedFlow. Raises FlowError with positioned diagnostics (a file over
    the limits of `check_limits` or MAX_STATES is refused before it is decoded)."""
    check_limits(text, filename)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise FlowError([_syntax_diagnostic(exc, filename, text)]) from None
    b = _Builder(filename, text)
    if node is None:
        raise FlowError([Diagnostic(file=filename, line=1, col=1, message="the flow file is empty",
                                    hint="start with 'flow:', 'start:' and 'states:'")])
    raw = b.build(node, ())
    if b.problems:
        raise FlowError(b.problems)
    if not isinstance(raw, dict):
        found = "a list" if isinstance(raw, list) else f"the value {raw!r}"
        line, col = _mark(node)
        raise FlowError([Diagnostic(
            file=filename, line=line, col=col,
            message=f"a flow file must be a mapping at the top, found {found}",
            hint="start with 'flow: my_flow', 'start: first_state' and 'states:'",
        )])
    _check_states(raw, b)
    flow = _decode(raw, b)
    return LoadedFlow(flow=flow, source=text, revision=revision_of(text), filename=filename,
                      positions=b.positions, key_positions=b.key_positions)


def load_flow(path: str | Path) -> LoadedFlow:
    """Read and load a flow file; the diagnostics carry the path as given."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_FLOW_BYTES:  # not read into memory at all
            raise _limit(str(path), None, f"the flow file is {p.stat().st_size:,} bytes, more than the "
                         f"{MAX_FLOW_BYTES:,} allowed", "split it into several flows")
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowError([Diagnostic(file=str(path), line=1, col=1,
                                    message=f"cannot read the flow file: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise FlowError([Diagnostic(file=str(path), line=1, col=1,
                                    message=f"the flow file is not UTF-8 text ({exc.reason})",
                                    hint="save it as UTF-8")]) from None
    return load_flow_text(text, str(path))
