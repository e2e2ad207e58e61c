"""The litestar app: provider webhooks, health, metrics, and a hook for the admin API.

    app = create_app()                               # settings from the environment
    app = create_app(settings, runtime=runtime,      # tests: a prepared runtime
                     extra_route_handlers=[admin_router])
    main(host, port, flows_dir, workers)             # `orchestrator serve`

Each channel adapter declares the webhook routes it serves (`routes`: method, path); a
webhook is: read the raw body once -> rebuild the URL the provider signed from
ORCHESTRATOR_PUBLIC_URL -> `adapter.verify` (403) -> `adapter.parse` (400) ->
`runtime.handle` per item -> `adapter.render`. StoreUnavailable / LockTimeout answer 503
with Retry-After; anything unexpected answers the adapter's polite fallback, never 500.
Route handlers stay thin: the pipeline is `WebhookGateway`, which knows no framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote

from litestar import Litestar, Request, Response, asgi, get
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.exceptions.responses import create_exception_response
from litestar.handlers import BaseRouteHandler
from litestar.types import ControllerRouterHandler, Receive, Scope, Send

from orchestrator import metrics
from orchestrator.errors import (
    BadRequest,
    ConfigError,
    LockTimeout,
    SignatureError,
    StoreUnavailable,
    StoreWriteRefused,
)
from orchestrator.languages.messages import catalogue
from orchestrator.logs import configure_logging, ensure_logging, register_secrets
from orchestrator.model import Outbound
from orchestrator.plugins.base import load as load_plugins
from orchestrator.plugins.channels import (
    ENTRY_POINT_GROUP,
    ChannelAdapter,
    ChannelRegistry,
    InboundRequest,
    Rendered,
    ReplyContext,
)
from orchestrator.plugins.connectors import ConnectorRegistry, default_connectors
from orchestrator.settings import AppSettings

log = logging.getLogger("orchestrator.web.app")
MAX_BODY_BYTES = 1024 * 1024
RETRY_AFTER_SECONDS = 2
SORRY = catalogue()["sorry_unavailable"]  # English; a contact hears their language's (`fallback`)
GC_GEN0_THRESHOLD = 10_000  # CPython's default is 700
_FORM = "application/x-www-form-urlencoded"


def parse_form(text: str, max_num_fields: int = 1000) -> list[tuple[str, str]]:
    """`urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=...)`, same pairs
    (proved in tests/runtime/test_hot_path_guard.py), ~3x faster: a Twilio form's names and most values
    need no unquoting, so `unquote` runs only on the parts holding '%'."""
    if text.count("&") >= max_num_fields:
        raise ValueError("Max number of fields exceeded")
    pairs: list[tuple[str, str]] = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = unquote(name)
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = unquote(value)
        pairs.append((name, value))
    return pairs


# ---- assembling channels and connectors --------------------------------------------------------


def build_channels(settings: AppSettings) -> ChannelRegistry:
    """Adapters from the `orchestrator.channels` entry points, each built with
    `from_settings(config)` from its own settings (`settings.plugin_environ()`).

    An adapter that is not configured (none of its settings set) is left out; a configured one
    with a missing secret raises ConfigError naming it, as do two plugins with one name (the
    server refuses to start). A plug-in that fails to import is logged and skipped."""
    registry = ChannelRegistry()
    for built in load_plugins(ENTRY_POINT_GROUP, settings.plugin_environ()):
        if built.configured:
            registry.register(built.instance, built.installed.name)
    return registry


def check_signed_urls(settings: AppSettings, channels: ChannelRegistry) -> None:
    """ConfigError when a configured channel's signature covers the URL it was sent to (Twilio:
    `signs_url`) and nothing says which URL that is. Rebuilt from the request's own Host and
    X-Forwarded-Proto, a request signed for another deployment (same auth token) would verify."""
    if settings.public_url or settings.trust_proxy_headers:
        return
    signed = [name for name in channels.names() if getattr(channels.get(name), "signs_url", False)]
    if signed:
        raise ConfigError(
            f"ORCHESTRATOR_PUBLIC_URL is not set, and the {', '.join(signed)} webhooks are signed over the URL "
            "the provider called: set ORCHESTRATOR_PUBLIC_URL to that URL (e.g. https://bot.example.com), or "
            "set ORCHESTRATOR_TRUST_PROXY_HEADERS=1 to rebuild it from each request's Host and "
            "X-Forwarded-Proto/-Host (only behind a proxy that overwrites those headers)"
        )


def build_connectors(settings: AppSettings) -> ConnectorRegistry:
    return default_connectors(settings.plugin_environ() if settings.environ else None)


# ---- the webhook pipeline (no framework in here) -------------------------------------------------


class WebhookGateway:
    def __init__(self, channels: ChannelRegistry, public_url: str | None) -> None:
        self.channels = channels
        self.public_url = (public_url or "").rstrip("/")
        self.runtime: Any = None  # set by the lifespan (or given)

    def public(self, path: str, query_string: str, seen_url: str) -> str:
        """The URL the provider signed: the configured public base + path + query (correct
        behind a TLS-terminating proxy); without a configured base, the URL as seen."""
        if not self.public_url:
            return seen_url
        return self.public_url + path + (f"?{query_string}" if query_string else "")

    async def dispatch(
        self, name: str, method: str, path: str, query_string: str, seen_url: str,
        headers: Mapping[str, str], body: bytes,
    ) -> Rendered:
        adapter = self.channels.get(name)
        try:
            request = self._request(method, path, query_string, seen_url, headers, body)
            if method == "GET":
                return adapter.handshake(request)
            adapter.verify(request)
            items = adapter.parse(request)
            return await self._answer(name, adapter, items)
        except SignatureError as exc:
            metrics.REJECTIONS.labels(name, "signature").inc()
            log.warning("webhook refused (403): %s", exc, extra={"channel": name})
            return Rendered(body=b"forbidden", status_code=403)
        except BadRequest as exc:
            metrics.REJECTIONS.labels(name, "malformed").inc()
            log.warning("webhook malformed (400): %s", exc, extra={"channel": name})
            return Rendered(body=b"bad request", status_code=400)
        except (StoreUnavailable, LockTimeout) as exc:
            metrics.REJECTIONS.labels(name, "unavailable").inc()
            log.warning("webhook deferred (503): %s: %s", type(exc).__name__, exc, extra={"channel": name})
            return Rendered(body=b"busy, retry", status_code=503)
        except Exception:
            log.exception("webhook failed; answered politely instead of 500", extra={"channel": name})
            return self.fallback(adapter)

    def _request(
        self, method: str, path: str, query_string: str, seen_url: str, headers: Mapping[str, str], body: bytes
    ) -> InboundRequest:
        form = None
        if headers.get("content-type", "").split(";", 1)[0].strip().lower() == _FORM:
            try:
                form = parse_form(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise BadRequest(f"{path}: form body unreadable ({type(exc).__name__})") from None
        try:
            query = dict(parse_qsl(query_string, keep_blank_values=True, max_num_fields=100)) if query_string else {}
        except ValueError as exc:
            raise BadRequest(f"{path}: query string unreadable ({exc})") from None
        return InboundRequest(
            method=method, url=self.public(path, query_string, seen_url), path=path,
            headers=headers, query=query, body=body, form=form,
        )

    async def _answer(self, name: str, adapter: ChannelAdapter, items: list[Any]) -> Rendered:
        messages: list[Outbound] = []
        ctx = ReplyContext(public_url=self.public_url)
        failed = False
        for item in items:  # in order: a batch may hold several messages of one contact
            try:
                reply = await self.runtime.handle(name, item)
            except (StoreUnavailable, LockTimeout):
                raise  # 503: the provider retries the whole delivery; done items dedupe
            except Exception:
                metrics.labelled(metrics.WEBHOOK_ITEMS_MALFORMED, name, "failed").inc()
                log.exception("webhook item failed; the rest of the batch goes on", extra={"channel": name})
                failed = True
                continue
            messages.extend(reply.messages)
            if reply.session_id is not None:
                ctx = reply.context
        if failed and not messages:
            return self.fallback(adapter, await self._apology_language(items))
        return adapter.render(messages, ctx)

    async def _apology_language(self, items: list[Any]) -> str | None:
        """The language of the failed items' contact, as far as the routed flow tells without the
        store (which may be what failed): their number's country's, else the flow's default."""
        with contextlib.suppress(Exception):
            item = items[0]
            runtime = self.runtime
            compiled = await runtime.catalog.latest(runtime.catalog.route(item.route_key or item.address.business))
            return str(compiled.variant(compiled.language_of(item.address.contact)).settings.language)
        return None

    def fallback(self, adapter: ChannelAdapter, language: str | None = None) -> Rendered:
        try:
            words = catalogue(language)
            sorry = [Outbound(kind="say", text=words["sorry_unavailable"], language=language,
                              voice=words.voice_for(language) if language and words.language != "en" else None),
                     Outbound(kind="end")]
            return adapter.render(sorry, ReplyContext(public_url=self.public_url))
        except Exception:
            log.exception("fallback render failed")
            return Rendered(body=b"", status_code=200)


