"""Tests for otaudit.checkpoint: C2SP signed notes and tlog checkpoints with Ed25519 keys."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from otaudit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from otaudit.errors import ConfigError, VerificationError
from otaudit.keys import SigningKey, VerifierKey
from otaudit.merkle import EMPTY_ROOT
from otaudit.note import MAX_SIGNATURES, open_note, sign_note

EM = "\u2014"

# ------------------------------------------------------------------------------------------
# Known answers from the reference implementation (golang.org/x/mod/sumdb/note) and the spec

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_PETER_SIG = (
    f"{EM} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvq"
    "fqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_ENOCH_SIG = (
    f"{EM} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOT"
    "GwnWLox33WWd1RvMc+QQ=\n"
)
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    f"{EM} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3"
    "mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def test_go_reference_signing_key() -> None:
    key = SigningKey.from_private_text(GO_SKEY)
    assert key.name == "PeterNeumann"
    assert key.key_id == bytes.fromhex("c74f20a3")
    assert key.verifier_key() == GO_VKEY
    assert key.to_private_text() == GO_SKEY
    # Ed25519 is deterministic, so the signed note is reproduced byte for byte.
    assert sign_note(GO_TEXT, key) == GO_TEXT + "\n" + GO_PETER_SIG


def test_go_reference_doubly_signed_note() -> None:
    note = GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG
    assert open_note(note, VerifierKey.parse(GO_VKEY)) == GO_TEXT
    assert open_note(note, VerifierKey.parse(GO_ENOCH_VKEY)) == GO_TEXT
    enoch_first = GO_TEXT + "\n" + GO_ENOCH_SIG + GO_PETER_SIG
    assert open_note(enoch_first, VerifierKey.parse(GO_VKEY)) == GO_TEXT


def test_signed_note_spec_example() -> None:
    key = VerifierKey.parse(SPEC_VKEY)
    assert key.name == "example.com/foo" and key.key_id.hex() == "530d903a"
    assert open_note(SPEC_NOTE, key) == "This is an example message.\n"
    assert open_note(SPEC_NOTE.encode("utf-8"), key) == "This is an example message.\n"


def test_tlog_checkpoint_spec_example_body() -> None:
    root = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    body = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    cp = Checkpoint("example.com/behind-the-sofa", 20852163, root)
    assert cp.body() == body
    assert Checkpoint.parse_body(body) == cp


# ------------------------------------------------------------------------------------------
# A key from a fixed seed: stable verifier key text and key id

FIXED_NAME = "otaudit.example/ledger"
FIXED_SEED = bytes(range(32))
FIXED_VKEY = "otaudit.example/ledger+ec1dcc27+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
FIXED_SKEY = (
    "PRIVATE+KEY+otaudit.example/ledger+ec1dcc27+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"
)
ROOT8 = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
FIXED_NOTE = (
    "otaudit.example/ledger\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n"
    f"{EM} otaudit.example/ledger 7B3MJ8Xm4ZlPU4N/WleC30X3yue7X3UYYA8zt0I00dGBxKelCdIlR4yJbc0la"
    "THdyiTkGbOHt6riBP1aCQIiOcT5eAo=\n"
)
VKEY_RE = re.compile(r"(?P<name>[^+\s]+)\+(?P<id>[0-9a-f]{8})\+(?P<key>[A-Za-z0-9+/]{44})")


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.from_seed(FIXED_NAME, FIXED_SEED)


def test_fixed_seed_known_answer(key: SigningKey) -> None:
    assert key.verifier_key() == FIXED_VKEY
    assert key.to_private_text() == FIXED_SKEY
    assert key.key_id.hex() == "ec1dcc27"
    assert repr(key) == "SigningKey(name='otaudit.example/ledger', key_id='ec1dcc27')"


def test_fixed_seed_format_and_key_id_formula(key: SigningKey) -> None:
    match = VKEY_RE.fullmatch(key.verifier_key())
    assert match is not None
    assert match["name"] == FIXED_NAME
    raw = base64.b64decode(match["key"], validate=True)
    assert len(raw) == 33 and raw[0] == 0x01
    public = Ed25519PrivateKey.from_private_bytes(FIXED_SEED).public_key().public_bytes_raw()
    assert raw[1:] == public == key.public_key_bytes
    expected_id = hashlib.sha256(FIXED_NAME.encode() + b"\n" + b"\x01" + public).digest()[:4]
    assert key.key_id == expected_id
    assert match["id"] == expected_id.hex()
    seed_b64 = base64.b64encode(b"\x01" + FIXED_SEED).decode()
    assert f"PRIVATE+KEY+{FIXED_NAME}+{expected_id.hex()}+{seed_b64}" == FIXED_SKEY


def test_fixed_seed_signed_checkpoint(key: SigningKey) -> None:
    cp = Checkpoint(FIXED_NAME, 8, ROOT8)
    assert sign_checkpoint(cp, key) == FIXED_NOTE
    assert open_checkpoint(FIXED_NOTE, VerifierKey.parse(FIXED_VKEY), FIXED_NAME) == cp
    # The signature line is the key id followed by a raw Ed25519 signature over the body.
    sig_line = FIXED_NOTE.split("\n\n")[1]
    assert sig_line.startswith(f"{EM} {FIXED_NAME} ")
    raw = base64.b64decode(sig_line.split(" ")[2])
    assert raw[:4] == key.key_id and len(raw) == 68
    key.verifier().verify(cp.body(), raw[4:])


# ------------------------------------------------------------------------------------------
# Round trips


def test_generate_round_trips() -> None:
    a = SigningKey.generate("example.com/log")
    b = SigningKey.generate("example.com/log")
    assert a.key_id != b.key_id
    again = SigningKey.from_private_text(a.to_private_text())
    assert again.verifier_key() == a.verifier_key()
    assert VerifierKey.parse(a.verifier_key()) == a.verifier()
    assert hash(VerifierKey.parse(a.verifier_key())) == hash(a.verifier())
    assert str(a.verifier()) == a.verifier_key()
    assert VerifierKey.parse(a.verifier_key()) != b.verifier()
    sig = a.sign(b"hello\n")
    assert len(sig) == 64
    again.verifier().verify(b"hello\n", sig)
    with pytest.raises(VerificationError, match="does not verify"):
        b.verifier().verify(b"hello\n", sig)
    with pytest.raises(VerificationError, match="must be 64 bytes, found 63 bytes"):
        a.verifier().verify(b"hello\n", sig[:63])


@pytest.mark.parametrize(
    "cp",
    [
        Checkpoint("example.com/log", 0, EMPTY_ROOT),
        Checkpoint("example.com/log", 1, b"\x00" * 32),
        Checkpoint("example.com/log", 2**64 - 1, b"\xff" * 32),
        Checkpoint("example.com/log", 8, ROOT8, ("ext one", "ext:two")),
        Checkpoint("origin with spaces and ünïcödé", 42, ROOT8),
    ],
    ids=["empty-tree", "one-leaf", "max-size", "extensions", "unicode-origin"],
)
def test_checkpoint_round_trip(cp: Checkpoint, key: SigningKey) -> None:
    assert Checkpoint.parse_body(cp.body()) == cp
    assert Checkpoint.parse_body(cp.body().decode()) == cp
    note = sign_checkpoint(cp, key)
    assert note.startswith(cp.body().decode() + "\n" + EM + " ")
    assert open_checkpoint(note, key.verifier()) == cp
    assert open_checkpoint(note.encode(), key.verifier(), origin=cp.origin) == cp


def test_checkpoint_body_layout() -> None:
    cp = Checkpoint("o", 10, ROOT8, ("x",))
    assert cp.body() == b"o\n10\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\nx\n"
    assert Checkpoint("o", 3, ROOT8, ["a", "b"]).extensions == ("a", "b")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"origin": ""}, "origin must not be empty"),
        ({"origin": "a\nb"}, "single line"),
        ({"origin": "a\tb"}, "control characters"),
        ({"tree_size": -1}, r"must be in \[0, 2\*\*64 - 1\], found -1"),
        ({"tree_size": 2**64}, "found 18446744073709551616"),
        ({"tree_size": True}, "must be an int, found bool"),
        ({"root_hash": b"\x00" * 31}, "must be 32 bytes, found 31 bytes"),
        ({"root_hash": ROOT8.hex()}, "must be 32 bytes, found str"),
        ({"extensions": ("",)}, "extension line 0 must not be empty"),
        ({"extensions": ("ok", "a\nb")}, "extension line 1 must be a single line"),
        ({"extensions": "abc"}, "must be a tuple of lines, found str"),
    ],
    ids=[
        "empty-origin",
        "multiline-origin",
        "tab-in-origin",
        "negative-size",
        "size-2**64",
        "bool-size",
        "root-31-bytes",
        "root-as-hex",
        "empty-extension",
        "multiline-extension",
        "extensions-string",
    ],
)
def test_checkpoint_rejects_invalid_fields(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"origin": "o", "tree_size": 1, "root_hash": ROOT8, **kwargs}
    with pytest.raises(ValueError, match=message):
        Checkpoint(**args)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# Tampered and malformed notes

ORIGIN = "example.com/audit"
TAMPER_CP = Checkpoint(ORIGIN, 8, ROOT8)
OTHER_KEY = SigningKey.from_seed(ORIGIN, b"\x07" * 32)  # same name, different key and id
THIRD_KEY = SigningKey.from_seed("example.com/witness", b"\x09" * 32)


@pytest.fixture
def signer() -> SigningKey:
    return SigningKey.from_seed(ORIGIN, b"\x05" * 32)


def _good(signer: SigningKey) -> str:
    return sign_checkpoint(TAMPER_CP, signer)


def _body_and_sigs(note: str) -> tuple[str, str]:
    split = note.rfind("\n\n")
    return note[: split + 1], note[split + 2 :]


def _replace_body(note: str, body: str) -> str:
    return body + "\n" + _body_and_sigs(note)[1]


def _sig_bytes(note: str) -> bytes:
    return base64.b64decode(_body_and_sigs(note)[1].split("\n")[0].split(" ")[2])


def _with_sig(note: str, name: str, raw: bytes) -> str:
    body, _ = _body_and_sigs(note)
    return f"{body}\n{EM} {name} {base64.b64encode(raw).decode()}\n"


def _flip_sig_bit(note: str) -> str:
    raw = bytearray(_sig_bytes(note))
    raw[10] ^= 0x04
    return _with_sig(note, ORIGIN, bytes(raw))


Tamper = Callable[[str], str]

TAMPERS: list[tuple[str, Tamper, str]] = [
    ("changed-size", lambda n: n.replace("\n8\n", "\n9\n", 1), "does not verify"),
    ("changed-size-to-zero", lambda n: n.replace("\n8\n", "\n0\n", 1), "does not verify"),
    (
        "changed-root",
        lambda n: n.replace("XcnaeacG", "XcnaeacH", 1),
        "does not verify",
    ),
    (
        "changed-origin",
        lambda n: n.replace(ORIGIN + "\n", "example.com/other\n", 1),
        "does not verify",
    ),
    (
        "added-extension-line",
        lambda n: _replace_body(n, _body_and_sigs(n)[0] + "extra\n"),
        "does not verify",
    ),
    (
        "signature-from-another-key-same-name",
        lambda n: sign_checkpoint(TAMPER_CP, OTHER_KEY),
        "no signature by example.com/audit\\+",
    ),
    (
        "signature-from-another-key-claiming-our-id",
        lambda n: _with_sig(n, ORIGIN, _sig_bytes(n)[:4] + OTHER_KEY.sign(TAMPER_CP.body())),
        "line 5: signature does not verify",
    ),
    (
        "signature-only-from-unknown-key",
        lambda n: sign_checkpoint(TAMPER_CP, THIRD_KEY),
        "no signature by",
    ),
    ("signature-bit-flip", _flip_sig_bit, "does not verify"),
    (
        "truncated-signature",
        lambda n: _with_sig(n, ORIGIN, _sig_bytes(n)[:-1]),
        "must be 64 bytes, found 63 bytes",
    ),
    (
        "signature-too-long",
        lambda n: _with_sig(n, ORIGIN, _sig_bytes(n) + b"\x00"),
        "must be 64 bytes, found 65 bytes",
    ),
    (
        "signature-key-id-only",
        lambda n: _with_sig(n, ORIGIN, _sig_bytes(n)[:4]),
        "at least one signature byte, found 4 bytes",
    ),
    (
        "wrong-key-id-with-our-signature",
        lambda n: _with_sig(n, ORIGIN, b"\x00\x00\x00\x00" + _sig_bytes(n)[4:]),
        "no signature by",
    ),
    (
        "missing-blank-line",
        lambda n: n.replace("\n\n", "\n", 1),
        "blank line between the text and the signatures",
    ),
    ("no-signature-lines", lambda n: _body_and_sigs(n)[0] + "\n", "at least one signature line"),
    ("no-trailing-newline", lambda n: n[:-1], "must end with a newline"),
    ("empty-note", lambda n: "", "must end with a newline"),
    (
        "hyphen-instead-of-em-dash",
        lambda n: n.replace(EM, "-"),
        "starting with U\\+2014 EM DASH",
    ),
    ("en-dash-instead-of-em-dash", lambda n: n.replace(EM, "\u2013"), "EM DASH"),
    ("no-space-after-em-dash", lambda n: n.replace(EM + " ", EM), "EM DASH and a space"),
    (
        "extra-space-in-signature-line",
        lambda n: n.replace(f"{ORIGIN} ", f"{ORIGIN}  ", 1),
        "found 3 space-separated field",
    ),
    ("trailing-space-in-signature-line", lambda n: n[:-1] + " \n", "space-separated"),
    ("signature-not-base64", lambda n: n[:-3] + "*=\n", "canonical standard base64"),
    ("signature-missing-padding", lambda n: n[:-2] + "\n", "canonical standard base64"),
    ("blank-line-after-signatures", lambda n: n + "\n", "at least one signature line"),
    ("crlf-line-endings", lambda n: n.replace("\n", "\r\n"), "U\\+000D"),
    ("nul-in-body", lambda n: n.replace(ORIGIN, ORIGIN + "\x00", 1), "U\\+0000"),
    ("tab-in-signature-line", lambda n: n.replace(f"{EM} ", f"{EM}\t"), "U\\+0009"),
    ("signature-name-with-plus", lambda n: n.replace(f"{EM} {ORIGIN}", f"{EM} a+b"), "'\\+'"),
    ("garbage-signature-line", lambda n: n + "garbage\n", "line 6 must be a signature line"),
    (
        "more-than-100-signatures",
        lambda n: n + (_body_and_sigs(sign_checkpoint(TAMPER_CP, THIRD_KEY))[1] * 100),
        "at most 100 signature lines, found 101",
    ),
    (
        "our-signature-then-a-bad-one",
        lambda n: n + _body_and_sigs(_flip_sig_bit(n))[1],
        "line 6: signature does not verify",
    ),
]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [(t, m) for _, t, m in TAMPERS],
    ids=[n for n, _, _ in TAMPERS],
)
def test_tampered_note_rejected(tamper: Tamper, message: str, signer: SigningKey) -> None:
    note = tamper(_good(signer))
    with pytest.raises(VerificationError, match=message):
        open_checkpoint(note, signer.verifier())


def test_untampered_note_accepted(signer: SigningKey) -> None:
    assert open_checkpoint(_good(signer), signer.verifier(), ORIGIN) == TAMPER_CP


def test_origin_mismatch_rejected(signer: SigningKey) -> None:
    with pytest.raises(
        VerificationError,
        match=re.escape("checkpoint origin must be 'example.com/other', found 'example.com/audit'"),
    ):
        open_checkpoint(_good(signer), signer.verifier(), origin="example.com/other")


def _unknown_sig_lines() -> Iterator[tuple[str, str]]:
    yield "other-name", _body_and_sigs(sign_checkpoint(TAMPER_CP, THIRD_KEY))[1]
    yield "same-name-other-id", _body_and_sigs(sign_checkpoint(TAMPER_CP, OTHER_KEY))[1]
    garbage = base64.b64encode(b"\x01\x02\x03\x04" + b"\xee" * 200).decode()
    yield "unknown-key-any-length", f"{EM} someone.example/else {garbage}\n"
    yield "unknown-key-short", f"{EM} tiny {base64.b64encode(b'12345').decode()}\n"


UNKNOWN = list(_unknown_sig_lines())


@pytest.mark.parametrize("position", ["before", "after"])
@pytest.mark.parametrize("extra", [e for _, e in UNKNOWN], ids=[n for n, _ in UNKNOWN])
def test_extra_signature_lines_from_unknown_keys_accepted(
    extra: str, position: str, signer: SigningKey
) -> None:
    body, ours = _body_and_sigs(_good(signer))
    sigs = extra + ours if position == "before" else ours + extra
    assert open_checkpoint(body + "\n" + sigs, signer.verifier(), ORIGIN) == TAMPER_CP


def test_many_signatures_up_to_the_limit_accepted(signer: SigningKey) -> None:
    body, ours = _body_and_sigs(_good(signer))
    others = _body_and_sigs(sign_checkpoint(TAMPER_CP, THIRD_KEY))[1]
    note = body + "\n" + others * (MAX_SIGNATURES - 1) + ours
    assert open_checkpoint(note, signer.verifier()) == TAMPER_CP


def test_duplicate_valid_signature_accepted(signer: SigningKey) -> None:
    note = _good(signer)
    assert open_checkpoint(note + _body_and_sigs(note)[1], signer.verifier()) == TAMPER_CP


def test_checkpoint_cosigned_by_two_keys(signer: SigningKey) -> None:
    body = TAMPER_CP.body().decode()
    note = body + "\n" + _body_and_sigs(_good(signer))[1]
    note += _body_and_sigs(sign_note(body, THIRD_KEY))[1]
    assert open_checkpoint(note, signer.verifier()) == TAMPER_CP
    assert open_checkpoint(note, THIRD_KEY.verifier()) == TAMPER_CP


URLSAFE_ROOT = base64.urlsafe_b64encode(b"\xfb" * 32).decode()

# Bodies that are validly signed but are not checkpoints: the signature passes, parsing fails.
MALFORMED_BODIES: list[tuple[str, str, str]] = [
    ("two-lines", f"{ORIGIN}\n8\n", "at least 3 lines .* found 2"),
    ("empty-origin", "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "origin"),
    ("size-leading-zero", f"{ORIGIN}\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "'08'"),
    ("size-plus-sign", f"{ORIGIN}\n+8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "'\\+8'"),
    ("size-negative", f"{ORIGIN}\n-1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "'-1'"),
    ("size-hex", f"{ORIGIN}\n0x8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "'0x8'"),
    ("size-spaces", f"{ORIGIN}\n 8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "' 8'"),
    ("size-underscore", f"{ORIGIN}\n1_0\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "'1_0'"),
    (
        "size-arabic-digits",
        f"{ORIGIN}\n\u0668\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
        "ASCII",
    ),
    ("size-empty", f"{ORIGIN}\n\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "found ''"),
    (
        "size-over-2**64",
        f"{ORIGIN}\n18446744073709551616\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
        "at most 2\\*\\*64 - 1",
    ),
    (
        "size-huge",
        f"{ORIGIN}\n{'9' * 5000}\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
        "5000 characters",
    ),
    ("root-31-bytes", f"{ORIGIN}\n8\n{base64.b64encode(ROOT8[:31]).decode()}\n", "found 31 bytes"),
    ("root-33-bytes", f"{ORIGIN}\n8\n{base64.b64encode(ROOT8 + b'x').decode()}\n", "33 bytes"),
    ("root-hex", f"{ORIGIN}\n8\n{ROOT8.hex()}\n", "must be 32 bytes, found 48 bytes"),
    ("root-urlsafe-base64", f"{ORIGIN}\n8\n{URLSAFE_ROOT}\n", "standard base64, found '-"),
    ("root-unpadded", f"{ORIGIN}\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg\n", "base64"),
    (
        "root-non-canonical",
        f"{ORIGIN}\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh=\n",
        "canonical",
    ),
    (
        "empty-extension-line",
        f"{ORIGIN}\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\nx\n",
        "line 4\\) must not be empty",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"),
    [(b, m) for _, b, m in MALFORMED_BODIES],
    ids=[n for n, _, _ in MALFORMED_BODIES],
)
def test_signed_malformed_body_rejected(body: str, message: str, signer: SigningKey) -> None:
    note = sign_note(body, signer)
    with pytest.raises(VerificationError, match=message):
        open_checkpoint(note, signer.verifier())
    with pytest.raises(VerificationError, match=message):
        Checkpoint.parse_body(body)


def test_parse_body_rejects_unterminated_and_invalid_utf8() -> None:
    good = TAMPER_CP.body()
    with pytest.raises(VerificationError, match="must end with a newline"):
        Checkpoint.parse_body(good[:-1])
    with pytest.raises(VerificationError, match="valid UTF-8, found invalid bytes at offset 0"):
        Checkpoint.parse_body(b"\xff" + good)
    with pytest.raises(VerificationError, match="valid UTF-8"):
        open_checkpoint(b"\xff" + good, THIRD_KEY.verifier())


def test_sign_note_rejects_invalid_text(signer: SigningKey) -> None:
    with pytest.raises(ValueError, match="must end with a newline"):
        sign_note("no newline", signer)
    with pytest.raises(ValueError, match="U\\+0007"):
        sign_note("bell\a\n", signer)
    with pytest.raises(ValueError, match="UTF-8"):
        sign_note(b"\xff\n", signer)


# ------------------------------------------------------------------------------------------
# Key parsing and names


@pytest.mark.parametrize(
    "name",
    ["", "a b", "a+b", "a\tb", "tab\t", "a\u00a0b", "a\u2003b", "line\nbreak", "nul\x00", "\ud800"],
    ids=[
        "empty",
        "space",
        "plus",
        "tab",
        "trailing-tab",
        "nbsp",
        "em-space",
        "newline",
        "nul",
        "lone-surrogate",
    ],
)
def test_invalid_key_names_rejected(name: str) -> None:
    with pytest.raises(ConfigError, match="key name"):
        SigningKey.generate(name)
    with pytest.raises(ConfigError, match="key name"):
        VerifierKey(name, b"\x00" * 32)


def test_valid_unusual_key_names_accepted() -> None:
    for name in ["a", "example.com/log/v1?x=y", "ünïcödé", "EM\u2014DASH"]:
        key = SigningKey.generate(name)
        assert VerifierKey.parse(key.verifier_key()) == key.verifier()


def test_seed_must_be_32_bytes() -> None:
    with pytest.raises(ConfigError, match="seed must be 32 bytes, found 31 bytes"):
        SigningKey.from_seed("a", b"\x00" * 31)


def _go_vkey_with(raw: bytes, name: str = "PeterNeumann") -> str:
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex()
    return f"{name}+{key_id}+{base64.b64encode(raw).decode()}"


GO_PUB = base64.b64decode(GO_VKEY.split("+", 2)[2])

BAD_VERIFIER_KEYS: list[tuple[str, str, str]] = [
    ("empty", "", "'<name>\\+<key id>\\+<base64 key>'"),
    ("missing-key", "PeterNeumann+c74f20a3", "'<name>\\+<key id>\\+<base64 key>'"),
    ("empty-name", "+c74f20a3+" + GO_VKEY.split("+", 2)[2], "must not be empty"),
    ("uppercase-key-id", GO_VKEY.replace("c74f20a3", "C74F20A3"), "8 lowercase hex digits"),
    ("short-key-id", GO_VKEY.replace("c74f20a3", "c74f20a"), "found 'c74f20a'"),
    ("wrong-key-id", GO_VKEY.replace("c74f20a3", "c74f20a4"), "key id mismatch"),
    ("renamed", GO_VKEY.replace("PeterNeumann", "PaulNeumann"), "key id mismatch"),
    ("bad-base64", GO_VKEY[:-2] + "*W", "canonical standard base64"),
    ("trailing-newline", GO_VKEY + "\n", "canonical standard base64"),
    ("leading-space", " " + GO_VKEY, "whitespace"),
    ("wrong-length-key", _go_vkey_with(GO_PUB + b"BADKEY"), "found 39 bytes"),
    ("unknown-algorithm", _go_vkey_with(b"\x65" + GO_PUB[1:]), "unsupported signature type 0x65"),
    ("private-key-text", GO_SKEY, "8 lowercase hex digits, found 'KEY'"),
]


@pytest.mark.parametrize(
    ("text", "message"),
    [(t, m) for _, t, m in BAD_VERIFIER_KEYS],
    ids=[n for n, _, _ in BAD_VERIFIER_KEYS],
)
def test_verifier_key_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VerifierKey.parse(text)


def _manglings(text: str) -> Iterator[str]:
    """Every proper substring and every one-character increment, as in Go's note tests."""
    for i in range(len(text) + 1):
        for j in range(i + 1, len(text) + 1):
            if (i, j) != (0, len(text)):
                yield text[i:j]
    for i in range(len(text)):
        yield text[:i] + chr(ord(text[i]) + 1) + text[i + 1 :]


