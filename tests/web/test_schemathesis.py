"""Property-based fuzzing of the admin API from its served OpenAPI schema (schemathesis):
with a valid token, no generated request may get a 5xx. Bounded to a few examples per
operation so it stays well under a minute."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from flowkit import FLOWS_DIR
from hypothesis import HealthCheck, Phase, settings

from orchestrator.plugins.channels import ChannelRegistry
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.stores.memory import MemoryStore
from orchestrator.web.app import create_app

TOKEN = "schemathesis-token-0123456789"


def _app() -> Any:
    flows = Path(tempfile.mkdtemp(prefix="orchestrator-schemathesis-"))  # PUT rewrites flow files
    for path in FLOWS_DIR.glob("*.yaml"):
        shutil.copy(path, flows / path.name)
    connectors = ConnectorRegistry()
    connectors.load_entry_points(env={"ORCHESTRATOR_CALENDAR_DB": str(flows / "calendar.sqlite3")})
    app_settings = AppSettings(flows_dir=str(flows), admin_token=TOKEN, default_flow="dental_booking",
                               reload_seconds=0, retention_interval_seconds=0)
    runtime = asyncio.run(Runtime.create(app_settings, connectors, ChannelRegistry(), store=MemoryStore()))
    app = create_app(app_settings, runtime=runtime, start_background=False)
    app.state.runtime = runtime
    return app


schema = schemathesis.openapi.from_asgi("/schema/openapi.json", _app()).include(path_regex="^/api/")


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any) -> None:
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: " \
                                       f"{response.text[:300]}"


def test_the_schema_lists_every_admin_route() -> None:
    paths = set(schema.raw_schema["paths"])
    assert {"/api/flows", "/api/flows/{flow_id}", "/api/flows/{flow_id}/validate", "/api/flows/{flow_id}/diagram",
            "/api/flows/{flow_id}/analytics", "/api/conversations", "/api/conversations/{conv_id}",
            "/api/contacts/{phone}", "/api/audit"} <= paths
