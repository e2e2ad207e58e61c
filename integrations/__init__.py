"""Connectors shipped with the orchestrator: calendars (embedded SQLite, Google) and CRMs.

Each module is one connector deriving from `orchestrator.plugins.connectors.Connector`, built
by `from_settings(config)` from its typed settings; the server registers them through the
`orchestrator.connectors` entry points (`google_calendar.Calendar`, `crm_http.CrmHttp`,
`hubspot.HubSpot`) or explicitly (`calendar_from_env`).
"""
