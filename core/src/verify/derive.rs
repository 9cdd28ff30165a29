//! The boundary between the checks and the derivation of the query columns: the
//! columns of a parsed sealed envelope by [`crate::columns::derive`] (the same derivation
//! as sealing, held equal to `otaudit.record.derive_columns`), as [`Cell`]s in the order
//! of `otaudit.record.COLUMN_NAMES`.

use serde_json::Value;

use super::{Cell, Derive};
use crate::columns::{self, Conventions};

/// The columns of a record under `conventions` (`otaudit.conventions`).
pub struct Derivation {
    conventions: Conventions,
}

impl Derivation {
    pub fn new(conventions: Conventions) -> Self {
        Derivation { conventions }
    }
}

fn text(value: Option<String>) -> Cell {
    value.map_or(Cell::Null, Cell::Text)
}

impl Derive for Derivation {
    fn columns(&self, envelope: &Value) -> Option<Vec<Cell>> {
        let c = columns::derive(envelope, &self.conventions).ok()?;
        let mut out = Vec::with_capacity(super::COLUMNS);
        out.extend([
            Cell::Text(c.signal),
            Cell::Int(c.time_unix_nano),
            Cell::Text(c.timestamp),
            Cell::Text(c.received_at),
            Cell::Text(c.pipeline),
            Cell::Text(c.trace_id),
            Cell::Text(c.span_id),
            Cell::Text(c.name),
            text(c.service),
        ]);
        out.extend(c.fields.into_iter().map(text));
        out.extend([
            text(c.producer),
            c.producer_seq.map_or(Cell::Null, Cell::Int),
            text(c.missing),
            Cell::Text(c.attributes),
            Cell::Text(c.resource),
        ]);
        Some(out)
    }
}