# ---- litestar --------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """The cyclic garbage collector, tuned for serving (measured on the turn path):

    - `gc.freeze()` once started: every object alive then (imports, compiled flows, the
      runtime: ~85,000) leaves the collector's sight for good, so a full collection no longer
      walks them all (a 35-40 ms pause every ~3,500 turns: a p99 of its own).
    - a generation-0 threshold of 10,000 instead of 700: with tens of turns in flight the
      count of live containers passes 700 several times a second, and each collection walked
      objects that were all still in use (~10 us a turn). Garbage cycles are rare on this path;
      they are still collected, a little later.

    Undone on exit, so a process that builds many apps (tests) keeps nothing frozen."""
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def _webhook_routes(gateway: WebhookGateway) -> list[BaseRouteHandler]:
    by_path: dict[str, dict[str, str]] = {}
    for name in gateway.channels.names():
        adapter = gateway.channels.get(name)
        declared = getattr(adapter, "routes", None) or (("POST", f"/webhooks/{name}"),)
        for method, path in declared:
            owner = by_path.setdefault(path, {}).setdefault(method.upper(), name)
            if owner != name:
                raise ConfigError(f"channels {owner!r} and {name!r} both claim {method} {path}; rename one route")
    handlers: list[BaseRouteHandler] = []
    for path, methods in sorted(by_path.items()):
        handlers.append(_webhook_handler(gateway, path, methods))
    return handlers


def _webhook_handler(gateway: WebhookGateway, path: str, methods: dict[str, str]) -> BaseRouteHandler:
    """A raw ASGI handler: the body read once, no Request object, no DI, no response model
    (litestar's per-request machinery cost more than a whole turn should)."""

    async def webhook(scope: Scope, receive: Receive, send: Send) -> None:
        http: Any = scope
        method = http["method"].upper()
        if method not in methods:
            await _respond(send, 405, b"method not allowed", "text/plain", {"allow": ", ".join(sorted(methods))})
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in http["headers"]}
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            await _respond(send, 413, b"payload too large", "text/plain")
            return
        body = await _read_body(receive)
        if body is None:
            await _respond(send, 413, b"payload too large", "text/plain")
            return
        query = http.get("query_string", b"").decode("latin-1")
        seen = "" if gateway.public_url else _seen_url(http, headers, query)  # only signed when no public URL is set
        rendered = await gateway.dispatch(methods[method], method, http["path"], query, seen, headers, body)
        extra = {"retry-after": str(RETRY_AFTER_SECONDS)} if rendered.status_code == 503 else None
        await _respond(send, rendered.status_code, rendered.body, rendered.media_type, extra)

    return asgi(path, name=f"webhook:{path}", include_in_schema=False, copy_scope=False)(webhook)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when it is larger than MAX_BODY_BYTES."""
    message: Any = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body if len(body) <= MAX_BODY_BYTES else None
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _seen_url(scope: Any, headers: Mapping[str, str], query: str) -> str:
    """The URL as the client says it called it (ORCHESTRATOR_TRUST_PROXY_HEADERS=1 only): the
    proxy's X-Forwarded-Proto / X-Forwarded-Host (their first value), else Host and the scheme."""
    host = _first(headers.get("x-forwarded-host")) or headers.get("host") \
        or "{}:{}".format(*(scope.get("server") or ("localhost", 80)))
    scheme = _first(headers.get("x-forwarded-proto")) or scope.get("scheme", "http")
    url = f"{scheme}://{host}{scope['path']}"
    return f"{url}?{query}" if query else url


