"""Reading the audit trail is on the audit trail: every read command appends a record of itself."""

from __future__ import annotations

import json
import os
import pwd
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
        (["export", "--out", str(tmp_path / "b"), "--since", "2000-01-01"], "export",
         f"export --out {tmp_path / 'b'} --since 2000-01-01", str(RECORDS + 2)),
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
    # The records are sealed and signed like any other (the reader holds the key here).
    verified = otaudit("verify", "--data", str(data))
    assert verified.returncode == 0, verified.stderr
    total = RECORDS + len(commands)
    assert verified.stdout.startswith(f"OK: {total} records verified")
    assert f"latest at size {total}\n" in verified.stdout


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
