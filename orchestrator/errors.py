"""One root for every error the product raises on purpose.

A message names the place, the value found and the fix. Subclasses also inherit the
builtin they resemble so callers can catch either.
"""

from __future__ import annotations

import msgspec


class OrchestratorError(Exception):
    """Root of every error raised on purpose by the orchestrator."""


class ConfigError(OrchestratorError, ValueError):
    """A setting is missing or malformed. The message names the key."""


class Diagnostic(msgspec.Struct, frozen=True, kw_only=True):
    """One problem found in a flow file, positioned in the YAML source."""

    file: str
    line: int  # 1-based
    col: int  # 1-based
    message: str
    hint: str | None = None
    path: str = "$"  # msgspec-style path to the node, e.g. `$.states.book.on`
    # "error" refuses the flow everywhere (validate, chat, test, serve); "warning" is printed
    # and never refuses it (`validate --strict` makes warnings fail, for CI).
    severity: str = "error"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def format(self) -> str:
        label = "" if self.severity == "error" else f"{self.severity}: "
        text = f"{self.file}:{self.line}:{self.col}: {label}{self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class FlowError(OrchestratorError, ValueError):
    """A flow is malformed. Carries every diagnostic found, not only the first."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.format() for d in diagnostics))


class FlowRuntimeError(OrchestratorError, RuntimeError):
    """The engine cannot go on with a conversation (e.g. a loop of automatic states)."""


class ConnectorError(OrchestratorError):
    """A connector action failed; the engine routes the conversation to `error`."""


class NoShowRefused(OrchestratorError, ValueError):
    """A calendar refused to mark a booking that exists a no-show (it has not started yet, or it
    was cancelled): the admin API answers 409 with the text, which says why and what to do."""


class UnknownConnectorError(OrchestratorError, LookupError):
    """No connector or action by that name is registered."""


class RegistryError(OrchestratorError, ValueError):
    """A registry was asked to register a name twice."""


class StoreError(OrchestratorError):
    """Session storage failed."""


class StoreUnavailable(StoreError, ConnectionError):
    """The store cannot be reached right now; the webhook answers 503 and the provider retries."""


class StoreWriteRefused(StoreUnavailable):
    """Redis is up but refuses writes (out of memory at maxmemory, a read-only replica, a failed
    snapshot, too few replicas): nothing of the turn was written; 503, the provider retries.
    `reason` is a short code for /health: out_of_memory, read_only, disk_error, no_replicas."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class NewerFormat(StoreUnavailable):
    """A stored value was written in a format newer than this process reads (a rolling upgrade:
    a newer release runs beside this one). The value is left as it is for a newer process; a
    webhook answers 503 so the provider's retry can reach one."""


class LockTimeout(StoreError, TimeoutError):
    """Another turn of the same conversation held the lock for too long; retryable (503)."""


class StaleWrite(StoreError):
    """A turn tried to save after its lock expired and another turn took over (fencing)."""


class SignatureError(OrchestratorError, PermissionError):
    """A webhook's signature is missing or wrong (403)."""


class BadRequest(OrchestratorError, ValueError):
    """A webhook body is malformed (400)."""


class OptedOut(OrchestratorError, PermissionError):
    """The contact opted out; nothing may be sent to them."""


class SendError(OrchestratorError, ConnectionError):
    """A provider refused or could not take an outbound message. `retryable`: 5xx, 429,
    timeouts and network errors (retry with the same idempotency key); else permanent (4xx)."""

    def __init__(
        self, message: str, *, retryable: bool = False, status: int | None = None, code: str | None = None,
        accepted: list[str] | None = None, unknown: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.code = code
        # the provider ids of the parts of this send accepted before the failure: never sent again
        self.accepted = accepted or []
        # the failing part's request was written and no answer came (a timeout, a reset): the
        # provider may have taken it, so it is reconciled before it is sent again
        self.unknown = unknown
