"""The engine: a compiled flow and one turn of it.

`compiler` (the only module importing `transitions`) builds one machine per flow revision with
everything a turn needs precomputed; `turn.Engine.turn(session, event, now)` advances one
conversation, channel-neutral and deterministic, its only I/O the connector calls. Answers are
read by `inputs` (typed asks) and `timeparse` (dates as people text them); `hours` is opening
hours, `summary` the staff summary, `render` how rich output degrades per channel, `textsize`
SMS segment arithmetic, `keywords` the carrier keywords (STOP, START, HELP).
"""
