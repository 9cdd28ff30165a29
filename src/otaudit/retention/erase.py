"""``otaudit erase``: removing one person's records on request, under a sealed receipt.

Every record whose actor, target or any attribute value equals the subject loses its
payload (its leaf stays, so every proof stays valid), except:

- records under a legal hold (named in the report, with how many each holds: the
  erasure of the others goes on, and the command says what it could not erase);
- the records the ledger itself needs (receipts, policies, holds, key rotations:
  :data:`otaudit.retention.policy.STRUCTURAL_ACTIONS`).

The receipt names the subject only by its HMAC-SHA256 under the data directory's own
key (:data:`KEY_FILE`), so the receipt that proves the erasure does not undo it. Copies
already archived cannot be changed when their store locks them: ``erase`` lists the
archive segments that still hold the subject's records, with the date each may go.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from otaudit.access import Reader
from otaudit.errors import ConfigError
from otaudit.ownrecords import Appender
from otaudit.retention.holds import active_holds, hold_condition
from otaudit.retention.removal import DELETE_BATCH, remove, structural_condition
from otaudit.secretfile import data_key
from otaudit.store.base import Store

if TYPE_CHECKING:  # the S3 client loads only when an archive is used
    from otaudit.archive import ArchiveTarget, SegmentInfo

#: The data directory's key for naming erased subjects in receipts (HMAC-SHA256).
KEY_FILE: Final = "erasure.key"
MAX_REASON: Final = 1024


@dataclass
class HeldBy:
    """A hold that keeps some of the subject's records from being erased."""

    hold_id: str
    name: str
    records: int


@dataclass
class EraseReport:
    """What ``erase`` found and did."""

    subject_hmac: str
    matched: int = 0
    erased: int = 0
    held: int = 0
    holds: list[HeldBy] = field(default_factory=list)
    receipts: list[int] = field(default_factory=list)
    archives: list[SegmentInfo] = field(default_factory=list)
    dry_run: bool = False


def subject_key(data: Path) -> bytes:
    """The data directory's erasure key (created, 0600, on first use)."""
    return data_key(data / KEY_FILE, "erasure key", 32, "later receipts name subjects anew")


def subject_hmac(key: bytes, subject: str) -> str:
    """How a receipt names ``subject``: ``hmac-sha256:<hex>``."""
    return "hmac-sha256:" + hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()


def erase(
    store: Store,
    appender: Appender,
    reader: Reader,
    subject: str,
    reason: str,
    *,
    key: bytes,
    dry_run: bool = False,
    archive: ArchiveTarget | None = None,
    batch: int = DELETE_BATCH,
    pause_s: float = 0.0,
) -> EraseReport:
    """Erase the payloads of ``subject``'s records not under a hold (module docstring)."""
    if not subject:
        raise ConfigError("--subject must not be empty")
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise ConfigError(f"--reason must say why, in at most {MAX_REASON} characters")
    report = EraseReport(subject_hmac(key, subject), dry_run=dry_run)
    end = store.tree_size()
    matches, params = store.subject_condition(subject)
    condition = f"({matches}) AND NOT ({structural_condition()})"
    matched = list(store.seqs_where(condition, params, end=end))
    held: set[int] = set()
    for hold in active_holds(store):
        hold_sql, hold_params = hold_condition([hold], store.placeholder)
        seqs = set(store.seqs_where(f"{condition} AND ({hold_sql})", params + hold_params, end=end))
        if seqs:
            report.holds.append(HeldBy(hold.id, hold.name, len(seqs)))
            held |= seqs
    erasable = [s for s in matched if s not in held]
    report.matched, report.held = len(matched), len(held)
    if archive is not None:
        from otaudit.archive import subject_segments

        report.archives = subject_segments(archive, subject)
    if dry_run or not erasable:
        report.erased = len(erasable) if dry_run else 0
        return report
    done = remove(
        store,
        appender,
        reader,
        erasable,
        kind="erase",
        subject=report.subject_hmac,
        reason=reason,
        batch=batch,
        pause_s=pause_s,
    )
    report.erased, report.receipts = done.records, done.receipts
    return report
