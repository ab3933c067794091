"""``droplab ui``: the MLflow UI and optuna-dashboard on an experiment's stores.

Both servers run as child processes in their own process group, bound to 127.0.0.1 unless
``--host`` says otherwise (neither has authentication). Store URLs reach the children through
their environment, never their argv, so ``ps`` shows no password. Ctrl-C (or SIGTERM) stops both
children and returns 130 (143); a child that dies returns 1 with the tail of its log.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from droplab import interrupts, runtime
from droplab.config.identity import mask_secrets
from droplab.config.paths import (
    artifact_root,
    experiment_name,
    runs_dir,
    study_name,
    study_storage,
    tracking_uri,
)
from droplab.config.schema import Config, ConfigError

HOST, MLFLOW_PORT, DASHBOARD_PORT = "127.0.0.1", 5000, 8080


MLFLOW, DASHBOARD = "MLflow UI", "optuna-dashboard"


STORAGE_ENV = "DROPLAB_UI_STORAGE"  # the dashboard child reads its storage URL from here


READY_SECONDS = 120.0  # the MLflow server takes ~15 s to answer on 2 busy cores


# Children inherit the environment; these only apply where the user has not set them.
_MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # GenAI job runners: 8 idle processes
}


# The MLflow UI opens on its GenAI overview unless told that this is model training.
_TRAINING_VIEW = "runs?workflowType=machine_learning"


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class UiError(RuntimeError):
    """A UI server did not start or stopped on its own; the message ends with its log tail."""


@dataclass(frozen=True)
class Service:
    """One UI: where it answers, and how to start it (no ``argv``: it is already running)."""

    name: str
    url: str
    store: str
    argv: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    probe: str | None = None


@dataclass
class Child:
    service: Service
    proc: subprocess.Popen[bytes]
    log: Path


def serve(
    cfg: Config,
    host: str = HOST,
    port: int = MLFLOW_PORT,
    dashboard_port: int = DASHBOARD_PORT,
    ready: Callable[[dict[str, str]], None] | None = None,
) -> int:
    """Start both UIs on the stores of ``cfg``, print their URLs and wait for Ctrl-C.

    Args:
        cfg: the experiment's config (``paths.runs``, ``tracking.uri``, ``study.storage``).
        host: interface to bind; anything but loopback prints a warning (no authentication).
        port: the MLflow UI's port.
        dashboard_port: optuna-dashboard's port.
        ready: called with ``{name: url}`` once both answer HTTP (tests, notebooks).

    Returns:
        The exit code: 130 (143) after Ctrl-C (SIGTERM), 1 when a server failed.

    Raises:
        ConfigError: a port is taken or invalid, or there is no store to show.
    """
    services = plan(cfg, host, port, dashboard_port)
    if not is_loopback(host):
        print(exposure_warning(host), file=sys.stderr)
    children: list[Child] = []
    try:
        for service in services:  # one at a time: a Ctrl-C in between still stops the first
            children += launch([service], runs_dir(cfg) / "ui")
        wait_ready(children)
        urls = deep_links(cfg, services)
        print(f"droplab ui: experiment {experiment_name(cfg)}, study {study_name(cfg)}")
        print_urls(services, urls, children)
        if ready is not None:
            ready(urls)
        return watch(children)
    except KeyboardInterrupt as exc:
        print(f"\ndroplab: stopping {' and '.join(c.service.name for c in children) or 'nothing'}")
        return exc.exit_code if isinstance(exc, interrupts.Interrupted) else 130
    except UiError as exc:
        print(f"droplab: error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop(children)


def plan(cfg: Config, host: str, port: int, dashboard_port: int) -> list[Service]:
    """The UIs to show for ``cfg``: checked ports, existing stores, masked URLs."""
    _check_ports(host, port, dashboard_port)
    candidates = (mlflow_service(cfg, host, port), dashboard_service(cfg, host, dashboard_port))
    services = [s for s in candidates if s is not None]
    if not services:
        raise ConfigError(
            f"nothing to show: no MLflow store and no Optuna storage under {runs_dir(cfg)} "
            "yet; run `droplab study EXP.yaml` (or train) first, or name the stores with "
            "tracking.uri=... study.storage=..."
        )
    return services


def mlflow_service(cfg: Config, host: str, port: int) -> Service | None:
    """``mlflow server`` on the tracking store, or just the URL of a tracking server."""
    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        return Service(MLFLOW, uri.rstrip("/") + "/", mask_secrets(uri))
    if _missing(uri):
        print(f"droplab: no MLflow store at {uri} yet; MLflow UI not started", file=sys.stderr)
        return None
    root = artifact_root(cfg)
    argv = (
        *(sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port)),
        *("--default-artifact-root", root, "--artifacts-destination", root, "--workers", "1"),
    )
    env = {"MLFLOW_BACKEND_STORE_URI": uri, **_MLFLOW_ENV}
    url = base_url(host, port)
    return Service(MLFLOW, url, mask_secrets(uri), argv, env, probe=url + "health")


def dashboard_service(cfg: Config, host: str, port: int) -> Service | None:
    """optuna-dashboard on the study storage (RDB or journal file) through the Python API."""
    url = study_storage(cfg)
    if _missing(url):
        print(f"droplab: no Optuna storage at {url} yet; dashboard not started", file=sys.stderr)
        return None
    argv = (sys.executable, "-m", "droplab.ui", host, str(port))
    web = base_url(host, port)
    return Service(
        DASHBOARD, web, mask_secrets(url), argv, {STORAGE_ENV: url}, probe=web + "api/studies"
    )


def _missing(url: str) -> bool:
    """A local store (SQLite file, journal file) that does not exist yet."""
    if url.startswith("sqlite:///"):
        return not Path(url.removeprefix("sqlite:///")).exists()
    return "://" not in url and not Path(url).exists()


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str:
    return (
        f"droplab: warning: --host {host} exposes the MLflow UI and optuna-dashboard beyond "
        "this machine, and they have no authentication: anyone who can reach the ports can read "
        "(and edit) the runs and the study. MLflow only accepts private-IP and localhost Host "
        "headers unless MLFLOW_SERVER_ALLOWED_HOSTS is set. Prefer an SSH tunnel: "
        "ssh -L 5000:127.0.0.1:5000 -L 8080:127.0.0.1:8080 HOST"
    )


def base_url(host: str, port: int) -> str:
    """The URL a browser on this machine opens (a wildcard bind is reached on loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _check_ports(host: str, *ports: int) -> None:
    if len(set(ports)) != len(ports):
        raise ConfigError(f"--port and --dashboard-port must differ, got {ports[0]} for both")
    for port in ports:
        if not 1 <= port <= 65535:
            raise ConfigError(f"port {port} is out of range; allowed: 1..65535")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # as the servers do: a port that only has connections closing is free to listen on
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise ConfigError(
                    f"cannot listen on {host}:{port} ({exc.strerror}); choose another "
                    "--port/--dashboard-port or stop what uses it"
                ) from None


def launch(services: Sequence[Service], logs: Path) -> list[Child]:
    """Start the services that have a command, each in its own process group."""
    logs.mkdir(parents=True, exist_ok=True)
    children = []
    for service in services:
        if not service.argv:
            continue
        log = logs / f"{service.name.split()[0].lower()}.log"
        with open(log, "wb") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                service.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **service.env},
                start_new_session=True,  # Ctrl-C reaches us only; we stop the whole group
            )
        children.append(Child(service, proc, log))
    return children


