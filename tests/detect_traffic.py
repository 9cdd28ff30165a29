"""Realistic audit traffic for the detection tests and benchmark, with attacks mixed in.

``background`` is a company's ordinary activity over some days: thirty
employees log in on weekdays from their usual address (now and then after a
mistyped password), read customer records and the sensitive accounts they
look after, an administrator adjusts roles in working hours, and a billing
job reports every minute, day and night. No built-in rule should find
anything in it. ``scenarios`` are the attacks each rule must find, and
``near_misses`` the activity just under each rule's threshold.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from otaudit.demo_quarter import Act as Act
from otaudit.demo_quarter import entries as entries

S = 1_000_000_000
MIN = 60 * S
HOUR = 60 * MIN
DAY = 24 * HOUR
USERS = [f"u{i:02d}" for i in range(1, 31)]  # the scenarios' cast


def home(user: str) -> str:
    n = int(user[1:])
    return f"10.1.{n // 250}.{n % 250}"


def login(t: int, user: str, ip: str, ok: bool) -> Act:
    return Act(
        t,
        "accounts-api",
        "POST /login",
        {
            "audit.action": "login",
            "user.id": user,
            "client.address": ip,
            "audit.resource_type": "session",
            "audit.result": "success" if ok else "failure",
        },
    )


def read(t: int, user: str, record: str, sensitive: bool) -> Act:
    attrs = {
        "audit.action": "customer.read",
        "user.id": user,
        "client.address": home(user),
        "audit.target": record,
        "audit.resource_type": "customer_record",
        "audit.result": "success",
    }
    if sensitive:
        attrs["audit.data_classification"] = "confidential"
    return Act(t, "records-api", "GET /customers/{id}", attrs)


def role_update(t: int, admin: str, target: str, old: str, new: str) -> Act:
    return Act(
        t,
        "accounts-api",
        "user.role.update",
        {
            "audit.action": "role_update",
            "enduser.id": admin,
            "enduser.ip": home(admin),
            "audit.target_user": target,
            "audit.old_value": old,
            "audit.new_value": new,
            "audit.resource_type": "user_permission",
            "audit.result": "success",
        },
    )


def heartbeat(t: int) -> Act:
    return Act(
        t,
        "billing-api",
        "invoice batch",
        {
            "audit.action": "invoice_batch.run",
            "user.id": "svc-billing",
            "audit.result": "success",
        },
    )


def owned(user: str) -> list[str]:
    """The sensitive accounts a user looks after."""
    return [f"acct-{user[1:]}-{k}" for k in range(3)]


def background(
    start: int,
    end: int,
    *,
    seed: int = 7,
    heartbeat_s: int | None = 60,
    gaps: Iterable[tuple[int, int]] = (),
    users: int = 30,
) -> list[Act]:
    """Ordinary activity of ``users`` employees in ``[start, end)``; no heartbeats in ``gaps``."""
    rng = random.Random(seed)
    staff = USERS + [f"u{i:02d}" for i in range(len(USERS) + 1, users + 1)]
    acts: list[Act] = []
    day = start - start % DAY
    while day < end:
        if (day // DAY + 3) % 7 < 5:  # 1970-01-01 was a Thursday: Monday is (d + 3) % 7 == 0
            for user in staff:
                t = day + 8 * HOUR + 30 * MIN + rng.randrange(60 * MIN)
                for _ in range(2 if rng.random() < 0.05 else 0):
                    acts.append(login(t, user, home(user), ok=False))
                    t += rng.randrange(5 * S, 40 * S)
                acts.append(login(t, user, home(user), ok=True))
                for _ in range(rng.randrange(4, 10)):
                    t += rng.randrange(5 * MIN, 50 * MIN)
                    acts.append(read(t, user, f"cust-{rng.randrange(400):04d}", sensitive=False))
                for record in owned(user):
                    acts.append(read(t + rng.randrange(HOUR), user, record, sensitive=True))
            t = day + 11 * HOUR + rng.randrange(5 * HOUR)
            target = rng.choice(USERS[1:])
            acts.append(role_update(t, "u01", target, "viewer", rng.choice(["editor", "viewer"])))
        day += DAY
    if heartbeat_s:
        t = start
        while t < end:
            if not any(a <= t < b for a, b in gaps):
                acts.append(heartbeat(t))
            t += heartbeat_s * S
    acts = [a for a in acts if start <= a.time_ns < end]
    acts.sort(key=lambda a: a.received_ns)
    return acts


def anchor(start: int, end: int) -> int:
    """A weekday 13:00 UTC at least eight days after ``start`` and a day before ``end``."""
    t = end - DAY - (end - DAY) % DAY + 13 * HOUR
    while t > end - DAY or (t // DAY + 3) % 7 >= 5:
        t -= DAY
    assert t - start >= 8 * DAY, "the traffic must span at least nine days"
    return t


def scenarios(a: int) -> dict[str, list[Act]]:
    """For each built-in rule, activity it must find, around the anchor time ``a``."""
    return {
        "brute_force_user": [login(a + i * MIN, "u05", "203.0.113.9", ok=False) for i in range(25)],
        "password_spray": [
            login(a + HOUR + i * 40 * S, user, "203.0.113.50", ok=False)
            for i, user in enumerate(USERS[9:15])
        ],
        "failures_then_success": [
            *(login(a + 2 * HOUR + i * 30 * S, "u07", "198.51.100.77", ok=False) for i in range(6)),
            login(a + 2 * HOUR + 4 * MIN, "u07", "198.51.100.77", ok=True),
        ],
        "privilege_escalation": [
            role_update(a + 3 * HOUR, "u01", "u20", "editor", "admin"),
            role_update(a + 3 * HOUR + MIN, "u15", "u15", "viewer", "editor"),
        ],
        "admin_change_off_hours": [role_update(a - 11 * HOUR, "u01", "u21", "viewer", "editor")],
        "mass_access": [
            read(a + 4 * HOUR + i * 8 * S, "u30", record, sensitive=True)
            for i, record in enumerate(r for u in USERS[:20] for r in owned(u))
        ],
        "sensitive_new_reader": [read(a + 5 * HOUR, "u25", owned("u03")[0], sensitive=True)],
        "new_client_address": [login(a + 6 * HOUR, "u12", "192.0.2.200", ok=True)],
        "verification_failed": [
            Act(
                a + 7 * HOUR,
                "otaudit",
                "otaudit.verify",
                {
                    "audit.action": "otaudit.verify",
                    "enduser.id": "otaudit-server",
                    "audit.resource_type": "ledger",
                    "audit.result": "failure",
                    "audit.query.error": "checkpoint at tree size 40 is not consistent",
                },
                pipeline="otaudit",
            )
        ],
    }


#: The heartbeat gap of the producer_silent scenario, relative to the anchor, and a shorter
#: one that is not silence yet.
SILENCE = (HOUR, HOUR + 45 * MIN)
PAUSE = (HOUR, HOUR + 25 * MIN)


def near_misses(a: int) -> list[Act]:
    """Activity just under every rule's threshold (at home addresses, in working hours)."""
    acts = [login(a + i * MIN, "u05", home("u05"), ok=False) for i in range(19)]
    acts += [login(a + HOUR + i * S, u, "203.0.113.51", ok=False) for i, u in enumerate(USERS[:4])]
    acts += [login(a + 2 * HOUR + i * S, "u08", home("u08"), ok=False) for i in range(4)]
    acts.append(login(a + 2 * HOUR + MIN, "u08", home("u08"), ok=True))
    acts.append(role_update(a + 3 * HOUR, "u01", "u22", "viewer", "editor"))
    acts.append(role_update(a - 4 * HOUR + 30 * MIN, "u01", "u23", "viewer", "editor"))  # 09:30
    acts += [
        read(a + 4 * HOUR + i * 8 * S, "u29", f"acct-99-{i}", sensitive=True) for i in range(49)
    ]
    acts += posing_as_otaudit(a + 7 * HOUR)
    return acts


def posing_as_otaudit(t: int) -> list[Act]:
    """Client records (pipeline otlp) claiming otaudit's own actions: a failed verification,
    a read of the trail, a failed ``otaudit verify``. The rules that look at otaudit's own
    records (``verification_failed``) must not take them for otaudit's."""
    failed = {"audit.resource_type": "ledger", "audit.result": "failure", "user.id": "svc-ops"}
    forged_read = {
        "audit.action": "audit_log.query",
        "enduser.id": "ceo@example.com",
        "audit.query.kind": "verify",
        "audit.query.error": "seq 7: forged",
        "audit.resource_type": "audit_log",
        "audit.result": "failure",
    }
    return [
        Act(t, "ops-cron", "ledger check", {"audit.action": "otaudit.verify", **failed}),
        Act(t + S, "ops-cron", "ledger check", {"audit.action": "audit.verify", **failed}),
        Act(t + 2 * S, "evil-api", "audit_log.query", forged_read),
    ]
