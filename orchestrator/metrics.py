"""Prometheus metrics for operators (`GET /metrics`).

One set of named metrics for the whole process. With several server processes set
`PROMETHEUS_MULTIPROC_DIR` to a shared empty directory and `render()` aggregates them
(prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

TURNS = Counter("orchestrator_turns_total", "Conversation turns applied", ["channel"])
DUPLICATES = Counter(
    "orchestrator_duplicate_deliveries_total", "Redelivered webhooks answered from the dedupe store", ["channel"]
)
TURN_SECONDS = Histogram(
    "orchestrator_turn_seconds",
    "Latency of one turn: dedupe, lock, load, advance, save",
    ["channel"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
REJECTIONS = Counter("orchestrator_webhook_rejections_total", "Webhooks refused", ["channel", "reason"])
WEBHOOK_ITEMS_MALFORMED = Counter(
    "orchestrator_webhook_items_malformed_total",
    "Webhook batch items that could not be used as sent; the rest of the batch was processed. handled: "
    "skipped (names no contact), unreadable (answered as an unreadable reply), failed (the turn raised)",
    ["channel", "handled"],
)
ADMIN_REFUSED = Counter(
    "orchestrator_admin_refused_total", "Admin API requests refused (401: no or a wrong token; 429: rate-limited)",
    ["status"],
)
CONNECTOR_CALLS = Counter("orchestrator_connector_calls_total", "Connector actions called", ["action", "outcome"])
UNDERSTAND_CALLS = Counter(
    "orchestrator_understand_calls_total", "Language-model parses (ORCHESTRATOR_UNDERSTAND=openai) by outcome: "
    "ok, nothing (no value held up), invalid (not the JSON asked for), timeout, error", ["outcome"],
)
UNDERSTAND_SECONDS = Histogram(
    "orchestrator_understand_seconds", "Latency of one language-model parse, timeouts included",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0),
)
CONVERSATIONS_STARTED = Counter(
    "orchestrator_conversations_started_total", "Conversations started", ["flow", "channel"]
)
CONVERSATIONS_ENDED = Counter("orchestrator_conversations_ended_total", "Conversations ended", ["flow", "outcome"])
ACTIVE = Gauge(
    "orchestrator_active_conversations",
    "Conversations started minus ended in this process",
    multiprocess_mode="livesum",
)
SENDS = Counter("orchestrator_outbound_sends_total", "Proactive sends through a channel", ["channel", "result"])


@functools.lru_cache(maxsize=4096)
def labelled(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, cached: prometheus_client's `labels` costs several µs a call."""
    return metric.labels(*values)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
