"""`call: message.send` is built in: validate knows its action and arguments without any
connector registry, and says what is wrong at its line (issue #18)."""

from __future__ import annotations

import pytest

from .conftest import problems

BASE = """
flow: demo
start: s
settings: {{timezone: UTC{staff}}}
states:
  s:
    call: {call}
    args: {args}
    on: {{ok: b, error: b}}
  b: {{say: bye, end: done}}
"""


def flow(args: str, call: str = "message.send", staff: str = "") -> str:
    return BASE.format(args=args, call=call, staff=staff)


def messages(text: str) -> list[str]:
    return [d.message for d in problems(text)]


def test_a_send_to_the_contact_by_sms_is_valid() -> None:
    assert problems(flow('{text: "Booked", channel: sms}')) == []
    assert problems(flow('{text: "Booked", to: staff}', staff=', staff_notify: "+15555550199"')) == []
    assert problems(flow('{text: "Hi", to: "+15555550123", channel: whatsapp, template: t}')) == []


@pytest.mark.parametrize(("args", "call", "staff", "message", "hint"), [
    ('{text: hi, chanel: sms}', "message.send", "", "message.send has no argument 'chanel'", "did you mean 'channel'?"),
    ('{channel: sms}', "message.send", "", "state 's' sends a message without `text`", "add args"),
    ('{text: hi, to: staff}', "message.send", "", "state 's' sends to staff, but the flow has no staff number",
     "settings.staff_notify"),
    ('{text: hi, to: bob}', "message.send", "", "'bob' is not contact, staff or a phone number", "E.164"),
    ('{text: hi, channel: fax}', "message.send", "", "message.send cannot go by 'fax'", "use one of"),
    ('{text: hi}', "message.sned", "", "state 's' calls unknown action 'message.sned'", "'message' has: send"),
])
def test_a_wrong_send_is_reported_at_its_line(args: str, call: str, staff: str, message: str, hint: str) -> None:
    found = problems(flow(args, call, staff))
    assert [d.message for d in found] == [message]
    assert hint in (found[0].hint or "")
    assert found[0].line in (6, 7)  # the call or its args


def test_a_send_without_an_error_route_is_a_warning() -> None:
    text = flow("{text: hi}").replace("on: {ok: b, error: b}", "next: b")
    (d,) = problems(text)
    assert d.severity == "warning" and "no `error` route" in d.message
