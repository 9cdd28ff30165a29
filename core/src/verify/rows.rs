//! The record rows of a SQLite ledger as verify reads them: each row's stored bytes
//! decoded ([`super::frames`]), its resource spliced back (as
//! `otaudit.store.resources.stored_record` does) and its columns kept as SQLite hands
//! them over; and the reading of a range of seqs in chunks on one thread a core, each
//! with a connection of its own (the k-th chunk on the (k mod threads)-th thread), their
//! outcomes taken in seq order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use super::frames::Frames;
use super::sqlite::{next_node, open, COLUMN_NAMES};
use super::{Cell, Derive, Kept, Resource, Row, Run, Span, Stored, COLUMNS, RESOURCE_COLUMN};

/// How many seqs a reading thread takes at a time.
const CHUNK: i64 = 8192;

pub(super) fn sql_error(e: rusqlite::Error) -> String {
    e.to_string()
}

fn cell(v: ValueRef<'_>) -> Cell {
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => Cell::Text(s.to_owned()),
            Err(_) => Cell::Other,
        },
        ValueRef::Real(_) | ValueRef::Blob(_) => Cell::Other,
    }
}

/// A kept resource (its flattened attributes as `str()` makes them), or none.
type Found = Option<Arc<Resource>>;

/// The resources a reader has looked up, by hash, up to [`RESOURCE_BYTES`] of bodies
/// (then it starts again), as `otaudit.store.resources.ResourceCache` keeps them.
struct Resources<'c> {
    stmt: rusqlite::Statement<'c>,
    /// Each with whether the reference would read its row differently (not a BLOB
    /// body...).
    held: HashMap<Vec<u8>, (Found, bool)>,
    bytes: usize,
}

const RESOURCE_BYTES: usize = 64 << 20;

impl Resources<'_> {
    fn get(&mut self, hash: &[u8]) -> Result<(Found, bool), String> {
        if let Some((found, odd)) = self.held.get(hash) {
            return Ok((found.clone(), *odd));
        }
        let mut rows = self.stmt.query([hash]).map_err(sql_error)?;
        let (found, odd) = match rows.next().map_err(sql_error)? {
            None => (None, false),
            Some(r) => {
                let body = r.get_ref(0).map_err(sql_error)?;
                let flat = r.get_ref(1).map_err(sql_error)?;
                let (bytes, odd_body) = match body {
                    ValueRef::Blob(b) => (b.to_vec(), false),
                    other => (
                        other.as_bytes().map(<[u8]>::to_vec).unwrap_or_default(),
                        true,
                    ),
                };
                // Python reads `str(flat)`: text is itself, an integer its digits, NULL "None".
                let (flat, odd_flat) = match flat {
                    ValueRef::Text(_) => (cell(flat), false),
                    ValueRef::Integer(i) => (Cell::Text(i.to_string()), false),
                    ValueRef::Null => (Cell::Text("None".into()), false),
                    _ => (Cell::Other, true),
                };
                (
                    Some(Arc::new(Resource::new(bytes, hash, flat))),
                    odd_body || odd_flat,
                )
            }
        };
        let size = found.as_ref().map_or(0, |res| res.body.len());
        if self.bytes + size > RESOURCE_BYTES {
            self.held.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.held.insert(hash.to_vec(), (found.clone(), odd));
        Ok((found, odd))
    }
}

