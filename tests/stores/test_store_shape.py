"""The store package's shape: the contract imports none of its backends, each backend is every small
store and brings its own side store, the Lua scripts are package data naming their KEYS and ARGV,
one lock wait serves both backends, and no production module carries a test fault hook."""

from __future__ import annotations

import ast
import re
import time
from importlib import resources
from pathlib import Path

import pytest

from orchestrator.errors import LockTimeout
from orchestrator.stores import base, redis
from orchestrator.stores.base import (
    ContactStore,
    HealthStore,
    OutboxStore,
    RecordStore,
    RevisionStore,
    SessionStore,
    SideStore,
    StatusStore,
    TimerStore,
    TurnStore,
    wait_for_lock,
)
from orchestrator.stores.side import MemorySide, RedisSide

ROOT = Path(__file__).resolve().parents[2]
SMALL_STORES = (TurnStore, TimerStore, OutboxStore, StatusStore, ContactStore, RecordStore, RevisionStore,
                HealthStore)


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_store_module_imports_one_that_imports_it_back() -> None:
    stores = ROOT / "orchestrator" / "stores"
    graph = {p.stem: {m.rpartition(".")[2] for m in imported(p) if m.startswith("orchestrator.stores.")}
             for p in stores.glob("*.py") if p.stem != "__init__"}
    assert graph["base"] == set()  # the contract imports none of its backends (open_store: factory.py)
    for module in graph:  # no module reaches itself through what it imports
        seen, todo = set(), list(graph[module])
        while todo:
            target = todo.pop()
            assert target != module, f"{module} imports a module that imports it back"
            if target not in seen:
                seen.add(target)
                todo += graph.get(target, set())
    side = (stores / "side.py").read_text()
    assert "getattr(store" not in side  # a backend hands over its own side store: `store.side`


async def test_each_backend_is_every_small_store_with_its_own_side(store: SessionStore) -> None:
    assert isinstance(store, SessionStore)
    for small in SMALL_STORES:
        assert isinstance(store, small), small.__name__
    assert isinstance(store.side, (MemorySide, RedisSide)) and isinstance(store.side, SideStore)
    kind = RedisSide if hasattr(store, "lean") else MemorySide
    assert type(store.side) is kind and store.side is store.side


async def test_one_lock_wait_polls_until_a_result_or_times_out() -> None:
    tries: list[float] = []

    async def held_twice() -> str | None:
        tries.append(time.monotonic())
        return "taken" if len(tries) == 3 else None

    assert await wait_for_lock(held_twice, "sid", 1.0, poll_seconds=(0.001, 0.002)) == "taken"
    assert len(tries) == 3

    async def never() -> str | None:
        return None

    started = time.monotonic()
    with pytest.raises(LockTimeout, match="ORCHESTRATOR_LOCK_WAIT_SECONDS"):
        await wait_for_lock(never, "sid", 0.05)
    assert 0.05 <= time.monotonic() - started < 1.0


def test_scripts_are_package_data_and_name_their_keys_and_argv() -> None:
    folder = resources.files("orchestrator.stores").joinpath("lua")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".lua"))
    assert "begin.lua" in names and "commit.lua" in names
    texts = {k: v for k, v in vars(redis).items() if k.endswith("_LUA") and isinstance(v, str)}
    for name in names:
        text = folder.joinpath(name).read_text()
        assert text.lstrip().startswith(("--", "#!lua")), f"{name}: starts with what it does"
        if name.startswith("lib_"):
            continue
        assert any(text in script for script in texts.values()) or name == "put.lua", f"{name} is not used"
        body = [line for line in text.splitlines() if line and not line.startswith(("--", "#!"))]
        used = set(re.findall(r"\b(KEYS|ARGV)\[\d+\]", "\n".join(body)))
        if used:  # the first lines bind them to names: `local lock, session = KEYS[1], KEYS[2]`
            assert body[0].startswith("local ") and re.search(r"(KEYS|ARGV)\[1\]", body[0]), name
    assert 'package-data' in (ROOT / "pyproject.toml").read_text() and "stores/lua/*.lua" in (
        ROOT / "pyproject.toml").read_text()


def test_no_production_module_carries_a_test_fault_hook() -> None:
    for path in sorted((ROOT / "orchestrator").rglob("*.py")) + sorted((ROOT / "channels").rglob("*.py")):
        text = path.read_text()
        assert "ORCHESTRATOR_FAULT" not in text and "os._exit" not in text, path.relative_to(ROOT)


def test_the_base_module_keeps_the_ttls_both_backends_use() -> None:
    from orchestrator.stores import memory

    for name in ("OPT_OUT_TTL_SECONDS", "REVISION_TTL_SECONDS", "STATUS_TTL_SECONDS"):
        assert getattr(memory, name) is getattr(base, name) and getattr(redis, name) is getattr(base, name)
