"""``otaudit evidence`` and ``otaudit verify-evidence``: SOC 2 evidence packs.

``evidence`` exits 0 (pack written and signed) or 2 (usage, I/O, a period no checkpoint
seals, a malformed mapping, no signing key); a pack that could not be finished is removed.
``verify-evidence`` exits 0 (intact), 1 (``FAILED:`` naming the file that was altered,
removed or added) or 2 (not a pack, bad ``--key``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from otaudit import datadir
from otaudit.cli.options import load_rule_set, query_store_option, rule_options, store_options
from otaudit.cli.reading import audited_read
from otaudit.cli.render import CheckCommand
from otaudit.evidence.check import pack_key, require_pack, verify_pack
from otaudit.evidence.files import PackWriter
from otaudit.evidence.mapping import load_mapping, mapping_yaml
from otaudit.evidence.pack import DEFAULT_FORMATS, FORMATS, PackRequest, build_pack
from otaudit.keyhistory import history_for
from otaudit.keys import SigningKey, VerifierKey
from otaudit.outdir import open_output_dir
from otaudit.query import query_target
from otaudit.timespec import TIME_HELP, parse_time


class FormatList(click.types.StringParamType):
    """A comma-separated list of the report's forms (``html,pdf,xlsx``), checked where it
    is given (the command line or the configuration file)."""

    name = "LIST"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """The list, each form once; a usage error names an unknown one."""
        wanted = _forms(str(value))
        if bad := [f for f in wanted if f not in FORMATS]:
            self.fail(f"{bad[0]!r} is not one of {', '.join(FORMATS)}", param, ctx)
        if not wanted:
            self.fail("name at least one of " + ", ".join(FORMATS), param, ctx)
        return ",".join(wanted)


def _forms(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))


def _bound(text: str | None, option: str, now: int) -> int:
    if text is None:
        raise click.UsageError(f"{option} is required (or --print-mapping)")
    try:
        return parse_time(text, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.command("evidence")
@store_options
@query_store_option
@click.option("--from", "start", metavar="T", help=f"The period's start (inclusive): {TIME_HELP}.")
@click.option("--to", "end", metavar="T", help="The period's end (exclusive), same forms.")
@click.option("--out", type=click.Path(path_type=Path), metavar="DIR",
              help="Directory to write the pack to: created with mode 0700, or an empty "
                   "directory of yours; no symbolic link on the path.")  # fmt: skip
@click.option("--controls", "mapping_file", type=click.Path(path_type=Path, dir_okay=False),
              metavar="FILE",
              help="A control mapping (YAML) overriding the default one.")  # fmt: skip
@click.option("--sample-size", type=click.IntRange(0, 10_000), metavar="N",
              help="Records drawn per control "
                   "(default: by how often the control operates).")  # fmt: skip
@click.option("--format", "formats", type=FormatList(), default=",".join(DEFAULT_FORMATS),
              show_default=True, metavar="LIST", help="The report's forms, of html, pdf and xlsx "
                                   "(xlsx: populations.xlsx, one sheet per control).")  # fmt: skip
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="The log's signing key, to sign the MANIFEST "
                   "(default: DATA/signing.key).")  # fmt: skip
@click.option("--print-mapping", is_flag=True,
              help="Print the control mapping in force (with --controls) and exit.")  # fmt: skip
@rule_options
def evidence_command(
    data: Path,
    store_url: str | None,
    query_url: str | None,
    start: str | None,
    end: str | None,
    out: Path | None,
    mapping_file: Path | None,
    sample_size: int | None,
    formats: str,
    key_file: Path | None,
    print_mapping: bool,
    rule_files: tuple[Path, ...],
    no_builtin_rules: bool,
) -> None:
    """Build a SOC 2 evidence pack for a period: per control its complete population,
    the query, a sample seeded by the closing checkpoint, the completeness evidence, the
    configuration in force and a report, with a MANIFEST signed by the log's key."""
    controls = load_mapping(mapping_file)
    if print_mapping:
        click.echo(mapping_yaml(controls), nl=False)
        return
    now = time.time_ns()
    from_ns, to_ns = _bound(start, "--from", now), _bound(end, "--to", now)
    if out is None:
        raise click.UsageError("--out is required")
    rules = load_rule_set(rule_files, no_builtin_rules)
    signer = SigningKey.load(key_file or data / datadir.KEY_FILE)
    text = (f"evidence --from {start} --to {end} --controls "
            f"{','.join(c.id for c in controls)}")  # fmt: skip
    with audited_read(data, store_url, "evidence", text) as (store, outcome):
        log_key = datadir.log_key(data, store, None)
        history = history_for(store, log_key.key)
        target = query_target(store, query_url)
        request = PackRequest(
            from_ns=from_ns, to_ns=to_ns, controls=controls, sample_size=sample_size,
            formats=_forms(formats), rules=rules, built_by=_who(), target=target,
            checked=query_url is not None,
        )  # fmt: skip
        directory = open_output_dir(out)
        try:
            with _terminated_as_exit():
                summary = build_pack(store, PackWriter(directory), request, signer,
                                     log_key.key, history, store_kind=target.kind)  # fmt: skip
        except BaseException:
            directory.discard()  # a pack is whole, or not there
            raise
        finally:
            directory.close()
        outcome.rows = sum(c.rows for c in summary.controls)
        drawn = " ".join(f"{c.control}:{c.sample_size}" for c in summary.controls)
        outcome.text = (
            f"{text} --out {out} (tree size {summary.completeness.closing.tree_size};"
            f" samples drawn {drawn})"
        )
    closing = summary.completeness.closing
    click.echo(f"evidence pack for {summary.period_from} .. {summary.period_to} in {out}")
    for c in summary.controls:
        click.echo(f"  {c.control:<8} {c.rows:>10} records  sample {c.sample_size}"
                   f"  ({c.title})")  # fmt: skip
    empty = "" if any(c.rows for c in summary.controls) else " (no records in this period)"
    click.echo(f"  closing checkpoint: tree size {closing.tree_size}, signed {closing.signed_at}"
               f"{empty}")  # fmt: skip
    click.echo(f"MANIFEST signed with {signer.name}+{signer.key_id.hex()}; check it with: "
               f"otaudit verify-evidence {out} --key {log_key.key}")  # fmt: skip


