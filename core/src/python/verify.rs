//! Steps 1 and 2 of `otaudit verify` for Python: `verify_sqlite` reads a SQLite ledger
//! itself; `RecordStream` and `check_tree_level` take rows a Python store read (the
//! PostgreSQL store). All of them run without the GIL. They say where verify fails and
//! what kind of failure it is; `otaudit.verify` words it (the reference's own check,
//! run there).

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::verify::late::{LateRecord, LateSigning};
use crate::verify::sqlite::{self, Ask};
use crate::verify::{self as v, Cell, Fault, Kept, Node, Records, Removed, Resource, Row, Stored};

/// A fault as Python sees it: (seq or tree level, kind name).
type PyFault = Option<(i64, &'static str)>;
/// A late record as Python sees it: (seq, received_ns, checkpoint size, later seq, later ns).
type PyLate = Option<(i64, i64, i64, i64, i64)>;

fn fault(f: Option<Fault>) -> PyFault {
    f.map(|f| (f.at, f.kind.name()))
}

fn late(l: Option<LateRecord>) -> PyLate {
    l.map(|l| {
        (
            l.seq,
            l.received_ns,
            l.checkpoint_size,
            l.later_seq,
            l.later_ns,
        )
    })
}

/// The derivation of the columns under `otaudit.conventions` (the core owns none), as
/// every binding that derives columns takes them (`otaudit.otlp.native.conventions_args`).
fn derivation(py: Python<'_>) -> PyResult<Arc<dyn v::Derive>> {
    let args = py
        .import("otaudit.otlp.native")?
        .call_method0("conventions_args")?;
    let conventions = super::prepare::conventions(
        args.get_item("field_sources")?.extract()?,
        args.get_item("status_result")?.extract()?,
        args.get_item("required_fields")?.extract()?,
        args.get_item("producer_id")?.extract()?,
        args.get_item("producer_seq")?.extract()?,
        args.get_item("service")?.extract()?,
    )?;
    Ok(Arc::new(v::Derivation::new(conventions)))
}

fn late_signing(checkpoint_sizes: Option<Vec<i64>>, max_delay_s: i64) -> Option<LateSigning> {
    checkpoint_sizes.map(|sizes| LateSigning::new(&sizes, max_delay_s))
}

/// The removed ranges as the core holds them; ValueError unless they are `(first, last)`
/// with `first <= last`, each after the one before it.
fn removed_ranges(removed: Vec<(i64, i64)>) -> PyResult<Arc<[(i64, i64)]>> {
    match Removed::invalid(&removed) {
        None => Ok(removed.into()),
        Some(i) => Err(PyValueError::new_err(format!(
            "removed range {i} {:?} is not (first, last) with first <= last after the range \
             before it",
            removed[i]
        ))),
    }
}

/// Steps 1 and 2 over the SQLite ledger at `uri` (a read-only SQLite URI): records
/// `[begin, end)` (their stored frames decompressed, to at most `max_record_bytes`)
/// against their leaves (with `checkpoint_sizes`, also looking for a
/// record signed more than `max_delay_s` late) and, with `tree`, the whole tree.
///
/// With `inclusion` (a tree size and its signed root) and `end`, once the records are
/// good, each leaf of the range is proven into that root from stored nodes. A seq
/// without a row inside a `removed` range (inclusive, sorted) is absent: passed, not
/// checked nor proven, its leaf still required.
///
/// Returns (seqs passed, the records' sealed bytes, the records' fault, the tree's fault,
/// the late record, the first leaf not proven, absent seqs). RuntimeError: the file
/// could not be read as a ledger; ValueError: `removed` is not sorted ranges.
#[pyfunction]
#[pyo3(signature = (uri, begin, end, checkpoint_sizes, max_delay_s, tree, max_record_bytes, progress=None, inclusion=None, removed=Vec::new()))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn verify_sqlite(
    py: Python<'_>,
    uri: &str,
    begin: i64,
    end: Option<i64>,
    checkpoint_sizes: Option<Vec<i64>>,
    max_delay_s: i64,
    tree: bool,
    max_record_bytes: usize,
    progress: Option<Py<PyAny>>,
    inclusion: Option<(i64, Vec<u8>)>,
    removed: Vec<(i64, i64)>,
) -> PyResult<(i64, u64, PyFault, PyFault, PyLate, Option<i64>, i64)> {
    let ask = Ask {
        begin,
        end,
        late: checkpoint_sizes.map(|s| (s, max_delay_s)),
        tree,
        inclusion,
        max_record_bytes,
        removed: removed_ranges(removed)?,
    };
    let derivation = derivation(py)?;
    let uri = uri.to_owned();
    let mut raised: Option<PyErr> = None;
    let out = py.detach(|| {
        // Every 10,000 records: the progress callback, and Ctrl-C (a signal handler
        // that raises) stops verify there.
        let mut tell = |n: i64| {
            Python::attach(|py| {
                py.check_signals()?;
                match &progress {
                    None => Ok(()),
                    Some(f) => f.call1(py, (n,)).map(drop),
                }
            })
            .map_err(|e| raised = Some(e))
            .is_ok()
        };
        sqlite::verify(&uri, &ask, derivation, &mut tell)
    });
    if let Some(e) = raised {
        return Err(e);
    }
    let out = out.map_err(PyRuntimeError::new_err)?;
    Ok((
        out.records,
        out.bytes,
        fault(out.records_fault),
        fault(out.tree_fault),
        late(out.late),
        out.excluded,
        out.absent,
    ))
}

