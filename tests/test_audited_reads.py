"""Reading the audit trail is on the audit trail: every read command appends a record of itself."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest

from support import Server, audit_request, otaudit, post

RECORDS = 6


@pytest.fixture
def data(server: Server) -> Path:
    """A stopped server's data directory holding RECORDS audit spans."""
    assert post(server, audit_request(RECORDS)).status_code == 200
    assert server.stop() == 0
    return server.data


def reads(data: Path) -> list[dict[str, object]]:
    """The read records in the ledger, oldest first (read directly, so not itself recorded)."""
    conn = sqlite3.connect(f"file:{data / 'ledger.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT seq, service, actor, action, resource_type, result, pipeline, attributes"
            " FROM records WHERE pipeline = 'otaudit' ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    keys = ("seq", "service", "actor", "action", "resource_type", "result", "pipeline")
    out = []
    for row in rows:
        record = dict(zip(keys, row[:-1], strict=True))
        attributes = json.loads(row[-1])
        record.update({k.removeprefix("audit.query."): v for k, v in attributes.items()
                       if k.startswith("audit.query.")})  # fmt: skip
        out.append(record)
    return out


def test_each_read_command_appends_one_record(data: Path, tmp_path: Path) -> None:
    statement = "SELECT seq, actor FROM audit_spans WHERE seq < 2 ORDER BY seq"
    commands = [
        (["sql", "--format", "csv", statement], "sql", statement, "2"),
        (["prove", "inclusion", "--seq", "1"], "prove", "prove inclusion --seq 1", "1"),
        # The reads above are not signed yet (only the server signs): the export, proven
        # against the latest checkpoint, holds the RECORDS records it covers.
        (["export", "--out", str(tmp_path / "b"), "--since", "2000-01-01"], "export",
         f"export --out {tmp_path / 'b'} --since 2000-01-01", str(RECORDS)),
        (["gaps"], "report", "gaps", "0"),
        (["conformance", "--since", "30d"], "report", "conformance --since 30d", "0"),
    ]  # fmt: skip
    for args, kind, text, rows in commands:
        before = len(reads(data))
        result = otaudit(*args, "--data", str(data))
        assert result.returncode == 0, result.stderr
        assert "not recorded" not in result.stderr
        (record,) = reads(data)[before:]
        assert record == {
            "seq": record["seq"],
            "service": "otaudit",
            "actor": pwd.getpwuid(os.getuid()).pw_name,
            "action": "audit_log.query",
            "resource_type": "audit_log",
            "result": "success",
            "pipeline": "otaudit",
            "kind": kind,
            "text": text,
            "rows": rows,
        }, args
    # The records are sealed like any other, and left for the server to sign: the command
    # line never signs, though this reader holds the key.
    verified = otaudit("verify", "--data", str(data))
    assert verified.returncode == 0, verified.stderr
    total = RECORDS + len(commands)
    assert verified.stdout.startswith(f"OK: {total} records verified")
    assert f"latest at size {RECORDS}\n" in verified.stdout
    assert f"note: {len(commands)} records after the latest checkpoint" in verified.stdout


def checkpoint_sizes(data: Path) -> list[int]:
    """The tree sizes of the signed checkpoints in ``data``'s ledger."""
    conn = sqlite3.connect(f"file:{data / 'ledger.db'}?mode=ro", uri=True)
    try:
        return [size for (size,) in conn.execute("SELECT tree_size FROM checkpoints")]
    finally:
        conn.close()


def test_a_read_of_a_copied_data_directory_is_recorded_and_signs_nothing(
    data: Path, tmp_path: Path
) -> None:
    """Only ``serve`` signs: a read of a copy (signing key included) must not sign a fork."""
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    signed = checkpoint_sizes(copy)
    assert signed and signed[-1] == RECORDS
    result = otaudit("sql", "--data", str(copy), "SELECT count(*) AS n FROM audit_records")
    assert result.returncode == 0, result.stderr
    assert "not recorded" not in result.stderr
    (record,) = reads(copy)
    assert (record["seq"], record["kind"], record["result"]) == (RECORDS, "sql", "success")
    assert checkpoint_sizes(copy) == signed  # appended, and nothing signed
    assert reads(data) == [] and checkpoint_sizes(data) == signed  # the original untouched


def test_a_refused_query_is_recorded_as_a_failure(data: Path) -> None:
    result = otaudit("sql", "--data", str(data), "DELETE FROM audit_records")
    assert result.returncode == 2
    (record,) = reads(data)
    assert (record["result"], record["kind"], record["text"]) == (
        "failure", "sql", "DELETE FROM audit_records",
    )  # fmt: skip
    assert str(record["error"]).startswith("SQL error: ")


def test_clients_cannot_pose_as_otaudit(server: Server) -> None:
    response = httpx.post(
        f"{server.http_url}/v1/traces",
        content=audit_request(1),
        headers={"Content-Type": "application/x-protobuf", "X-Audit-Pipeline": "otaudit"},
    )
    assert response.status_code == 400
    assert "reserved for otaudit's own records" in response.text


def test_the_default_pipeline_cannot_be_otaudits(tmp_path: Path) -> None:
    """Else every request without the header would be sealed as otaudit's own record."""
    started = otaudit("serve", "--data", str(tmp_path / "data"), "--pipeline", "otaudit")
    assert started.returncode == 2
    assert "--pipeline 'otaudit' is reserved for otaudit's own records" in started.stderr
