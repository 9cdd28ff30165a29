"""verify through the compiled core gives the reference's verdicts, on every store.

Every tampering case of ``tests/contract/test_contract_tamper.py`` (a record's bytes or
columns, a row deleted, added or swapped, a tree node, a checkpoint, a resource kept once
or how a row refers to it) is run through :func:`otaudit.verify.verify_ledger` and
:func:`otaudit.verify.verify_range` twice: through the core and with ``reference=True``.
Both must fail the same way (class, seq, message) or pass with the same report. Records
signed late (step 5, which the core follows record by record) are cross-checked on
random receive times, and the untampered ledger must be checked by the core alone (no
fallback to the reference). After the core has read a SQLite ledger, the process has one
SQLite library mapped, the one :mod:`sqlite3` uses.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otaudit import verify
from otaudit.errors import VerificationError
from otaudit.keys import SigningKey, VerifierKey
from otaudit.otlp.convert import select_spans
from otaudit.record import seal
from otaudit.store.sqlite import SQLiteStore
from sealing import sign
from support import audit_request

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "contract"))
from test_contract_tamper import CASES, RECORDS, Ledger, ledger

__all__ = ["ledger"]  # the fixture, from the contract tests

SECOND = 1_000_000_000
T0 = 1_764_288_000 * SECOND


def _outcome(run: Callable[[], verify.VerifyReport]) -> tuple[Any, ...]:
    """What a verify call says: its report's figures, or its failure."""
    try:
        report = run()
    except VerificationError as exc:
        return ("failed", type(exc), exc.seq, str(exc))
    return ("ok", report.records, report.record_bytes, report.tree_size, report.checkpoints,
            report.checkpoint_size)  # fmt: skip


def _both(call: Callable[..., verify.VerifyReport], *args: Any) -> tuple[Any, Any]:
    """The outcomes of ``call(*args)`` through the core and through the reference."""
    core = _outcome(lambda: call(*args, reference=False))
    reference = _outcome(lambda: call(*args, reference=True))
    return core, reference


@pytest.fixture
def core_only(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the reference's own runs of step 1 over a whole range (the core's fallback)."""
    calls: list[int] = []
    original = verify._check_records

    def counted(*args: Any, **kwargs: Any) -> tuple[int, int, int]:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(verify, "_check_records", counted)
    return calls


def test_an_untampered_ledger_is_verified_by_the_core_alone(
    ledger: Ledger, core_only: list[int]
) -> None:
    key = ledger.verifier()
    report = verify.verify_ledger(ledger.store, key)
    assert report.records == RECORDS
    assert not core_only, "the core fell back to the reference"
    ranged = verify.verify_range(ledger.store, key, 3, 17)
    assert ranged.records == 14
    assert not core_only
    assert _outcome(lambda: verify.verify_ledger(ledger.store, key, reference=True)) == (
        _outcome(lambda: verify.verify_ledger(ledger.store, key))
    )
    assert core_only  # the reference itself


@pytest.mark.parametrize("reader", ["core", "python"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_core_and_the_reference_agree(
    ledger: Ledger, case: str, reader: str, core_only: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with the rows read by Python and fed to the core, as on PostgreSQL (and on
    SQLite when the core's SQLite library is not Python's)."""
    if reader == "python":
        if not isinstance(ledger.store, SQLiteStore):
            pytest.skip("Python reads the rows of every other store anyway")
        monkeypatch.setattr(verify, "one_sqlite", lambda: False)
    tamper, seq, _ = CASES[case]
    tamper(ledger)
    key = ledger.verifier()
    core, reference = _both(verify.verify_ledger, ledger.store, key)
    assert core == reference
    assert core[0] == "failed"
    if seq is not None:
        assert core[2] == seq
    assert len(core_only) == 1, "the core fell back to the reference"
    for begin, end in ((0, None), (2, 9), (10, RECORDS), (15, 16)):
        core, reference = _both(verify.verify_range, ledger.store, key, begin, end)
        assert core == reference, (begin, end)


