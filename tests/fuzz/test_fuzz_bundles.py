"""Fuzzing evidence bundles: whatever is done to a bundle's files (bytes, JSON values, proofs,
the checkpoint, the manifest and its signature, files swapped for links, FIFOs or
directories), ``verify_bundle`` returns a report or raises a ``VerificationError`` or a
``ConfigError`` (exit 1 or 2 at the CLI), never anything else, and never hangs. What it
accepts is sound: every record it passes is one the log holds, and a manifest it reports
as signed is the one the exporter signed.

``make test`` runs a bounded number of examples (profile ``default``); ``make fuzz`` runs
the same properties with many more (profile ``fuzz``). Whatever a run finds is fixed and
kept below as an ``@example``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from otaudit.bundle import FILES, MANIFEST, MANIFEST_SIG, Report, verify_bundle
from otaudit.errors import ConfigError, OtauditError, VerificationError
from otaudit.keys import VerifierKey
from support import Server, audit_request, otaudit, post

NAMES = [*FILES, MANIFEST, MANIFEST_SIG]
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bundles of a real ledger, exported by the CLI: every record, and a filtered one."""
    base = tmp_path_factory.mktemp("fuzz-bundles")
    server = Server(base / "data").start()
    try:
        assert post(server, audit_request(5, payload_bytes=20)).status_code == 200
    finally:
        assert server.stop() == 0
    bundles = {"whole": base / "whole", "filtered": base / "filtered"}
    for args in (["--out", str(bundles["whole"])],
                 ["--out", str(bundles["filtered"]), "--since", "2025-11-28"]):  # fmt: skip
        result = otaudit("export", "--data", str(base / "data"), *args)
        assert result.returncode == 0, result.stderr
        assert "manifest signed" in result.stdout
    return bundles