def wait_ready(children: Sequence[Child], timeout: float = READY_SECONDS) -> None:
    """Block until every child answers HTTP on its probe URL.

    Raises:
        UiError: a child exited, or did not answer within ``timeout`` seconds.
    """
    pending = list(children)
    deadline = time.monotonic() + timeout
    while pending:
        for child in list(pending):
            if child.proc.poll() is not None:
                raise UiError(_died(child))
            if answers(str(child.service.probe)):
                pending.remove(child)
        if pending and time.monotonic() > deadline:
            names = ", ".join(c.service.name for c in pending)
            raise UiError(f"{names} did not answer within {timeout:.0f} s; log: {pending[0].log}")
        time.sleep(0.25)


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether an HTTP server answers at ``url`` (any status; proxies bypassed)."""
    try:
        with _NO_PROXY.open(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _died(child: Child) -> str:
    tail = child.log.read_text(errors="replace").strip().splitlines()[-15:]
    text = "\n  ".join(mask_secrets(line) for line in tail)
    return f"{child.service.name} exited with code {child.proc.returncode}; {child.log}:\n  {text}"


def deep_links(cfg: Config, services: Sequence[Service]) -> dict[str, str]:
    """Each UI's URL, pointing at this experiment's runs and this study when they exist."""
    urls = {s.name: s.url for s in services}
    if MLFLOW in urls:
        query = urllib.parse.urlencode({"experiment_name": experiment_name(cfg)})
        found = _get_json(f"{urls[MLFLOW]}api/2.0/mlflow/experiments/get-by-name?{query}")
        if found:
            urls[MLFLOW] += (
                f"#/experiments/{found['experiment']['experiment_id']}/{_TRAINING_VIEW}"
            )
    if DASHBOARD in urls:
        studies = (_get_json(f"{urls[DASHBOARD]}api/studies") or {}).get("study_summaries", [])
        ids = [s["study_id"] for s in studies if s["study_name"] == study_name(cfg)]
        if ids:
            urls[DASHBOARD] += f"dashboard/studies/{ids[0]}"
    return {name: mask_secrets(url) for name, url in urls.items()}


def _get_json(url: str) -> Any:
    try:
        with _NO_PROXY.open(url, timeout=10) as response:
            return json.loads(response.read())
    except (OSError, ValueError):  # absent experiment (404), unreachable: keep the base URL
        return None


def print_urls(
    services: Sequence[Service], urls: Mapping[str, str], children: Sequence[Child]
) -> None:
    started = {c.service.name: c.log for c in children}
    for service in services:
        how = f"log {started[service.name]}" if service.name in started else "already running"
        print(f"  {service.name:<16} {urls[service.name]}")
        print(f"  {'':<16} store {service.store}; {how}")
    print("  Ctrl-C stops " + (" and ".join(started) if started else "nothing (none started)"))
    sys.stdout.flush()  # the URLs must show at once, also through a pipe


def watch(children: Sequence[Child]) -> int:
    """Wait for Ctrl-C; a child that stops on its own ends the wait with code 1."""
    while True:
        for child in children:
            if child.proc.poll() is not None:
                raise UiError(_died(child))
        time.sleep(0.5)


def stop(children: Sequence[Child], grace: float = 15.0) -> None:
    """SIGTERM each child's process group, then SIGKILL what is left after ``grace`` s."""
    for child in children:
        _signal_group(child.proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            while _group_alive(child.proc) and time.monotonic() < deadline:
                time.sleep(0.1)  # the server's workers finish after their parent
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            pass
        _signal_group(child.proc, signal.SIGKILL)  # whatever outlived the grace period
        child.proc.wait()


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    try:
        os.killpg(proc.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)  # the group we created: its id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass


def _dashboard_main(argv: Sequence[str]) -> None:
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
    _dashboard_main(sys.argv[1:])
