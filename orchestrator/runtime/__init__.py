"""The turn pipeline around the engine.

`pipeline.Runtime` runs each webhook item through dedupe -> lock -> load -> advance -> save
with outbox -> answer or send, and runs the timers and the outbox sender; `catalog` holds the
flow revisions and the routing table, `reloader` watches the flows directory, `notify` builds
staff notifications.
"""
