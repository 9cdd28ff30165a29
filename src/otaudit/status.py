"""What ``otaudit status`` and the server's ``/status`` say: the state of a ledger and of
the server running on it.

- :func:`ledger_status` reads the ledger: its size, the latest signed checkpoint and the
  records it does not cover yet, the last verification recorded in it (``otaudit verify``
  records each run as a read of kind ``verify``; the server records its refusals to sign
  as ``otaudit.verify``), the API tokens by scope (never their hashes) and the open
  alerts by severity. It counts; it returns no audit record's content.
- :func:`witness_status` reads a witness directory (``serve --witness-dir``): the latest
  checkpoint exported, the latest cosigned, by whom and how long ago, and how many wait.
- :func:`server_status` is what a running server knows and the ledger does not: uptime,
  listeners, the sequencer's queue, and the counters of :class:`~otaudit.metrics.Metrics`
  (records sealed, duplicate, rejected, dropped by cause, requests failed by reason).

Both return JSON-ready values; times are RFC 3339 with ``Z`` (DESIGN invariant 6).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from otaudit.access import READ_ACTION
from otaudit.detect.alerts import read_alerts
from otaudit.errors import ConfigError, OtauditError, VerificationError
from otaudit.keyhistory import load_history
from otaudit.metrics import Metrics
from otaudit.note import parse_note
from otaudit.ownrecords import VERIFY_ACTION
from otaudit.record import rfc3339_ns
from otaudit.smallfile import read_small_file
from otaudit.store.base import Store, StoredToken
from otaudit.witness.limits import MAX_NOTE_BYTES


@dataclass(frozen=True)
class Verification:
    """The last verification the ledger records: an ``otaudit verify`` run, or the
    server finding its ledger inconsistent with its last checkpoint (``by`` = server)."""

    seq: int
    time: str
    by: str  # "otaudit verify" or "server"
    actor: str
    ok: bool
    records: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class LedgerStatus:
    """The state of one ledger, as read from its store."""

    tree_size: int
    checkpoint_size: int | None
    checkpoint_signed_at: str | None
    checkpoint_age_s: float | None
    #: Records past the latest checkpoint (signed by the server within seconds while it runs).
    unsigned_records: int
    last_verification: Verification | None
    #: Authentication is on once any token exists, revoked ones included (as the server's
    #: :class:`~otaudit.auth.Authenticator` has it: every listener then asks for a token).
    auth_required: bool
    #: Per scope: {"active": n, "revoked": n}.
    tokens: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Open alerts (no decision yet, or investigating/escalated) per severity.
    open_alerts: dict[str, int] = field(default_factory=dict)
    alerts_total: int = 0
    #: The signing key in force (the log's key history, :mod:`otaudit.keyhistory`), the seqs
    #: of the rotation records, or why the history does not check.
    signing_key: str | None = None
    key_rotations: tuple[int, ...] = ()
    key_problem: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The status as a JSON object (``ledger``, ``auth``, ``detection``)."""
        return {
            "ledger": {
                "tree_size": self.tree_size,
                "checkpoint": None
                if self.checkpoint_size is None
                else {
                    "tree_size": self.checkpoint_size,
                    "signed_at": self.checkpoint_signed_at,
                    "age_s": self.checkpoint_age_s,
                },
                "unsigned_records": self.unsigned_records,
                "last_verification": None
                if self.last_verification is None
                else asdict(self.last_verification),
                "signing_key": {
                    "in_force": self.signing_key,
                    "rotations": list(self.key_rotations),
                    "problem": self.key_problem,
                },
            },
            "auth": {"required": self.auth_required, "tokens": self.tokens},
            "detection": {"open_alerts": self.open_alerts, "alerts_total": self.alerts_total},
        }


