"""The SQLite ledger schema, as numbered migrations (see :mod:`otaudit.store.migrations`).

The tables mirror the PostgreSQL store's (:mod:`otaudit.store.postgres_schema`):
``records`` with the sealed bytes and the columns derived from them,
``resources`` (each distinct resource once, from migration 5), ``tree_nodes``,
``checkpoints``, ``meta``, ``schema_migrations`` and ``dictionaries`` (the zstd
dictionaries rows are compressed with, from migration 6: :mod:`otaudit.store.codec`),
each append-only through triggers, and the three audit views queries read. From
migration 8 on, ``removals`` lists the sequence numbers whose payload a receipt (a
record of otaudit's own, :mod:`otaudit.retention.receipts`) has removed: a records row
may be deleted only inside one of its ranges.
"""

from __future__ import annotations

from typing import Final

from otaudit.record import Columns
from otaudit.store.migrations import Migration

# Each ledger table and the condition that finds an existing row with a new row's key:
# INSERT OR REPLACE deletes without firing DELETE triggers, so inserts check it too.
_LEDGER_KEYS: Final = {
    "records": "seq = NEW.seq OR dedup_key = NEW.dedup_key",
    "tree_nodes": "level = NEW.level AND idx = NEW.idx",
    "checkpoints": "tree_size = NEW.tree_size",
    "meta": "key = NEW.key",
}
_HISTORY_KEYS: Final = {"schema_migrations": "version = NEW.version"}
_COLUMNS_SQL: Final = """
    signal TEXT NOT NULL, time_unix_nano INTEGER NOT NULL, timestamp TEXT NOT NULL,
    received_at TEXT NOT NULL, pipeline TEXT NOT NULL, trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL, name TEXT NOT NULL, service TEXT, actor TEXT, actor_role TEXT,
    client_address TEXT, action TEXT, target TEXT, resource_type TEXT, result TEXT,
    producer TEXT, producer_seq INTEGER, missing TEXT,
    attributes TEXT NOT NULL, resource TEXT NOT NULL"""
VIEW_COLUMNS: Final = (
    "seq, timestamp, signal, trace_id, span_id, name, service, actor, actor_role, "
    "client_address, action, target, resource_type, result, producer, producer_seq, missing, "
    "attributes, resource, received_at, pipeline, time_unix_nano"
)
_SCHEMA: Final = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    seq INTEGER PRIMARY KEY, sealed BLOB NOT NULL, dedup_key BLOB NOT NULL UNIQUE,
    {_COLUMNS_SQL}
);
CREATE INDEX records_time ON records (time_unix_nano);
CREATE INDEX records_action_time ON records (action, time_unix_nano);
CREATE INDEX records_producer ON records (producer, producer_seq);
CREATE TABLE tree_nodes (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    tree_size INTEGER PRIMARY KEY, root_hash BLOB NOT NULL,
    signed_at_ns INTEGER NOT NULL, note TEXT NOT NULL
);
CREATE VIEW audit_records AS SELECT {VIEW_COLUMNS} FROM records;
CREATE VIEW audit_spans AS SELECT * FROM audit_records WHERE signal = 'span';
CREATE VIEW audit_logs AS SELECT * FROM audit_records WHERE signal = 'log';
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
"""


def _append_only(tables: dict[str, str]) -> str:
    return "".join(
        f"""
