//! Steps 1 and 2 of verify read straight from a SQLite ledger file.
//!
//! Reading the rows is most of the work of verify (more than hashing them), so the core
//! reads them itself, on as many threads as there are cores: each has a connection of
//! its own and takes a chunk of seqs at a time (the k-th chunk on the (k mod threads)-th
//! thread), steps through its `records` rows in seq order with the level-0 nodes beside
//! them, decodes each row's stored bytes (a zstd frame decompressed: [`super::frames`]),
//! splices its resource back (as `otaudit.store.resources.stored_record` does) and
//! checks it; the chunks' outcomes are taken in seq order. The tree is then checked
//! level against level, streamed too. It links the system's shared libsqlite3, the one
//! Python's `sqlite3` module uses (rusqlite without `bundled`): two copies of SQLite in
//! one process would not see each other's POSIX locks (`otaudit.verify.one_sqlite`
//! makes sure they are one library before it calls the core here).
//!
//! The records' end and the tree are read in one read transaction, so a server
//! appending meanwhile does not make the tree look longer than the records; the reading
//! threads' own transactions start later, and read only seqs below that end (rows are
//! append-only: the same in every later snapshot).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::frames::Frames;
use super::inclusion;
use super::late::LateSigning;
use super::{check_level, Cell, Derive, Fault, Kept, Kind, Node, Resource, Row, Run};
use super::{Span, Stored};
use super::{COLUMNS, RESOURCE_COLUMN};

/// The query columns of `records`, in `otaudit.record.COLUMN_NAMES` order.
pub const COLUMN_NAMES: [&str; COLUMNS] = [
    "signal",
    "time_unix_nano",
    "timestamp",
    "received_at",
    "pipeline",
    "trace_id",
    "span_id",
    "name",
    "service",
    "actor",
    "actor_role",
    "client_address",
    "action",
    "target",
    "resource_type",
    "result",
    "producer",
    "producer_seq",
    "missing",
    "attributes",
    "resource",
];

/// How many seqs a reading thread takes at a time.
const CHUNK: i64 = 8192;

/// What verify asks of the records (`verify_ledger`: all; `verify_range`: a range).
#[derive(Debug, Clone)]
pub struct Ask {
    pub begin: i64,
    pub end: Option<i64>,
    /// Checkpoint sizes and the bound for late signing (None: not looked for).
    pub late: Option<(Vec<i64>, i64)>,
    /// Check the tree too (only with `end` None: it is checked at the records' count).
    pub tree: bool,
    /// Prove each leaf of `[begin, end)` into this (tree size, root) from stored nodes
    /// (`verify_range`), once the records are good.
    pub inclusion: Option<(i64, Vec<u8>)>,
    /// The most bytes a stored frame may decompress to
    /// (`otaudit.store.codec.MAX_RECORD_BYTES`).
    pub max_record_bytes: usize,
}

/// What the core found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Records checked (all good, up to the first fault of the records).
    pub records: i64,
    pub bytes: u64,
    /// The first fault of step 1 (records against their leaves), if any.
    pub records_fault: Option<Fault>,
    /// The first fault of step 2 (the tree), if it ran and found one.
    pub tree_fault: Option<Fault>,
    /// The first record signed too late, if asked.
    pub late: Option<super::late::LateRecord>,
    /// The first leaf not proven into the root, if asked and the records are good.
    pub excluded: Option<i64>,
}

