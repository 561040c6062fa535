"""Channel names to channel implementations: the one place a channel is plugged in.

Settings validation, sending, voiding, re-routing, support, admin's pharmacy checks and
reconciliation all ask this registry; none of them names a channel. Built-in channels are
imported on first use (so settings can validate names without importing channel code); a
test or an extension adds its own with :func:`register`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rxroute.channels.base import Channel
    from rxroute.channels.erx.base import ErxChannel
    from rxroute.runtime import Runtime

ERX = "erx"
EMAIL = "email"

ChannelFactory = Callable[["Runtime"], "Channel"]

_BUILTIN: dict[str, str] = {
    EMAIL: "rxroute.channels.email.channel:build",
    ERX: "rxroute.channels.erx.channel:build",
}
_registered: dict[str, ChannelFactory] = {}


class UnknownChannel(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no channel named {name!r}; known: {', '.join(channel_names())}")
        self.name = name


def register(name: str, factory: ChannelFactory) -> None:
    """Add (or replace) a channel; ``factory(runtime)`` builds it once per runtime."""
    _registered[name] = factory


def unregister(name: str) -> None:
    _registered.pop(name, None)


def channel_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_registered))


def _factory(name: str) -> ChannelFactory:
    if name in _registered:
        return _registered[name]
    target = _BUILTIN.get(name)
    if target is None:
        raise UnknownChannel(name)
    module_name, _, attribute = target.partition(":")
    factory: ChannelFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


def get_channel(runtime: Runtime, name: str) -> Channel:
    """The runtime's channel called ``name``, built on first use and kept for the process."""
    key = f"channel:{name}"
    channel = runtime.services.get(key)
    if channel is None:
        channel = _factory(name)(runtime)
        runtime.services[key] = channel
    built: Channel = channel
    return built


def erx_channel(runtime: Runtime) -> ErxChannel:
    """The Region B platform client; tests may put their own under ``services['erx']``."""
    from rxroute.channels.erx.signaturerx import SignatureRxClient

    client = runtime.services.get(ERX)
    if client is None:
        client = SignatureRxClient(runtime.settings)
        runtime.services[ERX] = client
    channel: ErxChannel = client
    return channel
