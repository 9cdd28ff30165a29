"""What a witness accepts to read: bounded checkpoints and proofs, and short messages.

A witness reads files written by the log it watches, so it treats them as
hostile: it reads only regular files (:func:`otaudit.smallfile.read_small_file`,
never a FIFO or a device), refuses a note, a line, an origin or extension lines
over the limits below before it parses or stores anything, and quotes a
value from the note in a message only cut (:func:`shown`). The limits leave
ample room for real checkpoints (c2sp.org/tlog-checkpoint): an origin of a
few dozen bytes, no extension lines, and a few signature lines of about 100
bytes each.
"""

from __future__ import annotations

from typing import Final

from otaudit.witness.export import Refused

MAX_NOTE_BYTES: Final = 64 * 1024
"""The largest signed checkpoint note read or cosigned, signature lines included."""

MAX_LINE_BYTES: Final = 1024
"""The longest line of a note (origin, size, root, extension or signature line)."""

MAX_ORIGIN_BYTES: Final = 256
"""The longest origin (the log's name, line 1)."""

MAX_EXTENSION_LINES: Final = 16
"""Extension lines after the root hash (the spec does not recommend any)."""

MAX_PROOF_BYTES: Final = 16 * 1024
"""The largest consistency proof file (64 hashes of 32 bytes, as JSON, take about 4.5 KiB)."""

SHOWN_CHARS: Final = 80
"""Characters of a value from a note that a message quotes."""


def shown(value: str) -> str:
    """``value`` quoted for a message: whole if short, else its start and its length."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"


def check_note_size(note: bytes) -> None:
    """Refused unless ``note`` fits :data:`MAX_NOTE_BYTES` and every line :data:`MAX_LINE_BYTES`.

    Runs before the note is decoded or parsed, so an oversized one costs nothing more.
    """
    if len(note) > MAX_NOTE_BYTES:
        raise Refused(f"checkpoint note is {len(note)} bytes; at most {MAX_NOTE_BYTES} are read")
    start = 0
    for number, line in enumerate(note.split(b"\n"), 1):
        if len(line) > MAX_LINE_BYTES:
            raise Refused(
                f"checkpoint note line {number} (at byte {start}) is {len(line)} bytes; "
                f"a line may have at most {MAX_LINE_BYTES}"
            )
        start += len(line) + 1


def check_checkpoint_text(text: str) -> None:
    """Refused if the checkpoint text's origin or extension lines are over their limits."""
    lines = text.split("\n")
    origin = lines[0]
    if len(origin.encode("utf-8")) > MAX_ORIGIN_BYTES:
        raise Refused(
            f"checkpoint origin {shown(origin)} is {len(origin.encode('utf-8'))} bytes; "
            f"an origin may have at most {MAX_ORIGIN_BYTES}"
        )
    extensions = len(lines) - 4  # origin, size, root, and the empty string after the last \n
    if extensions > MAX_EXTENSION_LINES:
        raise Refused(
            f"checkpoint of log {shown(origin)} has {extensions} extension lines; "
            f"at most {MAX_EXTENSION_LINES} are accepted"
        )
