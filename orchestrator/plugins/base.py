"""What every plugin shares, channel or connector: typed settings read from the environment,
one registry, and discovery through entry points.

A plugin is a class with a `name`, a `settings_type` (a `PluginSettings` Struct) read under
its `env_prefix`, and `from_settings(config)` building it from those settings:

    class PricingSettings(PluginSettings):
        url: str = "https://prices.example.com"     # PRICING_URL
        token: Secret | None = None                 # PRICING_TOKEN: redacted from logs, never shown
        timeout_seconds: float = 5.0                # PRICING_TIMEOUT_SECONDS

    class Pricing(Connector):
        name = "pricing"
        settings_type = PricingSettings
        env_prefix = "PRICING_"

        @classmethod
        def from_settings(cls, config: PricingSettings) -> Pricing: ...

A field's environment name is `env_prefix + FIELD_NAME`, or the `env(...)` it is annotated with
(`public_url: Annotated[str | None, env("ORCHESTRATOR_PUBLIC_URL")] = None`). Every installed
plugin of a kind is found by its entry point (`orchestrator.channels`, `orchestrator.connectors`);
two with one name refuse to start until ORCHESTRATOR_PLUGINS_PREFER names the winner.
"""

from __future__ import annotations

import logging
import os
import re
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import msgspec

from orchestrator.errors import ConfigError, RegistryError
from orchestrator.logs import register_secrets

log = logging.getLogger("orchestrator.plugins")

PREFER_ENV = "ORCHESTRATOR_PLUGINS_PREFER"
_SECRET = "secret"
_ENV = "env"

# A secret setting: redacted from every log line once read, shown as set/unset, never its value.
Secret = Annotated[str, msgspec.Meta(extra={_SECRET: True})]


def env(name: str, *, secret: bool = False) -> msgspec.Meta:
    """Read a field from this exact environment name instead of `env_prefix + FIELD`."""
    return msgspec.Meta(extra={_ENV: name, _SECRET: secret})


class PluginSettings(msgspec.Struct, kw_only=True):
    """Base of a plugin's typed settings: one field per setting, a default for each optional one.
    Values are converted from the environment's strings (`"5"` -> 5.0, `"true"` -> True)."""

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if f.secret else repr(getattr(self, f.name))}"
            for f in describe_fields(type(self), "") if getattr(self, f.name) is not None
        )
        return f"{type(self).__name__}({shown})"

    __str__ = __repr__


class NoSettings(PluginSettings):
    """The settings of a plugin that needs none."""


@dataclass(frozen=True)
class SettingField:
    name: str  # the Struct field
    env: str  # its environment name
    secret: bool
    required: bool  # no default: the plugin cannot be built without it


def describe_fields(settings_type: type[PluginSettings], prefix: str) -> list[SettingField]:
    """Every field of `settings_type` with its environment name and whether it is a secret."""
    hints = typing.get_type_hints(settings_type, include_extras=True)
    info = msgspec.structs.fields(settings_type)
    out: list[SettingField] = []
    for field in info:
        extra: dict[str, Any] = {}
        for meta in _metas(hints.get(field.name)):
            extra.update(meta.extra or {})
        out.append(SettingField(
            name=field.name, env=str(extra.get(_ENV) or prefix + field.name.upper()),
            secret=bool(extra.get(_SECRET)), required=field.required,
        ))
    return out


def _metas(hint: Any) -> Iterator[msgspec.Meta]:
    """msgspec.Meta annotations anywhere in a hint (`Secret | None` nests one in a Union)."""
    if hint is None:
        return
    if typing.get_origin(hint) is Annotated:
        for item in hint.__metadata__:
            if isinstance(item, msgspec.Meta):
                yield item
        yield from _metas(typing.get_args(hint)[0])
        return
    for arg in typing.get_args(hint):
        yield from _metas(arg)


_AT = re.compile(r"`\$\.(\w+)`")


def read_settings(settings_type: type[PluginSettings], prefix: str, environ: Mapping[str, str]) -> Any:
    """`settings_type` filled from `environ`; ConfigError names the variable that is wrong or missing.
    Secret values are registered with the log redactor as they are read."""
    fields = describe_fields(settings_type, prefix)
    values: dict[str, str] = {}
    for f in fields:
        raw = environ.get(f.env)
        if raw is not None and raw.strip():
            values[f.name] = raw.strip()
    register_secrets(values[f.name] for f in fields if f.secret and f.name in values)
    try:
        return msgspec.convert(values, settings_type, strict=False)
    except msgspec.ValidationError as exc:
        by_field = {f.name: f.env for f in fields}
        match = _AT.search(str(exc))
        name = by_field.get(match.group(1), "") if match else ""
        if not name:  # a missing required field: msgspec says "missing required field `x`"
            missing = re.search(r"field `(\w+)`", str(exc))
            name = by_field.get(missing.group(1), "") if missing else ""
        shown = f"{name}: " if name else ""
        raise ConfigError(f"{shown}{exc}; fix {name or 'the setting'} in the environment") from None


class Plugin:
    """The part of the plugin contract both kinds share (see the module docstring)."""

    name: ClassVar[str] = ""
    settings_type: ClassVar[type[PluginSettings]] = NoSettings
    env_prefix: ClassVar[str] = ""

    @classmethod
    def settings_fields(cls) -> list[SettingField]:
        return describe_fields(cls.settings_type, cls.env_prefix)

    @classmethod
    def is_configured(cls, config: Any) -> bool:
        """Whether this deployment uses the plugin; False leaves it out quietly. Default: a
        plugin without settings always is; one with settings when any of them is set (then a
        missing required one is an error, never a silent fail-open)."""
        fields = msgspec.structs.fields(cls.settings_type)
        if not fields:
            return True
        return any(getattr(config, f.name) not in (None, "", f.default) for f in fields)

    @classmethod
    def from_settings(cls, config: Any) -> Any:
        """Build the plugin from its settings; raise ConfigError naming what is missing."""
        return cls()


