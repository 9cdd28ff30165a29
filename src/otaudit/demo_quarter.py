"""A simulated quarter of a company's audit traffic, sealed into a ledger with alerts and triage.

:func:`quarter_acts` is a company's activity, in time order: about thirty employees (times
``scale``) log in on weekdays with MFA, read customer records (the bulk), an administrator
changes roles, hires and deactivates accounts, engineers create and revoke API tokens, change
configuration and deploy; once a month come a brute force, a password spray, a privilege
escalation and an administrative change at night, which the built-in rules catch.
:func:`fill_quarter` seals it into a store as ``serve`` would have over the quarter: every
record received at its simulated time, checkpoints signed as it went, the rules run over each
record as it is sealed (as ``serve``'s detector does), alerts sealed when raised and most of
them triaged minutes to hours later.

Conventions (``docs/conventions.md``; what the evidence packs select on):

- ``audit.network_zone`` on every ``login``, ``mfa_challenge`` and ``mfa_verify`` record:
  where the session came from. ``internal`` (the office network; ``client.address`` a
  private address), ``vpn`` (through the company VPN; ``client.address`` the public address
  the VPN gateway saw), ``external`` (straight from the internet; a public address). Access
  from outside (CC6.6) is ``audit.network_zone`` in (``vpn``, ``external``).
- Every client record carries producer numbering (``audit.producer.id``: the service and
  the number of its process start, a new one after each ``deploy`` of it;
  ``audit.producer.seq`` from 1). One producer loses three numbers (:data:`GAP_SERVICE`).
- Targets: ``audit.target_user`` for accounts (role changes, user lifecycle),
  ``audit.target`` otherwise (a record, a token id, a config key, a deployed service);
  ``audit.old_value``/``audit.new_value`` on ``role_update``, ``config_change`` and
  ``deploy``.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from otaudit import conventions, merkle, tree
from otaudit.access import Reader
from otaudit.canonical import canonical_bytes
from otaudit.checkpoint import Checkpoint, sign_checkpoint
from otaudit.detect.alerts import DECISIONS, note_request, triage_request
from otaudit.detect.engine import Engine
from otaudit.detect.event import Event
from otaudit.detect.grouping import AlertGrouper, Raised
from otaudit.detect.rules import load_rules
from otaudit.detect.run import DEFAULT_WINDOW_NS, judge
from otaudit.errors import StoreError
from otaudit.keys import SigningKey
from otaudit.latesigning import DEFAULT_MAX_DELAY_S
from otaudit.otlp.convert import select_logs
from otaudit.record import Entry, seal
from otaudit.store.base import Store, StoredCheckpoint

S: Final = 1_000_000_000
MIN: Final = 60 * S
HOUR: Final = 60 * MIN
DAY: Final = 24 * HOUR
#: A span's duration (its end time is its start plus this).
SPAN_NS: Final = 1_000_000
#: The service whose first process to reach number ``GAP_AT`` loses the next ``GAP_SIZE``.
GAP_SERVICE: Final = "records-api"
GAP_AT: Final = 100
GAP_SIZE: Final = 3
#: Where attackers come from (TEST-NET-1, public in the simulation).
BRUTE_FORCE_IP: Final = "192.0.2.66"
SPRAY_IP: Final = "192.0.2.77"
_SECURITY: Final = ("sec01", "sec02")


@dataclass(frozen=True, slots=True)
class Act:
    """One audit record to send: when, from which service, its span name and attributes."""

    time_ns: int
    service: str
    name: str
    attributes: Mapping[str, str | int] = field(default_factory=dict)
    delay_ns: int = 200_000_000  # between the record's time and its receipt
    #: ``otaudit`` for a record of otaudit's own (sealed by the library: clients cannot).
    pipeline: str = "otlp"

    @property
    def received_ns(self) -> int:
        """When the record was received (its time plus ``delay_ns``)."""
        return self.time_ns + self.delay_ns


_SCOPE: Final[dict[str, Any]] = {"attributes": {}, "dropped_attributes_count": 0, "name": "",
                                 "schema_url": "", "version": ""}  # fmt: skip


@functools.lru_cache(maxsize=256)
def _resource(service: str) -> dict[str, Any]:
    # One object per service: the sealer keeps the resource's bytes of the last one it saw.
    return {"attributes": {"service.name": service}, "dropped_attributes_count": 0,
            "entity_refs": [], "schema_url": ""}  # fmt: skip


def seal_act(act: Act, trace_id: bytes, span_id: bytes) -> Entry:
    """The entry ``serve`` seals for ``act`` sent as one span (service ``act.service``, no
    status, string or int attributes) with these ids, received at ``act.received_ns``.

    The span's canonical content is built directly, without OTLP/protobuf in between
    (``tests/test_demo_quarter.py`` holds it byte-equal to what ``select_spans`` makes).
    """
    attributes = {
        k: v if v.__class__ is str else {"int": str(v)} for k, v in act.attributes.items()
    }
    obj = {
        "attributes": attributes, "dropped_attributes_count": 0, "dropped_events_count": 0,
        "dropped_links_count": 0, "end_time_unix_nano": str(act.time_ns + SPAN_NS),
        "events": [], "flags": 0, "kind": 0, "links": [], "name": act.name,
        "parent_span_id": "", "resource": _resource(act.service), "scope": _SCOPE,
        "signal": "span", "span_id": span_id.hex(), "start_time_unix_nano": str(act.time_ns),
        "status": {"code": 0, "message": ""}, "trace_id": trace_id.hex(), "trace_state": "",
    }  # fmt: skip
    return seal(obj, canonical_bytes(obj), act.pipeline, act.received_ns)


def entries(acts: Iterable[Act]) -> Iterator[Entry]:
    """The sealed entries of ``acts`` (as spans with random ids), received at their
    ``received_ns``."""
    randbytes = random.randbytes
    for act in acts:
        yield seal_act(act, randbytes(16), randbytes(8))


# ---- the company ----


def _weekday(day_ns: int) -> int:
    """0 for Monday ... 6 for Sunday (1970-01-01 was a Thursday)."""
    return (day_ns // DAY + 3) % 7


def _home(user: str) -> str:
    n = int(user[1:])
    return f"10.1.{n // 250}.{n % 250}"


def _public(user: str, block: str) -> str:
    n = int(user[1:])
    return f"{block}.{100 + n // 250}.{n % 250 + 1}"


def _owned(user: str) -> list[str]:
    """The sensitive accounts a user looks after."""
    return [f"acct-{user[1:]}-{k}" for k in range(3)]


#: One record before numbering: time, service, span name, attributes.
_Item = tuple[int, str, str, dict[str, str | int]]


def _session(t: int, user: str, ip: str, zone: str, ok: bool) -> list[_Item]:
    """A login and, when it succeeds, its MFA challenge and verification."""
    base = {"user.id": user, "client.address": ip, "audit.network_zone": zone,
            "audit.resource_type": "session"}  # fmt: skip
    result = "success" if ok else "failure"
    items: list[_Item] = [
        (
            t,
            "accounts-api",
            "POST /login",
            {"audit.action": "login", **base, "audit.result": result},
        )
    ]
    if ok:
        items.append(
            (
                t + 2 * S,
                "accounts-api",
                "mfa challenge",
                {"audit.action": "mfa_challenge", **base, "audit.result": "success"},
            )
        )
        items.append(
            (
                t + 15 * S,
                "accounts-api",
                "mfa verify",
                {"audit.action": "mfa_verify", **base, "audit.result": "success"},
            )
        )
    return items  # fmt: skip


def _read(t: int, user: str, ip: str, record: str, sensitive: bool) -> _Item:
    attrs: dict[str, str | int] = {
        "audit.action": "read", "user.id": user, "client.address": ip, "audit.target": record,
        "audit.resource_type": "customer_record", "audit.result": "success",
    }  # fmt: skip
    if sensitive:
        attrs["audit.data_classification"] = "confidential"
    return (t, "records-api", "GET /customers/{id}", attrs)


def _admin(t: int, actor: str, action: str, name: str, kind: str, target: str,
           **extra: str) -> _Item:  # fmt: skip
    """An administrative record of accounts-api by ``actor`` on account or object ``target``."""
    key = "audit.target_user" if kind in ("user", "user_permission") else "audit.target"
    attrs: dict[str, str | int] = {
        "audit.action": action, "enduser.id": actor, "enduser.ip": _home(actor), key: target,
        "audit.resource_type": kind, "audit.result": "success",
    }  # fmt: skip
    attrs.update({f"audit.{k}": v for k, v in extra.items()})
    return (t, "accounts-api", name, attrs)


def _role(t: int, admin: str, target: str, old: str, new: str) -> _Item:
    return _admin(t, admin, "role_update", "user.role.update", "user_permission", target,
                  old_value=old, new_value=new)  # fmt: skip


def _attacks(a: int, staff: list[str]) -> list[_Item]:
    """The month's attacks around ``a`` (a weekday, 13:00 UTC)."""
    items: list[_Item] = []
    for i in range(25):  # brute_force_user: 25 failures for one account in 25 minutes
        items += _session(a + i * MIN, staff[4], BRUTE_FORCE_IP, "external", ok=False)
    for i, user in enumerate(staff[9:15]):  # password_spray: six accounts in four minutes
        items += _session(a + HOUR + i * 40 * S, user, SPRAY_IP, "external", ok=False)
    items.append(_role(a + 2 * HOUR, staff[0], staff[19], "editor", "admin"))  # escalation
    items.append(_role(a - 11 * HOUR, staff[0], staff[20], "viewer", "editor"))  # 02:00
    return items


