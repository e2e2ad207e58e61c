"""The fake provider HTTP server lives in `orchestrator.testing.http` (plugin authors use it too)."""

from orchestrator.testing.http import FakeHTTPServer, Handler, Recorded, Reply, json_reply

__all__ = ["FakeHTTPServer", "Handler", "Recorded", "Reply", "json_reply"]
