//! Steps 1 and 2 of `otaudit verify` over stored rows: every record against its leaf
//! and its columns, then every tree node against its children. The Python reference is
//! `otaudit.verify` (`_check_stream`, `_check_record`, `_check_tree`); this module gives
//! its verdicts, not its words: a failure says where (the seq, or the tree level) and
//! what kind, and the Python side runs the reference check there for the message.
//!
//! The core is allowed to be stricter than the reference, never more lenient: a row it
//! cannot judge exactly as the reference would (a REAL where the reference compares an
//! integer, text that is not UTF-8...) is flagged [`Kind::Unsure`], and the reference
//! decides.
//!
//! A seq has no row when its payload was removed (retention): inside one of the ranges
//! of the `removals` table, which the caller passes ([`Removed`]), such a seq is absent:
//! passed and counted, its leaf still required at level 0, nothing else checked (nor
//! proven, nor seen by the late signing). Outside every range it is missing; a row that
//! is there inside a range is checked as any other.

mod frames;
pub mod inclusion;
pub mod late;
mod rows;
pub mod sqlite;

use std::sync::Arc;

use memchr::memmem;
use rayon::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::merkle;
use late::LateSigning;

/// The number of query columns a record row holds (`otaudit.record.COLUMN_NAMES`).
pub const COLUMNS: usize = 21;
/// Where `resource` is among the columns (`otaudit.record.RESOURCE_COLUMN`).
pub const RESOURCE_COLUMN: usize = 20;
/// The pipeline of otaudit's own records (`otaudit.conventions.OWN_PIPELINE`).
pub const OWN_PIPELINE: &str = "otaudit";

const RECORD_MARKER: &[u8] = b",\"record\":";
const RESOURCE_KEY: &[u8] = b",\"resource\":";
const SCOPE_KEY: &[u8] = b",\"scope\":";

/// A column value as a store holds it, or as it is derived from the sealed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    /// A value the core does not compare (a REAL, a BLOB, text that is not UTF-8):
    /// never equal to anything, so the row is flagged for the reference to judge.
    Other,
}

/// How a row keeps its resource once: cut out at byte `at`, kept under `hash`; `body`
/// is what the resources table holds under that hash (None: nothing).
#[derive(Debug, Clone)]
pub struct Kept {
    pub at: i64,
    pub hash: Vec<u8>,
    pub body: Option<Arc<Resource>>,
}

/// A kept resource: its bytes, whether their SHA-256 is the hash it is kept under, and
/// the searcher for its record-level member (`,"resource":` + body + `,"scope":`).
#[derive(Debug)]
pub struct Resource {
    pub body: Vec<u8>,
    pub hash_ok: bool,
    /// Its flattened attributes as the resources row holds them (as Python reads them).
    pub flat: Cell,
    member: memmem::FinderRev<'static>,
}

impl Resource {
    /// The resource `body` kept under `hash` with its flattened attributes `flat` (its
    /// SHA-256 checked once, here).
    pub fn new(body: Vec<u8>, hash: &[u8], flat: Cell) -> Self {
        let hash_ok = Sha256::digest(&body).as_slice() == hash;
        let member = memmem::FinderRev::new(&member_of(&body)).into_owned();
        Resource {
            body,
            hash_ok,
            flat,
            member,
        }
    }

    /// `otaudit.record.resource_offset(sealed, body)`: where the body starts as the
    /// record's resource member (the last occurrence of the member), -1: nowhere.
    pub fn offset_in(&self, sealed: &[u8]) -> i64 {
        match self.member.rfind(sealed) {
            Some(at) => (at + RESOURCE_KEY.len()) as i64,
            None => -1,
        }
    }

    /// Whether `offset_in(sealed) == at`, searching only from `at` on: the member is
    /// there, and no occurrence of it starts after it (the last one is the one there).
    pub fn is_cut_at(&self, sealed: &[u8], at: i64) -> bool {
        let key = RESOURCE_KEY.len();
        let Some(start) = usize::try_from(at).ok().and_then(|at| at.checked_sub(key)) else {
            return self.offset_in(sealed) == at;
        };
        let member = self.member.needle();
        sealed
            .get(start..)
            .is_some_and(|tail| tail.starts_with(member))
            && self.member.rfind(&sealed[start + 1..]).is_none()
    }
}