def ledger_status(store: Store, now_ns: int | None = None) -> LedgerStatus:
    """Read the state of the ledger in ``store`` (StoreError if it cannot be read)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    tree_size = store.tree_size()
    checkpoint = store.latest_checkpoint()
    tokens = store.tokens()
    alerts = read_alerts(store)
    open_alerts = Counter(a.severity for a in alerts if a.is_open)
    return LedgerStatus(
        tree_size=tree_size,
        checkpoint_size=None if checkpoint is None else checkpoint.tree_size,
        checkpoint_signed_at=None if checkpoint is None else rfc3339_ns(checkpoint.signed_at_ns),
        checkpoint_age_s=None
        if checkpoint is None
        else round(max(0, now_ns - checkpoint.signed_at_ns) / 1e9, 3),
        unsigned_records=tree_size - (0 if checkpoint is None else checkpoint.tree_size),
        last_verification=last_verification(store),
        auth_required=bool(tokens),
        tokens=tokens_by_scope(tokens),
        open_alerts=dict(sorted(open_alerts.items())),
        alerts_total=len(alerts),
        **_key_history(store),
    )


def _key_history(store: Store) -> dict[str, Any]:
    """The key in force and the rotations, or the problem with the key history."""
    try:
        history = load_history(store)
    except OtauditError as exc:
        return {"key_problem": str(exc)}
    return {
        "signing_key": str(history.current),
        "key_rotations": tuple(r.seq for r in history.rotations),
    }


def tokens_by_scope(tokens: list[StoredToken]) -> dict[str, dict[str, int]]:
    """How many tokens hold each scope, active and revoked (a token counts once per scope)."""
    counts: dict[str, dict[str, int]] = {}
    for token in tokens:
        state = "active" if token.revoked_at is None else "revoked"
        for scope in filter(None, token.scopes.split(",")):
            counts.setdefault(scope, {"active": 0, "revoked": 0})[state] += 1
    return dict(sorted(counts.items()))


def last_verification(store: Store) -> Verification | None:
    """The latest ``otaudit verify`` run or server refusal to sign in the ledger, if any."""
    last: Verification | None = None
    for seq, time_ns, actor, _target, raw in store.action_rows((READ_ACTION, VERIFY_ACTION)):
        attrs: dict[str, Any] = raw if isinstance(raw, dict) else orjson.loads(raw or "{}")
        action = attrs.get("audit.action")
        if action == READ_ACTION and attrs.get("audit.query.kind") != "verify":
            continue
        rows = attrs.get("audit.query.rows")
        last = Verification(
            seq=int(seq),
            time=rfc3339_ns(int(time_ns)),
            by="server" if action == VERIFY_ACTION else "otaudit verify",
            actor=str(actor or ""),
            ok=attrs.get("audit.result") == "success",
            records=int(rows) if rows is not None and str(rows).isdigit() else None,
            error=attrs.get("audit.query.error"),
        )
    return last


@dataclass(frozen=True)
class ServerInfo:
    """What the server tells ``/status`` about itself that its counters do not hold."""

    started_ns: int
    #: Listener name (``http``, ``grpc``, ``read_api``) to ``HOST:PORT``.
    listeners: dict[str, str]
    detection: bool


def server_status(info: ServerInfo, metrics: Metrics, auth_required: bool) -> dict[str, Any]:
    """The running server's status as JSON (served at ``/status``)."""
    now_ns = time.time_ns()
    registry = metrics.registry
    position = registry.get_sample_value("otaudit_detect_position")
    return {
        "started_at": rfc3339_ns(info.started_ns),
        "uptime_s": round((now_ns - info.started_ns) / 1e9, 3),
        "listeners": info.listeners,
        "auth": {"required": auth_required},
        "sequencer": {
            "queue_records": int(registry.get_sample_value("otaudit_sequencer_queue_records") or 0),
            "lag_s": registry.get_sample_value("otaudit_sequencer_lag_seconds") or 0.0,
            "tree_size": int(registry.get_sample_value("otaudit_tree_size") or 0),
            "checkpoint_size": int(registry.get_sample_value("otaudit_checkpoint_tree_size") or 0),
        },
        "records": {
            name: sum(_totals(metrics, f"otaudit_records_{name}", "signal").values())
            for name in ("received", "sealed", "duplicate", "rejected")
        },
        "dropped": _totals(metrics, "otaudit_records_dropped", "reason"),
        "requests_failed": _totals(metrics, "otaudit_requests_failed", "reason"),
        "detection": {
            "enabled": info.detection,
            "position": int(position or 0) if info.detection else None,
        },
    }


def _totals(metrics: Metrics, family: str, label: str) -> dict[str, int]:
    """A counter's values summed per value of ``label`` (over its other labels)."""
    totals: Counter[str] = Counter()
    for metric in metrics.registry.collect():
        if metric.name != family:
            continue
        for sample in metric.samples:
            if sample.name == f"{family}_total":
                totals[sample.labels.get(label, "")] += int(sample.value)
    return dict(sorted(totals.items()))


@dataclass(frozen=True)
class WitnessStatus:
    """What a witness directory (``serve --witness-dir``) says: how far it is cosigned."""

    directory: str
    exported: int | None  # the latest checkpoint the server wrote there (tree size)
    cosigned: int | None  # the latest cosigned one
    cosigned_age_s: float | None
    cosigners: tuple[str, ...]  # the signers of the latest cosigned note, the log's included
    waiting: int  # checkpoints written there and not cosigned yet

    def as_json(self) -> dict[str, Any]:
        """The JSON form (``status --format json``)."""
        return {
            "directory": self.directory,
            "exported": self.exported,
            "cosigned": self.cosigned,
            "cosigned_age_s": self.cosigned_age_s,
            "cosigners": list(self.cosigners),
            "waiting": self.waiting,
        }


def witness_status(directory: Path, now_s: float | None = None) -> WitnessStatus:
    """Read ``directory`` (ConfigError if it is not one); only the newest cosigned note is
    opened, and at most :data:`otaudit.witness.limits.MAX_NOTE_BYTES` of it."""
    if not directory.is_dir():
        raise ConfigError(f"witness directory {directory} does not exist or is not a directory")
    sizes: dict[str, set[int]] = {"checkpoint": set(), "cosigned": set()}
    for entry in os.scandir(directory):
        kind, _, size = entry.name.partition(".")
        if kind in sizes and size.isascii() and size.isdigit() and len(size) <= 20:
            sizes[kind].add(int(size))
    exported = max(sizes["checkpoint"], default=None)
    cosigned = max(sizes["cosigned"], default=None)
    age: float | None = None
    cosigners: tuple[str, ...] = ()
    if cosigned is not None:
        path = directory / f"cosigned.{cosigned}"
        try:
            raw = read_small_file(path, "cosigned checkpoint", MAX_NOTE_BYTES)
        except ConfigError:  # not a regular file, or too large: the line says unreadable
            raw = None
        if raw is not None:
            age = (time.time() if now_s is None else now_s) - path.stat().st_mtime
            try:
                cosigners = tuple(dict.fromkeys(sig.name for sig in parse_note(raw)[1]))
            except VerificationError:
                cosigners = ()
    waiting = len([s for s in sizes["checkpoint"] if cosigned is None or s > cosigned])
    return WitnessStatus(str(directory), exported, cosigned, age, cosigners, waiting)
