"""What the console's pages share: the read service, the session signer, saved items.

Saved views and saved queries are kept server side, one small JSON file per token id in
``DATA/console-saved/`` (mode 0600, written atomically), not as records of the ledger: a
saved view is a preference, not evidence; the ledger cannot forget or overwrite one, and
filling it with preferences would put them in every evidence pack. What a saved view
shows is audited when it is opened, like any page view.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from otaudit import access
from otaudit.console.session import SessionSigner
from otaudit.detect.rules import Rule
from otaudit.errors import ConfigError
from otaudit.keys import SigningKey
from otaudit.readapi import ReadService
from otaudit.smallfile import read_small_file, write_atomic
from otaudit.store.base import Store

SAVED_DIR: Final = "console-saved"
MAX_SAVED: Final = 50
"""Saved views (and, apart, saved queries) one token may keep; the oldest go first."""
MAX_SAVED_NAME: Final = 100
MAX_SAVED_TEXT: Final = 8192
_MAX_FILE: Final = 2 * MAX_SAVED * (MAX_SAVED_TEXT + MAX_SAVED_NAME + 64)
_OWNER_RE: Final = re.compile(r"[0-9a-f]{12}|anonymous")
SAVED_KINDS: Final = ("views", "queries")


@dataclass
class ConsoleService:
    """The console's shared state: the read service (stores, ledger appends, cursors,
    SQL workers), the session signer, the data directory, and what the Evidence and
    Overview pages need (the signing key, the rules, the witness folder)."""

    read: ReadService
    sessions: SessionSigner
    data: Path
    tls: bool = False
    signer: SigningKey | None = None
    rules: Sequence[Rule] = ()
    witness_dir: Path | None = None
    _saved_lock: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def store(self) -> Iterator[Store]:
        """A read-only view of the store for one request."""
        store = self.read.open_store()
        try:
            yield store
        finally:
            store.close()

    def record(self, reader: access.Reader, text: str, **outcome: Any) -> None:
        """Record a page view or export (kind ``console``) before it is answered."""
        self.read.record(reader, "console", text, **outcome)

    # -- saved views and queries ------------------------------------------------

    def _saved_path(self, owner: str) -> Path:
        if _OWNER_RE.fullmatch(owner) is None:
            raise ConfigError(f"no saved items for {owner!r}")
        return self.data / SAVED_DIR / f"{owner}.json"

    def saved(self, owner: str) -> dict[str, list[dict[str, str]]]:
        """The saved views and queries of ``owner`` (a token id or ``anonymous``)."""
        raw = read_small_file(self._saved_path(owner), "saved views", _MAX_FILE, private=True)
        document: dict[str, list[dict[str, str]]] = {kind: [] for kind in SAVED_KINDS}
        if raw is None:
            return document
        try:
            loaded = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{self._saved_path(owner)} is not JSON: {exc}") from None
        for kind in SAVED_KINDS:
            items = loaded.get(kind, []) if isinstance(loaded, dict) else []
            document[kind] = [
                {"name": str(i["name"]), "text": str(i["text"])}
                for i in items
                if isinstance(i, dict) and "name" in i and "text" in i
            ]
        return document

    def save(self, owner: str, kind: str, name: str, text: str) -> None:
        """Keep ``text`` (a records query string, or a statement) under ``name``; the same
        name replaces the older one. ValueError for an empty or oversized item."""
        name, text = name.strip(), text.strip()
        if kind not in SAVED_KINDS:
            raise ValueError(f"kind must be one of {', '.join(SAVED_KINDS)}")
        if not name or len(name) > MAX_SAVED_NAME:
            raise ValueError(f"a name needs 1 to {MAX_SAVED_NAME} characters")
        if len(text) > MAX_SAVED_TEXT:
            raise ValueError(f"what is saved may have at most {MAX_SAVED_TEXT} characters")
        with self._saved_lock:
            document = self.saved(owner)
            items = [i for i in document[kind] if i["name"] != name]
            items.append({"name": name, "text": text})
            document[kind] = items[-MAX_SAVED:]
            path = self._saved_path(owner)
            path.parent.mkdir(mode=0o700, exist_ok=True)
            write_atomic(path, orjson.dumps(document), 0o600)
