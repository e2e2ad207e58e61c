"""The bucketed key layout (stores/layout.py): the buckets spread evenly over the slots, the bucket
of a contact is the same from its session id and its contact key (with or without a business),
and the claim script's Lua hash agrees with Python's."""

from __future__ import annotations

import random
import re

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from rediskit import REDIS_URL

from orchestrator.stores.layout import BUCKETS, SLOTS, Layout, bucket_of, bucket_tags
from orchestrator.stores.scripts import lua


def test_each_bucket_tag_hashes_into_its_own_sixteenth_of_the_slots() -> None:
    tags = bucket_tags(BUCKETS)
    assert len(set(tags)) == BUCKETS
    for i, tag in enumerate(tags):
        assert i * SLOTS // BUCKETS <= key_slot(tag.encode()) < (i + 1) * SLOTS // BUCKETS
    # a standard 3-master split (redis-cli --cluster create) gets 5 or 6 buckets each
    ranges = [(0, 5460), (5461, 10922), (10923, 16383)]
    per_shard = [sum(lo <= key_slot(t.encode()) <= hi for t in tags) for lo, hi in ranges]
    assert sorted(per_shard) == [5, 5, 6]


def test_a_contacts_keys_share_one_slot_whatever_business_prefix_they_carry() -> None:
    layout = Layout("orch", BUCKETS)
    contact = "+34600111222"
    sid = f"+15555550100:{contact}"
    names = [layout.conv(sid, "s"), layout.shared("timers", sid), layout.shared(f"optout:{contact}", contact),
             layout.shared(f"optout:luna_hair:{contact}", f"luna_hair:{contact}"),
             layout.conv(f"luna_hair:+15555550100:{contact}", "l"), layout.side(f"{{{sid}}}:r:1"),
             layout.side_index("records", f"{{{sid}}}:r:1"), layout.status(f"{sid}|abc#0")]
    assert len({key_slot(n.encode()) for n in names}) == 1, names
    assert layout.conv(sid, "s") == f"orch:{{{bucket_tags(BUCKETS)[bucket_of(contact, BUCKETS)]}}}:{{{sid}}}:s"
    legacy = Layout("orch")
    assert (legacy.conv(sid, "s"), legacy.shared("timers", sid), legacy.status("SM1")) == (
        f"orch:{{{sid}}}:s", "orch:timers", "orch:st:SM1")


def test_buckets_are_balanced_over_many_contacts() -> None:
    rng = random.Random(7)
    counts = [0] * BUCKETS
    for _ in range(16_000):
        counts[bucket_of(f"+1{rng.randrange(10**9, 10**10)}", BUCKETS)] += 1
    assert min(counts) > 800 and max(counts) < 1200, counts


@pytest.mark.redis
async def test_the_claim_scripts_lua_hash_agrees_with_python() -> None:
    text = lua("claim_outbox.lua")
    function = re.search(r"local function bucket_of\(text\).*?\nend\n", text, re.S)
    assert function is not None
    script = "local n = tonumber(ARGV[1])\n" + function.group(0) + (
        "local out = {}\nfor i = 2, #ARGV do out[#out + 1] = bucket_of(ARGV[i]) end\nreturn out\n")
    rng = random.Random(3)
    samples = ["", "+15557654321", "US.13491208655302741918", "luna_hair:+34600111222", "biz:+1:+2",
               *(f"+{rng.randrange(10**6, 10**14)}" for _ in range(300)), "wa:ñandú", "x" * 500]
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        got = await client.eval(script, 0, BUCKETS, *samples)
    finally:
        await client.aclose()
    assert [int(b) for b in got] == [bucket_of(s, BUCKETS) for s in samples]