@pytest.fixture(scope="module")
def key(exported: dict[str, Path]) -> VerifierKey:
    """The log's key, as an auditor obtained it out of band."""
    return VerifierKey.parse((exported["whole"] / "verifier.key").read_text().strip())


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: a read that never ends (a FIFO, /dev/zero) is a failure."""

    def hang(signum: int, frame: FrameType | None) -> None:
        raise AssertionError(f"verify_bundle did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def attempt(
    source: Path, work: Path, key: VerifierKey | None, change: Callable[[Path], None]
) -> Report | OtauditError:
    """Copy ``source``, apply ``change``, verify; check the outcome is clean and sound."""
    bundle = work / "bundle"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(source, bundle, symlinks=True)
    change(bundle)
    try:
        with deadline(20):
            report = verify_bundle(bundle, key)
    except (VerificationError, ConfigError) as exc:
        return exc
    # Accepted: every record is one the exporter wrote (the log holds it) ...
    original = set((source / "records.canonical").read_bytes().splitlines())
    assert set((bundle / "records.canonical").read_bytes().splitlines()) <= original
    assert report.records <= len(original)
    # ... and a manifest reported as signed is byte for byte the one the exporter signed.
    if report.manifest_signed:
        assert (bundle / MANIFEST).read_bytes() == (source / MANIFEST).read_bytes()
    return report


def rehash(bundle: Path) -> None:
    """List the files as they are now in the manifest (its signature no longer matches)."""
    path = bundle / MANIFEST
    try:
        manifest = orjson.loads(path.read_bytes())
        files = {}
        for name in FILES:
            data = (bundle / name).read_bytes()
            files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        manifest["files"] = files
        path.write_bytes(orjson.dumps(manifest))
    except (OSError, orjson.JSONDecodeError, TypeError):
        pass  # not a manifest (or a file not a file) any more: nothing to rehash


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, at, value in edits:
        if kind == 2 or not out:
            out.insert(at % (len(out) + 1), value)
        elif kind == 0:
            out[at % len(out)] = value
        elif kind == 1:
            del out[at % len(out) :]
        else:
            del out[at % len(out)]
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 255)),
                 min_size=1, max_size=6)  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=12,
)  # fmt: skip
KINDS = st.sampled_from(["whole", "filtered"])


@FUZZ
@given(kind=KINDS, name=st.sampled_from(NAMES), edits=EDITS, fix_hashes=st.booleans(),
       trusted=st.booleans())  # fmt: skip
@example(kind="whole", name="records.csv", edits=[(1, 40, 0)], fix_hashes=True, trusted=True)
@example(kind="whole", name=MANIFEST_SIG, edits=[(0, 3, 0x41)], fix_hashes=False, trusted=True)
def test_mutated_files(
    exported: dict[str, Path], key: VerifierKey, tmp_path: Path,
    kind: str, name: str, edits: list[tuple[int, int, int]], fix_hashes: bool, trusted: bool,
) -> None:  # fmt: skip
    def change(bundle: Path) -> None:
        path = bundle / name
        path.write_bytes(mutate(path.read_bytes(), edits))
        if fix_hashes and name != MANIFEST:
            rehash(bundle)

    attempt(exported[kind], tmp_path, key if trusted else None, change)


MANIFEST_PATHS = st.sampled_from([
    ("format",), ("origin",), ("tree_size",), ("root_hash",), ("records",), ("created_at",),
    ("selection",), ("selection", "actions"), ("selection", "since_utc"),
    ("selection", "until_utc"), ("selection", "since"), ("files",), ("files", "proofs.jsonl"),
    ("files", "records.csv", "bytes"), ("files", "records.csv", "sha256"), ("files", "extra"),
])  # fmt: skip


@FUZZ
@given(kind=KINDS, where=MANIFEST_PATHS, value=JSON, drop_signature=st.booleans())
@example(kind="whole", where=("selection", "since_utc"), value="9999-12-31T23:59:59.999999999Z",
         drop_signature=True)  # fmt: skip
@example(kind="whole", where=("tree_size",), value=2**64, drop_signature=True)
@example(kind="filtered", where=("selection", "actions"), value="config_change",
         drop_signature=True)  # fmt: skip
def test_manifest_values(
    exported: dict[str, Path], key: VerifierKey, tmp_path: Path,
    kind: str, where: tuple[str, ...], value: Any, drop_signature: bool,
) -> None:  # fmt: skip
    def change(bundle: Path) -> None:
        manifest = orjson.loads((bundle / MANIFEST).read_bytes())
        node = manifest
        for step in where[:-1]:
            node = node[step]
        node[where[-1]] = value
        # The standard library writes what orjson will not: NaN, integers beyond 64 bits.
        (bundle / MANIFEST).write_text(json.dumps(manifest))
        if drop_signature:
            (bundle / MANIFEST_SIG).unlink()

    attempt(exported[kind], tmp_path, key, change)


PROOF_FIELDS = st.sampled_from(["index", "tree_size", "leaf_hash", "hashes", "extra"])


@FUZZ
@given(kind=KINDS, line=st.integers(0, 10), field=PROOF_FIELDS, value=JSON,
       replace_line=st.booleans())  # fmt: skip
@example(kind="whole", line=0, field="index", value=-1, replace_line=False)
@example(kind="whole", line=1, field="index", value=True, replace_line=False)
@example(kind="whole", line=2, field="hashes", value="00", replace_line=False)
@example(kind="whole", line=0, field="index", value=None, replace_line=True)
def test_proof_values(
    exported: dict[str, Path], key: VerifierKey, tmp_path: Path,
    kind: str, line: int, field: str, value: Any, replace_line: bool,
) -> None:  # fmt: skip
    def change(bundle: Path) -> None:
        path = bundle / "proofs.jsonl"
        lines = path.read_bytes().splitlines(keepends=True)
        if not lines:
            lines = [b"{}\n"]
        at = line % len(lines)
        proof = value if replace_line else orjson.loads(lines[at]) | {field: value}
        lines[at] = json.dumps(proof).encode() + b"\n"
        path.write_bytes(b"".join(lines))
        rehash(bundle)
        (bundle / MANIFEST_SIG).unlink()

    attempt(exported[kind], tmp_path, key, change)


@FUZZ
@given(kind=KINDS, name=st.sampled_from([*FILES, MANIFEST]), text=st.text(max_size=300),
       fix_hashes=st.booleans())  # fmt: skip
@example(kind="whole", name="checkpoint", text="o\n1\nAAAA\n\n\u2014 o AAAAAAA=\n",
         fix_hashes=True)  # fmt: skip
@example(kind="whole", name="records.csv", text='seq,"\x00\n', fix_hashes=True)
def test_replaced_text(
    exported: dict[str, Path], key: VerifierKey, tmp_path: Path,
    kind: str, name: str, text: str, fix_hashes: bool,
) -> None:  # fmt: skip
    def change(bundle: Path) -> None:
        (bundle / name).write_text(text, errors="surrogatepass")
        if fix_hashes:
            rehash(bundle)
            (bundle / MANIFEST_SIG).unlink(missing_ok=True)

    attempt(exported[kind], tmp_path, key, change)


SPECIAL = st.sampled_from(["fifo", "dev-zero", "dangling", "directory", "link-to-copy",
                           "link-to-directory", "empty", "absent"])  # fmt: skip


@FUZZ
@given(kind=KINDS, name=st.sampled_from(NAMES), special=SPECIAL, trusted=st.booleans())
def test_files_that_are_not_regular_files(
    exported: dict[str, Path], key: VerifierKey, tmp_path: Path,
    kind: str, name: str, special: str, trusted: bool,
) -> None:  # fmt: skip
    def change(bundle: Path) -> None:
        path = bundle / name
        copy = bundle.parent / f"copy-of-{name}"
        shutil.copy(path, copy)
        path.unlink()
        if special == "fifo":
            os.mkfifo(path)
        elif special == "dev-zero":
            path.symlink_to("/dev/zero")
        elif special == "dangling":
            path.symlink_to(bundle.parent / "nowhere")
        elif special == "directory":
            path.mkdir()
        elif special == "link-to-copy":
            path.symlink_to(copy)
        elif special == "link-to-directory":
            path.symlink_to(bundle.parent)
        elif special == "empty":
            path.write_bytes(b"")

    outcome = attempt(exported[kind], tmp_path, key if trusted else None, change)
    if special == "absent" and name == MANIFEST_SIG:
        assert isinstance(outcome, Report) and not outcome.manifest_signed
    elif special == "absent" and name == MANIFEST:
        assert isinstance(outcome, ConfigError)
    else:  # never read as if it were the file: refused, naming it
        assert isinstance(outcome, VerificationError) and name in str(outcome)