@dataclass
class _Company:
    """Who works here and what is pending, day to day."""

    rng: random.Random
    scale: int
    staff: list[str]
    engineers: list[str]
    next_id: int
    tokens: list[tuple[int, str, str]] = field(default_factory=list)  # (revoke day, id, owner)
    deletions: list[tuple[int, str]] = field(default_factory=list)  # (delete day, user)
    token_count: int = 0

    def working(self, day: int, t_from: int, t_to: int) -> int:
        """A time in ``[day + t_from, day + t_to)``."""
        return day + t_from + self.rng.randrange(t_to - t_from)

    def workday(self, day: int, number: int, attack: bool) -> list[_Item]:
        """Everything that happens on a weekday (``number``: weekdays since the start)."""
        rng, admin, items = self.rng, self.staff[0], list[_Item]()
        wd = _weekday(day)
        for user in self.staff:
            n = int(user[1:])
            zone, ip = "internal", _home(user)
            if n % 5 == 0 and wd in (0, 4):
                zone, ip = "vpn", _public(user, "198.51")
            elif n % 7 == 0 and wd == 2:
                zone, ip = "external", _public(user, "203.0")
            t = self.working(day, 8 * HOUR + 30 * MIN, 9 * HOUR + 30 * MIN)
            if rng.random() < 0.05:
                for _ in range(2):
                    items += _session(t, user, ip, zone, ok=False)
                    t += rng.randrange(5 * S, 40 * S)
            items += _session(t, user, ip, zone, ok=True)
            t += 20 * S
            for _ in range(rng.randrange(4, 13)):
                t += rng.randrange(5 * MIN, 40 * MIN)
                items.append(_read(t, user, ip, f"cust-{rng.randrange(400 * self.scale):05d}",
                                   sensitive=False))  # fmt: skip
            own = _owned(user)[rng.randrange(3)]
            items.append(_read(t + rng.randrange(HOUR), user, ip, own, sensitive=True))
        for _ in range(self.scale):
            target = rng.choice(self.staff[21:])
            t = self.working(day, 11 * HOUR, 16 * HOUR)
            items.append(_role(t, admin, target, "viewer", rng.choice(["editor", "viewer"])))
            items += self._engineering(day)
        if number % 15 == 6:  # a hire
            user = f"u{self.next_id:02d}"
            self.next_id += 1
            items.append(_admin(self.working(day, 9 * HOUR, 10 * HOUR), admin, "user_create",
                                "user.create", "user", user))  # fmt: skip
            self.staff.append(user)
        if number % 20 == 17 and len(self.staff) > 30:  # a leaver: off today, deleted later
            user = self.staff.pop(rng.randrange(25, len(self.staff)))
            items.append(_admin(day + 17 * HOUR + 30 * MIN, admin, "user_deactivate",
                                "user.deactivate", "user", user))  # fmt: skip
            self.deletions.append((number + 10, user))
        for when, user in [d for d in self.deletions if d[0] <= number]:
            self.deletions.remove((when, user))
            items.append(_admin(self.working(day, 10 * HOUR, 12 * HOUR), admin, "user_delete",
                                "user.delete", "user", user))  # fmt: skip
        if attack:
            items += _attacks(day + 13 * HOUR, self.staff)
        return items

    def _engineering(self, day: int) -> list[_Item]:
        """Config changes, deployments and API tokens of one weekday (for ``scale`` 1)."""
        rng, items = self.rng, list[_Item]()
        number = day // DAY
        for _ in range(rng.randrange(4)):
            who = rng.choice(self.engineers)
            key = rng.choice(["feature_flags/checkout", "rate_limits/api", "smtp/relay",
                              "retention/days", "sso/session_ttl"])  # fmt: skip
            old = str(rng.randrange(1, 100))
            attrs: dict[str, str | int] = {
                "audit.action": "config_change", "enduser.id": who, "client.address": _home(who),
                "audit.target": key, "audit.resource_type": "config", "audit.old_value": old,
                "audit.new_value": str(int(old) + rng.randrange(1, 9)), "audit.result": "success",
            }  # fmt: skip
            items.append((self.working(day, 9 * HOUR, 17 * HOUR), "config-service", "PUT /config",
                          attrs))  # fmt: skip
        for _ in range(rng.randrange(3)):
            who, service = rng.choice(self.engineers), rng.choice(_DEPLOYED)
            release = number * 10 + rng.randrange(10)
            attrs = {
                "audit.action": "deploy", "enduser.id": who, "audit.target": service,
                "audit.resource_type": "deployment", "audit.old_value": f"v1.{release - 7}",
                "audit.new_value": f"v1.{release}", "audit.result": "success",
            }  # fmt: skip
            items.append((self.working(day, 10 * HOUR, 17 * HOUR), "ci-cd", "deploy", attrs))
        if rng.random() < 0.4:
            who = rng.choice(self.engineers)
            self.token_count += 1
            token = f"tok-{self.token_count:05d}"
            items.append(_admin(self.working(day, 9 * HOUR, 17 * HOUR), who, "api_token_create",
                                "token.create", "api_token", token))  # fmt: skip
            self.tokens.append((number + rng.randrange(5, 20), token, who))
        for due in [t for t in self.tokens if t[0] <= number]:
            self.tokens.remove(due)
            at = self.working(day, 9 * HOUR, 17 * HOUR)
            items.append(_admin(at, due[2], "api_token_revoke", "token.revoke", "api_token",
                                due[1]))  # fmt: skip
        return items