/// The record of one `records` row, as `stored_record` makes it (its stored bytes
/// decoded first, as `SQLiteDriver.record_values` decodes them).
fn row(
    r: &rusqlite::Row<'_>,
    resources: &mut Resources<'_>,
    frames: &mut Frames<'_>,
) -> Result<Row, String> {
    let get = |i: usize| r.get_ref(i).map_err(sql_error);
    let seq = match get(0)? {
        ValueRef::Integer(i) => i,
        _ => return Err("records.seq is not an integer".into()),
    };
    let mut unsure = false;
    // The resource kept once, first: the stored bytes are decoded with room for it.
    let (hash, at) = (get(3 + COLUMNS)?, get(4 + COLUMNS)?);
    let kept = if matches!((hash, at), (ValueRef::Null, ValueRef::Null)) {
        None
    } else {
        let at = match at {
            ValueRef::Null => -1,
            ValueRef::Integer(i) => i,
            _ => {
                unsure = true;
                -1
            }
        };
        let (hash, found, odd) = match hash {
            ValueRef::Null => (Vec::new(), None, false),
            ValueRef::Blob(h) => {
                let (found, odd) = resources.get(h)?;
                (h.to_vec(), found, odd)
            }
            _ => (Vec::new(), None, true),
        };
        unsure |= odd;
        Some(Kept {
            at,
            hash,
            body: found,
        })
    };
    let spare = kept
        .as_ref()
        .and_then(|k| k.body.as_ref())
        .map_or(0, |res| res.body.len());
    let mut blob = |v: ValueRef<'_>| match v {
        ValueRef::Blob(b) => b.to_vec(),
        other => {
            unsure = true;
            other.as_bytes().map(<[u8]>::to_vec).unwrap_or_default()
        }
    };
    let mut odd_frame = false;
    let mut sealed = match get(1)? {
        ValueRef::Blob(b) => {
            let (bytes, odd) = frames.decode(b, spare);
            odd_frame = odd;
            bytes
        }
        other => blob(other),
    };
    let dedup_key = blob(get(2)?);
    unsure |= odd_frame;
    let mut buf = Vec::with_capacity(1024);
    let mut spans = Vec::with_capacity(COLUMNS);
    for i in 0..COLUMNS {
        spans.push(match get(3 + i)? {
            ValueRef::Null => Span::Null,
            ValueRef::Integer(v) => Span::Int(v),
            ValueRef::Text(t) => {
                let start = buf.len() as u32;
                buf.extend_from_slice(t);
                Span::Text(start, buf.len() as u32)
            }
            ValueRef::Real(_) | ValueRef::Blob(_) => Span::Other,
        });
    }
    if let Some(Kept {
        at,
        body: Some(res),
        ..
    }) = &kept
    {
        if *at >= 0 && *at as usize <= sealed.len() {
            let at = *at as usize;
            sealed.splice(at..at, res.body.iter().copied());
        }
    }
    if kept.is_some() {
        // No resource column of its own (NULL or ''): the kept resource's stands in.
        match spans[RESOURCE_COLUMN] {
            Span::Null => spans[RESOURCE_COLUMN] = Span::Flat,
            Span::Text(a, b) if a == b => spans[RESOURCE_COLUMN] = Span::Flat,
            _ => {}
        }
    }
    Ok(Row {
        seq,
        sealed,
        dedup_key,
        columns: Stored::Raw { buf, spans },
        kept,
        unsure,
    })
}

fn records_sql(end: bool) -> String {
    let columns: Vec<String> = COLUMN_NAMES.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        "SELECT seq, sealed, dedup_key, {}, resource_hash, resource_at FROM records \
         WHERE seq >= ?1{} ORDER BY seq",
        columns.join(", "),
        if end { " AND seq < ?2" } else { "" }
    )
}

/// The level-0 nodes with idx in `[?1, ?2)`, in idx order.
const LEAVES_SQL: &str =
    "SELECT idx, hash FROM tree_nodes WHERE level = 0 AND idx >= ?1 AND idx < ?2 ORDER BY idx";

/// What one thread reads record rows with: statements of its own connection.
pub(super) struct Reader<'c> {
    records: rusqlite::Statement<'c>,
    leaves: rusqlite::Statement<'c>,
    resources: Resources<'c>,
    frames: Frames<'c>,
}

impl<'c> Reader<'c> {
    fn new(conn: &'c Connection, max_record_bytes: usize) -> Result<Self, String> {
        Ok(Reader {
            records: conn.prepare(&records_sql(true)).map_err(sql_error)?,
            leaves: conn.prepare(LEAVES_SQL).map_err(sql_error)?,
            resources: Resources {
                stmt: conn
                    .prepare("SELECT body, flat FROM resources WHERE hash = ?1")
                    .map_err(sql_error)?,
                held: HashMap::new(),
                bytes: 0,
            },
            frames: Frames::new(conn, max_record_bytes),
        })
    }