@pytest.mark.parametrize(
    "alarm",
    [
        {"fault": (5, "unsure")},
        {"fault": (0, "missing")},
        {"tree_fault": (2, "tree")},
        {"excluded": 7},
    ],
)
def test_a_false_alarm_of_the_core_is_overruled_by_the_reference(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, alarm: dict[str, Any]
) -> None:
    """Where the core flags what the reference finds good, the reference decides: the
    untampered ledger still verifies, with the reference's report."""
    key = ledger.verifier()
    want = [
        _outcome(lambda: verify.verify_ledger(ledger.store, key, reference=True)),
        _outcome(lambda: verify.verify_range(ledger.store, key, 2, 18, reference=True)),
    ]
    original = verify._core_run

    def alarmed(*args: Any, **kwargs: Any) -> verify._CoreRun | None:
        run = original(*args, **kwargs)
        assert run is not None
        return dataclasses.replace(run, **alarm)

    monkeypatch.setattr(verify, "_core_run", alarmed)
    got = [
        _outcome(lambda: verify.verify_ledger(ledger.store, key)),
        _outcome(lambda: verify.verify_range(ledger.store, key, 2, 18)),
    ]
    assert got == want


@pytest.mark.parametrize("begin", [0, 3, 9_999, 10_000, 25_001])
def test_progress_is_told_where_the_reference_tells_it(begin: int) -> None:
    """The reference tells progress after each record whose next seq is a multiple of
    10,000; the core's batches are told the same counts, once each, in order."""
    records = 47_000
    reference = [
        seq + 1 - begin for seq in range(begin, begin + records) if (seq + 1) % 10_000 == 0
    ]
    told: list[int] = []
    checked = 0
    for batch in (1, 4096, 9_999, 10_000, 20_001, 2, 3_000):
        after = min(checked + batch, records)
        verify._tell(told.append, begin, checked, after)
        checked = after
    verify._tell(told.append, begin, checked, records)
    assert told == reference


def _signed_ledger(
    directory: Path, received: list[tuple[int, bool]], sizes: list[int]
) -> tuple[SQLiteStore, VerifierKey]:
    """A SQLite ledger of ``len(received)`` records, each received ``s`` seconds after T0
    by a client (or by otaudit itself), a checkpoint signed at each of ``sizes``."""
    export = ExportTraceServiceRequest.FromString(audit_request(len(received), payload_bytes=8))
    records = select_spans(export, "audit.action").records
    entries = [
        seal(obj, content, "otaudit" if own else "otlp", T0 + s * SECOND)
        for (obj, content), (s, own) in zip(records, received, strict=True)
    ]
    store = SQLiteStore(directory / "ledger.db")
    key = SigningKey.generate("example.com/crosscheck")
    store.set_meta("origin", "example.com/crosscheck")
    done = 0
    for size in sorted(set(sizes)):
        store.append(entries[done:size])
        done = size
        sign(store, key, "example.com/crosscheck")
    store.append(entries[done:])
    return store, VerifierKey.parse(key.verifier_key())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    received=st.lists(st.tuples(st.integers(0, 4000), st.booleans()), min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 12), max_size=4),
    bound=st.sampled_from([1, 60, 600, 3600]),
)
def test_late_signing_is_found_as_the_reference_finds_it(
    received: list[tuple[int, bool]], cuts: list[int], bound: int
) -> None:
    sizes = [min(c, len(received)) for c in cuts]
    with tempfile.TemporaryDirectory() as tmp:
        store, key = _signed_ledger(Path(tmp), received, sizes)
        try:
            core = _outcome(lambda: verify.verify_ledger(store, key, max_signing_delay_s=bound))
            reference = _outcome(
                lambda: verify.verify_ledger(store, key, max_signing_delay_s=bound, reference=True)
            )
        finally:
            store.close()
    assert core == reference


def _sqlite_libraries() -> set[str]:
    with open("/proc/self/maps") as maps:
        return {line.split()[-1] for line in maps if "libsqlite3" in line}


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_one_sqlite_library_is_mapped_after_the_core_read_a_ledger(tmp_path: Path) -> None:
    store, key = _signed_ledger(tmp_path, [(0, False)] * 3, [3])
    try:
        assert verify.verify_ledger(store, key).records == 3
    finally:
        store.close()
    libraries = {Path(p).resolve() for p in _sqlite_libraries()}
    assert len(libraries) == 1, libraries
    assert verify.one_sqlite()  # so the core read the ledger itself
