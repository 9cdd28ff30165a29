//! The stored bytes of a SQLite ledger's record rows read back as
//! `otaudit.store.codec.StoredBytes.decode` reads them: bytes that are not a zstd frame
//! as they are; a frame decompressed, with the dictionary its header names fetched from
//! the `dictionaries` table the first time a frame names it; a frame that cannot be read
//! (altered, or naming a dictionary the ledger does not hold or holds altered) as it is,
//! for the checks to find it is not a valid record, as the reference does.

use std::collections::HashSet;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Statement};

use crate::codec::{self, Codec};

/// Decodes the stored bytes of the rows one connection reads (one per thread: its
/// dictionaries are its own, and zstd's decompression context is per thread).
pub struct Frames<'c> {
    /// None: the ledger has no `dictionaries` table (every dictionary is missing).
    fetch: Option<Statement<'c>>,
    codec: Codec,
    /// Dictionaries fetched once already (held, or missing: not fetched again).
    tried: HashSet<u32>,
    /// Dictionaries whose row the reference reads differently (a body not a BLOB).
    odd: HashSet<u32>,
    max_bytes: usize,
}

impl<'c> Frames<'c> {
    /// Frames of at most `max_bytes` decompressed (`otaudit.store.codec.MAX_RECORD_BYTES`).
    pub fn new(conn: &'c Connection, max_bytes: usize) -> Self {
        Frames {
            fetch: conn
                .prepare("SELECT body FROM dictionaries WHERE id = ?1")
                .ok(),
            codec: Codec::new(0),
            tried: HashSet::new(),
            odd: HashSet::new(),
            max_bytes,
        }
    }

    /// The bytes a row keeps, decompressed if they are a frame (with room for `spare`
    /// more bytes), and whether the reference might read them differently (its
    /// dictionary's row is not a BLOB).
    pub fn decode(&mut self, stored: &[u8], spare: usize) -> (Vec<u8>, bool) {
        if !codec::is_frame(stored) {
            return (stored.to_vec(), false);
        }
        let wanted = codec::frame_dictionary(stored);
        if wanted != 0 && !self.codec.has_dictionary(wanted) && self.tried.insert(wanted) {
            self.fetch_dictionary(wanted);
        }
        let odd = !self.odd.is_empty() && self.odd.contains(&wanted);
        let mut out = Vec::new();
        match self
            .codec
            .decompress(stored, self.max_bytes, spare, &mut out)
        {
            Ok(()) => (out, odd),
            Err(_) => (stored.to_vec(), odd),
        }
    }

    /// Hold dictionary `id` if the ledger has it and it is one (as the reference's fetch:
    /// the first row with that id; an error reading it is no dictionary).
    fn fetch_dictionary(&mut self, id: u32) {
        let Some(stmt) = self.fetch.as_mut() else {
            return;
        };
        let Ok(mut rows) = stmt.query([i64::from(id)]) else {
            return;
        };
        let Ok(Some(row)) = rows.next() else {
            return;
        };
        match row.get_ref(0) {
            Ok(ValueRef::Blob(body)) => {
                self.codec.add_dictionary(id, body, false);
            }
            _ => {
                self.odd.insert(id);
            }
        }
    }
}
