"""The otaudit exception tree.

Every error otaudit raises on purpose derives from :class:`OtauditError`; the
library raises, only the CLI turns errors into exit codes and messages (once,
in :mod:`otaudit.cli.main`)::

    OtauditError
     +-- ConfigError          bad option, setting or data directory
     +-- DecodeError          an OTLP payload that cannot be decoded (HTTP 400)
     |    +-- PayloadTooLarge  body over the size or record limit (HTTP 413)
     |    +-- UnstorableRecords a value the store cannot hold, in one request (HTTP 400)
     |    +-- RecordRejected   one record that cannot be sealed as sent (partial_success)
     +-- UnsupportedMediaType content type or encoding otaudit does not speak (HTTP 415)
     +-- Overloaded           the sequencer is behind; retry later (HTTP 503)
     +-- StoreError           the ledger store failed (I/O, disk full, locked)
     +-- Unauthenticated      no valid token (HTTP 401)
     +-- Forbidden            a valid token without the scope needed (HTTP 403)
     +-- BadRequest           a read API request refused: status, code, message
     +-- QueryError           read-only SQL rejected or failed
     +-- NotFound             a checkpoint, token or alert asked for that does not exist
     |    +-- NoCheckpoint     no signed checkpoint (at the tree size asked for)
     +-- Conflict             a change already made (a token already revoked)
     +-- ProofRequestError    a proof that cannot exist (RFC 9162 §2.1.3, §2.1.4 preconditions)
     |    +-- IndexNotInTree   a leaf index outside the tree: requires 0 <= index < size
     |    +-- SizesOutOfOrder  a consistency proof from a larger tree to a smaller one
     +-- DemoFailed           the demo's server exited or did not answer
     +-- VerificationError    a proof, signature or ledger check failed (expected, computed)
"""

from __future__ import annotations

#: The value types a failed check names: hashes, sizes and sequence numbers, texts.
Checked = bytes | int | str


class OtauditError(Exception):
    """Base class of every error otaudit raises deliberately."""


class ConfigError(OtauditError):
    """A setting, option or data directory is unusable."""


class DecodeError(OtauditError):
    """An OTLP request body could not be decoded into records."""


class PayloadTooLarge(DecodeError):
    """A request body is larger than the configured limit after decompression."""


class UnstorableRecords(DecodeError):
    """The store refused a request's records as data (a value outside its range).

    The client's data, not an outage: answered once, not retryable, and never the
    failure of other requests committed with it.
    """


class RecordRejected(DecodeError):
    """One record cannot be sealed as sent; the reason goes to ``partial_success`` and the
    request's other records are sealed."""


class UnsupportedMediaType(OtauditError):
    """A request's Content-Type or Content-Encoding is not supported."""


class Overloaded(OtauditError):
    """The ledger cannot take more work right now; the client should retry.

    ``retry_after_s`` is the suggested wait in whole seconds.
    """

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreError(OtauditError):
    """The ledger store could not complete an operation."""


class Unauthenticated(OtauditError):
    """No token, a malformed one, or one that is unknown or revoked (HTTP 401)."""


class Forbidden(OtauditError):
    """A valid token without the scope the endpoint needs (HTTP 403)."""


class BadRequest(OtauditError):
    """A request the read API refuses: HTTP status, machine-readable code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class QueryError(OtauditError):
    """A read-only query was rejected or failed."""


class NotFound(OtauditError):
    """Something asked for by name or number is not in the ledger."""


class NoCheckpoint(NotFound):
    """No signed checkpoint: none at all (``tree_size`` None), or none of ``tree_size``;
    ``nearest`` holds the nearest signed sizes below and above it (None where there is none)."""

    def __init__(
        self,
        message: str,
        tree_size: int | None = None,
        nearest: tuple[int | None, int | None] = (None, None),
    ) -> None:
        super().__init__(message)
        self.tree_size = tree_size
        self.nearest = nearest


class Conflict(OtauditError):
    """A change that was already made (a token already revoked)."""


class ProofRequestError(OtauditError):
    """A proof was asked for that cannot exist; its arguments break the precondition."""


class IndexNotInTree(ProofRequestError):
    """An inclusion proof of ``index`` in a tree of ``tree_size`` leaves, although
    RFC 9162 §2.1.3 requires ``0 <= index < tree_size``."""

    def __init__(self, index: int, tree_size: int) -> None:
        super().__init__(f"index {index} is not in the tree of size {tree_size}")
        self.index, self.tree_size = index, tree_size


class SizesOutOfOrder(ProofRequestError):
    """A consistency proof from ``size1`` to ``size2`` leaves, although RFC 9162 §2.1.4
    requires ``size1 <= size2``."""

    def __init__(self, size1: int, size2: int) -> None:
        super().__init__(f"tree size {size1} is larger than tree size {size2}")
        self.size1, self.size2 = size1, size2


class DemoFailed(OtauditError):
    """A step of ``otaudit demo`` failed: its server exited or did not answer."""


class VerificationError(OtauditError):
    """A Merkle proof, signature, checkpoint or ledger check failed.

    ``seq`` is the first bad sequence number when one can be named; ``expected`` and
    ``computed`` are the two values that differ (a stored and a recomputed hash, a signed
    and a held tree size) when the check compares two.
    """

    def __init__(
        self,
        message: str,
        seq: int | None = None,
        *,
        expected: Checked | None = None,
        computed: Checked | None = None,
    ) -> None:
        super().__init__(message)
        self.seq = seq
        self.expected = expected
        self.computed = computed
