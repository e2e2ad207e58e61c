"""BusyIndex must answer exactly as the plain quadratic check does."""

import random
from datetime import UTC, datetime, timedelta

from integrations.slots import BusyIndex, overlaps


def test_busy_index_agrees_with_the_plain_check_on_random_calendars() -> None:
    rng = random.Random(7)
    base = datetime(2026, 11, 26, 9, tzinfo=UTC)
    for _ in range(200):
        busy = []
        for _ in range(rng.randint(0, 12)):
            start = base + timedelta(minutes=15 * rng.randint(0, 40))
            busy.append((start, start + timedelta(minutes=15 * rng.randint(1, 6))))
        index = BusyIndex(busy)
        for _ in range(20):
            start = base + timedelta(minutes=5 * rng.randint(0, 130))
            slot = (start, start + timedelta(minutes=30))
            buffer = timedelta(minutes=rng.choice([0, 5, 10]))
            assert index.overlaps(slot, buffer) == overlaps(slot, busy, buffer)