CREATE TRIGGER {t}_no_replace BEFORE INSERT ON {t} WHEN EXISTS (SELECT 1 FROM {t} WHERE {key})
BEGIN SELECT RAISE(ABORT, 'otaudit ledger is append-only: {t} already holds this row'); END;
CREATE TRIGGER {t}_no_update BEFORE UPDATE ON {t}
BEGIN SELECT RAISE(ABORT, 'otaudit ledger is append-only: UPDATE on {t} refused'); END;
CREATE TRIGGER {t}_no_delete BEFORE DELETE ON {t}
BEGIN SELECT RAISE(ABORT, 'otaudit ledger is append-only: DELETE on {t} refused'); END;
"""
        for t, key in tables.items()
    )


# A record row written from migration 5 on keeps its resource once (resource_hash,
# resource_at; its own resource column ''); the views show the same columns as before.
_VIEW_V5: Final = ", ".join(
    "COALESCE(NULLIF(r.resource, ''), s.flat) AS resource" if c == "resource" else f"r.{c} AS {c}"
    for c in VIEW_COLUMNS.split(", ")
)
_RESOURCES: Final = f"""
CREATE TABLE resources (hash BLOB PRIMARY KEY, body BLOB NOT NULL, flat TEXT NOT NULL);
CREATE TRIGGER resources_once BEFORE INSERT ON resources
WHEN EXISTS (SELECT 1 FROM resources WHERE hash = NEW.hash)
BEGIN SELECT RAISE(IGNORE); END;
CREATE TRIGGER resources_no_update BEFORE UPDATE ON resources
BEGIN SELECT RAISE(ABORT, 'otaudit ledger is append-only: UPDATE on resources refused'); END;
CREATE TRIGGER resources_no_delete BEFORE DELETE ON resources
BEGIN SELECT RAISE(ABORT, 'otaudit ledger is append-only: DELETE on resources refused'); END;
ALTER TABLE records ADD COLUMN resource_hash BLOB;
ALTER TABLE records ADD COLUMN resource_at INTEGER;
DROP VIEW audit_spans;
DROP VIEW audit_logs;
DROP VIEW audit_records;
CREATE VIEW audit_records AS SELECT {_VIEW_V5}
    FROM records r LEFT JOIN resources s ON s.hash = r.resource_hash;