    /// The rows of seqs `[lo, hi)` in seq order, to `each` until it returns false.
    pub(super) fn rows(
        &mut self,
        lo: i64,
        hi: i64,
        mut each: impl FnMut(&Row) -> bool,
    ) -> Result<(), String> {
        let mut rows = self.records.query([lo, hi]).map_err(sql_error)?;
        while let Some(r) = rows.next().map_err(sql_error)? {
            let record = row(r, &mut self.resources, &mut self.frames)?;
            if !each(&record) {
                break;
            }
        }
        Ok(())
    }

    /// The rows of seqs `[lo, hi)` checked by `run` in seq order, beside the level-0
    /// nodes of idx in `[lo, hi)` (the run takes one for each seq, present or absent).
    pub(super) fn check(
        &mut self,
        lo: i64,
        hi: i64,
        run: &mut Run,
        derive: &dyn Derive,
    ) -> Result<(), String> {
        let mut rows = self.records.query([lo, hi]).map_err(sql_error)?;
        let mut leaves = self.leaves.query([lo, hi]).map_err(sql_error)?;
        let mut leaf = || next_node(&mut leaves);
        while let Some(r) = rows.next().map_err(sql_error)? {
            let record = row(r, &mut self.resources, &mut self.frames)?;
            if !run.push(&record, &mut leaf, derive)? {
                return Ok(());
            }
        }
        run.end(hi, &mut leaf)
    }
}

/// How many threads read (and check) records: one a core, at least two.
fn readers() -> i64 {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 16)) as i64
}

/// The end of the records from `begin` (`end`: at most that): one past the highest seq
/// (`begin`: none).
pub(super) fn records_end(conn: &Connection, begin: i64, end: Option<i64>) -> Result<i64, String> {
    let highest: Option<i64> = conn
        .query_row(
            "SELECT max(seq) FROM records WHERE seq >= ?1",
            [begin],
            |r| r.get(0),
        )
        .map_err(sql_error)?;
    let after = highest.map_or(begin, |seq| seq.saturating_add(1));
    Ok(end.map_or(after, |end| after.min(end)).max(begin))
}

/// Seqs `[begin, end)` read in chunks on [`readers`] threads, each with a connection of
/// its own to `uri` in a read transaction: `work` makes a `T` of each chunk `[lo, hi)`
/// there, and `take` is handed them here in seq order until it returns false.
pub(super) fn in_chunks<T: Send>(
    uri: &str,
    begin: i64,
    end: i64,
    max_record_bytes: usize,
    work: impl Fn(&mut Reader<'_>, i64, i64) -> Result<T, String> + Sync,
    mut take: impl FnMut(T) -> bool,
) -> Result<(), String> {
    let threads = readers();
    let chunks = end.saturating_sub(begin).max(0).div_euclid(CHUNK)
        + i64::from(end.saturating_sub(begin).max(0) % CHUNK != 0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let mut outs = Vec::new();
        let mut handles = Vec::new();
        for first in 0..threads.min(chunks) {
            let (tx, rx) = sync_channel::<Result<T, String>>(2);
            outs.push(rx);
            let (work, stop) = (&work, &stop);
            handles.push(scope.spawn(move || {
                let read = || -> Result<(), String> {
                    let conn = open(uri)?;
                    conn.execute_batch("BEGIN").map_err(sql_error)?;
                    let mut reader = Reader::new(&conn, max_record_bytes)?;
                    let mut k = first;
                    while k < chunks && !stop.load(Ordering::Relaxed) {
                        let lo = begin + k * CHUNK;
                        let out = work(&mut reader, lo, lo.saturating_add(CHUNK).min(end))?;
                        if tx.send(Ok(out)).is_err() {
                            break; // the taker stopped
                        }
                        k += threads;
                    }
                    Ok(())
                };
                if let Err(e) = read() {
                    let _ = tx.send(Err(e));
                }
            }));
        }
        let mut outcome = Ok(());
        for k in 0..chunks {
            match outs[(k % threads) as usize].recv() {
                Ok(Ok(out)) => {
                    if !take(out) {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    outcome = Err(e);
                    break;
                }
                Err(_) => {
                    outcome = Err("a reader thread stopped".to_string());
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        drop(outs);
        for handle in handles {
            if handle.join().is_err() {
                outcome = Err("a reader thread panicked".to_string());
            }
        }
        outcome
    })
}
