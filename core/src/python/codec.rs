//! The stored-bytes codec for Python (`otaudit.store.codec` holds the policy).

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::codec;

/// Compresses records into zstd frames (with at most one dictionary) and reads back
/// frames compressed with any dictionary it holds; bytes that are not a frame read back
/// as they are.
#[pyclass(name = "Codec", module = "otaudit._core")]
pub(crate) struct PyCodec {
    pub(crate) inner: codec::Codec,
}

#[pymethods]
impl PyCodec {
    #[new]
    #[pyo3(signature = (level = 3))]
    fn new(level: i32) -> Self {
        PyCodec {
            inner: codec::Codec::new(level),
        }
    }

    /// Hold `dictionary` (zstd ID `id`) for reading; with `encode`, compress with it.
    fn add_dictionary(&mut self, id: u32, dictionary: &[u8], encode: bool) -> bool {
        self.inner.add_dictionary(id, dictionary, encode)
    }

    /// Whether the codec holds dictionary `id`.
    fn has_dictionary(&self, id: u32) -> bool {
        self.inner.has_dictionary(id)
    }

    /// The dictionary new frames are compressed with (0: none).
    #[getter]
    fn encoding_dictionary(&self) -> u32 {
        self.inner.encoding_dictionary()
    }

    /// One zstd frame per item, compressed in parallel without the GIL.
    fn compress_many<'py>(
        &self,
        py: Python<'py>,
        items: Vec<Bound<'py, PyBytes>>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let inner = &self.inner;
        let items = owned(&items);
        let frames = py
            .detach(|| {
                let views: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
                inner.compress_many(&views)
            })
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(frames.iter().map(|f| PyBytes::new(py, f)).collect())
    }

    /// The record's bytes of `stored` (itself unless a zstd frame); ValueError saying why
    /// a frame cannot be read.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        stored: Bound<'py, PyBytes>,
        max_bytes: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data = stored.as_bytes();
        if !codec::is_frame(data) {
            return Ok(stored);
        }
        match self.inner.decode(data, max_bytes) {
            Ok(out) => Ok(PyBytes::new(py, &out)),
            Err(e) => Err(PyValueError::new_err(e.to_string())),
        }
    }
}

/// Copies of the bytes, to work on without the GIL.
fn owned(items: &[Bound<'_, PyBytes>]) -> Vec<Vec<u8>> {
    items.iter().map(|b| b.as_bytes().to_vec()).collect()
}

/// Whether stored bytes are a zstd frame.
#[pyfunction]
fn is_frame(stored: &[u8]) -> bool {
    codec::is_frame(stored)
}

/// The dictionary a frame names (0: none).
#[pyfunction]
fn frame_dictionary(stored: &[u8]) -> u32 {
    codec::frame_dictionary(stored)
}

/// The zstd ID of a dictionary (None: not a zstd dictionary).
#[pyfunction]
fn dictionary_id(dictionary: &[u8]) -> Option<u32> {
    codec::dictionary_id(dictionary)
}

/// A zstd dictionary of at most `max_bytes` trained on `samples` (without the GIL).
#[pyfunction]
fn train_dictionary<'py>(
    py: Python<'py>,
    samples: Vec<Bound<'py, PyBytes>>,
    max_bytes: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let samples = owned(&samples);
    let dict = py
        .detach(|| {
            let views: Vec<&[u8]> = samples.iter().map(Vec::as_slice).collect();
            codec::train(&views, max_bytes)
        })
        .map_err(|e| PyValueError::new_err(format!("training a dictionary failed: {e}")))?;
    Ok(PyBytes::new(py, &dict))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCodec>()?;
    m.add_function(wrap_pyfunction!(is_frame, m)?)?;
    m.add_function(wrap_pyfunction!(frame_dictionary, m)?)?;
    m.add_function(wrap_pyfunction!(dictionary_id, m)?)?;
    m.add_function(wrap_pyfunction!(train_dictionary, m)?)?;
    Ok(())
}
