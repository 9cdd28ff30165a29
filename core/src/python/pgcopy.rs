//! `pg_copy_binary` for Python: an append's rows as one binary COPY stream.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString, PyTuple};

use crate::pgcopy::{self, CopyError, Field};

fn field<'a>(value: &'a Bound<'_, PyAny>, kind: u8) -> PyResult<Field<'a>> {
    if value.is_none() {
        return Ok(Field::Null);
    }
    Ok(match kind {
        b'q' => Field::Int8(value.cast::<PyInt>()?.extract()?),
        b'i' => Field::Int4(value.cast::<PyInt>()?.extract()?),
        b'b' => Field::Bytes(value.cast::<PyBytes>()?.as_bytes()),
        b't' => Field::Bytes(value.cast::<PyString>()?.to_str()?.as_bytes()),
        b'h' => Field::Hstore(value.cast::<PyString>()?.to_str()?),
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown field kind {:?}",
                other as char
            )))
        }
    })
}

/// The binary COPY stream (signature, rows, trailer) of `rows`, each a tuple with one
/// value per letter of `kinds`: `q` bigint, `i` integer, `b` bytea, `t` text, `h`
/// hstore given as the JSON text of a flat object of strings; None is NULL.
#[pyfunction]
fn pg_copy_binary<'py>(
    py: Python<'py>,
    rows: Vec<Bound<'py, PyTuple>>,
    kinds: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let kinds = kinds.as_bytes();
    let mut out = Vec::with_capacity(pgcopy::HEADER.len() + rows.len() * 1024);
    out.extend_from_slice(pgcopy::HEADER);
    for (n, row) in rows.iter().enumerate() {
        if row.len() != kinds.len() {
            return Err(PyValueError::new_err(format!(
                "row {n} has {} values, expected {}",
                row.len(),
                kinds.len()
            )));
        }
        let values: Vec<Bound<'py, PyAny>> = row.iter().collect();
        let mut fields = Vec::with_capacity(kinds.len());
        for (value, kind) in values.iter().zip(kinds) {
            fields.push(
                field(value, *kind).map_err(|e| PyTypeError::new_err(format!("row {n}: {e}")))?,
            );
        }
        pgcopy::write_row(&mut out, &fields).map_err(|e| match e {
            CopyError::NotFlat(why) => {
                PyValueError::new_err(format!("row {n}: an hstore value is not flat: {why}"))
            }
            CopyError::TooLong => PyValueError::new_err(format!("row {n}: a value is too long")),
        })?;
    }
    out.extend_from_slice(pgcopy::TRAILER);
    Ok(PyBytes::new(py, &out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pg_copy_binary, m)?)?;
    Ok(())
}
