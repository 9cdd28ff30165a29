"""The otaudit exception tree.

Every error otaudit raises on purpose derives from :class:`OtauditError`; the
library raises, only the CLI turns errors into exit codes::

    OtauditError
     +-- ConfigError          bad option, setting or data directory
     +-- DecodeError          an OTLP payload that cannot be decoded (HTTP 400)
     |    +-- PayloadTooLarge  body over the size or record limit (HTTP 413)
     |    +-- UnstorableRecords a value the store cannot hold, in one request (HTTP 400)
     +-- UnsupportedMediaType content type or encoding otaudit does not speak (HTTP 415)
     +-- Overloaded           the sequencer is behind; retry later (HTTP 503)
     +-- StoreError           the ledger store failed (I/O, disk full, locked)
 +-- Unauthenticated      no valid token (HTTP 401)
 +-- Forbidden            a valid token without the scope needed (HTTP 403)
     +-- QueryError           read-only SQL rejected or failed
     +-- VerificationError    a proof, signature or ledger check failed
"""

from __future__ import annotations


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


class QueryError(OtauditError):
    """A read-only query was rejected or failed."""


class VerificationError(OtauditError):
    """A Merkle proof, signature, checkpoint or ledger check failed.

    ``seq`` is the first bad sequence number when one can be named.
    """

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq
