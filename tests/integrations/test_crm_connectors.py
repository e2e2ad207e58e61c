"""CRM connectors against local fakes: the generic HTTP CRM and HubSpot."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conn_helpers import CtxFactory
from fake_crm import FakeCrm, FakeHubSpot

from integrations.crm_http import CrmHttp, LogConversationArgs, UpsertContactArgs
from integrations.hubspot import HubSpot
from orchestrator.errors import ConfigError

BOOKING = {"id": "b1", "start": "2026-11-26T10:00:00-05:00", "end": "2026-11-26T10:30:00-05:00",
           "label": "Thu 26 Nov, 10:00 AM", "calendar": "embedded"}


@pytest.fixture
def crm_server() -> Iterator[FakeCrm]:
    server = FakeCrm()
    yield server
    server.stop()


@pytest.fixture
def hubspot_server() -> Iterator[FakeHubSpot]:
    server = FakeHubSpot()
    yield server
    server.stop()


def make_crm(server: FakeCrm, **kw: object) -> CrmHttp:
    env = {"CRM_URL": server.base, "CRM_AUTH_HEADER": "Authorization: Bearer secret-token",
           "CRM_FIELD_MAP": '{"phone": "mobile", "name": "full_name"}', "CRM_TIMEOUT_SECONDS": "1"}
    return CrmHttp.from_env(env, retry_base_seconds=0.01, **kw)  # type: ignore[arg-type]


async def test_crm_upsert_is_idempotent_and_mapped(crm_server: FakeCrm, ctx_factory: CtxFactory) -> None:
    crm = make_crm(crm_server)
    first = await crm.upsert_contact(UpsertContactArgs(name="Ann Lee", fields={"source": "sms"}), ctx_factory())
    second = await crm.upsert_contact(UpsertContactArgs(name="Ann Lee", fields={"source": "sms"}), ctx_factory())
    assert first.outcome == second.outcome == "ok"
    assert crm_server.contacts == {"+15550001111": {"mobile": "+15550001111", "full_name": "Ann Lee", "source": "sms"}}


async def test_crm_log_conversation_retries_5xx_and_dedupes(crm_server: FakeCrm, ctx_factory: CtxFactory) -> None:
    crm = make_crm(crm_server)
    crm_server.script = [("POST", "/conversations", 503, {"error": "busy"}, {})]
    args = LogConversationArgs(name="Ann Lee", reason="cleaning", preferred_time="2026-11-26T10:00:00-05:00",
                               booking=BOOKING, outcome="booked", transcript_url="https://x.test/t/1")
    assert (await crm.log_conversation(args, ctx_factory())).outcome == "ok"
    assert (await crm.log_conversation(args, ctx_factory())).outcome == "ok"  # a retried turn
    assert len(crm_server.calls("POST", "/conversations")) == 3 and len(crm_server.conversations) == 1
    [logged] = crm_server.conversations.values()
    assert logged["mobile"] == "+15550001111" and logged["booking_label"] == "Thu 26 Nov, 10:00 AM"
    assert logged["booking"] == BOOKING and logged["outcome"] == "booked" and logged["full_name"] == "Ann Lee"


async def test_crm_failures_are_error_outcomes(crm_server: FakeCrm, ctx_factory: CtxFactory) -> None:
    crm = make_crm(crm_server, retries=2)
    crm_server.script = [("PUT", "/contacts", 500, {}, {})] * 3
    result = await crm.upsert_contact(UpsertContactArgs(), ctx_factory())
    assert result.outcome == "error" and "HTTP 500" in (result.detail or "")
    assert len(crm_server.calls("PUT", "/contacts")) == 3
    bad_token = CrmHttp(crm_server.base, auth_header="Authorization: Bearer wrong")
    refused = await bad_token.upsert_contact(UpsertContactArgs(), ctx_factory())
    assert refused.outcome == "error" and "401" in (refused.detail or "") and "wrong" not in (refused.detail or "")
    crm_server.hang_seconds = 3
    started = time.monotonic()
    slow = await make_crm(crm_server, retries=0).upsert_contact(UpsertContactArgs(), ctx_factory())
    assert slow.outcome == "error" and "timed out" in (slow.detail or "") and time.monotonic() - started < 2.5


def test_crm_config_errors() -> None:
    with pytest.raises(ConfigError, match="CRM_URL is empty"):
        CrmHttp.from_env({})
    with pytest.raises(ConfigError, match="CRM_FIELD_MAP is not JSON"):
        CrmHttp.from_env({"CRM_URL": "http://x", "CRM_FIELD_MAP": "phone=mobile"})
    with pytest.raises(ConfigError, match="HUBSPOT_TOKEN is empty"):
        HubSpot.from_env({})


def make_hubspot(server: FakeHubSpot) -> HubSpot:
    return HubSpot.from_env({"HUBSPOT_TOKEN": server.token, "HUBSPOT_API_BASE": server.base},
                            retry_base_seconds=0.01)


async def test_hubspot_upsert_searches_then_creates_or_patches(
    hubspot_server: FakeHubSpot, ctx_factory: CtxFactory
) -> None:
    hub = make_hubspot(hubspot_server)
    created = await hub.upsert_contact(UpsertContactArgs(name="Ann Lee"), ctx_factory())
    updated = await hub.upsert_contact(UpsertContactArgs(name="Ann Marie Lee", email="ann@x.test"), ctx_factory())
    assert created.outcome == updated.outcome == "ok" and created.value == updated.value
    assert hubspot_server.contacts == {created.value["id"]: {
        "phone": "+15550001111", "firstname": "Ann", "lastname": "Marie Lee", "email": "ann@x.test"}}
    assert len(hubspot_server.calls("POST", "/crm/v3/objects/contacts/search")) == 2
    assert len(hubspot_server.calls("PATCH", "/crm/v3/objects/contacts/")) == 1


async def test_hubspot_create_conflict_becomes_update(hubspot_server: FakeHubSpot, ctx_factory: CtxFactory) -> None:
    hubspot_server.contacts["7"] = {"email": "ann@x.test", "phone": "+15550009999"}  # same person, other phone
    result = await make_hubspot(hubspot_server).upsert_contact(UpsertContactArgs(email="ann@x.test"), ctx_factory())
    assert result.outcome == "ok" and result.value == {"id": "7"}
    assert hubspot_server.contacts["7"]["phone"] == "+15550001111"


async def test_hubspot_note_is_associated_and_429_waits(hubspot_server: FakeHubSpot, ctx_factory: CtxFactory) -> None:
    hubspot_server.script = [("POST", "/crm/v3/objects/notes$", 429, {"status": "error", "category": "RATE_LIMITS"},
                              {"Retry-After": "0.2"})]
    started = time.monotonic()
    args = LogConversationArgs(name="Ann <Lee>", reason="toothache", booking=BOOKING, outcome="booked",
                               transcript_url="https://x.test/t/1")
    result = await make_hubspot(hubspot_server).log_conversation(args, ctx_factory())
    assert result.outcome == "ok" and time.monotonic() - started >= 0.2
    note = hubspot_server.notes[result.value["note_id"]]
    assert note["associations"] == [{"to": {"id": result.value["contact_id"]}, "types": [
        {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]}]
    body = note["properties"]["hs_note_body"]
    assert "Ann &lt;Lee&gt;" in body and "Thu 26 Nov, 10:00 AM" in body and 'href="https://x.test/t/1"' in body
    assert note["properties"]["hs_timestamp"].startswith("2026-11-25T17:00:00")
    assert len(hubspot_server.calls("POST", "/crm/v3/objects/notes$")) == 2


async def test_hubspot_errors(hubspot_server: FakeHubSpot, ctx_factory: CtxFactory) -> None:
    hubspot_server.script = [("POST", "/crm/v3/objects/contacts/search", 500, {}, {})] * 4
    result = await make_hubspot(hubspot_server).upsert_contact(UpsertContactArgs(), ctx_factory())
    assert result.outcome == "error" and "HTTP 500" in (result.detail or "")
    wrong = HubSpot("nope", api_base=hubspot_server.base)
    denied = await wrong.upsert_contact(UpsertContactArgs(), ctx_factory())
    assert denied.outcome == "error" and "401 INVALID_AUTHENTICATION" in (denied.detail or "")


NOTE_ARGS = LogConversationArgs(name="Ann Lee", reason="cleaning", booking=BOOKING, outcome="booked")


async def test_hubspot_note_created_then_5xx_is_not_doubled(
    hubspot_server: FakeHubSpot, ctx_factory: CtxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    hubspot_server.fail_after = [("POST", "/crm/v3/objects/notes$", 503)]  # stored, but answered 503
    result = await make_hubspot(hubspot_server).log_conversation(NOTE_ARGS, ctx_factory())
    assert result.outcome == "ok" and list(hubspot_server.notes) == [result.value["note_id"]]
    assert len(hubspot_server.calls("POST", "/crm/v3/objects/notes$")) == 1  # found, not repeated
    assert "but it was done; not repeated" in caplog.text
    assert "+15550001111" not in caplog.text and hubspot_server.token not in caplog.text


async def test_hubspot_note_of_a_retried_turn_is_not_doubled(
    hubspot_server: FakeHubSpot, ctx_factory: CtxFactory
) -> None:
    hub = make_hubspot(hubspot_server)
    first = await hub.log_conversation(NOTE_ARGS, ctx_factory())
    again = await hub.log_conversation(NOTE_ARGS, ctx_factory(now="2026-11-25 12:05"))  # the turn run again
    other = await hub.log_conversation(LogConversationArgs(name="Ann Lee", outcome="cancelled"), ctx_factory())
    assert first.value == again.value and other.value["note_id"] != first.value["note_id"]
    assert len(hubspot_server.notes) == 2 and len(hubspot_server.calls("POST", "/crm/v3/objects/notes$")) == 2


async def test_hubspot_note_search_failing_never_blocks_the_note(
    hubspot_server: FakeHubSpot, ctx_factory: CtxFactory
) -> None:
    hubspot_server.script = [("POST", "/crm/v3/objects/notes/search", 403,
                              {"status": "error", "category": "MISSING_SCOPES"}, {})]
    result = await make_hubspot(hubspot_server).log_conversation(NOTE_ARGS, ctx_factory())
    assert result.outcome == "ok" and list(hubspot_server.notes) == [result.value["note_id"]]


async def test_hubspot_timeout_from_env_and_bad_timeouts(hubspot_server: FakeHubSpot, ctx_factory: CtxFactory) -> None:
    hub = HubSpot.from_env({"HUBSPOT_TOKEN": hubspot_server.token, "HUBSPOT_API_BASE": hubspot_server.base,
                            "HUBSPOT_TIMEOUT_SECONDS": "0.5"}, retries=0)
    hubspot_server.hang_seconds = 2
    started = time.monotonic()
    result = await hub.upsert_contact(UpsertContactArgs(), ctx_factory())
    assert result.outcome == "error" and "timed out" in (result.detail or "") and time.monotonic() - started < 1.5
    with pytest.raises(ConfigError, match="CRM_TIMEOUT_SECONDS='soon' is not a timeout"):
        CrmHttp.from_env({"CRM_URL": "http://x", "CRM_TIMEOUT_SECONDS": "soon"})
    with pytest.raises(ConfigError, match="HUBSPOT_TIMEOUT_SECONDS='0' is not a timeout"):
        HubSpot.from_env({"HUBSPOT_TOKEN": "t", "HUBSPOT_TIMEOUT_SECONDS": "0"})
