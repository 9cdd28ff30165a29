"""``otaudit serve``: the receivers, the sequencer and the store in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from otaudit import datadir, defaults, logthrottle
from otaudit.auth import Authenticator, is_loopback
from otaudit.checkpointer import Checkpointer
from otaudit.detect.notify import Notifier
from otaudit.detect.process import DetectorProcess
from otaudit.detect.run import AlertPublisher, DetectSettings
from otaudit.errors import ConfigError
from otaudit.ingest import Ingest, IngestSettings
from otaudit.keys import SigningKey
from otaudit.ledger import Sequencer
from otaudit.metrics import Metrics
from otaudit.ownrecords import SequencerAppender
from otaudit.readapi import ReadService, build_read_app
from otaudit.readapi.cursor import load_cursor_key
from otaudit.receiver.connections import ConnectionLimits, fit_open_files, guarded_protocol
from otaudit.receiver.grpc import build_server
from otaudit.receiver.http import build_app
from otaudit.retention.policy import record_policy
from otaudit.retention.schedule import READER, RetentionSettings, ScheduledPrune, prune_command
from otaudit.status import ServerInfo
from otaudit.store.base import Store
from otaudit.store.sqlite import SQLiteStore
from otaudit.tls import TlsSettings

log = logging.getLogger("otaudit.server")


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``otaudit serve`` is configured with."""

    data: Path = defaults.DATA_DIR
    store_url: str | None = None
    http: tuple[str, int] = field(
        default_factory=lambda: parse_address(defaults.HTTP_ADDRESS, "--http")
    )
    grpc: tuple[str, int] = field(
        default_factory=lambda: parse_address(defaults.GRPC_ADDRESS, "--grpc")
    )
    origin: str | None = None
    key_file: Path | None = None
    checkpoint_interval_s: float = defaults.CHECKPOINT_INTERVAL_S
    max_queue_records: int = defaults.MAX_QUEUE_RECORDS
    ingest: IngestSettings = field(default_factory=IngestSettings)
    witness_dir: Path | None = None
    read_api: tuple[str, int] | None = None
    #: The auditor console's listener (``--console``), None: off.
    console: tuple[str, int] | None = None
    query_url: str | None = None
    unsafe_no_auth: bool = False
    tls: TlsSettings | None = None
    detection: DetectSettings | None = None
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    #: After SIGTERM, how long requests in flight may take before their connections close.
    shutdown_timeout_s: float = defaults.SHUTDOWN_TIMEOUT_S
    retention: RetentionSettings | None = None


