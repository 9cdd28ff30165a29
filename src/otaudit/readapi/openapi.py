"""The OpenAPI 3.1 document of the read API (served at ``/api/v1/openapi.json``)."""

from __future__ import annotations

from typing import Any, Final

from otaudit import __version__
from otaudit.store.search import SEARCH_COLUMNS

MAX_PAGE: Final = 1000
MAX_SQL_PAGE: Final = 10_000
MAX_SQL_ROWS: Final = 100_000
MAX_TIMEOUT_MS: Final = 60_000

_TEXT_OR_NULL: Final = {"type": ["string", "null"]}
_RECORD_TYPES: Final = {
    "seq": {"type": "integer", "minimum": 0},
    "timestamp": {"type": "string", "format": "date-time"},
    "signal": {"type": "string", "enum": ["span", "log"]},
    "trace_id": {"type": "string", "pattern": "^([0-9a-f]{32})?$"},
    "span_id": {"type": "string", "pattern": "^([0-9a-f]{16})?$"},
    "name": {"type": "string"},
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _list_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description + " Repeat the parameter for several values (any matches).",
        "schema": {"type": "array", "items": {"type": "string"}},
        "style": "form",
        "explode": True,
    }


_TIME_PARAM: Final = (
    "RFC 3339 (2026-01-01T00:00:00Z), a date (midnight UTC), or a duration ago (90d, 12h, 30m)."
)

SPEC: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "otaudit read API",
        "version": __version__,
        "description": (
            "Search and read-only SQL over a verifiable audit trail. Every request that "
            "reads audit records is itself appended to the ledger (audit.action "
            "audit_log.query) before it is answered."
        ),
    },
    "paths": {
        "/api/v1/records": {
            "get": {
                "operationId": "searchRecords",
                "summary": "Audit records matching the filters, in sequence order.",
                "parameters": [
                    _list_param("action", "audit.action."),
                    _list_param("actor", "The actor (enduser.id / user.id)."),
                    _list_param("target", "The target (audit.target_user / audit.target)."),
                    _list_param("resource_type", "audit.resource_type."),
                    _list_param("result", "The outcome (success, failure, ...)."),
                    _list_param("service", "service.name."),
                    _list_param("trace_id", "The trace id, 32 hex digits."),
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "description": "At or after: " + _TIME_PARAM,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "required": False,
                        "description": "Before: " + _TIME_PARAM,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "Records per page, in ASCII digits.",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_PAGE,
                            "default": 100,
                        },
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": (
                            "next_cursor of the previous page (same filters). Cursors are"
                            " signed by the server; a forged or edited one is refused (400)."
                        ),
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "One page of records.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/RecordPage"}
                            }
                        },
                    },
                    "400": _error("A bad parameter or cursor (the message names it)."),
                    "503": _error("The ledger cannot record the read now; retry later."),
                },
            }
        },
        "/api/v1/sql": {
            "post": {
                "operationId": "runSql",
                "summary": "Run one read-only SQL statement over the audit views.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/SqlRequest"}}
                    },
                },
                "responses": {
                    "200": {
                        "description": "One page of the result.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/SqlResult"}
                            }
                        },
                    },
                    "400": _error("Bad SQL (with the database's message), body or cursor."),
                    "413": _error("A request body over 1 MiB."),
                    "415": _error("A request body that is not application/json."),
                    "503": _error("The ledger cannot record the read now; retry later."),
                },
            }
        },
        "/api/v1/schema": {
            "get": {
                "operationId": "getSchema",
                "summary": "The views user SQL reads and their columns, with what each holds.",
                "description": "Reads no audit record, so it is not recorded as a read.",
                "responses": {
                    "200": {
                        "description": "The views and their columns.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Schema"}}
                        },
                    },
                    "401": _error("A token is needed (tokens exist)."),
                    "403": _error("The token lacks the read scope."),
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {"200": {"description": "The OpenAPI document."}},
            }
        },
    },
    "components": {
        "schemas": {
            "Record": {
                "type": "object",
                "description": "One audit record's query columns (docs/querying.md).",
                "properties": {c: _RECORD_TYPES.get(c, _TEXT_OR_NULL) for c in SEARCH_COLUMNS},
                "required": list(SEARCH_COLUMNS),
                "additionalProperties": False,
            },
            "Schema": {
                "type": "object",
                "properties": {
                    "views": {"type": "object", "additionalProperties": {"type": "string"}},
                    "columns": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                k: {"type": "string"}
                                for k in ("name", "sqlite", "postgresql", "meaning")
                            },
                            "required": ["name", "sqlite", "postgresql", "meaning"],
                            "additionalProperties": False,
                        },
                    },
                },
                "required": ["views", "columns"],
                "additionalProperties": False,
            },
            "RecordPage": {
                "type": "object",
                "properties": {
                    "records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                    "next_cursor": {
                        "type": ["string", "null"],
                        "description": "Pass as cursor for the next page; null on the last.",
                    },
                },
                "required": ["records", "next_cursor"],
                "additionalProperties": False,
            },
            "SqlRequest": {
                "type": "object",
                "properties": {
                    "sql": {"type": "string", "minLength": 1, "maxLength": 65536},
                    "page_size": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_SQL_PAGE,
                        "default": 1000,
                    },
                    "timeout_ms": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_TIMEOUT_MS,
                        "default": 30000,
                    },
                    "cursor": {"type": "string"},
                },
                "required": ["sql"],
                "additionalProperties": False,
            },
            "SqlResult": {
                "type": "object",
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "rows": {"type": "array", "items": {"type": "array"}},
                    "next_cursor": {"type": ["string", "null"]},
                    "truncated": {
                        "type": "boolean",
                        "description": f"The result goes on past {MAX_SQL_ROWS} rows, which "
                        "pages do not reach: narrow the query.",
                    },
                },
                "required": ["columns", "rows", "next_cursor", "truncated"],
                "additionalProperties": False,
            },
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                        },
                        "required": ["code", "message"],
                        "additionalProperties": False,
                    }
                },
                "required": ["error"],
                "additionalProperties": False,
            },
        }
    },
}