fn sql_error(e: rusqlite::Error) -> String {
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

/// The nodes of one tree level with idx >= ?2, in idx order (?1: the level).
const LEVEL_SQL: &str =
    "SELECT idx, hash FROM tree_nodes WHERE level = ?1 AND idx >= ?2 ORDER BY idx";

/// The next node of a [`LEVEL_SQL`] query.
fn next_node(rows: &mut rusqlite::Rows<'_>) -> Result<Option<Node>, String> {
    let Some(r) = rows.next().map_err(sql_error)? else {
        return Ok(None);
    };
    let idx = match r.get_ref(0).map_err(sql_error)? {
        ValueRef::Integer(i) => i,
        _ => return Err("tree_nodes.idx is not an integer".into()),
    };
    let hash = match r.get_ref(1).map_err(sql_error)? {
        ValueRef::Blob(b) => b.to_vec(),
        _ => return Err("tree_nodes.hash is not a blob".into()),
    };
    Ok(Some((idx, hash)))
}

/// Step 2 over the stored levels of a tree of `size` leaves, each level streamed
/// against the one below it.
fn check_tree(conn: &Connection, size: i64) -> Result<Option<Fault>, String> {
    let mut below = conn.prepare(LEVEL_SQL).map_err(sql_error)?;
    let mut above = conn.prepare(LEVEL_SQL).map_err(sql_error)?;
    let mut lvl: u32 = 1;
    while lvl < 63 && size >> lvl > 0 {
        let level = i64::from(lvl);
        let mut children = below.query([level - 1, 0]).map_err(sql_error)?;
        let mut stored = above.query([level, 0]).map_err(sql_error)?;
        let checked = check_level(
            lvl,
            size,
            || next_node(&mut children),
            || next_node(&mut stored),
        )?;
        if let Err(fault) = checked {
            return Ok(Some(fault));
        }
        lvl += 1;
    }
    let mut beyond = above.query([i64::from(lvl), 0]).map_err(sql_error)?;
    if next_node(&mut beyond)?.is_some() {
        return Ok(Some(Fault {
            at: i64::from(lvl),
            kind: Kind::Tree,
        }));
    }
    Ok(None)
}

/// How many leaves of a range [`first_excluded_of`] proves at a time.
const PROOF_CHUNK: usize = 1 << 16;

/// The first leaf of `[begin, end)` not proven into `root` of a tree of `size` leaves
/// from the stored nodes, a chunk of leaves at a time (their proofs' nodes read, then
/// checked in parallel).
fn first_excluded_of(
    conn: &Connection,
    begin: i64,
    end: i64,
    size: i64,
    root: &[u8],
) -> Result<Option<i64>, String> {
    let size = size.max(0) as u64;
    let mut stmt = conn.prepare(LEVEL_SQL).map_err(sql_error)?;
    let mut leaves = stmt.query([0, begin]).map_err(sql_error)?;
    let mut done = false;
    while !done {
        let mut chunk: Vec<Node> = Vec::with_capacity(PROOF_CHUNK);
        while chunk.len() < PROOF_CHUNK {
            match next_node(&mut leaves)? {
                Some(leaf) if leaf.0 < end => chunk.push(leaf),
                _ => {
                    done = true;
                    break;
                }
            }
        }
        let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
            break;
        };
        let (lo, hi) = (first.0.max(0) as u64, (last.0.max(0) as u64 + 1).min(size));
        let nodes = nodes_of(conn, inclusion::needed(lo, hi.max(lo), size))?;
        if let Some(seq) = inclusion::first_excluded(&chunk, size, root, &nodes) {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}

/// Tell `progress` each count at which the seq reached a multiple of 10,000 between
/// `before` and `after` records checked (from `begin`).
pub fn report_progress(
    begin: i64,
    before: i64,
    after: i64,
    progress: &mut dyn FnMut(i64) -> bool,
) -> bool {
    const EVERY: i64 = 10_000;
    let mut seq = (begin + before).div_euclid(EVERY) * EVERY + EVERY;
    while seq <= begin + after {
        if !progress(seq - begin) {
            return false;
        }
        seq += EVERY;
    }
    true
}

/// The stored nodes of `keys` (those there are), read a run of neighbouring indexes of
/// a level at a time.
fn nodes_of(
    conn: &Connection,
    keys: std::collections::HashSet<inclusion::Key>,
) -> Result<HashMap<inclusion::Key, Vec<u8>>, String> {
    let mut by_level: HashMap<u32, Vec<u64>> = HashMap::new();
    for (level, idx) in keys {
        by_level.entry(level).or_default().push(idx);
    }
    let mut stmt = conn
        .prepare("SELECT idx, hash FROM tree_nodes WHERE level = ?1 AND idx >= ?2 AND idx <= ?3")
        .map_err(sql_error)?;
    let mut out = HashMap::new();
    for (level, mut idxs) in by_level {
        idxs.sort_unstable();
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for idx in idxs {
            match runs.last_mut() {
                Some((_, last)) if idx <= *last + 256 => *last = idx,
                _ => runs.push((idx, idx)),
            }
        }
        for (lo, hi) in runs {
            let mut rows = stmt
                .query([i64::from(level), lo as i64, hi as i64])
                .map_err(sql_error)?;
            while let Some(r) = rows.next().map_err(sql_error)? {
                if let (ValueRef::Integer(idx), ValueRef::Blob(hash)) = (
                    r.get_ref(0).map_err(sql_error)?,
                    r.get_ref(1).map_err(sql_error)?,
                ) {
                    out.insert((level, idx as u64), hash.to_vec());
                }
            }
        }
    }
    Ok(out)
}

/// Open the ledger at `uri` (a SQLite URI, read-only) for verify.
pub fn open(uri: &str) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags).map_err(sql_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sql_error)?;
    // Pages read through a memory map (up to SQLite's limit) rather than copied by read(2).
    conn.pragma_update(None, "mmap_size", 1i64 << 40)
        .map_err(sql_error)?;
    Ok(conn)
}

