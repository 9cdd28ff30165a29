"""Redaction before sealing: attributes dropped, or replaced by a keyed pseudonym.

Rules match attribute keys (record and resource attributes) with shell-style
patterns (``fnmatch``: ``enduser.email``, ``http.request.header.*``,
``*.ssn``); the first matching rule wins:

- ``drop:PATTERN`` removes the attribute;
- ``hmac:PATTERN`` replaces its value by ``hmac-sha256:<hex>``, the
  HMAC-SHA256 under the redaction key of the value's text form (the text the
  query columns show). Equal values give equal pseudonyms, so whoever holds
  the key can still search for a value (``otaudit pseudonym VALUE``) and
  count or correlate, without the ledger holding the value.

A redacted record carries ``otaudit.redacted``: the affected keys and what
was done (``drop:secret.token,hmac:enduser.id``), so that an auditor sees a
field was redacted rather than never sent. Redaction happens before the
record is hashed: the ledger never holds the original, and nothing can
bring it back.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from otaudit.errors import ConfigError
from otaudit.record import text_value
from otaudit.secretfile import read_secret

MARK: Final = "otaudit.redacted"
PREFIX: Final = "hmac-sha256:"


@dataclass(frozen=True)
class Rule:
    """One rule: ``drop`` or ``hmac`` the attributes whose key matches ``pattern``."""

    action: str
    pattern: str


@dataclass(frozen=True)
class Redactor:
    """The rules in order, and the HMAC key (needed by ``hmac`` rules)."""

    rules: tuple[Rule, ...]
    key: bytes | None = None

    @classmethod
    def parse(cls, specs: tuple[str, ...], key_file: Path | None) -> Redactor | None:
        """Rules from ``--redact`` values; ConfigError says what is wrong. None if no rules."""
        rules = []
        for spec in specs:
            action, sep, pattern = spec.partition(":")
            if not sep or action not in ("drop", "hmac") or not pattern:
                raise ConfigError(f"--redact {spec!r}: expected drop:PATTERN or hmac:PATTERN")
            rules.append(Rule(action, pattern))
        key = None if key_file is None else read_secret(key_file, "--redaction-key-file")
        if any(r.action == "hmac" for r in rules) and key is None:
            raise ConfigError("hmac:... redaction rules need --redaction-key-file")
        return cls(tuple(rules), key) if rules else None

    def pseudonym(self, text: str) -> str:
        """The pseudonym of a value's text form."""
        assert self.key is not None
        return PREFIX + hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def apply(self, attributes: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The attributes with the rules applied, and what was done (``action:key``)."""
        done: list[str] = []
        out: dict[str, Any] = {}
        for key, value in attributes.items():
            rule = next((r for r in self.rules if fnmatch.fnmatchcase(key, r.pattern)), None)
            if rule is None:
                out[key] = value
            elif rule.action == "drop":
                done.append(f"drop:{key}")
            else:
                out[key] = self.pseudonym(text_value(value))
                done.append(f"hmac:{key}")
        return out, done
