"""Start-up pays dateparser's cost in a worker thread, once per flow language (#14)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.engine import timeparse
from orchestrator.plugins.channels import ChannelRegistry
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.stores.memory import MemoryStore

FLOW = """\
flow: {id}
start: ask_when
settings: {{language: {language}}}
states:
  ask_when:
    ask: "When?"
    input: datetime
    save: when
    next: done
  done:
    say: "Thanks"
    end: finished
"""


async def test_runtime_creation_warms_the_date_parser_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.yaml").write_text(FLOW.format(id="a", language="en-GB"))
    (tmp_path / "b.yaml").write_text(FLOW.format(id="b", language="en-US"))
    calls: list[tuple[str, bool]] = []
    real = timeparse.warm_up

    def record(language: str = "en") -> None:
        calls.append((language, threading.current_thread() is threading.main_thread()))
        real(language)

    monkeypatch.setattr(timeparse, "warm_up", record)
    runtime = await Runtime.create(AppSettings(flows_dir=str(tmp_path)), ConnectorRegistry(), ChannelRegistry(),
                                   store=MemoryStore())
    await runtime.close()
    assert sorted(language for language, _ in calls) == ["en-GB", "en-US"]
    assert not any(on_main for _, on_main in calls)  # never on the event loop's thread
