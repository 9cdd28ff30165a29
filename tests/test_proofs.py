"""Stored-tree proofs checked against otaudit.merkle, and as ``otaudit prove`` prints them."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import STORE_KINDS, new_store_url
from otaudit import datadir, merkle, tree
from otaudit.otlp.convert import select_spans
from otaudit.record import seal
from otaudit.store.base import Store
from support import Server, audit_request, otaudit, post

SIZE = 64


@pytest.fixture(scope="module", params=STORE_KINDS)
def stored(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Store, list[bytes]]]:
    """Each store holding SIZE records appended in uneven batches, and their leaf hashes."""
    directory = tmp_path_factory.mktemp("proofs")
    store = datadir.open_store(
        directory, new_store_url(request.param, directory, request), readonly=False
    )
    export = ExportTraceServiceRequest.FromString(audit_request(SIZE))
    entries = [
        seal(obj, content, "otlp", 1)
        for obj, content in select_spans(export, "audit.action").records
    ]
    at = 0
    for batch in (1, 2, 5, 8, 13, 35):
        store.append(entries[at : at + batch])
        at += batch
    assert store.tree_size() == SIZE
    yield store, [e.leaf for e in entries]
    store.close()


def test_roots_at_every_size(stored: tuple[Store, list[bytes]]) -> None:
    store, leaves = stored
    for size in range(SIZE + 1):
        assert tree.stored_root(store, size) == merkle.root_hash(leaves[:size])


def test_inclusion_proofs_for_every_index_and_size(stored: tuple[Store, list[bytes]]) -> None:
    store, leaves = stored
    for size in range(1, SIZE + 1):
        root = merkle.root_hash(leaves[:size])
        for index in range(size):
            proof = tree.stored_inclusion_proof(store, index, size)
            assert proof == merkle.inclusion_proof(leaves[:size], index)
            merkle.verify_inclusion(leaves[index], index, size, proof, root)


def test_consistency_proofs_for_every_pair(stored: tuple[Store, list[bytes]]) -> None:
    store, leaves = stored
    for size2 in range(1, SIZE + 1):
        root2 = merkle.root_hash(leaves[:size2])
        for size1 in range(1, size2 + 1):
            proof = tree.stored_consistency_proof(store, size1, size2)
            assert proof == merkle.consistency_proof(leaves[:size2], size1)
            merkle.verify_consistency(size1, size2, proof, merkle.root_hash(leaves[:size1]), root2)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """A stopped server's data directory with signed checkpoints at several sizes."""
    server = Server(tmp_path_factory.mktemp("prove") / "data").start()
    for n in (3, 4, 6):
        assert post(server, audit_request(n)).status_code == 200
        server.stop()  # a final checkpoint at each size
        server.start()
    server.stop()
    with sqlite3.connect(server.data / "ledger.db") as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone() == (13,)
    conn.close()
    return server.data, [3, 7, 13]


@pytest.fixture
def data(ledger: tuple[Path, list[int]], tmp_path: Path) -> Path:
    """A copy of the ledger for one test: every proof it asks for adds a read record."""
    copy = tmp_path / "data"
    shutil.copytree(ledger[0], copy)
    return copy


def test_prove_inclusion_prints_a_checkable_proof(data: Path) -> None:
    result = otaudit("prove", "inclusion", "--data", str(data), "--seq", "5", "--size", "7")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert list(doc) == [
        "index",
        "tree_size",
        "leaf_hash",
        "leaf_input_b64",
        "hashes",
        "root_hash",
        "checkpoint",
        "verifier_key",  # the key that signed the checkpoint (the log's key history)
    ]
    assert (doc["index"], doc["tree_size"]) == (5, 7)
    leaf = merkle.leaf_hash(base64.b64decode(doc["leaf_input_b64"]))
    assert leaf.hex() == doc["leaf_hash"]
    proof = [bytes.fromhex(h) for h in doc["hashes"]]
    merkle.verify_inclusion(leaf, 5, 7, proof, bytes.fromhex(doc["root_hash"]))
    assert doc["checkpoint"].split("\n")[1:3] == [
        "7",
        base64.b64encode(bytes.fromhex(doc["root_hash"])).decode(),
    ]


def test_prove_consistency_between_signed_checkpoints(data: Path) -> None:
    result = otaudit("prove", "consistency", "--data", str(data), "--from", "3", "--to", "13")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["size1"], doc["size2"]) == (3, 13)
    merkle.verify_consistency(
        3,
        13,
        [bytes.fromhex(h) for h in doc["hashes"]],
        bytes.fromhex(doc["root1"]),
        bytes.fromhex(doc["root2"]),
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prove", "inclusion", "--seq", "13"], "--seq 13 is not in the tree of size 13"),
        (
            ["prove", "inclusion", "--seq", "1", "--size", "5"],
            "no signed checkpoint at tree size 5 (nearest signed sizes: 3, 7)",
        ),
        (["prove", "consistency", "--from", "7", "--to", "3"], "--from 7 is larger than --to 3"),
        (["checkpoint", "--size", "8"], "no signed checkpoint at tree size 8"),
    ],
    ids=["seq-beyond-tree", "unsigned-size", "sizes-reversed", "checkpoint-unsigned-size"],
)
def test_proof_usage_errors(data: Path, args: list[str], message: str) -> None:
    result = otaudit(*args, "--data", str(data))
    assert result.returncode == 2
    assert message in result.stderr


def test_key_show_and_checkpoint(data: Path) -> None:
    key = otaudit("key", "show", "--data", str(data)).stdout.strip()
    name, key_id, b64 = key.split("+", 2)
    assert len(key_id) == 8 and len(base64.b64decode(b64)) == 33
    note = otaudit("checkpoint", "--data", str(data)).stdout
    lines = note.split("\n")
    assert lines[0] == name and lines[1] == "13" and lines[3] == ""
    assert lines[4].startswith(f"\u2014 {name} ")
    assert note.endswith("\n")