@contextmanager
def _terminated_as_exit() -> Iterator[None]:
    """SIGTERM (a service manager, ``timeout``, ``kill``) ends the build as an exception, so
    that the half-written pack is removed; SIGKILL cannot be caught, and leaves a folder
    without MANIFEST, which verify-evidence refuses as no pack."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _who() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


@click.command("verify-evidence", cls=CheckCommand)
@click.argument("directory", type=click.Path(path_type=Path), metavar="DIR")
@click.option("--key", "key_text", metavar="VKEY",
              help="The log's verifier key, from the log's operator (default: the pack's own "
                   "configuration/verifier.key, with a warning).")  # fmt: skip
def verify_evidence_command(directory: Path, key_text: str | None) -> None:
    """Check an evidence pack offline, with no database: the signed MANIFEST, every file's
    SHA-256, the checkpoints and their consistency, each population's count and sample, and
    each sampled record's inclusion proof."""
    require_pack(directory)
    if key_text is not None:
        key = VerifierKey.parse(key_text)
    else:
        key = pack_key(directory)
        click.echo(
            "warning: no --key given: the pack is checked with its own "
            "configuration/verifier.key, which whoever made the pack chose; compare "
            f"{key} with the key the log's operator publishes",
            err=True,
        )
    report = verify_pack(directory, key)
    click.echo(
        f"OK: evidence pack for {report.period[0]} .. {report.period[1]} of {report.origin}: "
        f"{report.files} files as the MANIFEST lists them, signed by "
        f"{report.key.name}+{report.key.key_id.hex()}; closing checkpoint at tree size "
        f"{report.tree_size}"
    )
    for control, rows in report.controls.items():
        click.echo(f"  {control}: {rows} records, sample re-drawn from the closing checkpoint")
    click.echo(f"  {report.sampled} sampled records proven into the closing checkpoint")


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(evidence_command)
    group.add_command(verify_evidence_command)
