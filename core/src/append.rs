//! Appends to a SQLite ledger: the rows of one append bound and stepped here, with no
//! interpreter in the loop, on a connection of the system libsqlite3 (the library
//! Python's `sqlite3` uses too: one SQLite per process, so that their locks agree).
//!
//! The Python store keeps every decision (what to append, in which transaction, which
//! statement); this module only runs statements it is handed, so a failure is SQLite's
//! own, with SQLite's message.

use std::time::Duration;

use rayon::prelude::*;
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::codec::Codec;

/// Why a statement failed: SQLite's message, and whether a constraint refused it (a
/// trigger's `RAISE(ABORT)`, a `NOT NULL`, a key already held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError {
    pub constraint: bool,
    pub message: String,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        let constraint = e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation);
        let message = match &e {
            rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
            other => other.to_string(),
        };
        WriteError {
            constraint,
            message,
        }
    }
}

/// One writing connection to an existing ledger file.
pub struct Writer {
    conn: Connection,
}

impl Writer {
    /// Open the database at `path` (which must exist) for writing: `synchronous=FULL` (a
    /// commit is on disk when it returns), a 10 s busy timeout, a 64 MiB page cache.
    pub fn open(path: &str) -> Result<Writer, WriteError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA cache_size = -65536;")?;
        Ok(Writer { conn })
    }

    /// Run statements that take no parameters (`BEGIN IMMEDIATE`, `COMMIT`, a pragma).
    pub fn execute(&self, sql: &str) -> Result<(), WriteError> {
        self.conn.execute_batch(sql)?;
        Ok(())
    }

    /// Roll back the open transaction, if there is one (a failed `COMMIT` may have).
    pub fn rollback(&self) -> Result<(), WriteError> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    /// Whether a transaction is open.
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Run `sql` once per row of `rows`, in order; the first failure stops it.
    pub fn insert(&self, sql: &str, rows: &[Vec<Value>]) -> Result<(), WriteError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut stmt = self.conn.prepare_cached(sql)?;
        for row in rows {
            stmt.execute(rusqlite::params_from_iter(row.iter()))?;
        }
        Ok(())
    }
}

/// Replace the blob in `column` of every row by its zstd frame (rows in parallel); a
/// row whose `column` is not a blob is left as it is.
pub fn compress_column(
    rows: &mut [Vec<Value>],
    column: usize,
    codec: &Codec,
) -> Result<(), WriteError> {
    rows.par_iter_mut().try_for_each(|row| {
        if let Some(Value::Blob(bytes)) = row.get_mut(column) {
            *bytes = codec.compress(bytes).map_err(|e| WriteError {
                constraint: false,
                message: format!("compressing a record failed: {e}"),
            })?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> (tempdir::Dir, String) {
        let dir = tempdir::Dir::new();
        let path = dir.path("ledger.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE t (seq INTEGER PRIMARY KEY, body BLOB NOT NULL, note TEXT);
             CREATE TRIGGER t_no_update BEFORE UPDATE ON t
             BEGIN SELECT RAISE(ABORT, 'append-only: UPDATE on t refused'); END;",
        )
        .unwrap();
        (dir, path)
    }

    const INSERT: &str = "INSERT INTO t (seq, body, note) VALUES (?, ?, ?)";

    fn row(seq: i64, note: Option<&str>) -> Vec<Value> {
        vec![
            Value::Integer(seq),
            Value::Blob(vec![seq as u8; 3]),
            note.map_or(Value::Null, |n| Value::Text(n.to_string())),
        ]
    }

    #[test]
    fn rows_appended_in_a_transaction_are_there_after_commit() {
        let (_dir, path) = ledger();
        let w = Writer::open(&path).unwrap();
        w.execute("BEGIN IMMEDIATE").unwrap();
        assert!(w.in_transaction());
        w.insert(INSERT, &[row(0, Some("a")), row(1, None)])
            .unwrap();
        w.execute("COMMIT").unwrap();
        assert!(!w.in_transaction());
        let reader = Connection::open(&path).unwrap();
        let n: i64 = reader
            .query_row("SELECT count(*) FROM t WHERE note IS NULL", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_refused_row_is_a_constraint_with_sqlites_message_and_rolls_back() {
        let (_dir, path) = ledger();
        let w = Writer::open(&path).unwrap();
        w.execute("BEGIN IMMEDIATE").unwrap();
        let err = w.insert(INSERT, &[row(0, None), row(0, None)]).unwrap_err();
        assert!(err.constraint);
        assert!(err.message.contains("UNIQUE"), "{}", err.message);
        w.rollback().unwrap();
        w.rollback().unwrap(); // nothing open: nothing to do
        w.execute("UPDATE t SET note = 'x'").unwrap(); // no row: the trigger never fires
        w.insert(INSERT, &[row(0, None)]).unwrap();
        let err = w.execute("UPDATE t SET note = 'x'").unwrap_err();
        assert_eq!(
            err,
            WriteError {
                constraint: true,
                message: "append-only: UPDATE on t refused".into()
            }
        );
    }

    #[test]
    fn a_compressed_column_reads_back_as_the_bytes_it_was() {
        let codec = Codec::new(3);
        let body = b"a record, a record, a record, a record".to_vec();
        let mut rows = vec![
            row(0, None),
            vec![Value::Integer(1), Value::Blob(body.clone())],
        ];
        rows[1].push(Value::Null);
        compress_column(&mut rows, 1, &codec).unwrap();
        let Value::Blob(frame) = &rows[1][1] else {
            panic!("not a blob")
        };
        assert!(crate::codec::is_frame(frame));
        assert_eq!(codec.decode(frame, 1 << 20).unwrap().as_ref(), &body[..]);
        compress_column(&mut rows, 2, &codec).unwrap(); // text and NULL stay as they are
        assert_eq!(rows[0][2], Value::Null);
    }

    #[test]
    fn a_missing_ledger_is_not_created() {
        let dir = tempdir::Dir::new();
        let path = dir.path("absent.db");
        let err = Writer::open(&path).map(|_| ()).unwrap_err();
        assert!(!err.constraint);
        assert!(!std::path::Path::new(&path).exists());
    }

    /// A scratch directory removed on drop (no crate needed for so little).
    mod tempdir {
        pub struct Dir(std::path::PathBuf);

        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU64, Ordering};
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let dir =
                    std::env::temp_dir().join(format!("otaudit-append-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                Dir(dir)
            }

            pub fn path(&self, name: &str) -> String {
                self.0.join(name).to_string_lossy().into_owned()
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
