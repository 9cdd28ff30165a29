//! Steps 1 and 2 of verify read straight from a SQLite ledger file.
//!
//! Reading the rows is most of the work of verify (more than hashing them), so the core
//! reads them itself ([`super::rows`]), on as many threads as there are cores: each has
//! a connection of its own and takes a chunk of seqs at a time (the k-th chunk on the
//! (k mod threads)-th thread), steps through its `records` rows in seq order with the level-0 nodes beside
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
use std::sync::Arc;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::inclusion;
use super::late::LateSigning;
use super::rows::{in_chunks, records_end, sql_error};
use super::{check_level, Derive, Fault, Kind, Node, Run, COLUMNS};

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
    /// The ranges of seqs whose rows may be absent (see [`super::Removed`]).
    pub removed: Arc<[(i64, i64)]>,
}

/// What the core found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Seqs passed (records checked, all good, up to the first fault of the records,
    /// and absent seqs).
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
    /// Seqs passed without a row (removed, their leaves there).
    pub absent: i64,
}

/// The nodes of one tree level with idx >= ?2, in idx order (?1: the level).
const LEVEL_SQL: &str =
    "SELECT idx, hash FROM tree_nodes WHERE level = ?1 AND idx >= ?2 ORDER BY idx";

/// The next node of a [`LEVEL_SQL`] query.
pub(super) fn next_node(rows: &mut rusqlite::Rows<'_>) -> Result<Option<Node>, String> {
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
/// checked in parallel); the leaves of absent seqs (`absent`: half-open runs in order)
/// are not proven.
fn first_excluded_of(
    conn: &Connection,
    begin: i64,
    end: i64,
    size: i64,
    root: &[u8],
    absent: &[(i64, i64)],
) -> Result<Option<i64>, String> {
    let size = size.max(0) as u64;
    let mut stmt = conn.prepare(LEVEL_SQL).map_err(sql_error)?;
    let mut leaves = stmt.query([0, begin]).map_err(sql_error)?;
    let mut runs = absent.iter().peekable();
    let mut done = false;
    while !done {
        let mut chunk: Vec<Node> = Vec::with_capacity(PROOF_CHUNK);
        while chunk.len() < PROOF_CHUNK {
            match next_node(&mut leaves)? {
                Some(leaf) if leaf.0 < end => {
                    while runs.next_if(|&&(_, to)| to <= leaf.0).is_some() {}
                    if runs.peek().is_none_or(|&&(from, _)| from > leaf.0) {
                        chunk.push(leaf);
                    }
                }
                _ => {
                    done = true;
                    break;
                }
            }
        }
        if chunk.is_empty() {
            break;
        }
        let indexes: Vec<u64> = chunk
            .iter()
            .filter_map(|(idx, _)| u64::try_from(*idx).ok().filter(|i| *i < size))
            .collect();
        let nodes = nodes_of(conn, inclusion::needed(&indexes, size))?;
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
            reader.rows(lo, hi, |r| {
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
    let (mut absent, mut absent_runs) = (0i64, Vec::new());
    let mut records_fault = None;
    let mut stopped = false;
    in_chunks(
        uri,
        ask.begin,
        end,
        ask.max_record_bytes,
        |reader, lo, hi| {
            let mut run = Run::new(lo, ask.removed.clone());
            reader.check(lo, hi, &mut run, &*derive)?;
            Ok(run)
        },
        |run| {
            if let Some(late) = &mut late {
                run.tell(late);
            }
            let before = count;
            count += run.count();
            absent += run.absent();
            absent_runs.extend(run.absent_runs);
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
    // The stream's end, past the last row: with `end`, every seq below it was there or
    // is absent; without, every leaf left over is of an absent seq.
    if records_fault.is_none() {
        let mut tail = Run::new(ask.begin + count, ask.removed.clone());
        let mut stmt = conn.prepare(LEVEL_SQL).map_err(sql_error)?;
        let mut leaves = stmt.query([0, tail.lo]).map_err(sql_error)?;
        let mut leaf = || next_node(&mut leaves);
        match ask.end {
            Some(end) => tail.end(end, &mut leaf)?,
            None => tail.rest(&mut leaf)?,
        }
        count += tail.count();
        absent += tail.absent();
        absent_runs.extend(tail.absent_runs);
        records_fault = tail.fault;
    }
    let mut tree_fault = None;
    if ask.tree && records_fault.is_none() && ask.begin == 0 && ask.end.is_none() {
        tree_fault = check_tree(&conn, count)?;
    }
    let mut excluded = None;
    if let (Some((size, root)), None, Some(end)) = (&ask.inclusion, records_fault, ask.end) {
        excluded = first_excluded_of(&conn, ask.begin, end, *size, root, &absent_runs)?;
    }
    conn.execute_batch("COMMIT").map_err(sql_error)?;
    Ok(Outcome {
        records: count,
        bytes,
        records_fault,
        tree_fault,
        late: late.and_then(|l| l.found),
        excluded,
        absent,
    })
}
