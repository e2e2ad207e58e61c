"""The owner's console (docs/SPEC.md §11): server-rendered pages under /console, HTMX for the
live parts, vendored static files (no CDN), the admin token as the sign-in.

    handlers = console_handlers(settings)   # the pages router + /console/static
    config = template_config()              # litestar's Jinja engine over templates/ (autoescaped)
"""

from __future__ import annotations

from pathlib import Path

from litestar.datastructures import CacheControlHeader
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import ControllerRouterHandler

from orchestrator.settings import AppSettings

HERE = Path(__file__).parent


def console_handlers(settings: AppSettings) -> list[ControllerRouterHandler]:
    from orchestrator.web.console.routes import console_router

    return [console_router(settings),
            create_static_files_router(path="/console/static", directories=[HERE / "static"], name="console:static",
                                       cache_control=CacheControlHeader(max_age=3600), include_in_schema=False)]


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine)
