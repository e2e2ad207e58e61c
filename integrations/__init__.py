"""Connectors shipped with the orchestrator: calendars (embedded SQLite, Google) and CRMs.

Each module is one connector; the server registers them through the
`orchestrator.connectors` entry points or explicitly (`calendar_from_env`).
"""