/// The level-0 nodes with idx in `[?1, ?2)`, in idx order.
const LEAVES_SQL: &str =
    "SELECT idx, hash FROM tree_nodes WHERE level = 0 AND idx >= ?1 AND idx < ?2 ORDER BY idx";

/// What one thread reads record rows with: statements of its own connection.
struct Reader<'c> {
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

    /// The rows of seqs `[lo, hi)` in seq order, each with the next level-0 node of
    /// idx in `[lo, hi)` (the i-th for the i-th row, as the reference pairs them), to
    /// `each` until it returns false.
    fn rows(
        &mut self,
        lo: i64,
        hi: i64,
        mut each: impl FnMut(&Row, Option<&Node>) -> bool,
    ) -> Result<(), String> {
        let mut rows = self.records.query([lo, hi]).map_err(sql_error)?;
        let mut leaves = self.leaves.query([lo, hi]).map_err(sql_error)?;
        while let Some(r) = rows.next().map_err(sql_error)? {
            let record = row(r, &mut self.resources, &mut self.frames)?;
            let leaf = next_node(&mut leaves)?;
            if !each(&record, leaf.as_ref()) {
                break;
            }
        }
        Ok(())
    }
}

/// How many threads read (and check) records: one a core, at least two.
fn readers() -> i64 {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 16)) as i64
}

