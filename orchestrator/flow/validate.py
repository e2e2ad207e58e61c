"""Semantic checks of a loaded flow: everything the schema alone cannot say.

Each problem is a `Diagnostic` at the YAML line:col of the value at fault, naming the
value and the fix (`flows/dental.yaml:42:11: state 'find_slots' goes to unknown state
'ofer' (hint: did you mean 'offer'?)`).

Rules worth knowing:
- Every state must have a way out. `say`/`record`/`handoff` need `next` or `end`; a `call`
  needs `next` or `on.ok`; a `branch` needs a last case without `when` (exactly one).
- An `ask` goes forward by `next` or by an `on` route for every static choice.
- An `ask` that can fail to understand (it has choices, a `pattern`, or an input other
  than `text`) should route `on.fail` or rely on `defaults.fail`; without either it gets a
  warning: the built-in fallback (apology, staff notified, outcome `not_understood`) runs.
- `choices` and `choices_from` may be combined: the static choices follow the list's items
  (e.g. "None of these"). An `on` key may name a static choice, `fail`, `timeout`, or a
  list item by position (`slots_1`).
- Reachability follows every edge from `start`; global intents are edges from every ask.
- Template variables must be set by something: `vars:`, a `save:` target, or a builtin
  (`contact`, `channel`, `business`, `now`, `flow_title`, `last_input`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import sys
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import jinja2
import jinja2.meta
import jinja2.nodes
import msgspec
import phonenumbers

from orchestrator.engine import reminders, sending, summary
from orchestrator.engine.inputs import normalise
from orchestrator.errors import Diagnostic, FlowError
from orchestrator.flow import localize, patterns, schema, templates
from orchestrator.flow.assigned import assigned_on_entry, unset_path
from orchestrator.flow.channel_limits import limit_warnings
from orchestrator.flow.graph import all_edges, state_edges, state_kind
from orchestrator.flow.loader import LoadedFlow, closest, describe, did_you_mean, load_flow
from orchestrator.languages import messages
from orchestrator.plugins.channels import Capabilities, declared_capabilities
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.plugins.connectors import default_connectors as installed_connectors

BUILTINS: frozenset[str] = frozenset({
    "contact", "channel", "business", "now", "flow_title", "last_input", "open_now", "next_open", "language",
})
BUILTIN_MEANING: dict[str, str] = {
    "contact": "the contact's phone, name and known flag", "channel": "the conversation's channel",
    "business": "the number (or WhatsApp id) the contact reached", "now": "the current time",
    "flow_title": "the flow's title", "last_input": "the contact's last answer",
    "open_now": "whether the business is open now", "next_open": "the next opening time",
    "language": "the contact's language (its code, e.g. es)",
}
LANGUAGE_TARGET = "sys.language"  # `save: sys.language` sets the contact's language (SPEC §9)
RESERVED: frozenset[str] = frozenset({"sys"})  # the built-ins' own namespace: `{{ sys.business }}`
CALL_ROUTES: tuple[str, ...] = ("ok", "empty", "conflict", "error", "closed", "too_far")
HANDOFF_ROUTES: tuple[str, ...] = ("no_answer", "undelivered")
ASK_ROUTES: tuple[str, ...] = ("fail", "timeout", "undelivered", "stuck", "machine")
YES_NO_ROUTES: tuple[str, ...] = ("yes", "no")  # a yes_no ask saves true / false and routes by it
_DTMF = re.compile(r"^[0-9*#]+$")
_LANGUAGE = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z]{4})?(-([a-zA-Z]{2}|\d{3}))?$")
_HOURS_RANGE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNKNOWN_FILTER = re.compile(r"^No filter named '([^']+)'")
_TEXT_FIELDS = ("say", "ask", "reprompt", "handoff", "record", "media")
_LOADING_NODES = (jinja2.nodes.Include, jinja2.nodes.Import, jinja2.nodes.FromImport, jinja2.nodes.Extends)
_UNSAFE_METHODS = frozenset({"format", "format_map", "mro"})  # refused by the sandbox at run time
_GUARDS = frozenset({"defined", "undefined", "none", "default", "d"})


class _Checker:
    def __init__(self, loaded: LoadedFlow, connectors: ConnectorRegistry | None,
                 capabilities: Mapping[str, Capabilities] | None = None, language: str | None = None) -> None:
        self.language = language  # checking the flow's texts in this declared language (SPEC §9)
        self.capabilities = _installed_capabilities() if capabilities is None else capabilities
        self.loaded = loaded
        self.flow = loaded.flow
        self.connectors = connectors
        self.out: list[Diagnostic] = []
        self.states = self.flow.states
        self.entry = assigned_on_entry(self.flow, set(self.flow.vars) | BUILTINS | RESERVED)

    def add(self, path: str, message: str, hint: str | None = None, *, key: bool = False) -> None:
        path, message = self._in_language(path, message, key)
        self.out.append(self.loaded.diagnostic(path, message, hint, key=key))

    def warn(self, path: str, message: str, hint: str | None = None, *, key: bool = False) -> None:
        path, message = self._in_language(path, message, key)
        self.out.append(self.loaded.diagnostic(path, message, hint, key=key, severity="warning"))

    def _in_language(self, path: str, message: str, key: bool) -> tuple[str, str]:
        """A problem of one language's text is shown at that text (`ask.es`), naming the language."""
        if self.language is None or key:
            return path, message
        own = f"{path}.{self.language}"
        if own in self.loaded.positions:
            return own, f"{message} ({self.language})"
        return path, message

    def state_hint(self, name: str) -> str | None:
        return did_you_mean(name, self.states) or (
            f"states are: {', '.join(self.states)}" if len(self.states) <= 12 else None
        )

    # -- structure ---------------------------------------------------------------------------

    def check_structure(self) -> None:
        if not self.states:
            self.add("$.states", "the flow has no states", "add at least the start state under 'states:'")
            return
        if self.flow.start not in self.states:
            self.add("$.start", f"start state '{self.flow.start}' does not exist", self.state_hint(self.flow.start))
        for name, state in self.states.items():
            for edge in state_edges(name, state):
                if edge.target not in self.states:
                    self.add(edge.path, f"state '{name}' goes to unknown state '{edge.target}'",
                             self.state_hint(edge.target))
        for key in ("fail", "timeout", "error", "limit", "stuck"):
            target = getattr(self.flow.defaults, key)
            if target is not None and target not in self.states:
                self.add(f"$.defaults.{key}", f"defaults.{key} goes to unknown state '{target}'",
                         self.state_hint(target))
        for iname, intent in self.flow.intents.items():
            if intent.goto not in self.states:
                self.add(f"$.intents.{iname}.goto", f"intent '{iname}' goes to unknown state '{intent.goto}'",
                         self.state_hint(intent.goto))
        for name, state in self.states.items():
            self.check_routes(name, state)
            self.check_way_out(name, state)

    def check_routes(self, name: str, state: schema.State) -> None:
        on: dict[str, str] = getattr(state, "on", None) or {}
        kind = state_kind(state)
        if isinstance(state, schema.AskState):
            allowed = [*(state.choices or {}), *ASK_ROUTES, *(YES_NO_ROUTES if state.input == "yes_no" else ())]
            listed = re.compile(rf"^{re.escape(state.choices_from)}_\d+$") if state.choices_from else None
        else:
            allowed = list(CALL_ROUTES if kind == "call" else HANDOFF_ROUTES if kind == "handoff"
                           else ("undelivered", "machine") if kind == "say" else ("undelivered",))
            listed = None
        for key in on:
            if key in allowed or (listed and listed.match(key)):
                continue
            hint = did_you_mean(key, allowed) or f"routes of this {kind} state: {', '.join(allowed)}"
            self.add(f"$.states.{name}.on.{key}", f"state '{name}' has no outcome '{key}' to route", hint, key=True)

    def check_way_out(self, name: str, state: schema.State) -> None:
        base = f"$.states.{name}"
        if isinstance(state, schema.SayState | schema.RecordState | schema.HandoffState):
            if not state.next and not state.end:
                self.add(base, f"state '{name}' is a dead end: it has neither 'next' nor 'end'",
                         "add 'next: <state>' to go on, or 'end: <outcome>' to finish", key=True)
            elif state.next and state.end:
                self.add(f"{base}.end", f"state '{name}' has both 'next' and 'end'",
                         "keep 'next' to go on, or 'end' to finish", key=True)
        elif isinstance(state, schema.CallState):
            if not state.next and "ok" not in state.on:
                self.add(base, f"state '{name}' is a dead end: it has neither 'next' nor 'on: {{ok: ...}}'",
                         "add 'next: <state>' for when the call succeeds", key=True)
        elif isinstance(state, schema.BranchState):
            self.check_branch(name, state)
        elif isinstance(state, schema.AskState):
            self.check_ask(name, state)

    def check_branch(self, name: str, state: schema.BranchState) -> None:
        base = f"$.states.{name}.branch"
        defaults = [i for i, case in enumerate(state.branch) if not case.when]
        if not state.branch:
            self.add(base, f"state '{name}' has an empty branch", "add cases like '- {when: ..., goto: ...}'")
        elif not defaults:
            self.add(base, f"state '{name}': no branch case without 'when', so nothing matches when all are false",
                     "add a last case '- {goto: <state>}' as the otherwise")
        elif len(defaults) > 1:
            self.add(f"{base}[{defaults[1]}]", f"state '{name}' has more than one branch case without 'when'",
                     "only the last case may omit 'when'")
        elif defaults[0] != len(state.branch) - 1:
            self.add(f"{base}[{defaults[0]}]",
                     f"state '{name}': the case without 'when' is not last, so the cases after it never run",
                     "move it to the end")
        for i, case in enumerate(state.branch):
            if case.when is None:
                continue
            try:
                templates.expression_variables(case.when)
                tree = _parse("{{ " + templates.bare_expression(case.when) + " }}")
            except jinja2.TemplateSyntaxError as exc:
                self.add(f"{base}[{i}].when", f"state '{name}': the condition '{case.when}' does not compile: "
                         f"{exc.message}", "write a jinja2 expression such as 'contact.known' or "
                         "\"reason == 'cleaning'\"")
                continue
            self._check_tree(f"{base}[{i}].when", f"state '{name}'", tree, name)

    def check_ask(self, name: str, state: schema.AskState) -> None:
        base = f"$.states.{name}"
        choices = state.choices or {}
        kind = state.input or ("choice" if choices or state.choices_from else "text")
        if state.input == "choice" and not choices and not state.choices_from:
            self.add(f"{base}.input", f"state '{name}' asks for a choice but lists no choices",
                     "add 'choices:' (or 'choices_from: <list variable>'), or use another input")
        elif (choices or state.choices_from) and state.input not in (None, "choice"):
            self.add(f"{base}.input", f"state '{name}' has choices but 'input: {state.input}'",
                     "remove 'input:' (choices imply input: choice)")
        if state.choices_from and state.choices_from not in self.settable:
            self.add(f"{base}.choices_from", f"state '{name}' takes its choices from '{state.choices_from}', "
                     "which nothing sets", did_you_mean(state.choices_from, self.settable)
                     or "save: a list into it in an earlier state, or define it under vars:")
        if kind == "yes_no":
            choices = {key: schema.Choice() for key in YES_NO_ROUTES if key in state.on or not state.next}
        unrouted = [c for c in choices if c not in state.on]
        if not state.next and (unrouted or not choices):
            word = "the answer" if kind == "yes_no" else "choice"
            what = f"{word} '{unrouted[0]}' has no route" if unrouted and choices else "it has no 'next'"
            self.add(base, f"state '{name}' is a dead end: {what}",
                     "add 'next: <state>', or an 'on:' entry for every choice", key=True)
        can_fail = kind != "text" or state.pattern is not None
        if can_fail and "fail" not in state.on and not self.flow.defaults.fail:
            self.warn(base, f"state '{name}' relies on the built-in fallback: after too many answers it cannot "
                      "understand, the contact gets an apology, staff are notified and the conversation ends "
                      "'not_understood'", "route 'on: {fail: <state>}' here, or set 'defaults: {fail: <state>}' "
                      "once for the flow", key=True)
        if state.pattern is not None and (bad := patterns.problem(state.pattern)) is not None:
            self.add(f"{base}.pattern", f"state '{name}': bad pattern '{state.pattern}': {bad.message}", bad.hint)
        if state.first_only and kind != "name":
            self.warn(f"{base}.first_only", f"state '{name}': first_only only changes a 'name' ask (this one is "
                      f"'{kind}')", "set 'input: name', or remove first_only", key=True)
        if state.max_retries is not None and state.max_retries < 0:
            self.add(f"{base}.max_retries", f"state '{name}': max_retries must be 0 or more, found {state.max_retries}")
        self.check_dtmf(name, state)

    def check_dtmf(self, name: str, state: schema.AskState) -> None:
        base = f"$.states.{name}.choices"
        owners: dict[str, str] = {}
        intent_digits = {i.dtmf: n for n, i in self.flow.intents.items() if i.dtmf}
        for cid, choice in (state.choices or {}).items():
            if choice.dtmf is None:
                continue
            path = f"{base}.{cid}.dtmf"
            if not _DTMF.match(choice.dtmf):
                self.add(path, f"state '{name}' choice '{cid}': keypad key '{choice.dtmf}' is not a phone key",
                         "use digits 0-9, * or #")
            elif choice.dtmf in owners:
                self.add(path, f"state '{name}': keypad key '{choice.dtmf}' is used by both choice "
                         f"'{owners[choice.dtmf]}' and choice '{cid}'", "give each choice its own key")
            elif choice.dtmf in intent_digits:
                self.add(path, f"state '{name}' choice '{cid}': keypad key '{choice.dtmf}' is already the key of "
                         f"the global intent '{intent_digits[choice.dtmf]}'",
                         "pick another key: intents answer on every question")
            owners.setdefault(choice.dtmf, cid)

    def check_intents(self) -> None:
        owners: dict[str, str] = {}
        for iname, intent in self.flow.intents.items():
            if intent.dtmf is None:
                continue
            path = f"$.intents.{iname}.dtmf"
            if not _DTMF.match(intent.dtmf):
                self.add(path, f"intent '{iname}': keypad key '{intent.dtmf}' is not a phone key",
                         "use digits 0-9, * or #")
            elif intent.dtmf in owners:
                self.add(path, f"intent '{iname}': keypad key '{intent.dtmf}' is already the key of intent "
                         f"'{owners[intent.dtmf]}'", "give each intent its own key")
            owners.setdefault(intent.dtmf, iname)

    def check_understanding(self) -> None:
        """`answers:` and the asks' `confirm:` (SPEC §8)."""
        for aname, answer in self.flow.answers.items():
            if not any(phrase.strip() for phrase in answer.match):
                self.add(f"$.answers.{aname}", f"answer '{aname}' has no match: it would never be given",
                         "add the words of the question it answers, e.g. match: [open, hours]")
        for name, state in self.states.items():
            if not isinstance(state, schema.AskState) or state.confirm is None or state.confirm is False:
                continue
            path = f"$.states.{name}.confirm"
            if state.input == "yes_no":
                self.warn(path, f"state '{name}' reads back a yes/no answer",
                          "remove confirm: a yes or a no is not worth asking twice")
            if isinstance(state.confirm, str):
                self._parse_template(path, f"state '{name}' confirm", state.confirm)

    def check_reachable(self) -> None:
        """Report only the root causes of unreachable states.

        An unknown target counts as its did-you-mean state (the typo is already reported), so
        a misspelt `next:` does not also report every state behind it. Of the states still not
        reached, only the roots are reported: a state that another unreached state leads to is
        unreached only because of that one."""
        if self.flow.start not in self.states:
            return
        out: dict[str, list[str]] = {}
        for e in all_edges(self.flow):
            target = e.target if e.target in self.states else closest(e.target, self.states)
            if target is not None:
                out.setdefault(e.source, []).append(target)
        limit = self.flow.defaults.limit  # a second way in: past the business's daily limit
        reached = _closure([self.flow.start, *([limit] if limit in self.states else [])], out)
        unreached = [name for name in self.states if name not in reached]
        fed = {t for name in unreached for t in out.get(name, []) if t != name}
        covered: set[str] = set()
        roots = [n for n in unreached if n not in fed] + [n for n in unreached if n in fed]
        for name in roots:
            if name in covered:
                continue
            covered |= _closure([name], out)
            self.add(f"$.states.{name}", f"state '{name}' is never reached from the start state "
                     f"'{self.flow.start}'", "route to it with next/on/goto from another state, or delete it",
                     key=True)

    # -- connectors ----------------------------------------------------------------------------

    def check_connectors(self) -> None:
        for name, state in self.states.items():
            if not isinstance(state, schema.CallState):
                continue
            path = f"$.states.{name}.call"
            connector, dot, action = state.call.partition(".")
            if not dot or not connector or not action:
                self.add(path, f"state '{name}' calls '{state.call}', which is not 'connector.action'",
                         "write it like 'calendar.find_slots'")
                continue
            if connector == sending.CONNECTOR:
                self.check_send(name, state, action)
                continue
            if self.connectors is None:
                continue
            names = self.connectors.names()
            needs = self.connectors.unconfigured().get(connector)
            if connector not in names and needs is not None:
                self.add(path, f"state '{name}' calls connector '{connector}', which is installed but not configured",
                         f"set {' and '.join(needs)} in the environment" if needs
                         else f"configure it (see its documentation); configured connectors: {', '.join(names)}")
                continue
            if connector not in names:
                self.add(path, f"state '{name}' calls unknown connector '{connector}'",
                         did_you_mean(connector, names) or f"installed connectors: {', '.join(names) or 'none'}")
                continue
            actions = sorted(self.connectors.get(connector).actions)
            if action not in actions:
                close = closest(action, actions)
                hint = f"did you mean '{connector}.{close}'?" if close else None
                self.add(path, f"state '{name}' calls unknown action '{state.call}'",
                         hint or f"'{connector}' has: {', '.join(actions) or 'no actions'}")
                continue
            self.check_args(name, state, self.connectors.get(connector).actions[action].args)
            self.check_staff(name, state)

    def check_staff(self, name: str, state: schema.CallState) -> None:
        """A `staff:` (or `resource:`) argument names one of settings.staff (or `any`), unless it
        is a template."""
        args = state.args if isinstance(state.args, dict) else {}
        for key in ("staff", "resource"):
            wanted = args.get(key)
            if not isinstance(wanted, str) or "{" in wanted:
                continue
            declared = self.flow.settings.staff
            names = {(m.name or "").lower() for m in declared.values()}
            if not declared:
                self.add(f"$.states.{name}.args.{key}", f"state '{name}' books with {key} '{wanted}', but the flow "
                         "declares no staff", "add settings.staff: {" + (wanted or "ana") + ": {name: ...}}")
            elif wanted.strip().lower() not in ("", "any") and wanted not in declared \
                    and wanted.strip().lower() not in names:
                self.add(f"$.states.{name}.args.{key}", f"'{wanted}' is not one of settings.staff",
                         did_you_mean(wanted, list(declared)) or f"use one of: any, {', '.join(declared)}")

    def check_args(self, name: str, state: schema.CallState, args_type: type) -> None:
        """An argument the action does not take would be dropped without a word (a `stylist:`
        that books with nobody in particular): refuse it, naming the ones it takes."""
        try:
            known = [f.encode_name for f in msgspec.structs.fields(args_type)]
        except TypeError:  # not a Struct: the connector takes anything
            return
        for key in state.args if isinstance(state.args, dict) else {}:
            if key not in known:
                self.add(f"$.states.{name}.args.{key}", f"{state.call} has no argument '{key}'",
                         did_you_mean(key, known) or f"its arguments: {', '.join(known) or 'none'}", key=True)

    def check_send(self, name: str, state: schema.CallState, action: str) -> None:
        """`message.send` is built in: its action, its arguments, and what it needs of settings."""
        path = f"$.states.{name}"
        if action not in sending.ACTIONS:
            self.add(f"{path}.call", f"state '{name}' calls unknown action '{state.call}'",
                     f"'{sending.CONNECTOR}' has: {', '.join(sending.ACTIONS)}")
            return
        args = state.args if isinstance(state.args, dict) else {}
        for key in args:
            if key not in sending.ARGS:
                self.add(f"{path}.args.{key}", f"message.send has no argument '{key}'",
                         did_you_mean(key, sending.ARGS) or f"its arguments: {', '.join(sending.ARGS)}")
        if "text" not in args and "template" not in args:
            self.add(f"{path}.args", f"state '{name}' sends a message without `text`",
                     "add args: {text: \"...\"} (what the message says)")
        to = args.get("to", sending.TO_CONTACT)
        if isinstance(to, str) and "{" not in to:
            if to == sending.TO_STAFF and not self.flow.settings.staff_notify:
                self.add(f"{path}.args.to", f"state '{name}' sends to staff, but the flow has no staff number",
                         "set settings.staff_notify: \"+1...\" (E.164)")
            elif to not in (sending.TO_CONTACT, sending.TO_STAFF) and not _is_e164(to):
                self.add(f"{path}.args.to", f"'{to}' is not contact, staff or a phone number",
                         "write to: contact, to: staff, or an E.164 number such as \"+15555550199\"")
        via = args.get("channel", "same")
        if isinstance(via, str) and "{" not in via and via not in sending.CHANNELS:
            self.add(f"{path}.args.channel", f"message.send cannot go by '{via}'",
                     did_you_mean(via, sending.CHANNELS) or f"use one of: {', '.join(sending.CHANNELS)}")
        if "error" not in state.on and not self.flow.defaults.error:
            self.warn(path, f"state '{name}' has no `error` route: a message that cannot be sent ends the "
                      "conversation with an apology", "add on: {ok: ..., error: <state>} (often the same state)",
                      key=True)

    # -- templates and variables ---------------------------------------------------------------

    @property
    def settable(self) -> set[str]:
        names = set(self.flow.vars) | BUILTINS | RESERVED
        for state in self.states.values():
            save = getattr(state, "save", None)
            if save:
                names.add(save)
        return names

    def check_saves(self) -> None:
        for name, state in self.states.items():
            save = getattr(state, "save", None)
            if save == LANGUAGE_TARGET:
                continue  # the contact's language: checked with the flow's languages
            if save and not _VARIABLE.match(save):
                self.add(f"$.states.{name}.save", f"state '{name}' saves into '{save}', which is not a variable name",
                         "use letters, digits and _ only, e.g. " + (re.sub(r"\W+", "_", save).strip("_") or "answer"))
            elif save in RESERVED:
                self.add(f"$.states.{name}.save", f"state '{name}' saves into '{save}', which is reserved for the "
                         "built-in names (sys.business, sys.now, ...)", "pick another name")
            elif save in BUILTINS:
                self._shadow(f"$.states.{name}.save", f"state '{name}' saves into '{save}'", save)
        for var in self.flow.vars:
            if var in RESERVED:
                self.add(f"$.vars.{var}", f"vars: '{var}' is reserved for the built-in names (sys.business, "
                         "sys.now, ...)", "pick another name", key=True)
            elif var in BUILTINS:
                self._shadow(f"$.vars.{var}", f"vars: '{var}'", var, key=True)

    def _shadow(self, path: str, what: str, name: str, *, key: bool = False) -> None:
        """A flow's own name wins over the built-in of that name: say so, never silently."""
        self.warn(path, f"{what} hides the built-in '{name}' ({BUILTIN_MEANING[name]}): templates and "
                  f"conditions see the flow's value", f"the built-in stays reachable as 'sys.{name}'; rename "
                  "yours if you meant the built-in", key=key)

    def check_variables(self, path: str, where: str, used: set[str]) -> None:
        known = self.settable | (summary.TEMPLATE_NAMES if path == "$.settings.summary" else set())
        for var in sorted(used - known):
            hint = did_you_mean(var, known)
            self.add(path, f"{where} uses variable '{var}', which nothing sets",
                     hint or "define it under vars:, or save: it in an earlier state")

    def check_templates(self) -> None:
        for path, where, source, state in self._template_fields():
            tree = self._parse_template(path, where, source)
            if tree is not None:
                self._check_tree(path, where, tree, state)

    def _parse_template(self, path: str, where: str, source: str) -> jinja2.nodes.Template | None:
        try:
            return _parse(source)
        except jinja2.TemplateSyntaxError as exc:
            unknown = _UNKNOWN_FILTER.match(exc.message or "")
            if unknown:
                name = unknown.group(1)
                self.add(path, f"{where} uses unknown filter '{name}'",
                         did_you_mean(name, _filters()) or f"filters: {', '.join(sorted(_filters()))}")
                return None
            line, col = self._at(path, exc.lineno or 1)
            self.out.append(Diagnostic(
                file=self.loaded.filename, line=line, col=col, path=path,
                message=f"{where}: template error: {exc.message}",
                hint="write values as '{{ name }}' and logic as '{% if ... %}...{% endif %}'",
            ))
            return None

    def _at(self, path: str, lineno: int, needle: str | None = None) -> tuple[int, int]:
        """The YAML line:col of line `lineno` of the template at `path` (of `needle` in it when
        it can be found there)."""
        line, col = self.loaded.position(path)
        line += lineno - 1 + (1 if self._block_scalar(line, col) else 0)
        col = col if lineno == 1 else 1
        lines = self.loaded.source.splitlines()
        if needle and 0 < line <= len(lines):
            found = lines[line - 1].find(needle, col - 1)
            if found >= 0:
                col = found + 1
        return line, col

    def _node_error(self, path: str, node: jinja2.nodes.Node, needle: str | None, message: str,
                    hint: str | None = None) -> None:
        line, col = self._at(path, node.lineno or 1, needle)
        self.out.append(Diagnostic(file=self.loaded.filename, line=line, col=col, path=path,
                                   message=message, hint=hint))

    def _check_tree(self, path: str, where: str, tree: jinja2.nodes.Template, state: str | None) -> None:
        self.check_safety(path, where, tree)
        try:
            used = set(jinja2.meta.find_undeclared_variables(tree)) - set(_env().globals)
        except jinja2.TemplateSyntaxError:  # an unknown filter or test: reported by check_safety
            return
        self.check_variables(path, where, used)
        self.check_assigned(path, where, used - _guarded(tree), state)
        self.check_yes_no_compare(path, where, tree)

    def check_safety(self, path: str, where: str, tree: jinja2.nodes.Template) -> None:
        """What the sandbox would refuse at run time, refused here at its line:col."""
        internal_hint = "templates read variables and use filters; Python internals are not reachable"
        for node in tree.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem, jinja2.nodes.Filter,
                                   jinja2.nodes.Test, *_LOADING_NODES)):
            if isinstance(node, _LOADING_NODES):
                word = {"Include": "include", "Import": "import", "FromImport": "from", "Extends": "extends"}[
                    type(node).__name__]
                self._node_error(path, node, word, f"{where}: '{word}' is not available in templates",
                                 "a flow is one file: put shared text under vars: and use '{{ name }}'")
            elif isinstance(node, jinja2.nodes.Getattr):
                if node.attr.startswith("_") or node.attr in _UNSAFE_METHODS:
                    self._node_error(path, node, "." + node.attr, f"{where} reads '.{node.attr}', which templates "
                                     "may not use", internal_hint)
                elif isinstance(node.node, jinja2.nodes.Name) and node.node.name == "sys" \
                        and node.attr not in BUILTINS:
                    self._node_error(path, node, "sys." + node.attr, f"{where} reads 'sys.{node.attr}', which is "
                                     "not a built-in", did_you_mean(node.attr, BUILTINS)
                                     or f"built-ins: {', '.join(sorted(BUILTINS))}")
            elif isinstance(node, jinja2.nodes.Getitem):
                key = node.arg.value if isinstance(node.arg, jinja2.nodes.Const) else None
                if isinstance(key, str) and key.startswith("_"):
                    self._node_error(path, node, key, f"{where} reads ['{key}'], which templates may not use",
                                     internal_hint)
            elif isinstance(node, jinja2.nodes.Filter):
                if node.name not in _filters():
                    self._node_error(path, node, node.name, f"{where} uses unknown filter '{node.name}'",
                                     did_you_mean(node.name, _filters())
                                     or f"filters: {', '.join(sorted(_filters()))}")
                elif node.name == "attr":
                    self._node_error(path, node, "attr", f"{where} uses the 'attr' filter, which templates may "
                                     "not use", "read a value as '{{ booking.start }}'")
            elif isinstance(node, jinja2.nodes.Test) and node.name not in _env().tests:
                self._node_error(path, node, node.name, f"{where} uses unknown test '{node.name}'",
                                 did_you_mean(node.name, _env().tests) or "tests: defined, none, number, string, "
                                 "in, eq, ne, lt, gt")

    def check_assigned(self, path: str, where: str, used: set[str], state: str | None) -> None:
        """Definite assignment: every variable read must be set on every path to `state`."""
        entry = self.entry
        if path == "$.settings.summary":  # said at whatever end; an unset field reads as empty there
            return
        if state is None:  # settings templates: rendered where the conversation waits or ends
            sets = [entry[n] for n, st in self.states.items() if n in entry and isinstance(
                st, schema.AskState | schema.RecordState)]
            assigned = frozenset.intersection(*sets) if sets else entry.get(self.flow.start, frozenset())
            missing = sorted((used & self.settable) - assigned)
            for var in missing:
                self.add(path, f"{where} uses '{var}', which is not set in every state where it is said",
                         f"define a default for '{var}' under vars:, or guard it: '{{% if {var} is defined %}}'")
            return
        if state not in entry:  # unreachable: reported as such
            return
        for var in sorted((used & self.settable) - entry[state]):
            route = unset_path(self.flow, state, var)
            self.add(path, f"{where} uses '{var}', which is not set on every path that reaches it: "
                     + " → ".join(route), f"save '{var}' on that path, give it a default under vars:, "
                     f"or guard it: '{{% if {var} is defined %}}...{{% endif %}}'")

    def check_yes_no_compare(self, path: str, where: str, tree: jinja2.nodes.Template) -> None:
        """`answer == 'yes'` on a yes_no answer (true/false) is never true: refuse it."""
        yes_no = self.yes_no_saves
        for node in tree.find_all(jinja2.nodes.Compare):
            sides = [node.expr, *(op.expr for op in node.ops)]
            names = [n.name for n in sides if isinstance(n, jinja2.nodes.Name) and n.name in yes_no]
            texts = [n.value for n in sides if isinstance(n, jinja2.nodes.Const) and isinstance(n.value, str)]
            if names and texts:
                self._node_error(path, node, names[0], f"{where} compares '{names[0]}' with '{texts[0]}', but a "
                                 f"yes_no answer is saved as true or false, so this is never true",
                                 f"route the ask with 'on: {{yes: ..., no: ...}}', or test it as "
                                 f"'{names[0]}' / 'not {names[0]}'")

    @property
    def yes_no_saves(self) -> set[str]:
        return {s.save for s in self.states.values()
                if isinstance(s, schema.AskState) and s.input == "yes_no" and s.save}

    def _block_scalar(self, line: int, col: int) -> bool:
        lines = self.loaded.source.splitlines()
        return 0 < line <= len(lines) and lines[line - 1][col - 1 : col] in ("|", ">")

    def _template_fields(self) -> Iterator[tuple[str, str, str, str | None]]:
        """(path, how to name it, template source, the state it is rendered in; None: a setting)."""
        for name, state in self.states.items():
            base = f"$.states.{name}"
            where = f"state '{name}'"
            for field in _TEXT_FIELDS:
                value = getattr(state, field, None)
                if isinstance(value, str):
                    yield f"{base}.{field}", where, value, name
            for channel in schema.CHANNELS:
                override = getattr(state, channel, None)
                if override is None:
                    continue
                for field in _TEXT_FIELDS:
                    value = getattr(override, field, None)
                    if isinstance(value, str):
                        yield f"{base}.{channel}.{field}", f"{where} ({channel})", value, name
            if isinstance(state, schema.CallState):
                for path, text in _strings(state.args, f"{base}.args"):
                    yield path, where, text, name
        for aname, answer in self.flow.answers.items():
            yield f"$.answers.{aname}.say", f"answer '{aname}'", schema.plain(answer.say), None
        settings = self.flow.settings
        yield "$.settings.reminder", "settings.reminder", schema.plain(settings.reminder), None
        yield "$.settings.consent_notice", "settings.consent_notice", schema.plain(settings.consent_notice), None
        if settings.summary is not None:
            yield "$.settings.summary", "settings.summary", schema.plain(settings.summary), None

    def check_phones(self) -> None:
        targets = [(f"$.states.{n}.handoff", f"state '{n}' hands off to", s.handoff)
                   for n, s in self.states.items() if isinstance(s, schema.HandoffState)]
        if self.flow.settings.staff_notify is not None:
            targets.append(("$.settings.staff_notify", "settings.staff_notify is", self.flow.settings.staff_notify))
        for path, what, number in targets:
            if "{" not in number and not _is_e164(number):
                self.add(path, f"{what} '{number}', which is not a phone number in international form",
                         'write it as E.164, e.g. "+15555550199" (quoted), or a template like "{{ front_desk }}"')

    # -- settings ------------------------------------------------------------------------------

    def check_settings(self) -> None:
        s = self.flow.settings
        try:
            reminders.sending_window(s.sending_hours)
        except ValueError as exc:
            self.add("$.settings.sending_hours", str(exc).partition(": ")[0],
                     str(exc).partition(": ")[2] or None)
        try:
            ZoneInfo(s.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.add("$.settings.timezone", f"unknown timezone '{s.timezone}'",
                     did_you_mean(s.timezone, _zones()) or "use an IANA name like America/New_York or Europe/London")
        if not _LANGUAGE.match(s.language):
            fixed = s.language.replace("_", "-")
            self.add("$.settings.language", f"bad language tag '{s.language}'",
                     f"did you mean '{fixed}'?" if _LANGUAGE.match(fixed) else "use a tag like en-US, es-MX or fr")
        if s.max_retries < 0:
            self.add("$.settings.max_retries", f"settings.max_retries must be 0 or more, found {s.max_retries}")
        if not 0.0 <= s.speech_confidence <= 1.0:
            self.add("$.settings.speech_confidence",
                     f"settings.speech_confidence must be between 0 and 1, found {s.speech_confidence}")
        self.check_week("$.settings.business_hours", s.business_hours)
        self.check_dates("$.settings.closed_dates", "closed date", s.closed_dates)
        for staff_id, member in s.staff.items():
            if member.hours is not None:
                self.check_week(f"$.settings.staff.{staff_id}.hours", member.hours)
            self.check_dates(f"$.settings.staff.{staff_id}.days_off", "day off", member.days_off)
        if s.max_per_day is not None and s.max_per_day < 1:
            self.add("$.settings.max_per_day", f"settings.max_per_day must be 1 or more, found {s.max_per_day}",
                     "leave it out for no daily cap")
        if s.max_ahead and schema.parse_duration(s.max_ahead) <= schema.parse_duration(s.min_notice):
            self.add("$.settings.max_ahead", f"settings.max_ahead ({s.max_ahead}) is not after settings.min_notice "
                     f"({s.min_notice}): no time could ever be booked", "write a longer max_ahead, e.g. 60d")

    def check_week(self, path: str, hours: schema.BusinessHours) -> None:
        for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
            value = getattr(hours, day)
            if value is not None and _hours_problem(value):
                self.add(f"{path}.{day}", f"bad opening hours for {day}: '{value}' ({_hours_problem(value)})",
                         'write ranges like "09:00-17:00", several comma-separated, or "closed"')

    def check_dates(self, path: str, what: str, values: list[str]) -> None:
        for i, text in enumerate(values):
            if not _ISO_DATE.match(text) or _iso_date(text) is None:
                self.add(f"{path}[{i}]", f"{what} '{text}' is not a date", 'write it as YYYY-MM-DD, e.g. "2026-12-25"')

    # -- voice guards (#20) ----------------------------------------------------------------------

    def check_voice(self) -> None:
        bound = schema.MAX_CALL_TIMEOUT_SECONDS
        for name, state in self.states.items():
            if isinstance(state, schema.CallState) and schema.parse_duration(state.timeout) > bound:
                self.add(f"$.states.{name}.timeout",
                         f"state '{name}' waits up to {state.timeout} for {state.call}, longer than a step may "
                         f"take ({bound:g}s: inside Twilio's 15 s webhook timeout and the conversation lock)",
                         f"write timeout: {bound:g}s or less; on voice the caller hears a filler after "
                         "settings.voice_filler_after, and a call past the timeout takes on.error")

    def check_recording_notice(self) -> None:
        """A `record` state reached from the start with no recording notice on the way is refused:
        the caller must be told first (the call's `consent_notice` with `recording: true`, or a
        `record` state's own `notice`), unless the owner says `recording_notice: false`."""
        settings = self.flow.settings
        if settings.recording or not settings.recording_notice or self.flow.start not in self.states:
            return
        out: dict[str, list[str]] = {}
        for edge in all_edges(self.flow):
            out.setdefault(edge.source, []).append(edge.target)

        def notices(name: str) -> bool:
            state = self.states.get(name)
            return isinstance(state, schema.RecordState) and bool(state.notice)

        seen = {self.flow.start}
        todo = [self.flow.start]
        while todo:  # every state reachable without passing a notice
            name = todo.pop()
            if notices(name):
                continue
            for target in out.get(name, []):
                if target in self.states and target not in seen:
                    seen.add(target)
                    todo.append(target)
        for name in self.states:
            state = self.states[name]
            if isinstance(state, schema.RecordState) and name in seen and not state.notice:
                self.add(f"$.states.{name}.record",
                         f"state '{name}' records the caller, and no recording notice is said before it on "
                         "a path from the start",
                         "add `notice: true` to it (says settings.consent_notice first) or `notice: \"...\"`, "
                         "set settings.recording: true, or set settings.recording_notice: false if the "
                         "prompt itself tells the caller")

    def check_intent_overlaps(self) -> None:
        """An intent phrase inside a choice's label or keyword (or the other way round) makes one
        answer mean two things: the choice wins at that ask, but say so."""
        phrases = [(tuple(normalise(p).split()), iname, p) for iname, i in self.flow.intents.items()
                   for p in schema.plain_words(i.match)]
        for name, state in self.states.items():
            if not isinstance(state, schema.AskState):
                continue
            here = [p for p in phrases if self.flow.intents[p[1]].goto != name]  # an intent asking this question
            for cid, choice in (state.choices or {}).items():
                words = [(schema.plain(choice.label) if choice.label else None, "label"),
                         *((m, "match") for m in schema.plain_words(choice.match))]
                for text, field in words:
                    if not text:
                        continue
                    mine = tuple(normalise(text).split())
                    for phrase, iname, raw in here:
                        if phrase and mine and (_within(phrase, mine) or _within(mine, phrase)):
                            self.warn(f"$.states.{name}.choices.{cid}" + (".label" if field == "label" else ".match"),
                                      f"state '{name}' choice '{cid}' ({field} '{text}') overlaps the intent "
                                      f"'{iname}' phrase '{raw}': at this question the choice wins, elsewhere "
                                      f"'{raw}' jumps to '{self.flow.intents[iname].goto}'",
                                      "make the intent phrase more specific, or reword the choice")
                            break

    def check_channel_limits(self) -> None:
        for path, message, hint in limit_warnings(self.flow, self.capabilities):
            self.warn(path, message, hint)

    def run(self) -> list[Diagnostic]:
        self.check_structure()
        self.check_intents()
        self.check_understanding()
        self.check_reachable()
        self.check_connectors()
        self.check_saves()
        self.check_templates()
        self.check_settings()
        self.check_voice()
        self.check_recording_notice()
        self.check_phones()
        self.check_channel_limits()
        self.check_intent_overlaps()
        unique = {(d.line, d.col, d.message): d for d in self.out}
        return sorted(unique.values(), key=lambda d: (d.line, d.col, d.message))


def _closure(start: list[str], out: dict[str, list[str]]) -> set[str]:
    seen = set(start)
    todo = list(start)
    while todo:
        for target in out.get(todo.pop(), []):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


def _within(phrase: tuple[str, ...], words: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(words[i:i + n] == phrase for i in range(len(words) - n + 1))


def _guarded(tree: jinja2.nodes.Template) -> set[str]:
    """Names the template itself guards (`x is defined`, `x | default(...)`): no path needs them."""
    names: set[str] = set()
    for node in tree.find_all((jinja2.nodes.Test, jinja2.nodes.Filter)):
        if isinstance(node.node, jinja2.nodes.Name) and node.name in _GUARDS:
            names.add(node.node.name)
    return names


@lru_cache(maxsize=1)
def _installed_capabilities() -> dict[str, Capabilities]:
    return declared_capabilities()


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return templates.TemplateEngine().env


def _filters() -> set[str]:
    return set(_env().filters)


def _parse(source: str) -> jinja2.nodes.Template:
    return _env().parse(source)


def _is_e164(text: str) -> bool:
    if not re.fullmatch(r"\+[1-9]\d{6,14}", text.strip()):
        return False
    try:
        return phonenumbers.is_possible_number(phonenumbers.parse(text.strip()))
    except phonenumbers.NumberParseException:
        return False


def _iso_date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _hours_problem(value: str) -> str | None:
    if value.strip().lower() == "closed":
        return None
    previous_end = -1
    for part in value.split(","):
        m = _HOURS_RANGE.match(part.strip())
        if not m:
            return f"'{part.strip()}' is not HH:MM-HH:MM"
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or h1 * 60 + m1 > 1440 or h2 * 60 + m2 > 1440:
            return f"'{part.strip()}' is not a time of day"
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            return f"'{part.strip()}' ends before it starts"
        if start < previous_end:
            return f"'{part.strip()}' overlaps the range before it"
        previous_end = end
    return None


def validate(loaded: LoadedFlow, connectors: ConnectorRegistry | None = None,
             capabilities: Mapping[str, Capabilities] | None = None) -> list[Diagnostic]:
    """Every problem of a loaded flow, errors and warnings, sorted by position. Empty when clean.

    `connectors=None` skips the check that `call:` actions exist; `capabilities` (by channel)
    defaults to what the installed channels declare. A flow of several languages is checked in
    each of them (its texts' templates, channel limits), and its text maps against them."""
    found = _language_problems(loaded)
    if not loaded.flow.settings.languages or any(d.severity == "error" for d in found):
        found += _Checker(loaded, connectors, capabilities).run()
    else:
        for language in localize.declared(loaded.flow.settings):
            variant = dataclasses.replace(loaded, flow=localize.localize(loaded.flow, language))
            found += _Checker(variant, connectors, capabilities, language).run()
    unique = {(d.line, d.col, d.message): d for d in found}
    return sorted(unique.values(), key=lambda d: (d.line, d.col, d.message))


def _language_problems(loaded: LoadedFlow) -> list[Diagnostic]:
    """SPEC §9: declared languages, every text map against them, language choices and countries."""
    flow, out = loaded.flow, []
    settings = flow.settings

    def add(path: str, message: str, hint: str | None = None, *, key: bool = False,
            severity: str = "error") -> None:
        out.append(loaded.diagnostic(path, message, hint, key=key, severity=severity))

    languages = list(settings.languages)
    for i, language in enumerate(languages):
        if not _LANGUAGE.match(language):
            add(f"$.settings.languages[{i}]", f"bad language tag '{language}'", "use a code like en or es, or a tag "
                "like es-MX")
        elif languages.index(language) != i:
            add(f"$.settings.languages[{i}]", f"language '{language}' is listed twice", "list each language once")
        elif not messages.known(language):
            add(f"$.settings.languages[{i}]", f"language '{language}' has no catalogue: the engine's own words "
                "(reprompts, apologies, menus) would be English", "add a language pack (docs/EXTENDING.md, "
                "'Adding a language')", severity="warning")
    if settings.languages and "language" in _written(loaded, "$.settings") and \
            localize.primary(settings.language) not in {localize.primary(x) for x in languages}:
        add("$.settings.language", f"settings.language '{settings.language}' is none of settings.languages",
            f"give the default's tag (e.g. language: {languages[0]}) or leave it out")
    for path, texts in localize.text_maps(flow):
        if not languages:
            add(path, f"{describe(path)} is written per language, but the flow declares no languages",
                f"add `languages: [{', '.join(map(str, texts))}]` under settings, or write one text")
            continue
        for lang in texts:
            if lang not in languages:
                add(f"{path}.{lang}", f"{describe(path)} has a text in '{lang}', which is not a declared language",
                    did_you_mean(str(lang), languages) or f"settings.languages is [{', '.join(languages)}]", key=True)
        for lang in languages:
            if lang not in texts:
                add(path, f"{describe(path)} has no '{lang}' text",
                    f"add `{lang}: \"...\"` (the flow speaks {', '.join(languages)})")
    for code, language in settings.language_by_country.items():
        where = f"$.settings.language_by_country.{code}"
        if not str(code).lstrip("+").isdigit():
            add(where, f"language_by_country key '{code}' is not a country calling code",
                'write the digits of the code, quoted: "34" for Spain, "52" for Mexico', key=True)
        if language not in (languages or [settings.language]):
            add(where, f"language_by_country gives '{language}', which is not a declared language",
                did_you_mean(language, languages) or "add it to settings.languages")
    for name, state in flow.states.items():
        if isinstance(state, schema.AskState) and state.save == LANGUAGE_TARGET:
            ids = [cid for cid in (state.choices or {}) if cid not in languages]
            if not languages:
                add(f"$.states.{name}.save", f"state '{name}' saves the contact's language, but the flow "
                    "declares no languages", "add `languages: [en, es]` under settings")
            elif ids or state.choices_from or not state.choices:
                add(f"$.states.{name}.choices", f"state '{name}' saves sys.language: its choices must be "
                    f"languages of the flow ({', '.join(languages)})",
                    f"name the choices {', '.join(languages)}" + (f", not {', '.join(ids)}" if ids else ""))
    return out


def _written(loaded: LoadedFlow, path: str) -> set[str]:
    """The keys written under `path` in the source."""
    prefix = path + "."
    return {p[len(prefix):].split(".", 1)[0] for p in loaded.key_positions if p.startswith(prefix)}


def check(loaded: LoadedFlow, connectors: ConnectorRegistry | None = None) -> LoadedFlow:
    """The one verdict every command and the server share: FlowError with every error when
    there is any; otherwise the flow, its warnings kept in `loaded.warnings` (never refusing)."""
    problems = validate(loaded, connectors)
    errors = [d for d in problems if d.is_error]
    if errors:
        raise FlowError(errors)
    loaded.warnings = [d for d in problems if not d.is_error]
    return loaded


def load_checked(path: str | Path, connectors: ConnectorRegistry | None = None) -> LoadedFlow:
    """Read, load and `check` a flow file: what `validate`, `chat`, `test` and `serve` all run."""
    return check(load_flow(path), connectors)


def default_connectors() -> ConnectorRegistry | None:
    """The installed connectors (entry points), or None when none could be loaded."""
    registry = installed_connectors()
    return registry if registry.names() else None


def main_validate(paths: list[str], *, strict: bool = False) -> int:
    """`orchestrator validate FILE...`: print `file:line:col: message (hint: ...)`; exit 1 when
    a file has errors (or, with `strict`, warnings), else 0."""
    connectors = default_connectors()
    bad_files = errors = warnings = 0
    for path in paths:
        try:
            found = validate(load_flow(path), connectors)
        except FlowError as exc:
            found = exc.diagnostics
        for d in found:
            print(d.format())
        n_errors = sum(1 for d in found if d.is_error)
        errors += n_errors
        warnings += len(found) - n_errors
        if n_errors or (strict and found):
            bad_files += 1
    files = f"{len(paths)} file{'s' if len(paths) != 1 else ''}"
    counts = ", ".join(part for part in (
        f"{errors} error{'s' if errors != 1 else ''}" if errors else "",
        f"{warnings} warning{'s' if warnings != 1 else ''}" if warnings else "",
    ) if part)
    if bad_files:
        print(f"{files} checked: {bad_files} invalid, {counts}" + (" (--strict)" if strict and not errors else ""))
        return 1
    print(f"{files} checked: all valid" + (f", {counts}" if counts else ""))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_validate(sys.argv[1:]))
