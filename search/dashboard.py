"""``search dashboard``: optuna-dashboard on a study storage, with the trials' artifact store.

The same server the ``optuna-dashboard`` command runs (its WSGI app, threaded), bound to
127.0.0.1 unless asked otherwise, with the artifact store that ``search run`` fills, so trial
plots show up beside the notes.
"""

from __future__ import annotations

import logging
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from search.config import ConfigError
from search.explain import artifact_store_path
from search.storage import create_storage

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"  # loopback: the dashboard can edit studies and has no login
DEFAULT_PORT = 8080


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open connections must not keep Ctrl-C waiting


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def dashboard_url(host: str, port: int) -> str:
    """The address to open: a wildcard bind is reached through loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/dashboard/"


def create_server(storage: str, artifact_dir: str | None, host: str, port: int) -> WSGIServer:
    """A ready (bound, not yet serving) optuna-dashboard server; a taken port is a ConfigError."""
    try:
        from optuna.artifacts import FileSystemArtifactStore
        from optuna_dashboard import wsgi
    except ImportError as err:
        raise ConfigError(
            f"search dashboard needs optuna-dashboard ({err}); pip install 'optuna-dashboard>=0.15'"
        ) from None
    store = FileSystemArtifactStore(artifact_store_path(storage, artifact_dir))
    app = wsgi(create_storage(storage, heartbeat=False), artifact_store=store)
    try:
        return make_server(host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler)
    except OSError as err:
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def serve(server: WSGIServer) -> None:
    """Serve until Ctrl-C or SIGTERM, then close the socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
