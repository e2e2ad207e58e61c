"""Where conversations live: the store contract and its backends.

`base` is the contract every backend keeps (begin / commit / release of a turn, the outbox,
timers, opt-outs, revisions, records) and the values they share; `memory` is the embedded
default (one process, nothing to install); `redis` keeps it in Redis with two Lua scripts per
turn over `resp`, a lean auto-pipelined RESP connection; `side` holds the records and indexes
beside the turn (conversation records, audit, failed sends).
"""
