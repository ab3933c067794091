"""``python -m droplab.ui HOST PORT``: the optuna-dashboard child that ``droplab ui`` starts."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence

from droplab import runtime
from droplab.ui.processes import base_url
from droplab.ui.services import STORAGE_ENV


def dashboard_main(argv: Sequence[str]) -> None:
    """Child entry: optuna-dashboard on ``$DROPLAB_UI_STORAGE`` (RDB URL or journal file)."""
    runtime.setup()
    import socketserver
    from wsgiref.simple_server import WSGIServer, make_server

    import optuna_dashboard

    from droplab.study.storage import open_storage

    host, port = argv[0], int(argv[1])

    class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    app = optuna_dashboard.wsgi(open_storage(os.environ[STORAGE_ENV]))
    server = make_server(host, port, app, server_class=ThreadingServer)
    print(f"optuna-dashboard listening on {base_url(host, port)}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    dashboard_main(sys.argv[1:])
