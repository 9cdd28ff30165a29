//! `SqliteWriter`: the SQLite store's appends, bound and stepped without the GIL
//! (`otaudit.store.sqlite` decides what to write and when).

use std::sync::Mutex;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString, PyTuple};
use rusqlite::types::Value;

use super::codec::PyCodec;
use crate::append::{compress_column, WriteError, Writer};

/// One writing connection to a SQLite ledger. Errors are `sqlite3.IntegrityError` (a
/// constraint or trigger refused a row) or `sqlite3.OperationalError`, with SQLite's
/// message, so that callers handle them as they handle the `sqlite3` module's.
#[pyclass(name = "SqliteWriter", module = "otaudit._core")]
struct PyWriter {
    inner: Mutex<Option<Writer>>,
}

impl PyWriter {
    fn with<T>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Writer) -> Result<T, WriteError> + Send,
    ) -> PyResult<T>
    where
        T: Send,
    {
        let result = py.detach(|| {
            let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            guard.as_ref().map(f)
        });
        match result {
            None => Err(PyRuntimeError::new_err("the ledger writer is closed")),
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => Err(sqlite_error(py, &e)),
        }
    }
}

#[pymethods]
impl PyWriter {
    /// Open the existing database at `path` for writing (`synchronous=FULL`).
    #[new]
    fn new(py: Python<'_>, path: &str) -> PyResult<Self> {
        let writer = py
            .detach(|| Writer::open(path))
            .map_err(|e| sqlite_error(py, &e))?;
        Ok(PyWriter {
            inner: Mutex::new(Some(writer)),
        })
    }

    /// Run statements without parameters (`BEGIN IMMEDIATE`, `COMMIT`, a pragma).
    fn execute(&self, py: Python<'_>, sql: &str) -> PyResult<()> {
        self.with(py, |w| w.execute(sql))
    }

    /// Roll back the open transaction, if any.
    fn rollback(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, Writer::rollback)
    }

    /// Whether a transaction is open.
    #[getter]
    fn in_transaction(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |w| Ok(w.in_transaction()))
    }

    /// Run `sql` once per row (a tuple of None, int, float, str or bytes); the values are
    /// copied first, then the rows written without the GIL. With `compress` (a column
    /// index and a Codec), that column's bytes are written as zstd frames, compressed in
    /// parallel. OverflowError for an int beyond 64 bits, TypeError for any other type,
    /// before anything is written.
    #[pyo3(signature = (sql, rows, compress = None))]
    fn insert(
        &self,
        py: Python<'_>,
        sql: &str,
        rows: Vec<Bound<'_, PyTuple>>,
        compress: Option<(usize, PyRef<'_, PyCodec>)>,
    ) -> PyResult<()> {
        let mut values = rows
            .iter()
            .map(|row| row.iter().map(|v| value(&v)).collect::<PyResult<Vec<_>>>())
            .collect::<PyResult<Vec<_>>>()?;
        let codec = compress
            .as_ref()
            .map(|(column, codec)| (*column, &codec.inner));
        self.with(py, move |w| {
            if let Some((column, codec)) = codec {
                compress_column(&mut values, column, codec)?;
            }
            w.insert(sql, &values)
        })
    }

    /// Close the connection (later calls raise RuntimeError).
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            guard.take();
        });
    }
}

/// The SQLite value of one Python value, as the `sqlite3` module binds it.
fn value(v: &Bound<'_, PyAny>) -> PyResult<Value> {
    if v.is_none() {
        Ok(Value::Null)
    } else if let Ok(b) = v.cast::<PyBytes>() {
        Ok(Value::Blob(b.as_bytes().to_vec()))
    } else if let Ok(s) = v.cast::<PyString>() {
        Ok(Value::Text(s.to_str()?.to_owned()))
    } else if v.is_instance_of::<PyBool>() || v.is_instance_of::<PyInt>() {
        Ok(Value::Integer(v.extract::<i64>()?))
    } else if let Ok(f) = v.cast::<PyFloat>() {
        Ok(Value::Real(f.value()))
    } else {
        Err(PyTypeError::new_err(format!(
            "a ledger row cannot hold a value of type {}",
            v.get_type().name()?
        )))
    }
}

fn sqlite_error(py: Python<'_>, e: &WriteError) -> PyErr {
    let name = if e.constraint {
        "IntegrityError"
    } else {
        "OperationalError"
    };
    match py
        .import("sqlite3")
        .and_then(|m| m.getattr(name))
        .and_then(|cls| cls.call1((e.message.clone(),)))
    {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWriter>()
}
