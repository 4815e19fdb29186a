"""What the engine's TCP listeners (FastAGI, AudioSocket) share."""

from __future__ import annotations

import asyncio


def bound_port(server: asyncio.Server | None, configured: int) -> int:
    """The port ``server`` listens on (the one the OS chose for port 0), or the configured
    one while it is not listening."""
    if server is not None and server.sockets:
        return int(server.sockets[0].getsockname()[1])
    return configured
