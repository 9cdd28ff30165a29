"""What the HTML and the PDF report both say, worded once: durations, top-N tables, caps.

The renderers (:mod:`otaudit.evidence.report`, :mod:`otaudit.evidence.pdf`) differ only
in layout; every figure and sentence they show comes from here or from the summary itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from otaudit.evidence.model import ControlSummary, PackSummary

#: Rows of a table (alerts, producer gaps) shown in the report; the full list is in its CSV.
TABLE_CAP = 200
#: Values of a breakdown (by action, by result) shown before the rest are summed as others.
TOP = 10

EMPTY_PERIOD = "No audit records in this period: the pack says so, and the checkpoints prove it."
MANIFEST_HEADER = "otaudit-evidence-manifest/1"


@dataclass(frozen=True)
class VerifyStep:
    """One step of checking a pack without otaudit: a title and a sentence."""

    title: str
    text: str


def verify_command(summary: PackSummary) -> str:
    """The one command that checks a pack with otaudit."""
    return f"otaudit verify-evidence DIR --key {summary.configuration.verifier_key}"


def verify_steps() -> list[VerifyStep]:
    """How to check a pack by hand, without otaudit."""
    return [
        VerifyStep(
            "MANIFEST",
            "MANIFEST is a signed note (c2sp.org/signed-note). Its body is the line "
            f"'{MANIFEST_HEADER}', then one line a file: '<sha256 hex>  <size>  <path>'.",
        ),
        VerifyStep(
            "Files",
            "Compute the SHA-256 and the size of every file listed and compare them with "
            "its line; a file missing, changed or not listed fails the pack.",
        ),
        VerifyStep(
            "Signature",
            "Check the Ed25519 signature of the MANIFEST body with the verifier key above.",
        ),
        VerifyStep(
            "Checkpoints",
            "The opening and closing checkpoints in completeness/ are signed notes of the "
            "same key; check their signatures the same way.",
        ),
        VerifyStep(
            "Consistency",
            "The consistency proof in completeness/ shows the closing tree extends the "
            "opening one (RFC 9162 section 2.1.4): nothing sealed before was changed.",
        ),
    ]


def is_empty_period(summary: PackSummary) -> bool:
    """True when no control has a record in the period."""
    return all(control.rows == 0 for control in summary.controls)


def humanise(seconds: float | None) -> str:
    """A duration as people read it: ``45 s``, ``12 min``, ``3 h 12 min``, ``2 d 5 h``."""
    if seconds is None:
        return "n/a"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, _ = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def top(counts: Mapping[str, int], n: int = TOP) -> list[tuple[str, int]]:
    """The ``n`` largest counts (ties by name), then one ``others (K values)`` row."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ranked[:n]
    rest = ranked[n:]
    if rest:
        shown.append((f"others ({len(rest)} values)", sum(count for _, count in rest)))
    return shown


def more_line(total: int, csv_path: str, cap: int = TABLE_CAP) -> str | None:
    """The line under a capped table, or None when every row is shown."""
    if total <= cap:
        return None
    return f"{total - cap} more in {csv_path}"


def population_path(control: ControlSummary) -> str:
    """The control's population file, relative to the pack."""
    return f"controls/{control.control}/population.csv"


def alerts_path(control: ControlSummary) -> str:
    """The control's alerts file, relative to the pack."""
    return f"controls/{control.control}/alerts.csv"


PRODUCERS_PATH = "completeness/producers.csv"


def sample_text(control: ControlSummary) -> str:
    """The sample size with its basis, as one phrase."""
    return f"{control.sample_size} ({control.sample_basis})"
