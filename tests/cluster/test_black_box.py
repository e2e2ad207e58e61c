"""The black-box path on a Redis Cluster (SPEC §12): the acceptance tests of SMS, voice (hang-up
continuity), WhatsApp (outbox), timers, admin and erasure, run unchanged against a private 3-master
cluster (conftest.py), and the keys a run writes spread over all three shards."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from acceptance.conftest import make_settings, sms_texts, twilio_post, wait_for
from acceptance.test_operations import (
    test_analytics_counts_outcomes_funnel_and_channels,
    test_contact_export_and_erasure_keep_the_opt_out,
    test_every_admin_action_is_audited,
)
from acceptance.test_sms import (
    TIMER_FLOW,
    conversation_of,
    test_choices_render_as_numbered_list_and_number_keyword_label_all_work,
    test_outbound_start_by_sms_goes_through_twilio_rest,
    test_start_keywords_opt_back_in_and_the_conversation_continues,
    test_stop_keywords_opt_out_case_insensitive_and_nothing_more_is_sent,
    text,
)
from acceptance.test_voice_call import (
    test_hang_up_mid_booking_continues_by_sms_to_a_booking,
    test_redelivered_gather_callback_gets_same_twiml_and_advances_once,
)
from acceptance.test_whatsapp import (
    test_batched_webhook_2_entries_2_changes_3_messages_all_answered,
    test_delivery_statuses_never_move_backwards_and_failures_keep_codes,
    test_dental_booking_by_buttons_and_list_ends_booked,
    test_redelivered_message_is_not_applied_twice,
    test_stop_on_whatsapp_opts_the_contact_out,
)
from fakes.graph import FakeGraph
from fakes.signing import CALLER, sms_form
from fakes.twilio import FakeTwilio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from orchestrator.web.app import create_app

pytestmark = pytest.mark.cluster

__all__ = [
    "test_analytics_counts_outcomes_funnel_and_channels",
    "test_batched_webhook_2_entries_2_changes_3_messages_all_answered",
    "test_choices_render_as_numbered_list_and_number_keyword_label_all_work",
    "test_contact_export_and_erasure_keep_the_opt_out",
    "test_delivery_statuses_never_move_backwards_and_failures_keep_codes",
    "test_dental_booking_by_buttons_and_list_ends_booked",
    "test_every_admin_action_is_audited",
    "test_hang_up_mid_booking_continues_by_sms_to_a_booking",
    "test_outbound_start_by_sms_goes_through_twilio_rest",
    "test_redelivered_gather_callback_gets_same_twiml_and_advances_once",
    "test_redelivered_message_is_not_applied_twice",
    "test_start_keywords_opt_back_in_and_the_conversation_continues",
    "test_stop_keywords_opt_out_case_insensitive_and_nothing_more_is_sent",
    "test_stop_on_whatsapp_opts_the_contact_out",
]


async def test_conversations_spread_over_all_three_shards(
    client: AsyncTestClient[Litestar], redis_cluster: Any, cluster_prefix: str,
) -> None:
    senders = [f"+1555777{n:04d}" for n in range(24)]

    async def talk(sender: str) -> list[str]:
        out: list[str] = []
        for body in ("hi", "book"):
            out += sms_texts(await twilio_post(client, "/webhooks/twilio/sms",
                                               sms_form(body, sid="SM" + uuid.uuid4().hex, sender=sender)))
        return out

    replies = await asyncio.gather(*(talk(s) for s in senders))
    assert all(replies), "every conversation answered"
    keys = redis_cluster.keys(f"{cluster_prefix}:*")
    sessions = [(shard, k) for shard, k in keys if k.endswith(b":s")]
    assert len(sessions) == len(senders)
    assert {shard for shard, _ in sessions} == {0, 1, 2}, "the conversations' keys are on every shard"
    timers = [(shard, k) for shard, k in keys if k.endswith(b":timers")]
    assert {shard for shard, _ in timers} == {0, 1, 2}, "so are the bucketed indexes"
    # each conversation's keys sit with its bucket's indexes: one slot per bucket
    for shard, key in sessions:
        head = key.decode().split("}", 1)[0] + "}"
        assert (shard, f"{head}:sessions".encode()) in keys


async def test_a_no_reply_timer_fires_once_from_its_bucket_then_ends_abandoned(
    tmp_path: Path, fake_twilio: FakeTwilio, graph: FakeGraph, redis_cluster: Any, cluster_prefix: str,
) -> None:
    flows = tmp_path / "timer_flows"
    flows.mkdir()
    (flows / "nudge.yaml").write_text(TIMER_FLOW)
    settings = make_settings(flows, fake_twilio, graph, default_flow=None, redis_url=redis_cluster.url,
                             key_prefix=cluster_prefix)
    async with AsyncTestClient(create_app(settings)) as client:
        assert await text(client, "hi") == ["What's your name?"]
        await wait_for(lambda: len(fake_twilio.messages()) >= 1, timeout=6)
        reminder = fake_twilio.messages()[0]
        assert reminder["To"] == [CALLER] and "What's your name?" in reminder["Body"][0]
        await asyncio.sleep(2.5)  # the second timeout ends it quietly
        assert len(fake_twilio.messages()) == 1
        conv = await conversation_of(client, CALLER)
        assert conv["conversation"].get("outcome") == "abandoned"


async def test_an_sms_booking_goes_on_through_a_sentinel_failover(
    tmp_path: Path, flows_copy: Path, fake_twilio: FakeTwilio, graph: FakeGraph,
) -> None:
    """The app on `redis+sentinel://`: the primary dies mid-booking; webhooks answer 503 (the
    provider retries the same message) until Sentinel promotes the replica, then the booking ends."""
    from clusterkit import SentinelKit

    booking = ["hi", "book", "Maria Lopez", "cleaning", "tomorrow at 10am", "1"]
    with SentinelKit() as group:
        settings = make_settings(flows_copy, fake_twilio, graph, redis_url=group.url, key_prefix="fo",
                                 redis_timeout_seconds=0.5, redis_wait_replicas=1)
        async with AsyncTestClient(create_app(settings)) as client:
            replies: list[list[str]] = []
            for i, body in enumerate(booking):
                if i == 3:
                    group.kill_primary()
                form = sms_form(body, sid=f"SM{i:032d}")
                deadline = asyncio.get_running_loop().time() + 30
                while True:  # Twilio's retry of the same message until it is answered
                    response = await twilio_post(client, "/webhooks/twilio/sms", form)
                    if response.status_code == 200:
                        break
                    assert response.status_code == 503, (response.status_code, response.text)
                    assert asyncio.get_running_loop().time() < deadline, "no new primary within 30 s"
                    await asyncio.sleep(0.2)
                replies.append(sms_texts(response))
            # the turns before the failover survived it (WAIT 1): else the booking would start over
            assert all(replies), replies
            assert any("booked" in t.lower() or "confirmed" in t.lower() for t in replies[-1]), replies[-1]
