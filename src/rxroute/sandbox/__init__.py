"""A simulator of the e-prescription platform, "the other side of the wire".

It imports nothing from rxroute outside this package, so it can catch drift between the
client and the contract instead of sharing the client's assumptions.
"""

from .app import SandboxApp, create_app
from .config import Faults, SandboxConfig, Timings, load_config
from .server import SandboxServer
from .signing import sign, verify

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
