//! The compiled core of otaudit.
//!
//! Pure functions over bytes: RFC 9162 hashing, and (in the modules added beside this
//! one) OTLP decoding, sealing and verification. The Python package keeps every policy,
//! every message a user reads and all I/O but one: verify reads a SQLite ledger itself
//! ([`verify::sqlite`]), read-only; [`python`] is the thin binding layer, built
//! only with the `python` feature (maturin turns it on), so `cargo test` needs no
//! interpreter.

pub mod canonical;
pub mod columns;
pub mod merkle;
pub mod verify;

// Verify allocates rows on one thread and frees them on others: glibc's malloc spends
// more time on that than SQLite spends reading them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "python")]
mod python;
