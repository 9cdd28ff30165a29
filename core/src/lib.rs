//! The compiled core of otaudit.
//!
//! Pure functions over bytes: RFC 9162 hashing, and (in the modules added beside this
//! one) OTLP decoding, sealing and verification. The Python package keeps every policy,
//! every message a user reads and all I/O but two: verify reads a SQLite ledger itself
//! ([`verify::sqlite`]), read-only, and the SQLite store's appends run their statements
//! here ([`append`]); [`python`] is the thin binding layer, built
//! only with the `python` feature (maturin turns it on), so `cargo test` needs no
//! interpreter.

/// Small, short-lived allocations dominate decoding and sealing; mimalloc serves them
/// faster than the system allocator (Rust allocations only: Python objects keep Python's),
/// and verify's rows, made on its reader thread and freed on the others, too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod append;
pub mod canonical;
pub mod codec;
pub mod columns;
pub mod merkle;
pub mod otlp;
pub mod pgcopy;
pub mod redact;
pub mod select;
pub mod verify;

#[cfg(feature = "python")]
mod python;
