"""Baseline apps measured beside the product on the same server settings.

    uvicorn benchmarks.baselines:create_app --factory      # BASELINE_REDIS_URL=redis://...

- `POST /bare`: litestar returning fixed TwiML (the framework's floor).
- `POST /skeleton`: what any turn must do at least: litestar's form parse, a Redis lock,
  GET + SET of 1 KB, one `transitions` trigger, unlock (PERFORMANCE.md's last row).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from litestar import Litestar, Request, Response, post
from transitions import Machine

TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response><Message>Hello</Message></Response>'
PAYLOAD = b"x" * 1024


class _Light:
    state = "a"


def create_app() -> Litestar:
    url = os.environ.get("BASELINE_REDIS_URL", "redis://127.0.0.1:6379/0")
    state: dict[str, Any] = {}
    machine = Machine(model=None, states=["a", "b"], initial="a", auto_transitions=False,
                      transitions=[{"trigger": "go", "source": "a", "dest": "b"},
                                   {"trigger": "go", "source": "b", "dest": "a"}])

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        state["r"] = aioredis.Redis.from_url(url, max_connections=256)
        yield
        await state["r"].aclose()

    @post("/bare", status_code=200)
    async def bare() -> Response[bytes]:
        return Response(TWIML, media_type="text/xml")

    @post("/skeleton", status_code=200)
    async def skeleton(request: Request[Any, Any, Any]) -> Response[bytes]:
        form = await request.form()
        r: aioredis.Redis = state["r"]
        key = f"skel:{{{form.get('From')}{form.get('MessageSid')}}}"
        token = secrets.token_hex(8)
        await r.set(key + ":l", token, nx=True, px=10_000)
        await r.get(key + ":s")
        await r.set(key + ":s", PAYLOAD, ex=60)
        obj = _Light()
        machine.events["go"].trigger(obj)
        await r.delete(key + ":l")
        return Response(TWIML, media_type="text/xml")

    return Litestar(route_handlers=[bare, skeleton], lifespan=[lifespan], logging_config=None)