fn member_of(body: &[u8]) -> Vec<u8> {
    let mut needle = Vec::with_capacity(RESOURCE_KEY.len() + body.len() + SCOPE_KEY.len());
    needle.extend_from_slice(RESOURCE_KEY);
    needle.extend_from_slice(body);
    needle.extend_from_slice(SCOPE_KEY);
    needle
}

/// One record row as `otaudit.store.base.StoredRecord` holds it: the sealed bytes whole
/// (the resource spliced back), the stored dedup key and columns (the `resource` column
/// already taken from the resources table where the row has none of its own).
#[derive(Debug, Clone)]
pub struct Row {
    pub seq: i64,
    pub sealed: Vec<u8>,
    pub dedup_key: Vec<u8>,
    pub columns: Stored,
    pub kept: Option<Kept>,
    /// Something in the row the reference would read differently (or fail on).
    pub unsure: bool,
}

/// The stored columns of a row.
#[derive(Debug, Clone)]
pub enum Stored {
    /// As values (the rows a Python store reads).
    Cells(Vec<Cell>),
    /// As SQLite handed them over, their bytes in one buffer (the rows the core reads
    /// itself): compared with the derived columns without being taken apart.
    Raw { buf: Vec<u8>, spans: Vec<Span> },
}

/// Where one raw stored column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Null,
    Int(i64),
    /// Text, `buf[start..end]` (its bytes as stored: not necessarily UTF-8).
    Text(u32, u32),
    /// A REAL or a BLOB: see [`Cell::Other`].
    Other,
    /// The row has no resource column of its own (NULL or ''): the kept resource's
    /// flattened attributes stand in (NULL if there is none).
    Flat,
}

/// Whether a derived column equals a stored one: None when the reference might judge
/// it differently (a value the core does not compare).
fn same(derived: &Cell, stored: &Cell) -> Option<bool> {
    match (derived, stored) {
        (Cell::Other, _) | (_, Cell::Other) => None,
        _ => Some(derived == stored),
    }
}

/// Compare the derived columns with the stored ones: Err(Column) at a difference,
/// Err(Unsure) where the core does not judge.
fn compare(derived: &[Cell], row: &Row) -> Result<(), Kind> {
    if derived.len() != COLUMNS {
        return Err(Kind::Unsure);
    }
    let mut verdict = Ok(());
    let mut note = |same: Option<bool>| match same {
        Some(true) => {}
        Some(false) => verdict = verdict.and(Err(Kind::Column)),
        None => verdict = Err(Kind::Unsure),
    };
    match &row.columns {
        Stored::Cells(cells) => {
            if cells.len() != COLUMNS {
                return Err(Kind::Unsure);
            }
            for (d, c) in derived.iter().zip(cells) {
                note(same(d, c));
            }
        }
        Stored::Raw { buf, spans } => {
            if spans.len() != COLUMNS {
                return Err(Kind::Unsure);
            }
            for (d, span) in derived.iter().zip(spans) {
                note(match (span, d) {
                    (_, Cell::Other) | (Span::Other, _) => None,
                    (Span::Null, d) => Some(*d == Cell::Null),
                    (Span::Int(i), d) => Some(*d == Cell::Int(*i)),
                    (Span::Text(a, b), Cell::Text(t)) => {
                        Some(t.as_bytes() == &buf[*a as usize..*b as usize])
                    }
                    (Span::Text(..), _) => Some(false),
                    (Span::Flat, d) => match row.kept.as_ref().and_then(|k| k.body.as_ref()) {
                        Some(res) => same(d, &res.flat),
                        None => Some(*d == Cell::Null),
                    },
                });
            }
        }
    }
    verdict
}

/// What went wrong, in the order of the reference's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A seq is missing (the stream of records has a gap or ends early).
    Missing,
    /// A record has no leaf in the tree.
    NoLeaf,
    /// The tree has a leaf past the last record.
    ExtraLeaf,
    /// The resource a row keeps once is missing or not the one its hash names.
    Resource,
    /// The sealed bytes are not a valid record.
    Invalid,
    /// The leaf hash of the sealed bytes is not the stored leaf.
    Leaf,
    /// The resource was not cut where the record's resource member is.
    Cut,
    /// A stored column differs from the one derived from the sealed bytes.
    Column,
    /// The dedup key is neither of the accepted keys.
    DedupKey,
    /// Something the core does not judge: the reference does.
    Unsure,
    /// A tree node (above level 0) is missing, extra, out of order or not the hash of
    /// its children.
    Tree,
}

