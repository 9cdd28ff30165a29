"""The pack's ``completeness/`` and ``configuration/`` folders."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

import orjson
import yaml

from otaudit.bundle.keys import key_history_lines
from otaudit.detect.rules import Rule
from otaudit.evidence.files import PackWriter, TableFiles
from otaudit.evidence.mapping import Period
from otaudit.evidence.model import (
    CheckpointInfo,
    Completeness,
    Configuration,
    ProducerGap,
    TokenInfo,
)
from otaudit.evidence.period import PeriodCheckpoints
from otaudit.evidence.population import day_of, zero_filled
from otaudit.evidence.rows import stream
from otaudit.keyhistory import KeyHistory
from otaudit.keys import VerifierKey
from otaudit.record import rfc3339_ns
from otaudit.retention.holds import holds
from otaudit.retention.policy import HASH_ATTRIBUTE, POLICY_ACTION, TEXT_ATTRIBUTE, row_attributes
from otaudit.retention.receipts import read_receipts
from otaudit.sqlworker import QueryTarget
from otaudit.store.base import Store, StoredCheckpoint

COMPLETENESS: Final = "completeness"
CONFIGURATION: Final = "configuration"
_GAP_COLUMNS: Final = ("producer", "first_seq", "last_seq", "records", "missing_count", "missing",
                       "duplicate_count")  # fmt: skip
_MAX_RANGES_SHOWN: Final = 1000


def _period_where(period: Period) -> str:
    return (
        f"seq < {period.tree_size} AND time_unix_nano >= {period.from_ns}"
        f" AND time_unix_nano < {period.to_ns}"
    )


def _info(cp: StoredCheckpoint | None, name: str) -> CheckpointInfo:
    if cp is None:
        empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        return CheckpointInfo(0, empty, "", "")
    return CheckpointInfo(cp.tree_size, cp.root_hash.hex(), rfc3339_ns(cp.signed_at_ns), name)


def _ranges_text(ranges: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


def _producers(writer: PackWriter, target: QueryTarget, period: Period) -> list[ProducerGap]:
    """Per producer active in the period: its numbers' gaps and repeats, streamed in order."""
    rows = stream(
        target,
        "SELECT producer, producer_seq FROM audit_records WHERE "
        f"{_period_where(period)} AND producer IS NOT NULL AND producer_seq IS NOT NULL "
        "ORDER BY producer, producer_seq",
        checked=False,
    )
    files = TableFiles(writer, f"{COMPLETENESS}/producers", _GAP_COLUMNS)
    found: list[ProducerGap] = []
    current: str | None = None
    first = last = count = dups = missing = ranges = 0
    # The first ranges are shown; the rest only counted (a producer's numbers may be hostile).
    gaps: list[tuple[int, int]] = []

    def flush() -> None:
        if current is None:
            return
        text = _ranges_text(gaps)
        if ranges > len(gaps):
            text += f" (and {ranges - len(gaps)} more ranges)"
        files.add((current, first, last, count, missing, text, dups))
        found.append(ProducerGap(current, count, missing, text, dups))

    for producer, number in rows:
        number = int(number)
        if producer != current:
            flush()
            current, first, last, gaps = str(producer), number, number, []
            count = dups = missing = ranges = 0
        elif number == last:
            dups += 1
        elif number > last + 1:
            missing += number - 1 - last
            ranges += 1
            if len(gaps) < _MAX_RANGES_SHOWN:
                gaps.append((last + 1, number - 1))
        last = number
        count += 1
    flush()
    files.close()
    return found


def _count(target: QueryTarget, where: str) -> int:
    (row,) = list(stream(target, f"SELECT count(*) FROM audit_records WHERE {where}",
                         checked=False))  # fmt: skip
    return int(row[0])


