"""The log's key history: the original verifier key and the sealed rotations that followed.

A ledger starts with one signing key; its verifier key is recorded once in the ledger
(``meta.verifier_key``) and never changes. ``otaudit key rotate`` replaces the signing key by
appending a *rotation record*, one of otaudit's own records (pipeline ``otaudit``, action
:data:`ROTATE_ACTION`), whose attribute ``audit.key.rotation`` is a signed note
(c2sp.org/signed-note) of the fixed statement::

    otaudit-key-rotation/1
    <origin>
    <seq of the rotation record itself>
    <old verifier key>
    <new verifier key>

signed by both keys: the old key endorses the new one, the new key proves possession. Its
second line is never a decimal number, so the note can never be read as a checkpoint.

The key in force for a checkpoint of tree size ``n`` is the newest key whose rotation record
has ``seq < n`` (the original key when there is none): a rotation at seq ``s`` hands over
from tree size ``s + 1`` on. The checkpoint at size ``s + 1`` (the transition checkpoint) is
signed by both keys, so a witness that only knows the old key accepts it and then follows the
rotation. A rotation record whose note does not say exactly that (its seq, the log's origin,
the key in force as old key, a new key of the same name) or whose signatures do not verify is
a :class:`~otaudit.errors.VerificationError` naming its seq.

Trust: the whole chain is checked from the original key, and a key the verifier trusts
(``--key``, a pinned key, the signing key) must be one of its keys. Since each rotation is
signed by both its keys, trusting any key of the chain vouches for all of it; trusting the
newest key (after a compromise) refuses any history that a holder of an older key could
forge without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from otaudit.checkpoint import Checkpoint, open_checkpoint
from otaudit.errors import ConfigError, VerificationError
from otaudit.keys import SigningKey, VerifierKey
from otaudit.note import open_note, parse_note, sign_note, signature_line

__all__ = [
    "NEXT_SUFFIX",
    "NOTE_ATTRIBUTE",
    "ROTATE_ACTION",
    "STATEMENT_HEADER",
    "HistoryStore",
    "KeyHistory",
    "Rotation",
    "add_signature",
    "history_for",
    "load_history",
    "retired_at",
    "rotation_from_attributes",
    "rotation_note",
    "statement",
]

#: The action of a rotation record (an own record, pipeline ``otaudit``).
ROTATE_ACTION: Final = "otaudit.key_rotate"
#: The attribute holding the doubly signed rotation note.
NOTE_ATTRIBUTE: Final = "audit.key.rotation"
#: The suffix of the new key's file while a rotation is under way (``signing.key.next``).
NEXT_SUFFIX: Final = ".next"
#: The first line of a rotation statement.
STATEMENT_HEADER: Final = "otaudit-key-rotation/1"


def statement(origin: str, seq: int, old: VerifierKey, new: VerifierKey) -> bytes:
    """The text both keys sign: header, origin, the record's seq, old key, new key."""
    return f"{STATEMENT_HEADER}\n{origin}\n{seq}\n{old}\n{new}\n".encode()


def add_signature(note: str, key: SigningKey) -> str:
    """``note`` (a signed note) with one more signature line, by ``key``, over its text."""
    text, _ = parse_note(note)
    return note + signature_line(key.name, key.key_id, key.sign(text.encode("utf-8")))


def rotation_note(origin: str, seq: int, old: SigningKey, new: SigningKey) -> str:
    """The rotation statement for a record at ``seq``, signed by ``old`` then ``new``."""
    return add_signature(
        sign_note(statement(origin, seq, old.verifier(), new.verifier()), old), new
    )


@dataclass(frozen=True)
class Rotation:
    """One checked rotation: the record's seq, the key it retires and the key it brings in."""

    seq: int
    old: VerifierKey
    new: VerifierKey
    note: str

    @property
    def first_size(self) -> int:
        """The first tree size the new key signs (the transition checkpoint's)."""
        return self.seq + 1


