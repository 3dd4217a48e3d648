"""The uvicorn server the service runs in. X-Forwarded-For names the client only when the peer is
a proxy listed in BITZERO_TRUSTED_PROXIES: uvicorn's default believes it from loopback, where any
local client could then rotate it to dodge the limit on invalid keys."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from bitzero.service.settings import Settings


def uvicorn_server(app: FastAPI, settings: Settings, port: int | None = None, log_level: str = "info") -> uvicorn.Server:
    """``app`` served at the settings' address (``port`` instead of theirs when given). No access
    log: it would print query strings, and a memory search is the user's words (the app logs
    method, route template, status and latency instead)."""
    proxies = settings.trusted_proxy_addresses
    config = uvicorn.Config(app, host=settings.host, port=settings.port if port is None else port,
                            log_level=log_level, access_log=False, proxy_headers=bool(proxies),
                            forwarded_allow_ips=list(proxies) or None)
    return uvicorn.Server(config)
