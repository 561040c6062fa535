"""The long-lived channel clients of a process, built on first use and closed with it."""

from __future__ import annotations

from rxroute.channels.erx.base import ErxChannel
from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.runtime import Runtime

ERX = "erx"


def erx_channel(runtime: Runtime) -> ErxChannel:
    """The Region B platform client; tests may put their own under ``services['erx']``."""
    client = runtime.services.get(ERX)
    if client is None:
        client = SignatureRxClient(runtime.settings)
        runtime.services[ERX] = client
    channel: ErxChannel = client
    return channel