def write_completeness(
    writer: PackWriter,
    store: Store,
    target: QueryTarget,
    period: Period,
    checkpoints: PeriodCheckpoints,
    days: Sequence[str],
    silences: int,
) -> Completeness:
    """``completeness/``: the checkpoints, their consistency proof, counts per day, producer
    gaps, non-conforming records, and what arrived late or was removed."""
    opening, closing = checkpoints.opening, checkpoints.closing
    if opening is not None:
        writer.write(f"{COMPLETENESS}/opening.checkpoint", opening.note)
    writer.write(f"{COMPLETENESS}/closing.checkpoint", closing.note)
    size1 = opening.tree_size if opening is not None else 0
    writer.json(f"{COMPLETENESS}/consistency.json", {
        "size1": size1,
        "size2": closing.tree_size,
        "root1": _info(opening, "").root_hash,
        "root2": closing.root_hash.hex(),
        "hashes": [h.hex() for h in checkpoints.proof],
        "method": "RFC 9162 section 2.1.4.2 (verify a consistency proof)",
    })  # fmt: skip
    per_day: Counter[str] = Counter()
    records = 0
    for (time_ns,) in stream(
        target, f"SELECT time_unix_nano FROM audit_records WHERE {_period_where(period)}",
        checked=False,
    ):  # fmt: skip
        per_day[day_of(int(time_ns))] += 1
        records += 1
    counts = zero_filled(per_day, days)
    files = TableFiles(writer, f"{COMPLETENESS}/counts_per_day", ("day", "records"))
    files.add_all(counts.items())
    files.close()
    producers = _producers(writer, target, period)
    nonconforming = stream(
        target,
        f"SELECT * FROM audit_records WHERE {_period_where(period)} AND missing IS NOT NULL "
        "ORDER BY seq",
        checked=False,
    )
    files = TableFiles(writer, f"{COMPLETENESS}/nonconforming", nonconforming.columns)
    files.add_all(nonconforming)
    bad = files.close()
    late = _count(
        target,
        f"seq >= {period.tree_size} AND time_unix_nano >= {period.from_ns}"
        f" AND time_unix_nano < {period.to_ns}",
    )
    removed = sum(
        max(0, min(b, closing.tree_size - 1) - max(a, size1) + 1)
        for r in read_receipts(store, closing.tree_size)
        for a, b in r.ranges
    )
    return Completeness(
        opening=_info(opening, f"{COMPLETENESS}/opening.checkpoint"),
        closing=_info(closing, f"{COMPLETENESS}/closing.checkpoint"),
        records=records,
        per_day=counts,
        producers=producers,
        silences=silences,
        nonconforming=bad,
        late=late,
        removed=removed,
    )


def _rule_spec(rule: Rule) -> dict[str, Any]:
    return dict(rule.spec) | {"name": rule.name, "kind": rule.kind, "severity": rule.severity}


def write_configuration(
    writer: PackWriter,
    store: Store,
    end: int,
    rules: Sequence[Rule],
    key: VerifierKey,
    history: KeyHistory,
) -> Configuration:
    """``configuration/``: the retention policy in force and its receipts, legal holds,
    tokens and their scopes (never a secret), the detection rules, the verifier key."""
    policy: tuple[str, str] | None = None
    for row in store.action_rows((POLICY_ACTION,)):
        if int(row[0]) < end:
            attrs = row_attributes(row[4])
            policy = (str(attrs.get(HASH_ATTRIBUTE, "")), str(attrs.get(TEXT_ATTRIBUTE, "")))
    writer.json(f"{CONFIGURATION}/retention.json", {
        "policy_sha256": policy[0] if policy else None,
        "policy": policy[1] if policy else None,
        "note": None if policy else "no retention policy was recorded: nothing is pruned",
    })  # fmt: skip
    receipts = read_receipts(store, end)
    writer.write(f"{CONFIGURATION}/receipts.jsonl", b"".join(
        orjson.dumps(vars(r) | {"ranges": [list(x) for x in r.ranges]}) + b"\n" for r in receipts
    ))  # fmt: skip
    found = [h for h in holds(store) if h.created_seq < end]
    lines = []
    for h in found:
        # A release after the closing checkpoint is not part of the period's configuration.
        released = h.released_seq is not None and h.released_seq < end
        lines.append(orjson.dumps({
            "id": h.id, "name": h.name, "reason": h.reason, "created_seq": h.created_seq,
            "created_by": h.created_by,
            "released_seq": h.released_seq if released else None,
            "released_by": h.released_by if released else None,
        }) + b"\n")  # fmt: skip
    writer.write(f"{CONFIGURATION}/holds.jsonl", b"".join(lines))
    tokens = [
        TokenInfo(t.token_id, t.name, t.scopes, t.created_at, t.revoked_at) for t in store.tokens()
    ]
    files = TableFiles(writer, f"{CONFIGURATION}/tokens", ("token_id", "name", "scopes",
                                                           "created_at", "revoked_at"))  # fmt: skip
    files.add_all((t.token_id, t.name, t.scopes, t.created_at, t.revoked_at) for t in tokens)
    files.close()
    writer.write(f"{CONFIGURATION}/rules.yaml", yaml.safe_dump(
        {"rules": [_rule_spec(r) for r in rules]}, sort_keys=False, allow_unicode=True
    ))  # fmt: skip
    # The original key: keys.jsonl proves the way from it to the key of the closing checkpoint.
    writer.write(f"{CONFIGURATION}/verifier.key", f"{history.original}\n")
    rotations = key_history_lines(store, history, end)
    if rotations:
        writer.write(f"{CONFIGURATION}/keys.jsonl", rotations)
    return Configuration(
        retention_policy_sha256=policy[0] if policy else None,
        retention_policy_text=policy[1] if policy else None,
        receipts=len(receipts),
        holds=len(found),
        tokens=tokens,
        rules=[(r.name, r.kind, r.severity, r.description) for r in rules],
        verifier_key=str(history.key_for(end)),
    )