/// What verify costs at the least, for the benchmark: every record row of the SQLite
/// ledger at `uri` read as `verify_sqlite` reads it (with `parse`, its sealed bytes also
/// parsed as JSON), nothing checked. Returns (records, sealed bytes).
#[pyfunction]
fn scan_sqlite(
    py: Python<'_>,
    uri: &str,
    parse: bool,
    max_record_bytes: usize,
) -> PyResult<(i64, u64)> {
    let uri = uri.to_owned();
    py.detach(move || sqlite::scan(&uri, parse, max_record_bytes))
        .map_err(PyRuntimeError::new_err)
}

/// The address of `sqlite3_libversion` in the SQLite library the core links: the same
/// as in the one Python's `sqlite3` uses when they are one library (one copy of SQLite
/// in the process, whose POSIX locks both see).
#[pyfunction]
fn sqlite_entry() -> usize {
    rusqlite::ffi::sqlite3_libversion as *const () as usize
}

fn cell(value: &Bound<'_, PyAny>) -> Cell {
    if value.is_none() {
        Cell::Null
    } else if let Ok(text) = value.cast::<pyo3::types::PyString>() {
        text.to_str()
            .map_or(Cell::Other, |s| Cell::Text(s.to_owned()))
    } else if value.is_exact_instance_of::<pyo3::types::PyInt>() {
        value.extract::<i64>().map_or(Cell::Other, Cell::Int)
    } else {
        Cell::Other
    }
}

fn bytes_of(value: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
    value.cast::<PyBytes>().ok().map(|b| b.as_bytes().to_vec())
}

/// One row from Python: (seq, sealed, dedup_key, columns, kept), `kept` None or
/// (at, hash, body or None); as `otaudit.store.base.StoredRecord` holds them.
/// The kept resources a stream has seen, by hash (a run of records shares one: its
/// SHA-256 and searcher are made once), up to 64 MiB of bodies, then again.
#[derive(Default)]
struct Kepts {
    held: HashMap<Vec<u8>, Arc<Resource>>,
    bytes: usize,
}

impl Kepts {
    fn get(&mut self, hash: &[u8], body: Vec<u8>) -> Arc<Resource> {
        if let Some(res) = self.held.get(hash) {
            if res.body == body {
                return res.clone();
            }
        }
        if self.bytes + body.len() > 64 << 20 {
            self.held.clear();
            self.bytes = 0;
        }
        self.bytes += body.len();
        let res = Arc::new(Resource::new(body, hash, Cell::Null));
        self.held.insert(hash.to_vec(), res.clone());
        res
    }
}

