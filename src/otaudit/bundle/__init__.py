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
    manifest.sig       a signed note (c2sp.org/signed-note) by the log's key over
                       "otaudit-bundle-manifest/1", then "sha256:" and the hex SHA-256 of
                       manifest.json's exact bytes; only when the exporter held the signing key

Both directions stream: memory does not grow with the number of records. A
bundle proves that each record it holds is in the log, unaltered, under the
signed checkpoint; an unfiltered bundle must hold every record
``0 .. tree_size - 1``, so it is complete. With ``manifest.sig`` the
selection, record count and file hashes are the ones the holder of the log's
key signed; a filtered bundle still cannot prove that no matching record was
left out (the exporter's signed word, not a proof). Without it, the selection
is anyone's word. Verification reads only regular files.

The package is split by concept:

* :mod:`otaudit.bundle.layout`: file names, :class:`Selection`, :class:`Report` and the
  per-record JSONL and CSV forms, shared by both directions;
* :mod:`otaudit.bundle.export`: :func:`export_bundle`, writing a bundle from the store;
* :mod:`otaudit.bundle.check`: :func:`verify_bundle`, checking a bundle offline;
* :mod:`otaudit.bundle.packed`: a bundle as one ``.tar.gz`` file (an archive segment), and
  :func:`verify_packed`, checking one offline.

A selection may also name explicit seqs (``seq_ranges`` in the manifest: an archive
segment's records); such a bundle must then hold exactly those records.
"""

from otaudit.bundle.check import stated_records, verify_bundle
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
    MANIFEST_SIG,
    PROOFS,
    VERIFIER_KEY,
    Report,
    Selection,
)
from otaudit.bundle.packed import (
    PACKED_SUFFIX,
    pack_bundle,
    packed_manifest,
    read_packed,
    unpack_bundle,
    verify_packed,
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
    "MANIFEST_SIG",
    "PACKED_SUFFIX",
    "PROOFS",
    "VERIFIER_KEY",
    "Report",
    "Selection",
    "export_bundle",
    "pack_bundle",
    "packed_manifest",
    "read_packed",
    "stated_records",
    "unpack_bundle",
    "verify_bundle",
    "verify_packed",
]
