//! `leaf_hash` and `node_hash` for Python, byte for byte those of `otaudit.merkle`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::merkle;

fn digest(value: &[u8], name: &str) -> PyResult<[u8; 32]> {
    value.try_into().map_err(|_| {
        PyValueError::new_err(format!("{name}: expected 32 bytes, got {}", value.len()))
    })
}

/// The RFC 9162 leaf hash of `data`.
#[pyfunction]
fn leaf_hash<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &merkle::leaf_hash(data))
}

/// The RFC 9162 hash of an interior node over `left` and `right` (32 bytes each).
#[pyfunction]
fn node_hash<'py>(py: Python<'py>, left: &[u8], right: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let hash = merkle::node_hash(&digest(left, "left")?, &digest(right, "right")?);
    Ok(PyBytes::new(py, &hash))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(leaf_hash, m)?)?;
    m.add_function(wrap_pyfunction!(node_hash, m)?)?;
    Ok(())
}