def test_verifier_key_manglings_rejected() -> None:
    assert VerifierKey.parse(GO_VKEY).key_id.hex() == "c74f20a3"
    for text in _manglings(GO_VKEY):
        with pytest.raises(ConfigError):
            VerifierKey.parse(text)


def test_private_key_manglings_rejected() -> None:
    for text in _manglings(GO_SKEY):
        with pytest.raises(ConfigError):
            SigningKey.from_private_text(text)


GO_SEED_B64 = GO_SKEY.split("+", 4)[4]

BAD_PRIVATE_KEYS: list[tuple[str, str, str]] = [
    ("missing-prefix", GO_SKEY.removeprefix("PRIVATE+KEY+"), "must start with 'PRIVATE\\+KEY\\+'"),
    ("lowercase-prefix", "private+key+" + GO_SKEY[12:], "must start with"),
    ("verifier-key", GO_VKEY, "must start with"),
    ("missing-key-data", "PRIVATE+KEY+PeterNeumann+c74f20a3", "found 2 '\\+'-separated field"),
    ("uppercase-key-id", GO_SKEY.replace("c74f20a3", "C74F20A3"), "8 lowercase hex digits"),
    ("wrong-key-id", GO_SKEY.replace("c74f20a3", "00000000"), "key id mismatch: the text says"),
    ("renamed", GO_SKEY.replace("PeterNeumann", "PaulNeumann"), "key id mismatch"),
    ("bad-base64", GO_SKEY[:-1] + "!", "canonical standard base64"),
    ("trailing-newline", GO_SKEY + "\n", "canonical standard base64"),
    (
        "seed-31-bytes",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+"
        + base64.b64encode(base64.b64decode(GO_SEED_B64)[:32]).decode(),
        "found 32 bytes",
    ),
    (
        "wrong-type-byte",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+"
        + base64.b64encode(b"\x02" + base64.b64decode(GO_SEED_B64)[1:]).decode(),
        "unsupported signature type 0x02",
    ),
    ("name-with-space", GO_SKEY.replace("PeterNeumann", "Peter Neumann"), "whitespace"),
]


