"""The example service (src/otaudit/examples) names only the users it authenticated."""

from __future__ import annotations

import warnings

from otaudit.examples.accounts import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


def test_the_example_takes_the_actor_from_its_own_tokens_only() -> None:
    forged = {
        "authorization": "Bearer alice",  # a user name is not a token the service issued
        "baggage": "enduser.id=admin",
        "x-forwarded-for": "6.6.6.6",
    }
    with TestClient(create_app()) as client:
        assert (
            client.put("/users/bob/role", json={"role": "admin"}, headers=forged).status_code == 401
        )
        assert client.put("/config/mfa_required", json={"value": False}).status_code == 401
        login = client.post("/login", json={"user": "alice", "password": "correct horse"})
        token = login.json()["token"]
        assert token != "alice"
        signed_in = {"authorization": f"Bearer {token}"}
        assert client.put("/users/bob/role", json={"role": "editor"}, headers=signed_in).json() == {
            "user": "bob",
            "role": "editor",
        }
