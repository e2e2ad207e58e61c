"""The Redis store's Lua scripts, kept as package data in `lua/` (one script per file, its KEYS and
ARGV named at its top). A `lib_*.lua` file holds a function other scripts include: `lua()` puts it
before the script's own text."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def lua(name: str, *libs: str) -> str:
    """The text of `lua/<name>`, after the `lua/<lib>` functions it calls."""
    folder = resources.files("orchestrator.stores").joinpath("lua")
    return "".join(folder.joinpath(part).read_text(encoding="utf-8") for part in (*libs, name))
