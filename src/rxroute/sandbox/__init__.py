"""A simulator of the e-prescription platform, "the other side of the wire".

It imports nothing from rxroute outside this package, so it can catch drift between the
client and the contract instead of sharing the client's assumptions.

The names below are loaded on first use (PEP 562), so that ``rxroute --help``, which only
lists the ``sandbox`` command (``rxroute.sandbox.cli``), does not load the web stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import SandboxApp, create_app
    from .config import Faults, SandboxConfig, Timings, load_config
    from .server import SandboxServer
    from .signing import sign, verify

_HOMES = {
    "SandboxApp": ".app",
    "create_app": ".app",
    "Faults": ".config",
    "SandboxConfig": ".config",
    "Timings": ".config",
    "load_config": ".config",
    "SandboxServer": ".server",
    "sign": ".signing",
    "verify": ".signing",
}

__all__ = [
    "Faults",
    "SandboxApp",
    "SandboxConfig",
    "SandboxServer",
    "Timings",
    "create_app",
    "load_config",
    "sign",
    "verify",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value
