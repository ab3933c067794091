"""The UI servers as child processes: start each in its own process group, wait until it
answers HTTP, watch it, stop the whole group (a server's workers included)."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from droplab.config.identity import mask_secrets
from droplab.config.schema import ConfigError

READY_SECONDS = 120.0  # the MLflow server takes ~15 s to answer on 2 busy cores


NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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
        with NO_PROXY.open(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _died(child: Child) -> str:
    tail = child.log.read_text(errors="replace").strip().splitlines()[-15:]
    text = "\n  ".join(mask_secrets(line) for line in tail)
    return f"{child.service.name} exited with code {child.proc.returncode}; {child.log}:\n  {text}"


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


def base_url(host: str, port: int) -> str:
    """The URL a browser on this machine opens (a wildcard bind is reached on loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_ports(host: str, *ports: int) -> None:
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
