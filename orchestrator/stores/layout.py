"""Where the Redis store's keys live: the single-Redis layout, or hash-tagged buckets for a Redis Cluster.

A Redis Cluster runs a script only when every key it touches hashes to one slot. A turn touches
its conversation's keys and the shared indexes (timers, outbox, sessions, the contact's set and
opt-out, conversation records), so with buckets the indexes are split in `n` pieces and a
conversation's keys carry its bucket's hash tag:

    legacy (n = 0, a single Redis)        buckets (n > 0)
    orch:{<sid>}:s                        orch:{<tag>}:{<sid>}:s      (the first {...} is the hash tag)
    orch:timers                           orch:{<tag>}:timers          one per bucket
    orch:optout:<contact>                 orch:{<tag>}:optout:<contact>

The bucket is a hash of the contact's own id: the text after the last ':' of a session id
(`<business>:<contact>`) or of a contact key (`<contact>`, or `<business>:<contact>`), so a
contact's conversations with every business, its opt-out, its outbox items and its records share
one slot, and erasure, the opt-out check and every turn script stay single-slot. The same hash is
computed by the outbox claim script (lua/claim_outbox.lua, `bucket_of`), which must agree.

The tags are chosen so that bucket `i` hashes into the i-th of `n` equal slot ranges: the
buckets spread evenly over shards that split the slots evenly (`redis-cli --cluster create`).
Key names never change once written (every release's scripts read them): `n` and the tags are
part of the stored layout, so `BUCKETS` is fixed.
"""

from __future__ import annotations

import functools

from redis.crc import key_slot

BUCKETS = 16  # buckets of a clustered store (part of the layout: never change it for a running store)
SLOTS = 16384
_MOD = 1_000_003  # the hash below stays an exact integer in Lua's doubles: h * 31 + 255 < 2 ** 53


def contact_part(text: str) -> str:
    """The contact's own id inside a session id or a contact key: the text after the last ':'."""
    return text.rpartition(":")[2]


@functools.lru_cache(maxsize=65536)  # a contact's turns ask again and again
def bucket_of(text: str, n: int) -> int:
    """The bucket (0 .. n-1) of a session id or contact key (the same for both of one contact)."""
    h = 0
    for byte in contact_part(text).encode():
        h = (h * 31 + byte) % _MOD
    return h % n


@functools.cache
def bucket_tags(n: int) -> tuple[str, ...]:
    """The hash tag of each bucket: `b<i>.<k>` with the smallest k whose slot falls in the i-th of
    n equal slot ranges (deterministic: the same tags in every process and release)."""
    tags = []
    for i in range(n):
        low, high = i * SLOTS // n, (i + 1) * SLOTS // n
        k = 0
        while not low <= key_slot(f"b{i}.{k}".encode()) < high:
            k += 1
        tags.append(f"b{i}.{k}")
    return tuple(tags)


class Layout:
    """Key names under `prefix`, legacy (`buckets` = 0) or bucketed."""

    def __init__(self, prefix: str, buckets: int = 0) -> None:
        self.prefix = prefix
        self.n = buckets
        self.tags = bucket_tags(buckets) if buckets else ()
        self.heads = tuple(f"{prefix}:{{{t}}}" for t in self.tags) or (prefix,)

    def bucket(self, text: str) -> int:
        """The bucket of a session id or contact key (0 in the legacy layout)."""
        return bucket_of(text, self.n) if self.n else 0

    def head(self, text: str) -> str:
        """`prefix` or `prefix:{<tag>}` of the bucket of `text` (a session id or contact key)."""
        return self.heads[self.bucket(text)]

    def conv(self, session_id: str, part: str) -> str:
        """A key of one conversation."""
        if not self.n:
            return f"{self.prefix}:{{{session_id}}}:{part}"
        return f"{self.heads[bucket_of(session_id, self.n)]}:{{{session_id}}}:{part}"

    def shared(self, name: str, of: str) -> str:
        """A shared index (`timers`, `outbox`, `c:<contact>`, ...) of the bucket of `of`."""
        if not self.n:
            return f"{self.prefix}:{name}"
        return f"{self.heads[bucket_of(of, self.n)]}:{name}"

    def every(self, name: str) -> list[str]:
        """A shared index in each bucket (one key in the legacy layout)."""
        return [f"{head}:{name}" for head in self.heads]

    def plain(self, name: str) -> str:
        """A key of no bucket (flow revisions, provider message statuses, health, audit)."""
        return f"{self.prefix}:{name}"

    def status(self, message_id: str) -> str:
        """A delivery status: an outbox item's own (`<sid>|<uniq>`, `<item>#<n>`) in its bucket,
        a provider message id's under no bucket."""
        if self.n and "|" in message_id:
            return self.shared(f"st:{message_id}", message_id.partition("|")[0])
        return self.plain(f"st:{message_id}")

    def side(self, key: str) -> str:
        """A side-store key (given without the prefix): `{<sid>}:...` in that session's bucket."""
        if self.n and key.startswith("{") and "}" in key:
            return f"{self.head(key[1:key.index('}')])}:{key}"
        return self.plain(key)

    def side_index(self, index: str, key: str) -> str:
        """An index written beside `key` (a `SidePut`): in `key`'s bucket."""
        if self.n and key.startswith("{") and "}" in key:
            return f"{self.head(key[1:key.index('}')])}:{index}"
        return self.plain(index)

    def match_conv(self, session_id: str) -> str:
        """A SCAN pattern for every key of one conversation."""
        return f"{_glob_escape(self.head(session_id))}:{{{_glob_escape(session_id)}}}:*"


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
