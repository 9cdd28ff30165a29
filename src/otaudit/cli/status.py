"""``otaudit status``: the ledger, authentication, detection and the running server at a glance.

The ledger's part is read from the store (:func:`otaudit.status.ledger_status`); the
server's part from the running server's ``/status``. When no server answers, the command
says so in one line and still prints the ledger's part (exit 0).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Final

import click

from otaudit import datadir
from otaudit.cli.options import http_option, store_options
from otaudit.cli.render import print_json
from otaudit.status import LedgerStatus, WitnessStatus, ledger_status, witness_status
from otaudit.textsafety import terminal_text

#: How long to wait for the server's ``/status``.
SERVER_TIMEOUT_S: Final = 3.0
#: The largest status answer read from a server.
MAX_ANSWER_BYTES: Final = 1 << 20


def register(cli: click.Group) -> None:
    """Add ``status`` to the command group."""
    cli.add_command(status_command)


@click.command("status")
@store_options
@http_option("address", "The running server's OTLP/HTTP listener (or a URL, for https).")
@click.option(
    "--token",
    envvar="OTAUDIT_TOKEN",
    help="An admin token for the server's /status (env OTAUDIT_TOKEN).",
)
@click.option(
    "--witness-dir",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="The server's --witness-dir: how far its checkpoints are cosigned, and by whom.",
)
@click.option(
    "--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True
)
def status_command(
    data: Path,
    store_url: str | None,
    address: str,
    token: str | None,
    witness_dir: Path | None,
    fmt: str,
) -> None:
    """Show the ledger, authentication, open alerts, witnessing and the running server's
    counters."""
    if store_url is None:
        datadir.check(data, create=False)
    store = datadir.open_store(data, store_url, readonly=True)
    try:
        ledger = ledger_status(store)
    finally:
        store.close()
    witness = None if witness_dir is None else witness_status(witness_dir)
    url = (address if "://" in address else f"http://{address}").rstrip("/") + "/status"
    server, problem = fetch_server_status(url, token)
    if fmt == "json":
        print_json(
            ledger.as_json()
            | {"witness": witness and witness.as_json(), "server": server, "server_error": problem}
        )
        return
    try:
        shown = server_lines(url, server, problem)
    except (AttributeError, TypeError, ValueError):
        shown = server_lines(url, None, f"{url} did not answer an otaudit status (wrong shape)")
    for line in ledger_lines(ledger) + witness_lines(witness) + shown:
        # What a server or a file said is shown, never obeyed, and stays on its line.
        click.echo(terminal_text(line).replace("\n", "\\n"))


def witness_lines(witness: WitnessStatus | None) -> list[str]:
    """The witnessing part of the status (one line; none without --witness-dir)."""
    if witness is None:
        return []
    if witness.exported is None:
        return [f"witness:            nothing exported to {witness.directory} yet"]
    if witness.cosigned is None:
        done = "no checkpoint cosigned yet"
    else:
        by = ", ".join(witness.cosigners) or "unreadable signatures"
        done = (
            f"cosigned up to size {witness.cosigned} ({_age(witness.cosigned_age_s or 0.0)}"
            f" ago; signed by {by})"
        )
    return [f"witness:            {done}; {witness.waiting} checkpoint(s) waiting"]


def fetch_server_status(url: str, token: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The server's ``/status`` document, or None and one line saying why there is none.

    Bounded whatever answers: http(s) only, at most :data:`MAX_ANSWER_BYTES`, and
    :data:`SERVER_TIMEOUT_S` in all (a server that drips its answer is given up on).
    """
    if not url.startswith(("http://", "https://")):
        return None, f"{url}: only an http:// or https:// address is asked for its status"
    answer: list[tuple[dict[str, Any] | None, str | None]] = []
    fetching = threading.Thread(target=lambda: answer.append(_fetch(url, token)), daemon=True)
    fetching.start()
    fetching.join(SERVER_TIMEOUT_S)
    if not answer:
        return None, f"no answer from {url} within {SERVER_TIMEOUT_S:g} s"
    return answer[0]


