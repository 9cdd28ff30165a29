//! PostgreSQL's binary COPY format (the `COPY ... FROM STDIN (FORMAT BINARY)` stream)
//! for the rows of an append, built in one buffer.
//!
//! The stream is the 11-byte signature, a 32-bit flags field and header extension
//! length (both 0), then per row a 16-bit field count and per field a 32-bit length
//! (-1: NULL) and the value in its type's binary form, then the 16-bit trailer -1.
//! `hstore` fields are built from the JSON text of a flat object of strings (the
//! store's flattened attributes): a 32-bit pair count, then per pair the key's length
//! and bytes and the value's length (-1: NULL) and bytes, as `hstore_recv` reads them.

/// The stream's fixed start: signature, flags, header extension length.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The stream's end.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// One field's value, borrowed from the caller.
pub enum Field<'a> {
    Null,
    Int8(i64),
    Int4(i32),
    Bytes(&'a [u8]),
    /// The JSON text of a flat object whose values are strings (or null).
    Hstore(&'a str),
}

/// Why a row cannot be written.
#[derive(Debug, PartialEq, Eq)]
pub enum CopyError {
    /// An hstore field is not the JSON text of a flat object of strings.
    NotFlat(String),
    /// A value is longer than a field can say (2^31 - 1 bytes).
    TooLong,
}

fn length(n: usize) -> Result<[u8; 4], CopyError> {
    i32::try_from(n)
        .map(i32::to_be_bytes)
        .map_err(|_| CopyError::TooLong)
}

/// Append one row to `out`.
pub fn write_row(out: &mut Vec<u8>, fields: &[Field<'_>]) -> Result<(), CopyError> {
    let count = i16::try_from(fields.len()).map_err(|_| CopyError::TooLong)?;
    out.extend_from_slice(&count.to_be_bytes());
    for field in fields {
        match field {
            Field::Null => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Field::Int8(v) => {
                out.extend_from_slice(&8i32.to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            Field::Int4(v) => {
                out.extend_from_slice(&4i32.to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            Field::Bytes(b) => {
                out.extend_from_slice(&length(b.len())?);
                out.extend_from_slice(b);
            }
            Field::Hstore(text) => write_hstore(out, text)?,
        }
    }
    Ok(())
}

fn write_hstore(out: &mut Vec<u8>, text: &str) -> Result<(), CopyError> {
    let pairs: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| CopyError::NotFlat(e.to_string()))?;
    let at = out.len();
    out.extend_from_slice(&[0; 4]); // the field's length, known at the end
    out.extend_from_slice(&length(pairs.len())?);
    for (key, value) in &pairs {
        out.extend_from_slice(&length(key.len())?);
        out.extend_from_slice(key.as_bytes());
        match value {
            serde_json::Value::Null => out.extend_from_slice(&(-1i32).to_be_bytes()),
            serde_json::Value::String(s) => {
                out.extend_from_slice(&length(s.len())?);
                out.extend_from_slice(s.as_bytes());
            }
            other => {
                return Err(CopyError::NotFlat(format!(
                    "{key:?} is {other}, not a string"
                )))
            }
        }
    }
    let size = length(out.len() - at - 4)?;
    out[at..at + 4].copy_from_slice(&size);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_its_count_then_length_prefixed_fields() {
        let mut out = Vec::new();
        write_row(
            &mut out,
            &[
                Field::Int8(7),
                Field::Null,
                Field::Bytes(b"ab"),
                Field::Int4(-2),
            ],
        )
        .unwrap();
        let mut want = vec![0, 4, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7];
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, b'a', b'b']);
        want.extend_from_slice(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(out, want);
    }

    #[test]
    fn an_hstore_is_its_pairs() {
        let mut out = Vec::new();
        write_row(&mut out, &[Field::Hstore(r#"{"k":"v","n":null}"#)]).unwrap();
        let want: Vec<u8> = [
            &[0u8, 1][..],
            &[0, 0, 0, 23],
            &[0, 0, 0, 2],
            &[0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v'],
            &[0, 0, 0, 1, b'n', 0xff, 0xff, 0xff, 0xff],
        ]
        .concat();
        assert_eq!(out, want);
    }

    #[test]
    fn an_hstore_of_anything_but_strings_is_refused() {
        let mut out = Vec::new();
        for bad in [r#"{"k":1}"#, "[1]", "{", r#"{"k":{"a":"b"}}"#] {
            assert!(matches!(
                write_row(&mut out, &[Field::Hstore(bad)]),
                Err(CopyError::NotFlat(_))
            ));
        }
    }
}
