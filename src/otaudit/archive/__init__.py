"""Archives: records kept outside the ledger as evidence bundles, one object per segment.

Before the prune engine removes record rows, their records are written to an archive
(``file:///DIR`` or ``s3://BUCKET/PREFIX``) as segments: bundles of the existing format
(:mod:`otaudit.bundle`) packed as ``segment-FIRST-LAST.tar.gz``, each checkable offline
with ``otaudit verify-bundle`` and the log's verifier key. On S3 with Object Lock, each
object is locked in COMPLIANCE mode until the end of its records' retention and has a
legal hold while any of its records is held. A removed record can be restored from its
segment when its bytes hash to the leaf the tree still holds. ``docs/archives.md`` says
how to use them.

The package is split by concept:

* :mod:`otaudit.archive.target`: :class:`ArchiveTarget`, what every target does;
* :mod:`otaudit.archive.files`: the directory target; :mod:`otaudit.archive.s3`: the S3
  target (boto3); :mod:`otaudit.archive.urls`: :func:`open_target` by URL;
* :mod:`otaudit.archive.segments`: :func:`archive_records`, segment names;
* :mod:`otaudit.archive.listing`: :func:`list_segments`, :func:`fetch_segment`,
  :func:`subject_segments`;
* :mod:`otaudit.archive.restore`: :func:`restore`.
"""

from otaudit.archive.files import FileTarget
from otaudit.archive.listing import (
    SegmentInfo,
    fetch_segment,
    list_segments,
    segment_records,
    subject_segments,
)
from otaudit.archive.restore import RESTORE_ACTION, restore
from otaudit.archive.segments import (
    DEFAULT_MAX_RECORDS,
    ArchiveResult,
    SegmentName,
    archive_records,
)
from otaudit.archive.target import COMPLIANCE, ArchiveTarget, ObjectInfo, ObjectLock
from otaudit.archive.urls import open_target

__all__ = [
    "COMPLIANCE",
    "DEFAULT_MAX_RECORDS",
    "RESTORE_ACTION",
    "ArchiveResult",
    "ArchiveTarget",
    "FileTarget",
    "ObjectInfo",
    "ObjectLock",
    "SegmentInfo",
    "SegmentName",
    "archive_records",
    "fetch_segment",
    "list_segments",
    "open_target",
    "restore",
    "segment_records",
    "subject_segments",
]