def parse_address(text: str, option: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[::1]:PORT`` for IPv6); ConfigError names the option."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ConfigError(f"{option} expects HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def serve(settings: ServeSettings) -> None:
    """Run until SIGINT/SIGTERM; then finish queued exports and sign a final checkpoint.

    After the signal, requests in flight have ``shutdown_timeout_s`` (a second signal: none)
    before their connections are closed; then the ledger takes what was queued."""
    started_ns = time.time_ns()
    logthrottle.throttle()
    extra = (settings.read_api is not None) + (settings.console is not None)
    limits = fit_open_files(settings.connections, 2 + extra)
    data = datadir.check(settings.data, create=True)
    store = datadir.open_store(data, settings.store_url, readonly=False)
    key = datadir.signing_key(data, store, settings.origin, settings.key_file)
    metrics = Metrics()
    sequencer = Sequencer(
        store,
        Checkpointer(store, key, key.name, settings.witness_dir),
        metrics,
        max_queue_records=settings.max_queue_records,
        checkpoint_interval_s=settings.checkpoint_interval_s,
    )
    if settings.tls is not None:
        settings.tls.check()
    token_store = datadir.open_store(data, settings.store_url, readonly=True)
    authn = Authenticator(token_store)
    _check_exposure(settings, authn)
    ingest = Ingest(sequencer, metrics, settings.ingest)
    http_host, http_port = settings.http
    http_socket = _listen(http_host, http_port)
    grpc_host, grpc_port = settings.grpc
    grpc_server, bound = build_server(
        ingest,
        authn,
        f"{grpc_host}:{grpc_port}",
        credentials=None if settings.tls is None else settings.tls.grpc_credentials(),
        limits=limits,
    )
    if bound == 0:
        raise ConfigError(f"cannot listen for gRPC on {grpc_host}:{grpc_port} (address in use?)")
    listeners = {"http": f"{http_host}:{http_port}", "grpc": f"{grpc_host}:{bound}"}
    if settings.read_api is not None:
        listeners["read_api"] = "{}:{}".format(*settings.read_api)
    if settings.console is not None:
        listeners["console"] = "{}:{}".format(*settings.console)
    info = ServerInfo(started_ns, listeners, detection=settings.detection is not None)
    http_app = build_app(ingest, authn, info)
    servers = [(_uvicorn(http_app, settings, settings.http, limits, "HTTP"), http_socket)]
    service: ReadService | None = None
    if settings.read_api is not None or settings.console is not None:
        service = ReadService(
            lambda: datadir.open_store(data, settings.store_url, readonly=True),
            sequencer,
            authn,
            query_url=settings.query_url,
            cursor_key=load_cursor_key(data),
        )
    if settings.read_api is not None and service is not None:
        read_host, read_port = settings.read_api
        read_socket = _listen(read_host, read_port, "the read API")
        read_app = _uvicorn(
            build_read_app(service), settings, settings.read_api, limits, "read API"
        )
        servers.append((read_app, read_socket))
    if settings.console is not None and service is not None:
        servers.append(_console(settings, data, service, key, limits))
    detector, notifier = _detector(settings, data, sequencer)
    if isinstance(store, SQLiteStore):  # checkpoints of its WAL off the writer's path
        sequencer.on_commit.append(store.checkpoint_in_background().wake)
    sequencer.start()
    pruner = _pruner(settings, data, store, sequencer)
    if detector is not None:
        detector.start()
    grpc_server.start()
    log.info(
        "otaudit %s: OTLP/HTTP on %s:%d, OTLP/gRPC on %s:%d, ledger %s (%d records)",
        key.name,
        http_host,
        http_port,
        grpc_host,
        bound,
        store_label(settings),
        store.tree_size(),
    )
    if settings.read_api is not None:
        log.info("read API on %s:%d (/api/v1/openapi.json)", *settings.read_api)
    if settings.console is not None:
        log.info("console on %s://%s:%d/console/", "http" if settings.tls is None else "https",
                 *settings.console)  # fmt: skip
    grace_s = settings.shutdown_timeout_s
    watching = threading.Event()
    authn.watch(watching)
    try:
        asyncio.run(_run_http(servers, lambda: grpc_server.stop(grace=grace_s)))
    finally:
        watching.set()
        for sig in (signal.SIGINT, signal.SIGTERM):  # what is left is bounded: let it finish
            signal.signal(sig, _already_stopping)
        grpc_server.stop(grace=grace_s).wait()
        ingest.close()
        if service is not None:
            service.close()
        if detector is not None:
            detector.stop(timeout_s=max(grace_s, 5.0))  # what it has not judged, a restart does
        if pruner is not None:
            pruner.stop()  # a prune in progress stops at its next batch; the next run ends it
        sequencer.stop()
        if notifier is not None:
            notifier.close()
        token_store.close()
        store.close()
        log.info("otaudit stopped; final checkpoint signed")


def _console(
    settings: ServeSettings, data: Path, service: ReadService, key: SigningKey,
    limits: ConnectionLimits,
) -> tuple[uvicorn.Server, socket.socket]:  # fmt: skip
    """The auditor console's server and its listening socket (``--console``)."""
    from otaudit.console import ConsoleService, build_console_app
    from otaudit.console.session import SessionSigner, load_session_key

    assert settings.console is not None
    host, port = settings.console
    sock = _listen(host, port, "the console")
    console = ConsoleService(
        service,
        SessionSigner(load_session_key(data)),
        data,
        tls=settings.tls is not None,
        signer=key,
        rules=() if settings.detection is None else settings.detection.rules,
        witness_dir=settings.witness_dir,
    )
    app = build_console_app(console)
    return _uvicorn(app, settings, settings.console, limits, "console"), sock


def _already_stopping(signum: int, frame: object) -> None:
    log.warning("%s: already stopping (SIGKILL stops at once; nothing acknowledged is lost)",
                signal.Signals(signum).name)  # fmt: skip