T = TypeVar("T")


class Registry(Generic[T]):
    """Plugins of one kind by name; `register` refuses a duplicate."""

    kind = "plugin"

    def __init__(self) -> None:
        self._items: dict[str, T] = {}

    def register(self, item: T, name: str | None = None) -> None:
        key = name or str(getattr(item, "name", ""))
        if not key:
            raise RegistryError(f"{self.kind} {item!r} has no name; give it a `name` or register it with one")
        if key in self._items:
            raise RegistryError(f"{self.kind} {key!r} is already registered; pick another name")
        self._items[key] = item

    def remove(self, name: str) -> T:
        """Take `name` out (a test replacing a plugin, an embedder dropping one); LookupError if absent."""
        item = self.get(name)
        del self._items[name]
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise self.unknown(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names()) or 'none'}") \
                from None

    def unknown(self, message: str) -> LookupError:
        return LookupError(message)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())


# ---- discovery --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    """One installed plugin: its entry point and what it loaded to (None: failed, see `error`)."""

    name: str
    group: str
    value: str  # "module:attr"
    dist: str  # the distribution that declares it ("" when unknown)
    factory: Any = None
    error: str = ""

    def settings_fields(self) -> list[SettingField]:
        fn = getattr(self.factory, "settings_fields", None)
        return list(fn()) if callable(fn) else []


def _dist(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return str(getattr(dist, "name", "") or "")


def parse_prefer(raw: str | None) -> dict[str, str]:
    """`calendar=my_pkg,crm=other_dist` -> {name: distribution or module prefix}."""
    out: dict[str, str] = {}
    for item in (raw or "").replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, who = (part.strip() for part in item.partition("="))
        if not sep or not name or not who:
            raise ConfigError(f"{PREFER_ENV}: bad entry {item!r}; write 'name=package', e.g. 'calendar=my_calendar'")
        out[name] = who
    return out


def _matches(ep: EntryPoint, who: str) -> bool:
    module = ep.value.split(":", 1)[0]
    return _dist(ep).lower().replace("_", "-") == who.lower().replace("_", "-") or \
        module == who or module.startswith(who + ".")


def discover(group: str, prefer: Mapping[str, str] | None = None) -> list[Installed]:
    """Every entry point of `group`, one per name, loaded (a broken one carries its `error`).

    Two entry points with one name are refused (ConfigError naming both) unless `prefer` maps
    the name to the distribution or module that wins: never the install order."""
    prefer = prefer or {}
    by_name: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=group):
        known = by_name.setdefault(ep.name, [])
        if not any(e.value == ep.value for e in known):  # one package seen twice on sys.path
            known.append(ep)
    found: list[Installed] = []
    for name in sorted(by_name):
        candidates = by_name[name]
        if len(candidates) > 1:
            who = prefer.get(name)
            chosen = [ep for ep in candidates if who and _matches(ep, who)]
            if len(chosen) != 1:
                listed = "; ".join(f"{ep.value} (from {_dist(ep) or 'unknown'})" for ep in candidates)
                raise ConfigError(
                    f"two {group} plugins are named {name!r}: {listed}. Uninstall one, or set "
                    f"{PREFER_ENV}={name}=<package> to say which one this deployment uses"
                )
            candidates = chosen
        ep = candidates[0]
        try:
            found.append(Installed(name, group, ep.value, _dist(ep), ep.load()))
        except Exception as exc:
            found.append(Installed(name, group, ep.value, _dist(ep), error=f"{type(exc).__name__}: {exc}"))
    return found


@dataclass(frozen=True)
class Built:
    """A discovered plugin after configuration: the instance, or why there is none."""

    installed: Installed
    config: Any = None
    instance: Any = None
    configured: bool = False


def configure(installed: Installed, environ: Mapping[str, str]) -> Built:
    """Read the plugin's settings, ask whether it is configured, build it when it is.

    ConfigError (a bad value, a half-done configuration) propagates: the server refuses to start."""
    factory = installed.factory
    if not callable(getattr(factory, "from_settings", None)):
        raise ConfigError(
            f"{installed.group} entry point {installed.name} = {installed.value!r} has no from_settings(config): "
            "point it at a class derived from orchestrator.plugins.channels.ChannelAdapter or "
            "orchestrator.plugins.connectors.Connector"
        )
    settings_type = getattr(factory, "settings_type", NoSettings)
    config = read_settings(settings_type, getattr(factory, "env_prefix", ""), environ)
    if not factory.is_configured(config):
        return Built(installed, config)
    instance = factory.from_settings(config)
    if instance is None:
        return Built(installed, config)
    return Built(installed, config, instance, True)


def load(group: str, environ: Mapping[str, str] | None = None, *, skip: frozenset[str] = frozenset()) -> list[Built]:
    """Discover and configure every plugin of `group` from `environ` (default: the process
    environment). A plugin that fails to import is logged and left out; a configuration error
    is raised."""
    source = os.environ if environ is None else environ
    out: list[Built] = []
    for installed in discover(group, parse_prefer(source.get(PREFER_ENV))):
        if installed.name in skip:
            continue
        if installed.error:
            log.warning("%s entry point %s failed to load: %s", group, installed.name, installed.error)
            continue
        built = configure(installed, source)
        if not built.configured:
            log.info("%s plugin %s not configured; left out", group, installed.name)
        out.append(built)
    return out