_DEPLOYED: Final = ("accounts-api", "records-api", "config-service")


def _numbered(items: list[_Item], generation: dict[str, int], counters: Counter[str],
              lost: list[bool]) -> Iterator[Act]:  # fmt: skip
    """``items`` in time order as acts with producer numbering; a deploy restarts its target."""
    items.sort(key=lambda item: item[0])
    for t, service, name, attrs in items:
        producer = f"{service}/{generation[service]}"
        counters[producer] += 1
        if service == GAP_SERVICE and counters[producer] == GAP_AT and not lost[0]:
            counters[producer] += GAP_SIZE
            lost[0] = True
        attrs[conventions.PRODUCER_ID_ATTRIBUTE] = producer
        attrs[conventions.PRODUCER_SEQ_ATTRIBUTE] = counters[producer]
        yield Act(t, service, name, attrs)
        if attrs["audit.action"] == "deploy":
            generation[str(attrs["audit.target"])] += 1


def quarter_acts(start_ns: int, days: int = 92, *, scale: int = 1, seed: int = 7) -> Iterator[Act]:
    """A company's audit activity in ``[start_ns, start_ns + days)``, in time order (module
    docstring). ``scale`` multiplies the staff and the volume: about 380 records per
    weekday per 30 employees, some 25,000 in a quarter at scale 1 (about 970,000 at 40)."""
    if days < 1 or scale < 1:
        raise ValueError(f"days and scale must be at least 1, got {days} and {scale}")
    rng = random.Random(seed)
    staff = [f"u{i:02d}" for i in range(1, 30 * scale + 1)]
    company = _Company(rng, scale, staff, staff[1 : 1 + 5 * scale], 30 * scale + 1)
    generation: dict[str, int] = Counter({s: 1 for s in (*_DEPLOYED, "ci-cd")})
    counters: Counter[str] = Counter()
    lost = [False]
    end = start_ns + days * DAY
    first = start_ns - start_ns % DAY
    attack_from = 9 if days >= 12 else days // 2
    next_attack = attack_from
    workdays = 0
    for number, day in enumerate(range(first, end, DAY)):
        if _weekday(day) >= 5:
            continue
        attack = number >= next_attack and day + DAY <= end
        if attack:
            next_attack = number + 30
        items = company.workday(day, workdays, attack)
        workdays += 1
        kept = [item for item in items if start_ns <= item[0] < end]
        yield from _numbered(kept, generation, counters, lost)


