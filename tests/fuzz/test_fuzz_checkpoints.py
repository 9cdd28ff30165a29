"""Fuzzing what a checkpoint file may hold: any bytes give a checkpoint or the project's error.

Checkpoints and signed notes arrive from files an attacker may hand over (``verify
--checkpoint``, a witness directory, a bundle) and the server reads its own saved checkpoint
(:mod:`otaudit.signerstate`) and a pinned verifier key at every start. For each parser:
random bytes, bytes made of the note's own alphabet, and valid notes with a few edits,
raise a ``VerificationError`` (a ``ConfigError`` for key text and unreadable files) and
nothing else; a valid checkpoint comes back unchanged through signing and parsing.

``make test`` runs a bounded number of examples (profile ``default``); ``make fuzz`` runs
the same properties with many more (profile ``fuzz``). Whatever a run finds is fixed and
kept below as an ``@example``.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mutation import EDITS, mutate
from otaudit import datadir, signerstate
from otaudit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from otaudit.errors import ConfigError, OtauditError, VerificationError
from otaudit.keys import SigningKey, VerifierKey
from otaudit.note import open_note, parse_note

KEY = SigningKey.from_seed("example.com/log", bytes(range(32)))
OTHER = SigningKey.from_seed("example.com/log", bytes(range(1, 33)))
ROOT = bytes(range(32))
VALID = sign_checkpoint(Checkpoint(KEY.name, 12345, ROOT), KEY).encode()
COSIGNED = (
    VALID + sign_checkpoint(Checkpoint(KEY.name, 12345, ROOT), OTHER).encode().split(b"\n\n", 1)[1]
)

# The characters notes are made of, so that random text reaches past the first checks.
PIECES = [*"\n\n\n —+/=09azAZ.", "example.com/log", "12345", "\u2014 ", "\x00", "\ud800"]
NOTE_TEXT = st.lists(st.sampled_from(PIECES), max_size=200).map("".join)


def _open(data: bytes | str) -> None:
    """Open ``data`` as KEY's checkpoint: the one signed, or a VerificationError."""
    try:
        cp = open_checkpoint(data, KEY.verifier(), KEY.name)
    except VerificationError:
        return
    assert cp == Checkpoint(KEY.name, 12345, ROOT)


def _parse_everything(data: bytes | str) -> None:
    for parse in (Checkpoint.parse_body, parse_note, lambda d: open_note(d, KEY.verifier())):
        with contextlib.suppress(VerificationError):
            parse(data)
    _open(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048))
@example(data=b"\n\n\xe2\x80\x94 a AAAAAA==\n")
@example(data=b"o\n0\n" + b"A" * 43 + b"=\n")
def test_random_bytes(data: bytes) -> None:
    _parse_everything(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(text=NOTE_TEXT)
@example(text="example.com/log\n12345\n\n\u2014 example.com/log AAAAAA==\n")
def test_note_like_text(text: str) -> None:
    _parse_everything(text)
    _parse_everything(text.encode("utf-8", "surrogatepass"))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(edits=EDITS, cosigned=st.booleans())
@example(edits=[(1, len(VALID) - 1, 0)], cosigned=False)  # the final newline cut
def test_mutated_checkpoints(edits: list[tuple[int, int, int]], cosigned: bool) -> None:
    _parse_everything(mutate(COSIGNED if cosigned else VALID, edits))


@given(
    origin=st.text(min_size=1, max_size=30).filter(lambda s: "\n" not in s),
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(st.text(min_size=1, max_size=20).filter(lambda s: "\n" not in s),
                        max_size=3),
)  # fmt: skip
def test_valid_checkpoints_round_trip(
    origin: str, size: int, root: bytes, extensions: list[str]
) -> None:
    try:
        cp = Checkpoint(origin, size, root, tuple(extensions))
    except ValueError:
        return  # control characters, surrogates: refused when built (and when parsed)
    assert Checkpoint.parse_body(cp.body()) == cp
    assert open_checkpoint(sign_checkpoint(cp, KEY), KEY.verifier(), origin) == cp


@given(text=st.one_of(st.text(max_size=120), NOTE_TEXT, st.just(str(KEY.verifier()))))
def test_verifier_key_text(text: str) -> None:
    try:
        key = VerifierKey.parse(text)
    except ConfigError:
        return
    assert str(key) == text


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=1024), st.builds(mutate, st.just(VALID), EDITS)))
@example(data=VALID)
@example(data=b"x" * (signerstate.MAX_FILE_BYTES + 1))
def test_saved_files(data: bytes) -> None:
    """The signer's saved checkpoint and the pinned key, as the server and verify read them."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "signing.key.checkpoint"
        path.write_bytes(data)
        try:
            cp = signerstate.load(path, KEY.verifier(), KEY.name)
        except OtauditError as exc:
            assert isinstance(exc, (ConfigError, VerificationError)), exc
        else:
            assert cp == Checkpoint(KEY.name, 12345, ROOT)
        with contextlib.suppress(ConfigError):
            datadir.pinned_key(path)
