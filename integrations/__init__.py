"""Connectors shipped with the orchestrator: calendars (embedded SQLite, Google) and CRMs
(embedded SQLite, the generic HTTP CRM, HubSpot).

Each module is one connector deriving from `orchestrator.plugins.connectors.Connector`, built
by `from_settings(config)` from its typed settings; the server registers them through the
`orchestrator.connectors` entry points (`google_calendar.Calendar` and `embedded_crm.Crm`, which
pick the configured backend, and `hubspot.HubSpot`) or explicitly (`calendar_from_env`,
`crm_from_env`).
"""