def _first(value: str | None) -> str:
    return value.split(",", 1)[0].strip() if value else ''


@functools.lru_cache(maxsize=64)
def _content_type(media_type: str) -> bytes:
    """The Content-Type header value: text types get `; charset=utf-8` unless they name one."""
    if "charset" in media_type or not media_type.startswith("text/"):
        return media_type.encode("latin-1")
    return f"{media_type}; charset=utf-8".encode("latin-1")


async def _respond(send: Send, status: int, body: bytes, media_type: str,
                   extra: Mapping[str, str] | None = None) -> None:
    headers = [(b"content-type", _content_type(media_type)), (b"content-length", b"%d" % len(body))]
    if extra:
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _last_resort(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """HTTP errors keep their status; anything else on a webhook is a logged 200, never a 500."""
    if isinstance(exc, HTTPException):
        return create_exception_response(request, exc)
    log.error("unhandled %s on %s", type(exc).__name__, request.url.path, exc_info=exc)
    if request.url.path.startswith("/webhooks/"):
        return Response(b"", status_code=200, media_type="text/plain")
    return Response({"error": "temporarily unavailable"}, status_code=503,
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def create_app(
    settings: AppSettings | None = None,
    runtime: Any = None,
    *,
    extra_route_handlers: Sequence[ControllerRouterHandler] = (),
    start_background: bool = True,
    include_admin: bool = True,
    clock: Callable[[], float] | None = None,
) -> Litestar:
    """The app. Without `runtime`, one is created at start-up from `settings` (read from
    the environment when None) and closed at shutdown. Raises ConfigError when a configured
    channel lacks a secret. `extra_route_handlers` (e.g. the admin API Router) get the
    `runtime` and `settings` dependencies. `clock` (epoch seconds) is the runtime's own clock
    when it creates one: tests run a conversation days ahead with it."""
    settings = settings or AppSettings.from_env()
    ensure_logging(redact=settings.redact_logs)  # uvicorn workers build the app here: redact there too
    register_secrets(settings.secrets())
    channels = runtime.channels if runtime is not None else build_channels(settings)
    check_signed_urls(settings, channels)
    gateway = WebhookGateway(channels, settings.public_url)
    gateway.runtime = runtime

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned = gateway.runtime is None
        if owned:
            from orchestrator.runtime.pipeline import Runtime

            gateway.runtime = await Runtime.create(settings, build_connectors(settings), channels,
                                                   clock=clock or time.time)
        app.state.runtime = gateway.runtime
        task = asyncio.create_task(gateway.runtime.run_background()) if start_background else None
        from orchestrator.web.operations import background_jobs  # flows reload + retention (admin/operations part)

        jobs = [asyncio.create_task(job) for job in background_jobs(gateway.runtime, settings)] \
            if start_background else []
        try:
            with quiet_gc():
                yield
        finally:
            for job_task in jobs:
                job_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job_task
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if owned:
                await gateway.runtime.close()

    @get("/health", include_in_schema=False)
    async def health() -> Response[dict[str, Any]]:
        rt = gateway.runtime
        report: dict[str, Any] = {"status": "ok", "channels": channels.names()}
        try:
            await rt.store.ping()
            await rt.store.check_writes()  # a full or read-only Redis answers PING
            report["store"] = "ok"
        except StoreWriteRefused as exc:
            report.update(status="unavailable", store=type(exc).__name__, reason=exc.reason)
        except Exception as exc:
            report.update(status="unavailable", store=type(exc).__name__)
        flows = rt.catalog.flow_ids() if rt is not None else []
        report["flows"] = flows
        if not flows:
            report["status"] = "unavailable"
        return Response(report, status_code=200 if report["status"] == "ok" else 503)

    @get("/metrics", include_in_schema=False)
    async def metrics_route() -> Response[bytes]:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    def provide_runtime() -> Any:
        return gateway.runtime

    def provide_settings() -> AppSettings:
        return settings

    from orchestrator.web.operations import admin_handlers, openapi_config, template_config

    return Litestar(
        route_handlers=[health, metrics_route, *_webhook_routes(gateway), *extra_route_handlers,
                        *(admin_handlers(settings) if include_admin else [])],
        openapi_config=openapi_config(),
        template_config=template_config(),
        lifespan=[lifespan],
        dependencies={"runtime": Provide(provide_runtime, sync_to_thread=False),
                      "settings": Provide(provide_settings, sync_to_thread=False)},
        request_max_body_size=MAX_BODY_BYTES,
        exception_handlers={Exception: _last_resort},
        logging_config=None,  # ours (ensure_logging), never litestar's unredacted default
    )


def main(host: str = "127.0.0.1", port: int = 8000, flows_dir: str | None = None, workers: int = 1) -> int:
    """`orchestrator serve`: uvicorn, one process or `workers` (an import-string factory)."""
    import uvicorn

    if flows_dir:
        os.environ["ORCHESTRATOR_FLOWS_DIR"] = flows_dir
    try:
        settings = AppSettings.from_env()
        configure_logging(json=True, redact=settings.redact_logs)
        register_secrets(settings.secrets())
        check_signed_urls(settings, build_channels(settings))  # fail fast, before forking workers
        if workers > 1 and not settings.redis_url:
            # The in-memory store lives in one process: each worker would hold its own
            # conversations (double greetings, answers landing on a worker that never asked).
            raise ConfigError(
                f"--workers {workers} needs a shared session store: set ORCHESTRATOR_REDIS_URL "
                "(e.g. redis://127.0.0.1:6379/0), or run one worker (--workers 1) with the in-memory store"
            )
    except ConfigError as exc:
        sys.stderr.write(f"orchestrator serve: {exc}\n")
        return 2
    if workers > 1:
        # Each worker keeps its own metrics: without a shared directory /metrics would show
        # whichever worker answered. Give them one unless the operator chose a directory.
        own_dir = None
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            own_dir = tempfile.mkdtemp(prefix="orchestrator-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
        try:
            uvicorn.run("orchestrator.web.app:create_app", factory=True, host=host, port=port, workers=workers,
                        log_config=None, access_log=False)
        finally:
            if own_dir:
                shutil.rmtree(own_dir, ignore_errors=True)
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)
    return 0