impl Kind {
    /// A short name for the kind (shown to Python).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::NoLeaf => "no-leaf",
            Kind::ExtraLeaf => "extra-leaf",
            Kind::Resource => "resource",
            Kind::Invalid => "invalid",
            Kind::Leaf => "leaf",
            Kind::Cut => "cut",
            Kind::Column => "column",
            Kind::DedupKey => "dedup-key",
            Kind::Unsure => "unsure",
            Kind::Tree => "tree",
        }
    }
}

/// A failure: where (the seq the reference names, or for the tree the level) and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub at: i64,
    pub kind: Kind,
}

/// The query columns of a parsed sealed envelope, the core's way: the boundary to the
/// derivation (`otaudit.record.derive_columns`), so that the checks here do not depend
/// on how it is written. None: the envelope is not a valid record.
pub trait Derive: Send + Sync {
    fn columns(&self, envelope: &Value) -> Option<Vec<Cell>>;
}

/// What a checked record tells the rest of verify.
#[derive(Debug, Clone, Copy)]
struct Seen {
    received_ns: i64,
    client: bool,
}

fn is_format_version(v: Option<&Value>) -> bool {
    // The reference compares with `!= 1` in Python, where True and 1.0 equal 1.
    match v {
        Some(Value::Number(n)) => n.as_i64() == Some(1) || n.as_f64() == Some(1.0),
        Some(Value::Bool(b)) => *b,
        _ => false,
    }
}

