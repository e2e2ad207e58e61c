"""The `orchestrator` command: validate | chat | test | graph | schema | plugins | serve (docs/SPEC.md §4)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any


def _lazy(module: str, function: str, what: str) -> Callable[..., Any] | None:
    """A command implemented in another module, imported only when that command runs."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name not in (module, *_parents(module)):
            raise
        sys.stderr.write(f"orchestrator {what}: {module} is not available in this installation\n")
        return None
    fn = getattr(mod, function, None)
    if fn is None:
        sys.stderr.write(f"orchestrator {what}: {module} has no {function}()\n")
    return fn


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator", description="Omnichannel conversation flows: voice, SMS and WhatsApp."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check flow files (errors as file:line:col: message)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--strict", action="store_true", help="warnings fail too (exit 1), for CI")

    p = sub.add_parser("chat", help="talk to a flow in the terminal (stdin lines in, bot lines out)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--channel", choices=("sms", "voice", "whatsapp"), default="sms")
    p.add_argument("--contact", default="+15555550123", help="the contact's phone number (E.164)")
    p.add_argument("--now", default=None, help="start the clock here (ISO date-time)")

    p = sub.add_parser("test", help="run conversation tests (YAML scripts of turns and expectations)")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = sub.add_parser("graph", help="draw a flow")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", choices=("mermaid", "dot", "html"), default="mermaid")

    sub.add_parser("schema", help="print the JSON Schema of the flow language")

    p = sub.add_parser("plugins", help="list installed channels and connectors, their settings, whether configured")
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")

    p = sub.add_parser("serve", help="run the webhook + admin server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--flows", default=None, help="flows directory (default: $ORCHESTRATOR_FLOWS_DIR or flows/)")
    p.add_argument("--workers", type=int, default=1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except BrokenPipeError:  # `orchestrator ... | head -3`: the reader has all it wanted
        _silence_stdout()
        return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout (embedded, captured): nothing left to flush into
        pass


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command
    if command == "chat":
        from orchestrator.cli.chat import main_chat

        return main_chat(args.file, channel=args.channel, contact=args.contact, now=args.now)
    if command == "validate":
        from orchestrator.businesses.validate import is_businesses_path, main_validate_businesses

        folders = [f for f in args.files if is_businesses_path(f)]  # docs/SPEC.md §10: a businesses directory
        flows = [f for f in args.files if f not in folders]
        status = main_validate_businesses(folders, strict=args.strict) if folders else 0
        if not flows:
            return status
        fn = _lazy("orchestrator.flow.validate", "main_validate", command)
        return max(status, int(fn(flows, strict=args.strict))) if fn else 2
    if command == "graph":
        fn = _lazy("orchestrator.flow.graph", "main_graph", command)
        return int(fn(args.file, args.format)) if fn else 2
    if command == "schema":
        fn = _lazy("orchestrator.flow.jsonschema", "main_schema", command)
        return int(fn()) if fn else 2
    if command == "plugins":
        fn = _lazy("orchestrator.plugins.listing", "main_plugins", command)
        return int(fn(as_json=args.json)) if fn else 2
    if command == "test":
        fn = _lazy("orchestrator.cli.flowtest", "main", command)
        return int(fn(args.files)) if fn else 2
    fn = _lazy("orchestrator.web.app", "main", command)
    if fn is None:
        return 2
    result = fn(args.host, args.port, args.flows, args.workers)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
