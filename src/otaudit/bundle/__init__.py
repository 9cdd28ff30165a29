"""Offline evidence bundles: selected records, each proven against one signed checkpoint.

``otaudit export`` writes a directory an auditor can check with neither the
database nor the server (``otaudit verify-bundle``, or the short standalone
script in ``docs/verifying.md``)::

    records.canonical  each record's sealed bytes (the Merkle leaf input) and "\\n", by seq
    records.jsonl      {"seq", every derived column, "record": the parsed envelope} per line
    records.csv        seq and the derived columns, with a header row
    proofs.jsonl       {"index", "tree_size", "leaf_hash", "hashes"} per record (RFC 9162)
    checkpoint         the signed note (C2SP tlog-checkpoint) exactly as stored
    verifier.key       the log's verifier key and "\\n"
    manifest.json      format, origin, tree size, root, record count, selection, created_at,
                       and the SHA-256 and size of every other file

Both directions stream: memory does not grow with the number of records. Only
the checkpoint is signed; the manifest is not, so a filtered bundle proves that
each record it holds is authentic, not that no matching record was left out
(an unfiltered bundle must hold every record ``0 .. tree_size - 1``).

The package is split by concept:

* :mod:`otaudit.bundle.layout`: file names, :class:`Selection`, :class:`Report` and the
  per-record JSONL and CSV forms, shared by both directions;
* :mod:`otaudit.bundle.export`: :func:`export_bundle`, writing a bundle from the store;
* :mod:`otaudit.bundle.check`: :func:`verify_bundle`, checking a bundle offline.
"""

from otaudit.bundle.check import verify_bundle
from otaudit.bundle.export import export_bundle
from otaudit.bundle.layout import (
    CANONICAL,
    CHECKPOINT,
    CSV,
    CSV_HEADER,
    FILES,
    FORMAT,
    JSONL,
    MANIFEST,
    PROOFS,
    VERIFIER_KEY,
    Report,
    Selection,
)

__all__ = [
    "CANONICAL",
    "CHECKPOINT",
    "CSV",
    "CSV_HEADER",
    "FILES",
    "FORMAT",
    "JSONL",
    "MANIFEST",
    "PROOFS",
    "VERIFIER_KEY",
    "Report",
    "Selection",
    "export_bundle",
    "verify_bundle",
]
