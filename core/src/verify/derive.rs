//! The boundary between the checks and the derivation of the query columns.
//!
//! PENDING: the derivation (`crate::columns`, the 21 columns of a parsed sealed envelope,
//! exactly as `otaudit.record.derive_columns`) is not in this crate yet. Until it is,
//! no envelope derives here: every record is flagged and `otaudit.verify` checks the
//! ledger with the Python reference (the same verdicts, at the reference's speed).

use serde_json::Value;

use super::{Cell, Derive};

/// The columns of a record, as `otaudit.record.derive_columns` derives them.
pub struct ColumnsOfRecord;

pub static COLUMNS_OF_RECORD: ColumnsOfRecord = ColumnsOfRecord;

impl Derive for ColumnsOfRecord {
    fn columns(&self, _envelope: &Value) -> Option<Vec<Cell>> {
        None
    }
}
