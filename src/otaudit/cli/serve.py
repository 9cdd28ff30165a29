"""``otaudit serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import click

from otaudit import defaults
from otaudit.cli.options import (
    Count,
    Seconds,
    http_option,
    load_rule_set,
    notify_options,
    notify_settings,
    query_store_option,
    retention_options,
    retention_settings,
    rule_options,
    store_options,
)

#: Options people try for a listener's port or address; each listener takes HOST:PORT.
_LISTENER_GUESSES: Final = frozenset({"--port", "--host", "--bind", "--listen", "--address"})


class _ServeCommand(click.Command):
    """``serve``, answering a guessed ``--port`` with the options that set listeners."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse as click does; a guessed listener option gets the options that exist."""
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            if exc.option_name not in _LISTENER_GUESSES:
                raise
            raise click.NoSuchOption(
                exc.option_name,
                f"No such option {exc.option_name!r}: each listener takes HOST:PORT, e.g."
                " --http 127.0.0.1:4318 (OTLP/HTTP), --grpc 127.0.0.1:4317 (OTLP/gRPC),"
                " --read-api 127.0.0.1:8080, --console 127.0.0.1:8081",
                ctx=ctx,
            ) from None


@click.command("serve", cls=_ServeCommand)
@store_options
@http_option("http_addr", "OTLP/HTTP listen address (also /metrics and /healthz).")
@click.option(
    "--grpc",
    "grpc_addr",
    default=defaults.GRPC_ADDRESS,
    show_default=True,
    metavar="HOST:PORT",
    help="OTLP/gRPC listen address.",
)
@click.option(
    "--origin",
    metavar="NAME",
    help="Log origin for a new ledger (default: otaudit/<host>/<random>).",
)
@click.option(
    "--key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Signing key file (default: DATA/signing.key).",
)
@click.option(
    "--audit-attribute",
    default=defaults.AUDIT_ATTRIBUTE,
    show_default=True,
    help="Records carrying this attribute are sealed; the rest are counted and dropped.",
)
@click.option(
    "--pipeline",
    default=defaults.PIPELINE,
    show_default=True,
    help="Pipeline name stamped on records that carry no X-Audit-Pipeline header.",
)
@click.option(
    "--max-body-bytes",
    type=Count(1024, defaults.MAX_BODY_BYTES_CEILING),
    default=defaults.MAX_BODY_BYTES,
    show_default=True,
    help="Request size limit, measured after decompression (a request is held in memory:"
    " at most 2 GiB - 1, the most one gRPC message can carry).",
)
@click.option(
    "--header-timeout",
    type=Seconds(0.1),
    default=defaults.HEADER_TIMEOUT_S,
    show_default=True,
    help="Seconds a client has to send a request's headers (gRPC: to connect).",
)
@click.option(
    "--body-timeout",
    type=Seconds(0.1),
    default=defaults.BODY_TIMEOUT_S,
    show_default=True,
    help="Seconds a client has to send a request's body once its headers are in.",
)
@click.option(
    "--max-connections",
    type=Count(1),
    default=defaults.MAX_CONNECTIONS,
    show_default=True,
    help="Open connections per listener; more are refused.",
)
@click.option(
    "--max-calls-per-peer",
    type=Count(1),
    default=defaults.MAX_CALLS_PER_PEER,
    show_default=True,
    help="gRPC calls one client address may have open at once; more get RESOURCE_EXHAUSTED.",
)
@click.option(
    "--shutdown-timeout",
    type=Seconds(1),
    default=defaults.SHUTDOWN_TIMEOUT_S,
    show_default=True,
    help="Seconds requests in flight get after SIGTERM before their connections close.",
)
@click.option(
    "--max-queue-records",
    type=Count(1),
    default=defaults.MAX_QUEUE_RECORDS,
    show_default=True,
    help="Records waiting for the sequencer before ingest answers 503.",
)
@click.option(
    "--checkpoint-interval",
    type=Seconds(0.05, 60),
    default=defaults.CHECKPOINT_INTERVAL_S,
    show_default=True,
    help="Seconds between signed checkpoints while records arrive.",
)
@click.option(
    "--workers",
    type=Count(0, 64),
    default=defaults.WORKERS,
    show_default=True,
    help="Processes that decode and seal requests (0: in the server process).",
)
@click.option(
    "--witness-dir",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Also write each checkpoint and its consistency proof here, for `otaudit witness run`.",
)
@click.option(
    "--read-api",
    "read_api",
    metavar="HOST:PORT",
    help="Also serve the HTTP read API (search, SQL; JSON) here. Off by default.",
)
@click.option(
    "--console",
    "console_addr",
    metavar="HOST:PORT",
    help="Also serve the auditor console (web pages under /console/) here. Off by default.",
)
@query_store_option
@click.option(
    "--unsafe-no-auth",
    is_flag=True,
    help="Listen beyond loopback although no token exists (nothing is authenticated).",
)
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False), metavar="PEM",
              help="Serve every listener over TLS with this certificate (chain).")  # fmt: skip
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False), metavar="PEM",
              help="The private key of --tls-cert.")  # fmt: skip
@click.option("--tls-client-ca", type=click.Path(path_type=Path, dir_okay=False), metavar="PEM",
              help="Require client certificates signed by this CA (mutual TLS).")  # fmt: skip