CREATE VIEW audit_spans AS SELECT * FROM audit_records WHERE signal = 'span';
CREATE VIEW audit_logs AS SELECT * FROM audit_records WHERE signal = 'log';
"""

# The records table again, without the random-order UNIQUE index over every dedup key:
# retries are found through an index that grows in time order (a retried record carries
# the same content, so the same client time; a record with no time of its own has its
# receive time as timestamp and is looked up under 0). A row's sealed bytes may now be a
# zstd frame (otaudit.store.codec), compressed with a dictionary of ``dictionaries``.
# Rows are copied as they are; the copy takes as long as the ledger is large: offline.
DEDUP_TIME: Final = "CASE WHEN timestamp = received_at THEN 0 ELSE time_unix_nano END"
_ROW_COLUMNS: Final = (
    "seq, sealed, dedup_key, " + ", ".join(Columns._fields) + ", resource_hash, resource_at"
)
_COMPACT: Final = f"""
CREATE TABLE dictionaries (id INTEGER PRIMARY KEY, body BLOB NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE records_v6 (
    seq INTEGER PRIMARY KEY, sealed BLOB NOT NULL, dedup_key BLOB NOT NULL,
    {_COLUMNS_SQL}, resource_hash BLOB, resource_at INTEGER
);
INSERT INTO records_v6 ({_ROW_COLUMNS}) SELECT {_ROW_COLUMNS} FROM records ORDER BY seq;
DROP VIEW audit_spans;
DROP VIEW audit_logs;
DROP VIEW audit_records;
DROP TABLE records;
ALTER TABLE records_v6 RENAME TO records;
CREATE INDEX records_time ON records (time_unix_nano);
CREATE INDEX records_action_time ON records (action, time_unix_nano);
CREATE INDEX records_producer ON records (producer, producer_seq);
CREATE INDEX records_attr_action ON records
    (json_extract(attributes, '$."audit.action"'), timestamp);
CREATE INDEX records_dedup ON records ({DEDUP_TIME}, dedup_key);
CREATE VIEW audit_records AS SELECT {_VIEW_V5}
    FROM records r LEFT JOIN resources s ON s.hash = r.resource_hash;
CREATE VIEW audit_spans AS SELECT * FROM audit_records WHERE signal = 'span';
CREATE VIEW audit_logs AS SELECT * FROM audit_records WHERE signal = 'log';
""" + _append_only({"records": "seq = NEW.seq", "dictionaries": "id = NEW.id"})

# The ranges of seqs whose record rows a receipt has removed (pruned or erased). A range
# names its receipt, which must already be on the ledger, after every seq of the range;
# ranges never overlap, so the one that could cover a seq is the last starting at or before
# it (one index lookup per deleted row). A records row may be deleted only inside a range;
# everything else stays append-only. What the ranges say is checked against the sealed
# receipts by `otaudit verify`.
RECEIPT_ACTIONS: Final = "'otaudit.prune', 'otaudit.erase'"
_COVERING: Final = (
    "SELECT 1 FROM (SELECT last_seq FROM removals WHERE first_seq <= {seq}"
    " ORDER BY first_seq DESC LIMIT 1) WHERE last_seq >= {seq}"
)
_BAD_RANGE: Final = (
    "otaudit removals: a range must precede its receipt, which must be on the ledger,"
    " and must not overlap another range"
)
_UNCOVERED: Final = (
    "otaudit ledger is append-only: DELETE on records refused (no receipt covers this seq)"
)
_REMOVALS: Final = f"""
CREATE TABLE removals (
    first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, receipt_seq INTEGER NOT NULL
);
CREATE TRIGGER removals_receipt BEFORE INSERT ON removals
WHEN NEW.first_seq < 0 OR NEW.last_seq < NEW.first_seq OR NEW.last_seq >= NEW.receipt_seq
    OR NOT EXISTS (SELECT 1 FROM records WHERE seq = NEW.receipt_seq AND pipeline = 'otaudit'
                   AND action IN ({RECEIPT_ACTIONS}))
    OR EXISTS ({_COVERING.format(seq="NEW.last_seq")} AND last_seq >= NEW.first_seq)
BEGIN SELECT RAISE(ABORT, '{_BAD_RANGE}'); END;
CREATE TRIGGER removals_no_update BEFORE UPDATE ON removals
BEGIN SELECT RAISE(ABORT, 'otaudit ledger is append-only: UPDATE on removals refused'); END;
CREATE TRIGGER removals_no_delete BEFORE DELETE ON removals
BEGIN SELECT RAISE(ABORT, 'otaudit ledger is append-only: DELETE on removals refused'); END;
DROP TRIGGER records_no_delete;
CREATE TRIGGER records_no_delete BEFORE DELETE ON records
WHEN NOT EXISTS ({_COVERING.format(seq="OLD.seq")})
BEGIN SELECT RAISE(ABORT, '{_UNCOVERED}'); END;
"""

_V1: Final = "ledger tables, audit views, append-only triggers"
# Version 1 predates the history table; version 2 records it as applied before it.
MIGRATIONS: Final = (
    Migration(1, _V1, _SCHEMA + _append_only(_LEDGER_KEYS)),
    Migration(
        2,
        "migration history",
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
        " description TEXT NOT NULL, applied_at TEXT NOT NULL);"
        f"INSERT INTO schema_migrations VALUES (1, '{_V1}', '');" + _append_only(_HISTORY_KEYS),
    ),
    # attributes['audit.action'] (the docs' auditor query) is an index lookup, and the
    # index's timestamp order serves its ORDER BY timestamp.
    Migration(
        3,
        "index for attributes['audit.action']",
        "CREATE INDEX records_attr_action ON records"
        " (json_extract(attributes, '$.\"audit.action\"'), timestamp);",
    ),
    # API tokens: not ledger data (a token is revoked by setting revoked_at), but never
    # deleted and never changed otherwise; their creation and revocation are ledger records.
    Migration(
        4,
        "API tokens",
        "CREATE TABLE tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, scopes TEXT NOT NULL,"
        " hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, revoked_at TEXT);"
        "CREATE TRIGGER tokens_no_delete BEFORE DELETE ON tokens"
        " BEGIN SELECT RAISE(ABORT, 'otaudit tokens are revoked, never deleted'); END;"
        "CREATE TRIGGER tokens_revoke_only BEFORE UPDATE ON tokens WHEN OLD.revoked_at IS NOT NULL"
        " OR NEW.id IS NOT OLD.id OR NEW.name IS NOT OLD.name OR NEW.scopes IS NOT OLD.scopes"
        " OR NEW.hash IS NOT OLD.hash OR NEW.created_at IS NOT OLD.created_at"
        " BEGIN SELECT RAISE(ABORT, 'otaudit tokens can only be revoked, once'); END;",
    ),
    # Each distinct resource once (a re-insert of a held hash is a no-op) instead of a
    # copy in every record row; new columns and views only, so it runs online.
    Migration(5, "resources kept once", _RESOURCES),
    Migration(6, "compressed records, dedup keys found in time order", _COMPACT, online=False),
    # The dialect reads attributes['audit.action'] from the action column (the same text),
    # so the index serving the docs' auditor query is on (action, timestamp): appends no
    # longer parse every row's JSON for it.
    Migration(
        7,
        "attributes['audit.action'] read from the action column",
        "DROP INDEX records_attr_action;"
        "CREATE INDEX records_action_timestamp ON records (action, timestamp);",
    ),
    Migration(8, "removals covered by receipts", _REMOVALS),
)
