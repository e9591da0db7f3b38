"""`lec connectors http-serve`: the HTTP ingest API under uvicorn, in the foreground."""

from __future__ import annotations

import logging
from typing import Any

from lec.config import Settings
from lec.io import configure_logging

log = logging.getLogger("lec.connectors.http")


def build_app(settings: Settings, bootstrap: str) -> tuple[Any, Any]:
    """The FastAPI app and a function that stops its background parts."""
    from connectors.http.app import KafkaSender, create_app
    from connectors.http.batches import BatchStore, FeedbackWatcher
    from connectors.http.tokens import TokenVerifier, jwks
    from lec import topics
    from lec.kafka import ensure_topics

    ensure_topics(bootstrap, (topics.RAW, topics.FEEDBACK))
    store = BatchStore()
    watcher = FeedbackWatcher(bootstrap, store)
    watcher.start()
    sender = KafkaSender(bootstrap)
    from lec.registry.view import RegistryView

    holder = RegistryView(settings, bootstrap=bootstrap).start()   # follows lec.registry: changes in 1-2 s
    embedded = not settings.jwks_url
    app = create_app(sender=sender, snapshot=holder, verifier=TokenVerifier(settings), store=store,
                     max_body_bytes=settings.http_max_body_bytes, max_payload_bytes=settings.max_payload_bytes,
                     jwks=(lambda: jwks(settings)) if embedded else None, remote_jwks=not embedded)
    def close() -> None:
        holder.stop()
        watcher.stop()
        sender.close()

    return app, close


def run_server(host: str = "127.0.0.1") -> None:
    import uvicorn

    from connectors.mqtt.bridge import resolve_bootstrap
    from lec.config import settings as current
    from lec.errors import ConfigError

    s = current()
    configure_logging("http", level=s.log_level)
    if not s.http_port:
        raise ConfigError("set LEC_HTTP_PORT: the port the HTTP ingest API listens on")
    app, close = build_app(s, resolve_bootstrap(s))
    try:  # uvicorn stops cleanly on SIGTERM/SIGINT
        uvicorn.run(app, host=host, port=s.http_port, log_level=s.log_level.lower(), access_log=False)
    finally:
        close()
