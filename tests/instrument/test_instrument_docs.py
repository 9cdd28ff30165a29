"""The complete example in docs/instrumenting.md runs, produces the output it shows, and
believes nothing a caller claims: a forged baggage actor and X-Forwarded-For are not recorded."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

from otaudit.dialect import AUDITOR_QUERY
from support import Server, otaudit

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "instrumenting.md"

DRIVER = textwrap.dedent(
    """
    import os
    import sys
    import warnings

    source = sys.stdin.read()
    namespace = {"__name__": "accounts"}
    exec(compile(source, "accounts.py", "exec"), namespace)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's TestClient asks for httpx2
        from starlette.testclient import TestClient
    alice = {"authorization": "Bearer " + os.environ["ALICE_TOKEN"], "baggage": "enduser.id=forged"}
    forged = {
        "authorization": "Bearer alice",  # a user name, not a token the service issued
        "baggage": "enduser.id=admin",
        "x-forwarded-for": "6.6.6.6",
    }
    with TestClient(namespace["app"]) as client:
        codes = [
            client.put("/users/bob/role", json={"role": "editor"}, headers=alice).status_code,
            client.put("/users/bob/role", json={"role": "owner"}, headers=alice).status_code,
            client.delete("/users/zed", headers=alice).status_code,
            client.delete("/users/carol", headers=alice).status_code,
            client.post("/config/mfa", headers=alice).status_code,
            client.put("/users/bob/role", json={"role": "owner"}, headers=forged).status_code,
        ]
    namespace["tracer_provider"].shutdown()
    namespace["logger_provider"].shutdown()
    print(codes)
    """
)


def example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    return str(next(block for block in blocks if "app = Starlette(" in block))


def test_the_guides_example_runs_against_a_real_server(server: Server) -> None:
    source = example()
    assert 'OTAUDIT = "http://127.0.0.1:4318"' in source
    source = source.replace("http://127.0.0.1:4318", server.http_url)
    env = {**os.environ, "ALICE_TOKEN": secrets.token_hex(16)}
    run = subprocess.run(
        [sys.executable, "-c", DRIVER],
        input=source,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[-2] == "[200, 403, 404, 204, 200, 401]"

    result = otaudit(
        "sql", "--data", str(server.data), "--format", "json",
        "SELECT signal, actor, action, target, result, client_address FROM audit_records "
        "ORDER BY seq",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [tuple(row.values()) for row in json.loads(result.stdout)]
    assert rows == [
        ("span", "alice", "role_update", "bob", "success", "testclient"),
        ("span", "alice", "role_update", "bob", "denied", "testclient"),
        ("span", "alice", "user_delete", "zed", "failure", "testclient"),
        ("span", "alice", "user_delete", "carol", "success", "testclient"),
        ("span", None, "role_update", "bob", "denied", "testclient"),  # not admin, not 6.6.6.6
        ("log", "alice", "config_change", "mfa_required", "success", "testclient"),
    ]
    gaps = otaudit("gaps", "--data", str(server.data))
    assert gaps.returncode == 0, gaps.stdout + gaps.stderr
    assert "OK: 1 producer(s), 6 numbered records" in gaps.stdout
    # The article's query, verbatim, fills every column of the role change alice made.
    article = otaudit("sql", "--data", str(server.data), "--format", "json", AUDITOR_QUERY)
    assert article.returncode == 0, article.stderr
    changes = json.loads(article.stdout)
    made = [c for c in changes if c["outcome"] == "success"]
    assert len(changes) == 3 and len(made) == 1 and all(made[0].values()), changes
    assert (made[0]["actor"], made[0]["target"], made[0]["new_role"]) == ("alice", "bob", "editor")