fn row(item: &Bound<'_, PyAny>, kepts: &mut Kepts) -> PyResult<Row> {
    let t = item.cast::<PyTuple>()?;
    if t.len() != 5 {
        return Err(PyValueError::new_err(
            "a row is (seq, sealed, dedup_key, columns, kept)",
        ));
    }
    let seq: i64 = t.get_item(0)?.extract()?;
    let mut unsure = false;
    let mut blob = |v: Bound<'_, PyAny>| {
        bytes_of(&v).unwrap_or_else(|| {
            unsure = true;
            Vec::new()
        })
    };
    let sealed = blob(t.get_item(1)?);
    let dedup_key = blob(t.get_item(2)?);
    let columns: Vec<Cell> = t
        .get_item(3)?
        .try_iter()?
        .map(|c| c.map(|c| cell(&c)))
        .collect::<PyResult<_>>()?;
    let kept = t.get_item(4)?;
    let kept = if kept.is_none() {
        None
    } else {
        let k = kept.cast::<PyTuple>()?;
        let at: i64 = k.get_item(0)?.extract()?;
        let hash = blob(k.get_item(1)?);
        let body = k.get_item(2)?;
        let body = if body.is_none() {
            None
        } else {
            Some(kepts.get(&hash, blob(body)))
        };
        Some(Kept { at, hash, body })
    };
    Ok(Row {
        seq,
        sealed,
        dedup_key,
        columns: Stored::Cells(columns),
        kept,
        unsure,
    })
}

fn nodes(items: &Bound<'_, PyAny>) -> PyResult<Vec<Node>> {
    items
        .try_iter()?
        .map(|item| {
            let item = item?;
            let t = item.cast::<PyTuple>()?;
            let idx: i64 = t.get_item(0)?.extract()?;
            let hash = bytes_of(&t.get_item(1)?)
                .ok_or_else(|| PyValueError::new_err("a node hash is bytes"))?;
            Ok((idx, hash))
        })
        .collect()
}

/// Step 1 over rows a Python store reads: records from `begin` on, fed in seq order
/// with the level-0 nodes from `begin` on (idx order), in batches; the rows of seqs in
/// `removed` may be absent.
#[pyclass(module = "otaudit._core")]
struct RecordStream {
    records: Records,
    kepts: Kepts,
}

#[pymethods]
impl RecordStream {
    /// Start at `begin`; with `checkpoint_sizes`, look for a record signed late; a seq
    /// without a row inside a `removed` range (inclusive, sorted) is absent.
    #[new]
    #[pyo3(signature = (begin, checkpoint_sizes, max_delay_s, removed=Vec::new()))]
    fn new(
        py: Python<'_>,
        begin: i64,
        checkpoint_sizes: Option<Vec<i64>>,
        max_delay_s: i64,
        removed: Vec<(i64, i64)>,
    ) -> PyResult<Self> {
        let late = late_signing(checkpoint_sizes, max_delay_s);
        let removed = removed_ranges(removed)?;
        Ok(RecordStream {
            records: Records::new(derivation(py)?, begin, Vec::new(), late, removed),
            kepts: Kepts::default(),
        })
    }

    /// Check the next `rows` (tuples `(seq, sealed, dedup_key, columns, kept)`, `kept`
    /// None or `(at, hash, body or None)`), after taking the next `leaves` (`(idx,
    /// hash)`); returns the first fault so far, `(seq, kind)`, or None. Without rows,
    /// the leaves are of seqs before the next row (or after the last, below the end):
    /// taken at once for the absent seqs they are.
    fn feed(
        &mut self,
        py: Python<'_>,
        rows: &Bound<'_, PyAny>,
        leaves: &Bound<'_, PyAny>,
    ) -> PyResult<PyFault> {
        let leaves = nodes(leaves)?;
        let rows: Vec<Row> = rows
            .try_iter()?
            .map(|r| row(&r?, &mut self.kepts))
            .collect::<PyResult<_>>()?;
        let records = &mut self.records;
        records.add_leaves(leaves);
        py.detach(|| records.feed(&rows));
        Ok(fault(self.records.fault))
    }

    /// The end of the stream (`end`: the range's end; None: every leaf left over is of
    /// an absent seq); returns (seqs passed, the records' sealed bytes, the fault, the
    /// late record, absent seqs).
    fn finish(&mut self, end: Option<i64>) -> (i64, u64, PyFault, PyLate, i64) {
        let records = &mut self.records;
        let found = records.finish(end);
        let late_found = records.late.as_ref().and_then(|l| l.found);
        (
            records.count(),
            records.bytes(),
            fault(found),
            late(late_found),
            records.absent(),
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(verify_sqlite, m)?)?;
    m.add_function(wrap_pyfunction!(scan_sqlite, m)?)?;
    m.add_function(wrap_pyfunction!(sqlite_entry, m)?)?;
    m.add_class::<RecordStream>()?;
    Ok(())
}
