"""What the server mounts and runs for operators: the admin API, the OpenAPI document, and
the background jobs (flows directory reload, retention).

    handlers = admin_handlers(settings)              # [Router] under /api, the console under /console
    config = openapi_config()                        # /schema/openapi.json, bearer security scheme
    jobs = background_jobs(runtime, settings)        # coroutines for the server lifespan
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ControllerRouterHandler

from orchestrator.settings import AppSettings


def admin_handlers(settings: AppSettings) -> list[ControllerRouterHandler]:
    """The admin API under /api and the owner's console under /console (same admin token)."""
    from orchestrator.web.admin import admin_router
    from orchestrator.web.console import console_handlers

    return [admin_router(settings), *console_handlers(settings)]


def template_config() -> Any:
    """The console's templates (litestar's Jinja engine)."""
    from orchestrator.web.console import template_config as console_templates

    return console_templates()


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="orchestrator admin API", version="1.0.0", path="/schema",
        components=Components(security_schemes={
            "BearerToken": SecurityScheme(type="http", scheme="bearer",
                                          description="ORCHESTRATOR_ADMIN_TOKEN"),
        }),
    )


def background_jobs(runtime: Any, settings: AppSettings) -> list[Coroutine[Any, Any, None]]:
    from orchestrator.records.retention import RetentionJob
    from orchestrator.runtime.reloader import FlowWatcher

    jobs: list[Coroutine[Any, Any, None]] = []
    if settings.reload_seconds > 0 and getattr(runtime, "catalog", None) is not None:
        jobs.append(FlowWatcher(runtime.catalog, interval_seconds=settings.reload_seconds).run())
    if settings.retention_interval_seconds > 0 and getattr(runtime, "store", None) is not None:
        channels = getattr(runtime, "channels", None)
        deleters = [channels.get(n).delete_recordings for n in channels.names()
                    if callable(getattr(channels.get(n), "delete_recordings", None))] if channels is not None else []
        jobs.append(RetentionJob(runtime.store, retention_seconds=settings.retention_seconds,
                                 delete_recordings=deleters[0] if deleters else None)
                    .run_forever(settings.retention_interval_seconds))
    return jobs