fn received_ns(v: Option<&Value>) -> Option<i64> {
    let text = v?.as_str()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `otaudit.record.resource_offset`: where `body` starts as the record's resource
/// member in `sealed` (the last `,"resource":` + body + `,"scope":`), -1: nowhere.
pub fn resource_offset(sealed: &[u8], body: &[u8]) -> i64 {
    match memmem::rfind(sealed, &member_of(body)) {
        Some(at) => (at + RESOURCE_KEY.len()) as i64,
        None => -1,
    }
}

/// Whether `stored` is one of the two accepted dedup keys of a record of `pipeline`
/// whose `record` member is `content` (`otaudit.record.dedup_keys`).
fn dedup_key_ok(stored: &[u8], pipeline: &str, content: &[u8]) -> bool {
    if stored.len() != 16 {
        return false;
    }
    let quoted = serde_json::to_string(pipeline).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(b"{\"otaudit\":1,\"pipeline\":");
    h.update(quoted.as_bytes());
    h.update(RECORD_MARKER);
    h.update(content);
    h.update(b"}");
    if h.finalize()[..16] == *stored {
        return true;
    }
    Sha256::digest(content)[..16] == *stored
}

/// `_check_record` of the reference: the row against its stored leaf.
fn check_record(row: &Row, leaf: &[u8], derive: &dyn Derive) -> Result<Seen, Kind> {
    if let Some(kept) = &row.kept {
        match &kept.body {
            None => return Err(Kind::Resource),
            Some(res) if !res.hash_ok => return Err(Kind::Resource),
            Some(_) => {}
        }
    }
    if row.unsure {
        return Err(Kind::Unsure);
    }
    let sealed = &row.sealed;
    let envelope: Value = serde_json::from_slice(sealed).map_err(|_| Kind::Invalid)?;
    if !envelope.is_object() || !is_format_version(envelope.get("otaudit")) {
        return Err(Kind::Invalid);
    }
    let at = memmem::find(sealed, RECORD_MARKER).ok_or(Kind::Invalid)?;
    if sealed.last() != Some(&b'}') || at + RECORD_MARKER.len() > sealed.len() - 1 {
        return Err(Kind::Invalid);
    }
    let content = &sealed[at + RECORD_MARKER.len()..sealed.len() - 1];
    let derived = derive.columns(&envelope).ok_or(Kind::Invalid)?;
    if merkle::leaf_hash(sealed).as_slice() != leaf {
        return Err(Kind::Leaf);
    }
    if let Some(Kept {
        at,
        body: Some(res),
        ..
    }) = &row.kept
    {
        if !res.is_cut_at(sealed, *at) {
            return Err(Kind::Cut);
        }
    }
    compare(&derived, row)?;
    let Some(pipeline) = envelope.get("pipeline").and_then(Value::as_str) else {
        return Err(Kind::Unsure);
    };
    if !dedup_key_ok(&row.dedup_key, pipeline, content) {
        return Err(Kind::DedupKey);
    }
    let received_ns = received_ns(envelope.get("received_at")).ok_or(Kind::Unsure)?;
    Ok(Seen {
        received_ns,
        client: pipeline != OWN_PIPELINE,
    })
}

/// A stored tree node: its index in its level and its hash as stored.
pub type Node = (i64, Vec<u8>);

/// The ranges of seqs whose rows may be absent (the `removals` table: `(first, last)`,
/// inclusive, sorted, not overlapping), and a cursor over them that moves forward with
/// the seqs asked about (one stream's seqs come in order: no search per seq).
#[derive(Debug, Clone)]
pub struct Removed {
    ranges: Arc<[(i64, i64)]>,
    at: usize,
}

impl Removed {
    /// The cursor over `ranges` placed at `seq` (by one binary search).
    pub fn new(ranges: Arc<[(i64, i64)]>, seq: i64) -> Self {
        let at = ranges.partition_point(|&(_, last)| last < seq);
        Removed { ranges, at }
    }

    /// None when `ranges` are as [`Removed`] requires them, else the index of the first
    /// that is not (empty, or not after the one before it).
    pub fn invalid(ranges: &[(i64, i64)]) -> Option<usize> {
        let mut after = i64::MIN;
        for (i, &(first, last)) in ranges.iter().enumerate() {
            if first > last || (i > 0 && first <= after) {
                return Some(i);
            }
            after = last;
        }
        None
    }

    /// Whether `seq` lies in a range. Requires that no seq asked about before is larger.
    pub fn covers(&mut self, seq: i64) -> bool {
        while self
            .ranges
            .get(self.at)
            .is_some_and(|&(_, last)| last < seq)
        {
            self.at += 1;
        }
        self.ranges
            .get(self.at)
            .is_some_and(|&(first, _)| first <= seq)
    }
}

/// Where a stream of records is: its next seq, how many seqs it passed without a row
/// (absent: removed, their leaves still in the tree), and the removed ranges from there.
#[derive(Debug, Clone)]
struct Position {
    expected: i64,
    absent: i64,
    removed: Removed,
}

impl Position {
    fn new(seq: i64, removed: Arc<[(i64, i64)]>) -> Self {
        Position {
            expected: seq,
            absent: 0,
            removed: Removed::new(removed, seq),
        }
    }

    /// Pass the seqs below `to` that have no row: each must be removed (else Missing) and
    /// keep its leaf, the next level-0 node (`leaf` gives its idx; else NoLeaf).
    /// `Ok(Err(fault))`: the position stays at the seq of the fault.
    fn pass<E>(
        &mut self,
        to: i64,
        mut leaf: impl FnMut() -> Result<Option<i64>, E>,
    ) -> Result<Result<(), Fault>, E> {
        while self.expected < to {
            let at = self.expected;
            if !self.removed.covers(at) {
                return Ok(Err(Fault {
                    at,
                    kind: Kind::Missing,
                }));
            }
            if leaf()? != Some(at) {
                return Ok(Err(Fault {
                    at,
                    kind: Kind::NoLeaf,
                }));
            }
            self.expected += 1;
            self.absent += 1;
        }
        Ok(Ok(()))
    }

    /// The leaves left after the last row of a stream that runs to the last record: each
    /// must be the leaf of the next seq, removed. The first that is not: ExtraLeaf (the
    /// seq is not removed: a leaf past the last record), or NoLeaf (removed, no leaf).
    fn rest<E>(
        &mut self,
        mut leaf: impl FnMut() -> Result<Option<i64>, E>,
    ) -> Result<Result<(), Fault>, E> {
        while let Some(idx) = leaf()? {
            let at = self.expected;
            let kind = if !self.removed.covers(at) {
                Kind::ExtraLeaf
            } else if idx != at {
                Kind::NoLeaf
            } else {
                self.expected += 1;
                self.absent += 1;
                continue;
            };
            return Ok(Err(Fault { at, kind }));
        }
        Ok(Ok(()))
    }
}

/// Step 1 of verify over a stream of rows in seq order (`_check_stream`): records
/// `[begin, end)` (`end` None: to the last record, and no leaf may follow), each against
/// the level-0 node of its seq, fed in batches; then [`Records::finish`]. A seq without a
/// row inside a removed range is absent: passed, its leaf still required.
pub struct Records {
    derive: Arc<dyn Derive>,
    begin: i64,
    at: Position,
    bytes: u64,
    /// The level-0 nodes given and not yet matched with a record (idx order), and how
    /// many of them the batch being checked has taken.
    leaves: Vec<Node>,
    taken: usize,
    pub late: Option<LateSigning>,
    pub fault: Option<Fault>,
}

/// Where a batch's structural pass stands after one of its rows.
#[derive(Debug, Clone, Copy)]
struct Mark {
    taken: usize,
    absent: i64,
}

impl Records {
    /// Start at `begin`, with the first level-0 nodes from `begin` on (idx order; more
    /// come with [`Records::add_leaves`]), the rows of seqs in `removed` (inclusive
    /// ranges: see [`Removed`]) allowed to be absent.
    pub fn new(
        derive: Arc<dyn Derive>,
        begin: i64,
        leaves: Vec<Node>,
        late: Option<LateSigning>,
        removed: Arc<[(i64, i64)]>,
    ) -> Self {
        Records {
            derive,
            begin,
            at: Position::new(begin, removed),
            bytes: 0,
            leaves,
            taken: 0,
            late,
            fault: None,
        }
    }

    /// Take the next level-0 nodes (a stream fed in batches gets its leaves in batches).
    pub fn add_leaves(&mut self, leaves: Vec<Node>) {
        self.leaves.extend(leaves);
    }

    /// Seqs passed so far (records checked, all of them good, and absent seqs).
    pub fn count(&self) -> i64 {
        self.at.expected - self.begin
    }

    /// Absent seqs passed so far.
    pub fn absent(&self) -> i64 {
        self.at.absent
    }

    /// Sealed bytes of the records checked so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Check the next rows (in parallel); false once a fault is found (then `fault`).
    ///
    /// No rows: the leaves given since are those of seqs before the next row (or after
    /// the last, below the range's end), taken at once for the absent seqs they are.
    pub fn feed(&mut self, rows: &[Row]) -> bool {
        if self.fault.is_some() {
            return false;
        }
        if rows.is_empty() {
            return self.drain();
        }
        // The stream's own order first: each seq a row with its leaf, or absent.
        let mut structural = None;
        let mut marks: Vec<Mark> = Vec::with_capacity(rows.len());
        for row in rows {
            let (leaves, mut taken) = (&self.leaves, self.taken);
            let next = || -> Result<_, std::convert::Infallible> {
                let idx = leaves.get(taken).map(|(idx, _)| *idx);
                taken += 1;
                Ok(idx)
            };
            let Ok(passed) = self.at.pass(row.seq, next);
            self.taken = taken;
            let expected = self.at.expected;
            let fault = match passed {
                Err(fault) => Some(fault),
                Ok(()) if row.seq != expected => Some(Fault {
                    at: expected,
                    kind: Kind::Missing,
                }),
                Ok(()) => match self.leaves.get(self.taken) {
                    Some((idx, _)) if *idx == row.seq => None,
                    _ => Some(Fault {
                        at: row.seq,
                        kind: Kind::NoLeaf,
                    }),
                },
            };
            if fault.is_some() {
                structural = fault;
                break;
            }
            marks.push(Mark {
                taken: self.taken,
                absent: self.at.absent,
            });
            self.taken += 1;
            self.at.expected += 1;
        }
        let good = &rows[..marks.len()];
        let leaves = &self.leaves;
        let derive = &*self.derive;
        let results: Vec<Result<Seen, Kind>> = good
            .par_iter()
            .zip(marks.par_iter())
            .with_min_len(64)
            .map(|(row, mark)| check_record(row, &leaves[mark.taken].1, derive))
            .collect();
        for ((row, mark), result) in good.iter().zip(&marks).zip(results) {
            match result {
                Ok(seen) => {
                    if let Some(late) = &mut self.late {
                        late.see(row.seq, seen.received_ns, seen.client);
                    }
                    self.bytes += row.sealed.len() as u64;
                }
                Err(kind) => {
                    // Passed: the seqs before this record.
                    self.at.expected = row.seq;
                    self.at.absent = mark.absent;
                    self.fault = Some(Fault { at: row.seq, kind });
                    return false;
                }
            }
        }
        self.fault = structural;
        // The leaves taken are done with: a long stream keeps only those still ahead.
        if self.fault.is_none() {
            self.leaves.drain(..self.taken);
            self.taken = 0;
        }
        self.fault.is_none()
    }

    /// The leaves given without rows taken for absent seqs, up to the first seq that is
    /// not removed (the next row, or [`Records::finish`], judges it).
    fn drain(&mut self) -> bool {
        while let Some((idx, _)) = self.leaves.get(self.taken) {
            let at = self.at.expected;
            if !self.at.removed.covers(at) {
                break;
            }
            if *idx != at {
                // No row comes before this leaf: the removed seq has no leaf.
                self.fault = Some(Fault {
                    at,
                    kind: Kind::NoLeaf,
                });
                return false;
            }
            self.taken += 1;
            self.at.expected += 1;
            self.at.absent += 1;
        }
        self.leaves.drain(..self.taken);
        self.taken = 0;
        true
    }

    /// The end of the stream: with `end`, every seq below it was there or absent;
    /// without, every leaf left over is of an absent seq. Returns the fault, if any.
    pub fn finish(&mut self, end: Option<i64>) -> Option<Fault> {
        if self.fault.is_none() {
            let (leaves, mut taken) = (&self.leaves, self.taken);
            let next = || -> Result<_, std::convert::Infallible> {
                let idx = leaves.get(taken).map(|(idx, _)| *idx);
                taken += 1;
                Ok(idx)
            };
            let Ok(passed) = match end {
                Some(end) => self.at.pass(end, next),
                None => self.at.rest(next),
            };
            self.fault = passed.err();
        }
        self.fault
    }
}

/// Step 1 over records `[lo, hi)` of a stream, on one thread: the reference's
/// `_check_stream` from `lo` on, given that every record before `lo` was good (then the
/// stream's next row is the first with seq `lo` or above, and its next leaf the first
/// with idx `lo` or above). Rows are taken one at a time with the level-0 nodes of the
/// run (idx order) as they come: one for each seq, present or absent; [`Run::end`] then
/// passes the seqs left below `hi`.
#[derive(Debug)]
pub struct Run {
    pub lo: i64,
    at: Position,
    /// What each good record tells the rest of verify, by seq, from `lo` on.
    seen: Vec<(i64, Seen)>,
    /// The absent seqs, as half-open runs `[first, end)` in seq order.
    pub absent_runs: Vec<(i64, i64)>,
    pub bytes: u64,
    pub fault: Option<Fault>,
}

impl Run {
    /// A run starting at `lo`, the rows of seqs in `removed` allowed to be absent.
    pub fn new(lo: i64, removed: Arc<[(i64, i64)]>) -> Self {
        Run {
            lo,
            at: Position::new(lo, removed),
            seen: Vec::new(),
            absent_runs: Vec::new(),
            bytes: 0,
            fault: None,
        }
    }

    /// Seqs passed so far (good records and absent seqs).
    pub fn count(&self) -> i64 {
        self.at.expected - self.lo
    }

    /// Absent seqs passed so far.
    pub fn absent(&self) -> i64 {
        self.at.absent
    }

    /// Check the next row, taking the run's next level-0 nodes from `leaf` (those of
    /// the absent seqs before it, then its own); false once a fault is found (then
    /// `fault`). Err: a node could not be read.
    pub fn push<E>(
        &mut self,
        row: &Row,
        leaf: &mut impl FnMut() -> Result<Option<Node>, E>,
        derive: &dyn Derive,
    ) -> Result<bool, E> {
        if self.fault.is_some() {
            return Ok(false);
        }
        let checked = match self.pass(row.seq, leaf)? {
            Err(fault) => Err(fault),
            Ok(()) if row.seq != self.at.expected => Err(Fault {
                at: self.at.expected,
                kind: Kind::Missing,
            }),
            Ok(()) => match leaf()? {
                Some((idx, hash)) if idx == row.seq => {
                    check_record(row, &hash, derive).map_err(|kind| Fault { at: row.seq, kind })
                }
                _ => Err(Fault {
                    at: row.seq,
                    kind: Kind::NoLeaf,
                }),
            },
        };
        match checked {
            Ok(seen) => {
                self.seen.push((row.seq, seen));
                self.bytes += row.sealed.len() as u64;
                self.at.expected += 1;
                Ok(true)
            }
            Err(fault) => {
                self.fault = Some(fault);
                Ok(false)
            }
        }
    }

    /// The end of the rows of the run, which covers seqs below `hi`: each seq left must
    /// be absent (else Missing, or NoLeaf).
    pub fn end<E>(
        &mut self,
        hi: i64,
        leaf: &mut impl FnMut() -> Result<Option<Node>, E>,
    ) -> Result<(), E> {
        if self.fault.is_none() {
            self.fault = self.pass(hi, leaf)?.err();
        }
        Ok(())
    }

    /// The end of a stream that runs to the last record, after its last row: every
    /// leaf left must be of an absent seq (else ExtraLeaf, or NoLeaf).
    pub fn rest<E>(&mut self, leaf: &mut impl FnMut() -> Result<Option<Node>, E>) -> Result<(), E> {
        if self.fault.is_none() {
            let from = self.at.expected;
            let passed = self.at.rest(|| Ok(leaf()?.map(|(idx, _)| idx)))?;
            self.note_absent(from);
            self.fault = passed.err();
        }
        Ok(())
    }

    /// Pass the absent seqs below `to` (see [`Position::pass`]), noting them.
    fn pass<E>(
        &mut self,
        to: i64,
        leaf: &mut impl FnMut() -> Result<Option<Node>, E>,
    ) -> Result<Result<(), Fault>, E> {
        let from = self.at.expected;
        let passed = self.at.pass(to, || Ok(leaf()?.map(|(idx, _)| idx)))?;
        self.note_absent(from);
        Ok(passed)
    }

    /// Note the seqs passed since `from` as absent.
    fn note_absent(&mut self, from: i64) {
        let to = self.at.expected;
        if to > from {
            match self.absent_runs.last_mut() {
                Some((_, end)) if *end == from => *end = to,
                _ => self.absent_runs.push((from, to)),
            }
        }
    }

    /// Tell `late` the receive time of each good record, in seq order.
    pub fn tell(&self, late: &mut LateSigning) {
        for (seq, seen) in &self.seen {
            late.see(*seq, seen.received_ns, seen.client);
        }
    }
}

/// How many parents [`check_level`] checks at a time.
const LEVEL_CHUNK: usize = 1 << 16;

/// One level of step 2 (`_check_tree`), streamed: the stored nodes of `level` (`stored`
/// yields them, idx >= 0 in order) against the hashes of their children (`children`
/// yields level - 1 the same way) in a tree of `size` leaves, a chunk of parents at a
/// time (hashed in parallel). `Ok(Err(fault))` where the reference fails; `Err`: a
/// node could not be read.
pub fn check_level<E>(
    level: u32,
    size: i64,
    mut children: impl FnMut() -> Result<Option<Node>, E>,
    mut stored: impl FnMut() -> Result<Option<Node>, E>,
) -> Result<Result<(), Fault>, E> {
    let fault = Err(Fault {
        at: i64::from(level),
        kind: Kind::Tree,
    });
    let want = size >> level;
    let mut count = 0i64;
    loop {
        // Pair the children as the reference does, stopping at the first parent >= want.
        let mut pairs = Vec::with_capacity(LEVEL_CHUNK.min(want.max(0) as usize));
        let mut last = false;
        while pairs.len() < LEVEL_CHUNK {
            let (Some((idx, left)), Some((next, right))) = (children()?, children()?) else {
                last = true;
                break;
            };
            if idx % 2 != 0 || next != idx + 1 {
                return Ok(fault);
            }
            let parent = idx / 2;
            if parent >= want {
                last = true;
                break;
            }
            pairs.push((parent, left, right));
        }
        let mut rows = Vec::with_capacity(pairs.len());
        for _ in 0..pairs.len() {
            match stored()? {
                Some(row) => rows.push(row),
                None => return Ok(fault), // a node missing
            }
        }
        let good = pairs
            .par_iter()
            .zip(rows.par_iter())
            .with_min_len(1024)
            .all(|((parent, left, right), (idx, hash))| {
                *idx == *parent
                    && match (
                        <&[u8; 32]>::try_from(left.as_slice()),
                        <&[u8; 32]>::try_from(right.as_slice()),
                    ) {
                        (Ok(l), Ok(r)) => merkle::node_hash(l, r).as_slice() == hash.as_slice(),
                        _ => false,
                    }
            });
        if !good {
            return Ok(fault);
        }
        count += pairs.len() as i64;
        if last {
            break;
        }
    }
    if stored()?.is_some() || count != want {
        return Ok(fault); // a node beyond the tree, or nodes missing
    }
    Ok(Ok(()))
}

mod derive;
pub use derive::Derivation;

#[cfg(test)]
mod tests;
