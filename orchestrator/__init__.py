"""Omnichannel conversation orchestrator: YAML flows compiled onto state machines,
driven the same way over a phone call, SMS and WhatsApp."""

__version__ = "0.1.0"
