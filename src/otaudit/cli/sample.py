"""``otaudit sample``: a reproducible random sample for control testing."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Final

import click
import orjson

from otaudit import auditsample, proofs
from otaudit.cli import rows as rows_out
from otaudit.cli.options import Count, store_options, time_bound
from otaudit.cli.progress import progress_bar
from otaudit.cli.reading import audited_read
from otaudit.cli.render import terminal
from otaudit.record import rfc3339_ns
from otaudit.store.search import SEARCH_COLUMNS, SearchFilter

FORMATS: Final = ("table", "json")


@click.command("sample")
@store_options
@click.option(
    "--action",
    "actions",
    multiple=True,
    metavar="A",
    help="Population: records with this audit.action (repeatable; default all).",
)
@click.option("--since", metavar="T", help="Population at or after T (RFC 3339, date, or 90d).")
@click.option("--until", metavar="T", help="Population before T (same forms).")
@click.option("--n", "size", type=Count(1), default=25, show_default=True,
              help="Sample size.")  # fmt: skip
@click.option(
    "--checkpoint",
    "tree_size",
    type=Count(1),
    metavar="SIZE",
    help="Signed checkpoint whose root hash seeds the draw (default: latest).",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def sample_command(
    data: Path,
    store_url: str | None,
    actions: tuple[str, ...],
    since: str | None,
    until: str | None,
    size: int,
    tree_size: int | None,
    fmt: str,
) -> None:
    """Draw a reproducible sample: seeded by a signed checkpoint's root hash.

    The population is every record selected by --action/--since/--until inside
    that checkpoint's tree; the sample is the --n records first when ordered by
    SHA-256(root_hash || seq as 8 bytes big-endian). Re-run with the printed
    --checkpoint to get the same sample.
    """
    now = time.time_ns()
    since_ns, until_ns = time_bound(since, "--since", now), time_bound(until, "--until", now)
    # The re-draw line names the period by absolute times: "--since 90d" would select
    # another population when run later.
    options = [f"--action {a}" for a in actions]
    for name, bound in (("--since", since_ns), ("--until", until_ns)):
        if bound is not None:
            options.append(f"{name} {rfc3339_ns(bound)}")
    with audited_read(data, store_url, "sample", "") as (store, outcome):
        cp = proofs.checkpoint_at(store, tree_size)
        options.append(f"--n {size} --checkpoint {cp.tree_size}")
        outcome.text = "sample " + " ".join(options)
        seqs = store.select_seqs(
            since_ns=since_ns, until_ns=until_ns, actions=actions, end=cp.tree_size
        )
        # The population's size is known only once read: the bar counts, sized by the tree.
        with progress_bar("reading the population", None, work=cp.tree_size) as progress:
            population = auditsample.population(seqs, progress)
        drawn = auditsample.draw(population, cp.root_hash, size)
        by_seq = {row[0]: row for row in store.search(SearchFilter(seqs=tuple(drawn)))}
        rows = [by_seq[seq] for seq in drawn]
        outcome.rows = len(rows)
    redraw = f"otaudit sample {' '.join(options)}"
    if fmt == "json":
        document = {
            "checkpoint": cp.note,
            "tree_size": cp.tree_size,
            "root_hash": cp.root_hash.hex(),
            "population": len(population),
            "n": len(rows),
            "method": "order by SHA-256(root_hash || seq as 8 bytes big-endian), take the first n",
            "redraw": redraw,
            "records": [dict(zip(SEARCH_COLUMNS, row, strict=True)) for row in rows],
        }
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    console = terminal()
    console.print(
        f"sample of {len(rows)} from a population of {len(population)} records, "
        f"seeded by the signed checkpoint at tree size {cp.tree_size} "
        f"(root hash {cp.root_hash.hex()})"
    )
    rows_out.write(SEARCH_COLUMNS, rows, "table", noun="record(s)")
    console.print(f"re-draw: {redraw}")
    console.print("checkpoint:")
    console.print(cp.note, end="", markup=False, highlight=False)


def register(group: click.Group) -> None:
    """Add this module's commands to the CLI."""
    group.add_command(sample_command)
