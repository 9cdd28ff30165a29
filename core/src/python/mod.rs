//! The Python module `otaudit._core`: each submodule registers its functions.

use pyo3::prelude::*;

mod append;
mod codec;
mod hashing;
mod pgcopy;
mod prepare;
mod verify;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    append::register(m)?;
    codec::register(m)?;
    hashing::register(m)?;
    pgcopy::register(m)?;
    prepare::register(m)?;
    verify::register(m)?;
    Ok(())
}