/// The end of the records from `begin` (`end`: at most that): one past the highest seq
/// (`begin`: none).
fn records_end(conn: &Connection, begin: i64, end: Option<i64>) -> Result<i64, String> {
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
fn in_chunks<T: Send>(
    uri: &str,
    begin: i64,
    end: i64,
    max_record_bytes: usize,
    work: impl Fn(&mut Reader<'_>, i64, i64) -> Result<T, String> + Sync,
    mut take: impl FnMut(T) -> bool,
) -> Result<(), String> {
    let threads = readers();
    let chunks = (end.saturating_sub(begin).max(0) + CHUNK - 1) / CHUNK;
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
                        let out = work(&mut reader, lo, (lo + CHUNK).min(end))?;
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

/// What verify costs at the least, for the benchmark: every record row of the ledger at
/// `uri` read, decoded and its resource spliced back as verify does it (with `parse`,
/// its sealed bytes also parsed as JSON), on verify's reading threads, nothing checked.
/// Returns (records, bytes).
pub fn scan(uri: &str, parse: bool, max_record_bytes: usize) -> Result<(i64, u64), String> {
    let conn = open(uri)?;
    conn.execute_batch("BEGIN").map_err(sql_error)?;
    let end = records_end(&conn, 0, None)?;
    let (mut count, mut bytes) = (0i64, 0u64);
    in_chunks(
        uri,
        0,
        end,
        max_record_bytes,
        |reader, lo, hi| {
            let (mut count, mut bytes) = (0i64, 0u64);
            reader.rows(lo, hi, |r, _| {
                // rows that do not parse do not count
                if !parse || serde_json::from_slice::<serde_json::Value>(&r.sealed).is_ok() {
                    count += 1;
                }
                bytes += r.sealed.len() as u64;
                true
            })?;
            Ok((count, bytes))
        },
        |(n, b)| {
            count += n;
            bytes += b;
            true
        },
    )?;
    conn.execute_batch("COMMIT").map_err(sql_error)?;
    Ok((count, bytes))
}

/// Steps 1 and 2 over the ledger at `uri`. Err: the database could not be read as a
/// ledger (or holds something the core does not read: the caller falls back to the
/// reference, which says what).
///
/// `progress` is told the number of records checked at each multiple of 10,000 (of the
/// seq), as the reference tells it; when it returns false, verify stops with Err.
pub fn verify(
    uri: &str,
    ask: &Ask,
    derive: Arc<dyn Derive>,
    progress: &mut dyn FnMut(i64) -> bool,
) -> Result<Outcome, String> {
    let conn = open(uri)?;
    conn.execute_batch("BEGIN").map_err(sql_error)?;
    let mut late = ask
        .late
        .as_ref()
        .map(|(sizes, max)| LateSigning::new(sizes, *max));
    let end = records_end(&conn, ask.begin, ask.end)?;
    let (mut count, mut bytes) = (0i64, 0u64);
    let mut records_fault = None;
    let mut stopped = false;
    in_chunks(
        uri,
        ask.begin,
        end,
        ask.max_record_bytes,
        |reader, lo, hi| {
            let mut run = Run::new(lo);
            reader.rows(lo, hi, |row, leaf| run.push(row, leaf, &*derive))?;
            run.end(hi);
            Ok(run)
        },
        |run| {
            if let Some(late) = &mut late {
                run.tell(late);
            }
            let before = count;
            count += run.count();
            bytes += run.bytes;
            if !report_progress(ask.begin, before, count, progress) {
                stopped = true;
                return false;
            }
            records_fault = run.fault;
            records_fault.is_none()
        },
    )?;
    if stopped {
        return Err("stopped by its progress callback".into());
    }
    // The stream's end: with `end`, every seq below it was there; without, no leaf is
    // left over.
    let next = ask.begin + count;
    if records_fault.is_none() {
        records_fault = match ask.end {
            Some(end) if next < end => Some(Fault {
                at: next,
                kind: Kind::Missing,
            }),
            Some(_) => None,
            None => {
                let mut stmt = conn.prepare(LEVEL_SQL).map_err(sql_error)?;
                let mut leaves = stmt.query([0, next]).map_err(sql_error)?;
                next_node(&mut leaves)?.map(|_| Fault {
                    at: next,
                    kind: Kind::ExtraLeaf,
                })
            }
        };
    }
    let mut tree_fault = None;
    if ask.tree && records_fault.is_none() && ask.begin == 0 && ask.end.is_none() {
        tree_fault = check_tree(&conn, count)?;
    }
    let mut excluded = None;
    if let (Some((size, root)), None, Some(end)) = (&ask.inclusion, records_fault, ask.end) {
        excluded = first_excluded_of(&conn, ask.begin, end, *size, root)?;
    }
    conn.execute_batch("COMMIT").map_err(sql_error)?;
    Ok(Outcome {
        records: count,
        bytes,
        records_fault,
        tree_fault,
        late: late.and_then(|l| l.found),
        excluded,
    })
}