@pytest.mark.parametrize(
    ("text", "message"),
    [(t, m) for _, t, m in BAD_PRIVATE_KEYS],
    ids=[n for n, _, _ in BAD_PRIVATE_KEYS],
)
def test_private_key_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as excinfo:
        SigningKey.from_private_text(text)
    assert GO_SEED_B64 not in str(excinfo.value)  # never echo secret key data


# ------------------------------------------------------------------------------------------
# Key files


def test_save_creates_0600_file_and_load_round_trips(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "ledger.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == FIXED_SKEY + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.key"]  # no temp files left
    loaded = SigningKey.load(path)
    assert loaded.verifier_key() == key.verifier_key()
    assert SigningKey.load(str(path)).to_private_text() == FIXED_SKEY


def test_save_is_0600_even_with_permissive_umask(tmp_path: Path, key: SigningKey) -> None:
    old = os.umask(0)
    try:
        key.save(tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


def test_save_refuses_to_overwrite(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "ledger.key"
    path.write_text("precious\n")
    with pytest.raises(
        ConfigError, match=f"refusing to overwrite existing key file {re.escape(str(path))}"
    ):
        key.save(path)
    assert path.read_text() == "precious\n"
    key.save(tmp_path / "second.key")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        SigningKey.generate("x").save(tmp_path / "second.key")
    assert SigningKey.load(tmp_path / "second.key").verifier_key() == key.verifier_key()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.key", "second.key"]


def test_save_refuses_to_overwrite_dangling_symlink(tmp_path: Path, key: SigningKey) -> None:
    link = tmp_path / "link.key"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        key.save(link)
    assert not (tmp_path / "nowhere").exists()


def test_save_into_missing_directory(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "missing" / "k"
    with pytest.raises(ConfigError, match=f"cannot create key file {re.escape(str(path))}"):
        key.save(path)


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    with pytest.raises(ConfigError, match=f"key file {re.escape(str(path))} does not exist"):
        SigningKey.load(path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601])
def test_load_rejects_group_or_other_access(tmp_path: Path, key: SigningKey, mode: int) -> None:
    path = tmp_path / "k"
    key.save(path)
    path.chmod(mode)
    with pytest.raises(
        ConfigError, match=f"key file {re.escape(str(path))} has mode {mode:04o}"
    ) as excinfo:
        SigningKey.load(path)
    assert "chmod 600" in str(excinfo.value)


def test_load_accepts_0400(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "k"
    key.save(path)
    path.chmod(0o400)
    assert SigningKey.load(path).verifier_key() == key.verifier_key()


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "must start with 'PRIVATE\\+KEY\\+'"),
        (b"not a key\n", "must start with"),
        (FIXED_SKEY.encode() + b"\n\n", "canonical standard base64"),
        (FIXED_SKEY.encode() + b"\r\n", "canonical standard base64"),
        (b" " + FIXED_SKEY.encode() + b"\n", "must start with"),
        (FIXED_SKEY.replace("ec1dcc27", "ec1dcc28").encode(), "key id mismatch"),
        (b"\xff\xfe", "is not UTF-8 text"),
        (b"x" * 5000, "larger than 4096 bytes"),
    ],
    ids=[
        "empty",
        "garbage",
        "two-newlines",
        "crlf",
        "leading-space",
        "key-id-mismatch",
        "not-utf8",
        "too-large",
    ],
)
def test_load_malformed(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "k"
    _write_private(path, data)
    with pytest.raises(ConfigError, match=message) as excinfo:
        SigningKey.load(path)
    assert str(path) in str(excinfo.value)


def test_load_without_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "k"
    _write_private(path, FIXED_SKEY.encode())
    assert SigningKey.load(path).verifier_key() == FIXED_VKEY


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=f"key file {re.escape(str(tmp_path))} is not a regular file"
    ):
        SigningKey.load(tmp_path)


def test_load_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    os.mkfifo(path, 0o600)  # nobody will ever write to it: opening it to read would block
    with pytest.raises(ConfigError, match=f"key file {re.escape(str(path))} is not a regular"):
        SigningKey.load(path)


def test_load_unreadable(tmp_path: Path, key: SigningKey) -> None:
    if os.geteuid() != 0:
        path = tmp_path / "k"
        key.save(path)
        path.chmod(0o000)
        try:
            with pytest.raises(ConfigError, match=f"cannot open key file {re.escape(str(path))}"):
                SigningKey.load(path)
        finally:
            path.chmod(0o600)
        return
    # Root reads any file: load with the effective uid of an unprivileged user instead
    # (root's 0600 key is unreadable to it), then take root back.
    directory = Path(tempfile.mkdtemp())
    try:
        directory.chmod(0o755)
        path = directory / "k"
        key.save(path)
        os.seteuid(65534)
        try:
            with pytest.raises(ConfigError, match=f"cannot open key file {re.escape(str(path))}"):
                SigningKey.load(path)
        finally:
            os.seteuid(0)
    finally:
        shutil.rmtree(directory)