def _fetch(url: str, token: str | None) -> tuple[dict[str, Any] | None, str | None]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=SERVER_TIMEOUT_S) as response:
            body = response.read(MAX_ANSWER_BYTES + 1)
        if len(body) > MAX_ANSWER_BYTES:
            return None, f"{url} answered more than {MAX_ANSWER_BYTES} bytes (not otaudit?)"
        document = json.loads(body)
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            need = "an admin token" if token is None else "a valid admin token"
            return None, f"{url} answered 401: it needs {need} (--token or OTAUDIT_TOKEN)"
        if exc.code == 403:
            return None, f"{url} answered 403: the token lacks the admin scope (--token)"
        return None, f"{url} answered {exc.code} (is it an otaudit server?)"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"no server answers at {url} ({reason})"
    except (ValueError, RecursionError):
        return None, f"{url} did not answer JSON (is it an otaudit server?)"
    if not isinstance(document, dict):
        return None, f"{url} did not answer a JSON object (is it an otaudit server?)"
    return document, None


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def ledger_lines(ledger: LedgerStatus) -> list[str]:
    """The ledger's part of the status, one ``name: value`` line each."""
    if ledger.checkpoint_size is None:
        checkpoint = "none signed yet (the next `otaudit serve` signs one)"
    else:
        checkpoint = (
            f"size {ledger.checkpoint_size}, signed {ledger.checkpoint_signed_at}"
            f" ({_age(ledger.checkpoint_age_s or 0.0)} ago)"
        )
    last = ledger.last_verification
    if last is None:
        verified = "none recorded (`otaudit verify`)"
    elif last.ok:
        verified = f"OK at {last.time} by {last.actor} ({last.records} records, seq {last.seq})"
    else:
        verified = f"FAILED at {last.time} ({last.by}, seq {last.seq}): {last.error}"
    tokens = "; ".join(
        f"{scope} {n['active']} active, {n['revoked']} revoked"
        for scope, n in ledger.tokens.items()
    )
    if ledger.key_problem is not None:
        key = f"key history does not check: {ledger.key_problem}"
    else:
        rotated = ", ".join(str(seq) for seq in ledger.key_rotations)
        key = f"{ledger.signing_key}" + (f" (rotated at seq {rotated})" if rotated else "")
    return [
        f"ledger:             {ledger.tree_size} records",
        f"checkpoint:         {checkpoint}",
        f"signing key:        {key}",
        f"unsigned records:   {ledger.unsigned_records}",
        f"last verification:  {verified}",
        f"authentication:     {'on' if ledger.auth_required else 'off (no tokens)'}",
        f"tokens:             {tokens or 'none'}",
        f"open alerts:        {sum(ledger.open_alerts.values())}"
        + (f" ({_counts(ledger.open_alerts)})" if ledger.open_alerts else "")
        + f" of {ledger.alerts_total}",
    ]


def server_lines(url: str, server: dict[str, Any] | None, problem: str | None) -> list[str]:
    """The running server's part of the status, or the one line saying why there is none."""
    if server is None:
        return [f"server:             {problem}"]
    listeners = ", ".join(f"{name} {where}" for name, where in server.get("listeners", {}).items())
    sequencer = server.get("sequencer", {})
    records = server.get("records", {})
    detection = server.get("detection", {})
    position = detection.get("position")
    return [
        f"server:             up {_age(float(server.get('uptime_s', 0)))}"
        f" (since {server.get('started_at')}), {url}",
        f"listeners:          {listeners or 'unknown'}",
        f"queue:              {sequencer.get('queue_records', 0)} records",
        f"records:            {_counts(records)}",
        f"dropped:            {_counts(server.get('dropped', {}))}",
        f"requests failed:    {_counts(server.get('requests_failed', {}))}",
        "detection:          "
        + (f"at seq {position}" if detection.get("enabled") else "off (--no-detect)"),
    ]