@click.option(
    "--max-attributes",
    type=Count(1),
    default=defaults.MAX_ATTRIBUTES,
    show_default=True,
    help="Attributes one record may carry; records over it are rejected (partial_success).",
)
@click.option(
    "--max-attribute-bytes",
    type=Count(16),
    default=defaults.MAX_ATTRIBUTE_BYTES,
    show_default=True,
    help="Encoded size one attribute value may have; records over it are rejected.",
)
@click.option(
    "--max-resource-bytes",
    type=Count(256),
    default=defaults.MAX_RESOURCE_BYTES,
    show_default=True,
    help="Encoded size a record's resource, or its scope, may have (every record carries "
    "a copy); records over it are rejected.",
)
@click.option(
    "--max-records-per-request",
    type=Count(1),
    default=None,
    help="Spans or log records one export may hold; a larger one is refused whole (413). "
    "[default: 20000, or --max-queue-records if smaller]",
)
@click.option(
    "--redact",
    "redact",
    multiple=True,
    metavar="drop:PATTERN|hmac:PATTERN",
    help="Before sealing, drop the attributes whose key matches PATTERN, or replace their "
    "values by an HMAC-SHA256 pseudonym (repeatable; first match wins).",
)
@click.option(
    "--redaction-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="The secret key of hmac: rules (at least 16 bytes; mode 0600 or stricter).",
)
@click.option(
    "--no-detect", is_flag=True, help="Do not run the detection rules (no alerts are raised)."
)
@rule_options
@notify_options
@retention_options
def serve_command(
    data: Path,
    store_url: str | None,
    http_addr: str,
    grpc_addr: str,
    origin: str | None,
    key_file: Path | None,
    audit_attribute: str,
    pipeline: str,
    max_body_bytes: int,
    header_timeout: float,
    body_timeout: float,
    max_connections: int,
    max_calls_per_peer: int,
    shutdown_timeout: float,
    max_queue_records: int,
    checkpoint_interval: float,
    witness_dir: Path | None,
    workers: int,
    read_api: str | None,
    console_addr: str | None,
    query_url: str | None,
    unsafe_no_auth: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    max_attributes: int,
    max_attribute_bytes: int,
    max_resource_bytes: int,
    max_records_per_request: int | None,
    redact: tuple[str, ...],
    redaction_key_file: Path | None,
    no_detect: bool,
    rule_files: tuple[Path, ...],
    no_builtin_rules: bool,
    policy_file: Path | None,
    allow_short: bool,
    prune_every: int | None,
    prune_rate: float | None,
    archive_url: str | None,
    s3_endpoint: str | None,
    **notify: Any,
) -> None:
    """Receive OTLP, seal audit records into the ledger, and watch them with the detection
    rules (alerts go to the ledger, the log, and --alert-webhook/--alert-otlp-endpoint)."""
    # The receivers (uvicorn, grpc) load only for this command.
    from otaudit.detect.run import DetectSettings
    from otaudit.ingest import IngestSettings
    from otaudit.otlp.convert import Limits
    from otaudit.receiver.connections import ConnectionLimits
    from otaudit.redaction import Redactor
    from otaudit.server import ServeSettings, parse_address, serve
    from otaudit.tls import TlsSettings

    if max_records_per_request is None:
        max_records_per_request = min(20_000, max_queue_records)
    elif max_records_per_request > max_queue_records:
        raise click.UsageError(
            f"--max-records-per-request {max_records_per_request} is more than"
            f" --max-queue-records {max_queue_records}: such a request could never be queued"
        )
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    tls = None
    if tls_cert is not None and tls_key is not None:
        tls = TlsSettings(tls_cert, tls_key, tls_client_ca)

    detection = None
    if no_detect:
        if rule_files or no_builtin_rules or any(notify.values()):
            raise click.UsageError("--no-detect turns detection off: drop rule and alert options")
    else:
        detection = DetectSettings(
            tuple(load_rule_set(rule_files, no_builtin_rules)), notify_settings(**notify)
        )
    serve(
        ServeSettings(
            data=data,
            store_url=store_url,
            http=parse_address(http_addr, "--http"),
            grpc=parse_address(grpc_addr, "--grpc"),
            origin=origin,
            key_file=key_file,
            checkpoint_interval_s=checkpoint_interval,
            max_queue_records=max_queue_records,
            ingest=IngestSettings(
                audit_attribute=audit_attribute,
                default_pipeline=pipeline,
                max_body_bytes=max_body_bytes,
                workers=workers,
                limits=Limits(
                    max_attributes,
                    max_attribute_bytes,
                    max_resource_bytes=max_resource_bytes,
                    max_records=max_records_per_request,
                ),
                redactor=Redactor.parse(redact, redaction_key_file),
            ),
            witness_dir=witness_dir,
            read_api=None if read_api is None else parse_address(read_api, "--read-api"),
            console=None if console_addr is None else parse_address(console_addr, "--console"),
            query_url=query_url,
            unsafe_no_auth=unsafe_no_auth,
            tls=tls,
            detection=detection,
            connections=ConnectionLimits(
                header_timeout, body_timeout, max_connections, max_calls_per_peer
            ),
            shutdown_timeout_s=shutdown_timeout,
            retention=retention_settings(
                policy_file, allow_short, prune_every, prune_rate, archive_url, s3_endpoint
            ),
        )
    )


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(serve_command)
    group.add_command(pseudonym_command)


@click.command("pseudonym")
@click.option(
    "--redaction-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    metavar="FILE",
    help="The key serve's hmac: redaction rules use (mode 0600 or stricter).",
)
@click.argument("value")
def pseudonym_command(redaction_key_file: Path, value: str) -> None:
    """Print the pseudonym an hmac: redaction rule stores for VALUE (to search for it)."""
    from otaudit.redaction import Redactor

    redactor = Redactor.parse(("hmac:*",), redaction_key_file)
    assert redactor is not None
    click.echo(redactor.pseudonym(value))