def _attributes(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        parsed = orjson.loads(value or "{}")
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def rotation_from_attributes(
    seq: int, attributes: Any, origin: str, in_force: VerifierKey
) -> Rotation:
    """Check the rotation record at ``seq`` (its attributes, a dict or JSON text) against
    the log's ``origin`` and the key in force before it; return the rotation.

    Steps: (1) the note parses and its text is the statement for this seq, origin, old key
    ``in_force`` and a new key of the same name; (2) the old key's signature verifies;
    (3) the new key's signature verifies. VerificationError naming the seq otherwise.
    """
    where = f"seq {seq}: key rotation record"
    note = _attributes(attributes).get(NOTE_ATTRIBUTE)
    if not isinstance(note, str):
        raise VerificationError(f"{where} has no {NOTE_ATTRIBUTE} note", seq)
    try:
        text, _ = parse_note(note)
        lines = text.removesuffix("\n").split("\n")
        if len(lines) != 5 or lines[0] != STATEMENT_HEADER:
            raise VerificationError(f"the note is not an {STATEMENT_HEADER} statement")
        old, new = VerifierKey.parse(lines[3]), VerifierKey.parse(lines[4])
    except (VerificationError, ConfigError) as exc:
        raise VerificationError(f"{where}: {exc}", seq) from exc
    # 1. The statement names this record, this log, the key in force and a successor.
    if lines[1] != origin or lines[2] != str(seq):
        raise VerificationError(
            f"{where} names log {lines[1]!r} at seq {lines[2]}, expected {origin!r} at seq {seq}",
            seq,
        )
    if old != in_force:
        raise VerificationError(
            f"{where} retires {old}, but the key in force is {in_force}: a forged rotation",
            seq,
        )
    if new.name != old.name or new == old:
        raise VerificationError(f"{where}: the new key {new} is not a new key of {old.name}", seq)
    # 2 and 3. Both keys signed it (open_note ignores the other key's line).
    for signer, role in ((old, "old"), (new, "new")):
        try:
            open_note(note, signer)
        except VerificationError as exc:
            raise VerificationError(f"{where}: the {role} key's signature: {exc}", seq) from exc
    return Rotation(seq, old, new, note)


class KeyHistory:
    """The original verifier key and the checked rotations after it, oldest first."""

    def __init__(self, original: VerifierKey, rotations: Iterable[Rotation] = ()) -> None:
        """A history from ``original`` through ``rotations`` (each already checked against the
        key before it, see :meth:`extend`)."""
        self.original = original
        self.rotations: tuple[Rotation, ...] = tuple(rotations)

    @property
    def current(self) -> VerifierKey:
        """The key in force now (that signs the next checkpoint)."""
        return self.rotations[-1].new if self.rotations else self.original

    @property
    def keys(self) -> list[VerifierKey]:
        """Every key of the history, oldest first."""
        return [self.original, *(r.new for r in self.rotations)]

    def extend(self, seq: int, attributes: Any, origin: str) -> KeyHistory:
        """This history followed by the rotation record at ``seq`` (checked, see
        :func:`rotation_from_attributes`); rotations must come in sequence order."""
        if self.rotations and seq <= self.rotations[-1].seq:
            raise VerificationError(f"seq {seq}: key rotation records out of order", seq)
        rotation = rotation_from_attributes(seq, attributes, origin, self.current)
        return KeyHistory(self.original, (*self.rotations, rotation))

    def key_for(self, tree_size: int) -> VerifierKey:
        """The key that signs checkpoints of ``tree_size`` leaves."""
        key = self.original
        for rotation in self.rotations:
            if tree_size >= rotation.first_size:
                key = rotation.new
        return key

    def spans(
        self, latest_size: int | None = None
    ) -> Iterator[tuple[VerifierKey, int, int | None]]:
        """Each key with the tree sizes it signs, ``(key, first, last)`` (last None: still
        in force). The original key signs from size 0."""
        first = 0
        for key, rotation in zip(self.keys, (*self.rotations, None), strict=True):
            last = rotation.seq if rotation is not None else None
            yield key, first, last
            if rotation is not None:
                first = rotation.first_size

    def open_checkpoint(self, note: str | bytes, origin: str | None = None) -> Checkpoint:
        """Verify a checkpoint with the key in force for the tree size it states, and parse it.

        The size is read from the unverified text only to choose the key: a note verifies
        only with the key of its own size, so an older key cannot sign a later tree.
        """
        text, _ = parse_note(note)
        size = Checkpoint.parse_body(text).tree_size
        return open_checkpoint(note, self.key_for(size), origin)

    def anchored(self, trusted: VerifierKey) -> KeyHistory:
        """This history, if ``trusted`` is one of its keys; else VerificationError."""
        if trusted in self.keys:
            return self
        if not self.rotations:
            return KeyHistory(trusted)  # the checkpoints then say the key does not sign them
        raise VerificationError(
            f"the key {trusted} is not in the log's key history "
            f"({', '.join(str(k) for k in self.keys)})"
        )

    def __repr__(self) -> str:
        return f"KeyHistory({[str(k) for k in self.keys]!r})"


class HistoryStore(Protocol):
    """What the key history is read from: a store's meta and otaudit's own records
    (:class:`otaudit.store.base.Store` is one)."""

    def meta(self, key: str) -> str | None:
        """A set-once ledger setting (``origin``, ``verifier_key``)."""
        ...

    def action_rows(
        self, actions: Sequence[str], *, since_ns: int | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """(seq, time, actor, target, attributes) of own records with one of ``actions``."""
        ...


def load_history(store: HistoryStore, original: VerifierKey | None = None) -> KeyHistory:
    """The key history of a store: ``meta.verifier_key`` (or ``original``) and every rotation
    record among otaudit's own records, each checked in sequence order.

    ConfigError when the ledger records no key and none is given.
    """
    recorded = store.meta("verifier_key")
    if original is None:
        if recorded is None:
            raise ConfigError("the ledger has no verifier key recorded; pass --key")
        original = VerifierKey.parse(recorded)
    origin = store.meta("origin") or original.name
    history = KeyHistory(original)
    for row in store.action_rows((ROTATE_ACTION,)):
        history = history.extend(int(row[0]), row[4], origin)
    return history


def retired_at(store: HistoryStore, key: VerifierKey) -> int | None:
    """The seq of a rotation record that retires ``key`` (by its stated old key, unchecked:
    enough for a signer to stop), or None."""
    for row in store.action_rows((ROTATE_ACTION,)):
        if _attributes(row[4]).get("audit.old_value") == str(key):
            return int(row[0])
    return None


def history_for(store: HistoryStore, trusted: VerifierKey | KeyHistory) -> KeyHistory:
    """The store's key history anchored at ``trusted`` (see :meth:`KeyHistory.anchored`).

    The chain starts at the ledger's recorded original key when ``trusted`` is one of its
    keys; otherwise at ``trusted`` itself (a log that never rotated, checked with another key).
    """
    if isinstance(trusted, KeyHistory):
        return trusted
    recorded = store.meta("verifier_key")
    if recorded is not None and recorded != str(trusted):
        return load_history(store).anchored(trusted)
    return load_history(store, trusted)