# ---- sealing a quarter ----


@dataclass(frozen=True)
class QuarterFacts:
    """What :func:`fill_quarter` sealed."""

    #: Records sealed: the company's, alerts (and summaries of grouped ones) and triage.
    records: int
    #: Records sealed per ``audit.action``.
    actions: dict[str, int]
    alerts_raised: int
    alerts_triaged: int
    #: The simulated period ``[start_ns, end_ns)``.
    start_ns: int
    end_ns: int
    tree_size: int
    #: The tree size of every checkpoint signed, in order.
    checkpoint_sizes: tuple[int, ...]


class _Sealer:
    """Appends entries in receive-time order, signs checkpoints at simulated times and runs
    the rules over each entry as it is sealed."""

    def __init__(self, store: Store, key: SigningKey, origin: str, every_ns: int) -> None:
        self.store, self.key, self.origin, self.every_ns = store, key, origin, every_ns
        # A record must be signed before the server receives one more than this later
        # (``otaudit verify --max-signing-delay``), with a minute to spare.
        self.bound_ns = (DEFAULT_MAX_DELAY_S - 60) * S
        self.size = store.tree_size()
        keys = tree.range_keys(0, self.size) if self.size else []
        self.edge = [(1 << level, h) for (level, _), h in zip(keys, store.nodes(keys),
                                                               strict=True)]  # fmt: skip
        self.batch: list[Entry] = []
        self.signed: list[StoredCheckpoint] = []
        self.sizes: list[int] = []
        self.unsigned_since: int | None = None  # received time of the first unsigned record
        self.last_ns = 0
        self.engine = Engine(load_rules())
        self.grouper = AlertGrouper(DEFAULT_WINDOW_NS)
        self.actions: Counter[str] = Counter()
        self.raised: list[Raised] = []

    def add(self, entry: Entry, received: int) -> list[Raised]:
        """Seal ``entry``, received at ``received`` (signing first when it must be), and the
        alerts it raises; return those."""
        since = self.unsigned_since
        if since is not None and (received - since > self.bound_ns or
                                  received - since >= self.every_ns):  # fmt: skip
            self.checkpoint()
        raised: list[Raised] = []
        queue = [entry]
        while queue:
            item = queue.pop(0)
            self._append(item, received)
            c = item.columns
            e = Event((self.size - 1, c.time_unix_nano, c.received_at, c.pipeline, c.signal,
                       c.service, c.name, c.actor, c.actor_role, c.client_address, c.action,
                       c.target, c.resource_type, c.result, c.producer, c.attributes))  # fmt: skip
            found = judge(self.engine, e)
            for note in self.grouper.feed(found, e.received):
                queue.append(_own(note_request(note), received))
                if isinstance(note, Raised):
                    raised.append(note)
        self.raised += raised
        return raised

    def _append(self, entry: Entry, received: int) -> None:
        self.batch.append(entry)
        self.actions[entry.columns.action or ""] += 1
        self.size += 1
        edge = self.edge
        edge.append((1, entry.leaf))
        while len(edge) > 1 and edge[-1][0] == edge[-2][0]:
            (n, right), (_, left) = edge.pop(), edge.pop()
            edge.append((2 * n, merkle.node_hash(left, right)))
        if self.unsigned_since is None:
            self.unsigned_since = received
        self.last_ns = max(self.last_ns, received)
        if len(self.batch) >= 5000:
            self.flush()

    def checkpoint(self) -> None:
        """Sign the tree as it stands, a second after the last record was received."""
        root = merkle.root_from_subtrees([h for _, h in self.edge])
        note = sign_checkpoint(Checkpoint(self.origin, self.size, root), self.key)
        self.signed.append(StoredCheckpoint(self.size, root, self.last_ns + S, note))
        self.sizes.append(self.size)
        self.unsigned_since = None
        if len(self.signed) >= 200:
            self.flush()

    def flush(self) -> None:
        """Append what is waiting, then store the checkpoints signed over it."""
        if self.batch:
            result = self.store.append(self.batch)
            if None in result.seqs or result.tree_size != self.size:
                raise StoreError(f"the store held records already: tree size "
                                   f"{result.tree_size}, expected {self.size}")  # fmt: skip
            self.batch = []
        for cp in self.signed:
            self.store.add_checkpoint(cp)
        self.signed = []


def _own(request: Any, received_ns: int) -> Entry:
    """otaudit's own record of ``request`` (``access.log_request``), received at
    ``received_ns``."""
    ((obj, content),) = select_logs(request, conventions.AUDIT_ATTRIBUTE).records
    return seal(obj, content, conventions.OWN_PIPELINE, received_ns)


def triage_at(reader: Reader, alert_id: str, decision: str, note: str, at_ns: int) -> Entry:
    """The sealed record of one triage decision on an alert, made at ``at_ns`` (the record
    ``detect.alerts.triage_entry`` makes now)."""
    return _own(triage_request(reader, alert_id, decision, note, time_ns=at_ns), at_ns)


#: Triage decisions drawn for the alerts of each rule (others: :data:`_ROUTINE`).
_DECIDED: Final = {
    "brute_force_user": ("resolved", "escalated", "resolved"),
    "password_spray": ("resolved", "escalated"),
    "privilege_escalation": ("resolved", "escalated", "investigating"),
    "admin_change_off_hours": ("accepted_risk", "resolved"),
}
_ROUTINE: Final = ("false_positive", "false_positive", "accepted_risk", "investigating")
assert all(d in DECISIONS for ds in (*_DECIDED.values(), _ROUTINE) for d in ds)


def fill_quarter(
    store: Store,
    key: SigningKey,
    origin: str,
    start_ns: int,
    days: int = 92,
    *,
    scale: int = 1,
    checkpoint_every_s: int = 3600,
) -> QuarterFacts:
    """Seal :func:`quarter_acts` into ``store`` as a server would have over the period.

    Each record is received at its simulated time. A checkpoint is signed (dated a second
    after the last record it covers) every ``checkpoint_every_s`` of simulated time, and
    sooner whenever a record would otherwise stay unsigned while records received more than
    ``otaudit verify``'s ``--max-signing-delay`` later arrive (as a server signing every
    second never lets it), and one at the end. The built-in rules judge each record as it
    is sealed, as ``serve``'s detector does: alerts (and summaries of grouped ones) are
    sealed at the receive time that raised them, and a security analyst triages them 5
    minutes to 6 hours later: every alert of an attack, four in five of the others (some
    decisions leave the alert open); triage falling after the period is left out."""
    if checkpoint_every_s < 1:
        raise ValueError(f"checkpoint_every_s must be at least 1, got {checkpoint_every_s}")
    rng = random.Random(start_ns ^ scale)
    end_ns = start_ns + days * DAY
    sealer = _Sealer(store, key, origin, checkpoint_every_s * S)
    first_size = sealer.size
    due: list[tuple[int, int, str, str]] = []  # (time, tie, alert id, rule)
    triaged = 0
    randbytes = rng.randbytes

    def seal_and_triage(entry: Entry, received_ns: int) -> None:
        for r in sealer.add(entry, received_ns):
            if r.finding.rule.name in _DECIDED or rng.random() < 0.8:
                at = r.raised_ns + rng.randrange(5 * MIN, 6 * HOUR)
                heapq.heappush(due, (at, len(due) + sealer.size, r.alert_id,
                                     r.finding.rule.name))  # fmt: skip

    def triage_until(t: int) -> None:
        nonlocal triaged
        while due and due[0][0] <= t:
            at, _, alert_id, rule = heapq.heappop(due)
            decision = rng.choice(_DECIDED.get(rule, _ROUTINE))
            reader = Reader(rng.choice(_SECURITY), "10.1.9.9")
            note = f"{rule}: {decision.replace('_', ' ')} after review"
            seal_and_triage(triage_at(reader, alert_id, decision, note, at), at)
            triaged += 1

    for act in quarter_acts(start_ns, days, scale=scale):
        triage_until(act.received_ns)
        seal_and_triage(seal_act(act, randbytes(16), randbytes(8)), act.received_ns)
    triage_until(end_ns - 1)
    sealer.checkpoint()
    sealer.flush()
    return QuarterFacts(
        records=sealer.size - first_size,
        actions=dict(sealer.actions),
        alerts_raised=len(sealer.raised),
        alerts_triaged=triaged,
        start_ns=start_ns,
        end_ns=end_ns,
        tree_size=sealer.size,
        checkpoint_sizes=tuple(sealer.sizes),
    )