def _detector(
    settings: ServeSettings, data: Path, sequencer: Sequencer
) -> tuple[DetectorProcess | None, Notifier | None]:
    """The streaming detector (a process of its own) and its notifier, if enabled."""
    detection = settings.detection
    if detection is None:
        log.warning("detection is off (--no-detect): no alerts are raised")
        return None, None
    notifier = Notifier(detection.notify) if detection.notify.enabled else None
    if notifier is not None:
        sequencer.metrics.watch_notifications(notifier)
    publisher = AlertPublisher(SequencerAppender(sequencer), notifier, sequencer.metrics)
    detector = DetectorProcess(
        data,
        settings.store_url,
        detection.rules,
        publisher,
        sequencer.metrics,
        tree_size=sequencer.store.tree_size(),
        group_window_ns=detection.notify.group_window_s * 1_000_000_000,
    )
    sequencer.on_commit.append(detector.wake)
    return detector, notifier


def _pruner(
    settings: ServeSettings, data: Path, store: Store, sequencer: Sequencer
) -> ScheduledPrune | None:
    """With ``--retention``: the policy recorded now (if it changed), and the prune on its
    schedule."""
    retention = settings.retention
    if retention is None:
        return None
    appender = SequencerAppender(sequencer, what="the retention policy")
    seq = record_policy(appender, READER, store, retention.policy)
    if seq is not None:
        log.info("retention policy %s recorded at seq %d", retention.policy.sha256[:12], seq)
    argv, env = prune_command(retention, data, settings.store_url)
    pruner = ScheduledPrune(argv, retention.every_s, env)
    pruner.start()
    return pruner


def _check_exposure(settings: ServeSettings, authn: Authenticator) -> None:
    """Without tokens, serve on loopback only (with a warning), unless told it is wanted."""
    if authn.required:
        return
    listeners = [("--http", settings.http), ("--grpc", settings.grpc)]
    if settings.read_api is not None:
        listeners.append(("--read-api", settings.read_api))
    if settings.console is not None:
        listeners.append(("--console", settings.console))
    exposed = [f"{option} {host}:{port}" for option, (host, port) in listeners
               if not is_loopback(host)]  # fmt: skip
    if exposed and not settings.unsafe_no_auth:
        raise ConfigError(
            f"refusing to listen on {', '.join(exposed)} without authentication: create a token "
            "(`otaudit token create --scope ingest`), or pass --unsafe-no-auth"
        )
    log.warning(
        "no API tokens: requests are not authenticated%s",
        f" ({', '.join(exposed)} exposed by --unsafe-no-auth)"
        if exposed
        else " (loopback only; `otaudit token create` turns authentication on)",
    )


class _Server(uvicorn.Server):
    """A uvicorn server that leaves SIGINT and SIGTERM to :func:`_run_http`, which stops
    every listener at once (uvicorn's own handler stops one server per signal)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn(
    app: Any, settings: ServeSettings, address: tuple[str, int], limits: ConnectionLimits,
    listener: str,
) -> uvicorn.Server:  # fmt: skip
    tls = settings.tls
    config = uvicorn.Config(
        app,
        host=address[0],
        port=address[1],
        http=guarded_protocol(limits, listener),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s)),
        **({} if tls is None else tls.uvicorn_options()),  # type: ignore[arg-type]
    )
    return _Server(config)


def _listen(host: str, port: int, what: str = "HTTP") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen for {what} on {host}:{port}: {exc.strerror}") from exc
    return sock


async def _run_http(
    servers: list[tuple[uvicorn.Server, socket.socket]], on_stop: Callable[[], object]
) -> None:
    """Serve until SIGINT/SIGTERM; then stop every listener, and close what is still open."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if any(server.should_exit for server, _ in servers):
            log.warning("second signal: closing the connections without waiting")
        on_stop()
        for server, _ in servers:
            server.force_exit = server.should_exit
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in servers))
    for server, _ in servers:  # requests still in flight after the shutdown timeout
        for connection in list(server.server_state.connections):
            connection.transport.close()


def store_label(settings: ServeSettings) -> str:
    """A human description of the store in use."""
    return settings.store_url or str(settings.data / datadir.LEDGER_FILE)
