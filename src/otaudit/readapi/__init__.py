"""The HTTP read API: search and SQL over the audit trail, as JSON, with cursor pagination.

It listens apart from the OTLP ports (``otaudit serve --read-api HOST:PORT``),
is described by an OpenAPI 3.1 document (``GET /api/v1/openapi.json``, see
:mod:`otaudit.readapi.openapi`), and records every read in the ledger before
answering (:mod:`otaudit.access`).
"""

from otaudit.readapi.app import ReadService, build_read_app

__all__ = ["ReadService", "build_read_app"]
