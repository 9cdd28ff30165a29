//! How a SQLite ledger keeps a record's bytes: as they are, or as one zstd frame.
//!
//! A stored value that starts with the zstd magic number is a standard zstd frame
//! (content size in its header, no checksum: the leaf hash covers the bytes); its
//! header names the dictionary it was compressed with by the dictionary's own zstd
//! ID (0: none), so any zstd tool given that dictionary reads it. Anything else is
//! the bytes themselves (rows written before compression, and every PostgreSQL row).
//! A sealed record is canonical JSON, which starts with `{`, never with the magic.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use rayon::prelude::*;
use zstd::zstd_safe::{CCtx, CDict, DCtx, DDict};

/// The four bytes every zstd frame starts with (RFC 8878 §3.1.1).
pub const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Why stored bytes could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The frame names a dictionary the codec does not hold.
    UnknownDictionary(u32),
    /// The frame's header does not give its content size, or gives more than allowed.
    BadSize {
        declared: Option<u64>,
        max_bytes: usize,
    },
    /// zstd refused the frame (corrupt, truncated, or not decodable with its dictionary).
    Corrupt(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::UnknownDictionary(id) => {
                write!(
                    f,
                    "its zstd frame names dictionary {id}, which the ledger does not hold"
                )
            }
            CodecError::BadSize { declared: None, .. } => {
                write!(f, "its zstd frame does not declare its size")
            }
            CodecError::BadSize {
                declared: Some(n),
                max_bytes,
            } => write!(
                f,
                "its zstd frame declares {n} bytes, over the limit of {max_bytes}"
            ),
            CodecError::Corrupt(why) => write!(f, "its zstd frame is corrupt: {why}"),
        }
    }
}

thread_local! {
    /// One decompression context per thread, made once (making one costs more than
    /// decompressing a record).
    static DCTX: std::cell::RefCell<DCtx<'static>> = std::cell::RefCell::new(DCtx::create());
    /// One compression context per thread, kept between calls (creating one allocates).
    static CCTX: std::cell::RefCell<CCtx<'static>> = std::cell::RefCell::new(CCtx::create());
}

/// Whether stored bytes are a zstd frame (else they are the record's bytes as they are).
pub fn is_frame(stored: &[u8]) -> bool {
    stored.starts_with(&MAGIC)
}

/// The zstd ID a trained dictionary carries (None: not a zstd dictionary, or ID 0).
pub fn dictionary_id(dictionary: &[u8]) -> Option<u32> {
    zstd::zstd_safe::get_dict_id_from_dict(dictionary).map(|id| id.get())
}

/// The dictionary a frame names (0: none).
pub fn frame_dictionary(stored: &[u8]) -> u32 {
    zstd::zstd_safe::get_dict_id_from_frame(stored).map_or(0, |id| id.get())
}

/// Train a dictionary of at most `max_bytes` from sample records.
pub fn train(samples: &[&[u8]], max_bytes: usize) -> std::io::Result<Vec<u8>> {
    zstd::dict::from_samples(samples, max_bytes)
}

/// Compresses with at most one dictionary and reads back frames of any it holds.
pub struct Codec {
    level: i32,
    encoder: Option<(u32, CDict<'static>)>,
    decoders: HashMap<u32, DDict<'static>>,
}

impl Codec {
    /// A codec compressing at `level`, with no dictionary yet.
    pub fn new(level: i32) -> Self {
        Codec {
            level,
            encoder: None,
            decoders: HashMap::new(),
        }
    }

    /// Hold `dictionary` for reading (its zstd ID must be `id`); with `encode`, compress
    /// with it from now on. False when the bytes are not a dictionary with that ID.
    pub fn add_dictionary(&mut self, id: u32, dictionary: &[u8], encode: bool) -> bool {
        if id == 0 || dictionary_id(dictionary) != Some(id) {
            return false;
        }
        // zstd refuses (a null pointer, not a panic here) a dictionary whose tables are bad.
        let Some(ddict) = DDict::try_create(dictionary) else {
            return false;
        };
        if encode {
            let Some(cdict) = CDict::try_create(dictionary, self.level) else {
                return false;
            };
            self.encoder = Some((id, cdict));
        }
        self.decoders.insert(id, ddict);
        true
    }

    /// Whether the codec holds dictionary `id` for reading.
    pub fn has_dictionary(&self, id: u32) -> bool {
        self.decoders.contains_key(&id)
    }

    /// The dictionary new frames are compressed with (0: none).
    pub fn encoding_dictionary(&self) -> u32 {
        self.encoder.as_ref().map_or(0, |(id, _)| *id)
    }

    /// One zstd frame per item, compressed in parallel.
    pub fn compress_many(&self, items: &[&[u8]]) -> std::io::Result<Vec<Vec<u8>>> {
        items.par_iter().map(|item| self.compress(item)).collect()
    }

    /// One zstd frame of `item`, on this thread.
    pub fn compress(&self, item: &[u8]) -> std::io::Result<Vec<u8>> {
        CCTX.with(|cctx| {
            let mut cctx = cctx.borrow_mut();
            let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(item.len()));
            match &self.encoder {
                Some((_, cdict)) => cctx.compress_using_cdict(&mut out, item, cdict),
                None => cctx.compress(&mut out, item, self.level),
            }
            .map_err(|code| std::io::Error::other(zstd::zstd_safe::get_error_name(code)))?;
            Ok(out)
        })
    }

    /// The record's bytes: `stored` itself unless it is a zstd frame, which is
    /// decompressed (at most `max_bytes`).
    pub fn decode<'a>(
        &self,
        stored: &'a [u8],
        max_bytes: usize,
    ) -> Result<Cow<'a, [u8]>, CodecError> {
        if !is_frame(stored) {
            return Ok(Cow::Borrowed(stored));
        }
        let mut out = Vec::new();
        self.decompress(stored, max_bytes, 0, &mut out)?;
        Ok(Cow::Owned(out))
    }

    /// Decompress the frame `stored` (at most `max_bytes`) into `out` (emptied first),
    /// with room for `spare` more bytes after them.
    pub fn decompress(
        &self,
        stored: &[u8],
        max_bytes: usize,
        spare: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let declared = zstd::zstd_safe::get_frame_content_size(stored)
            .ok()
            .flatten();
        let size = match declared {
            Some(n) if n <= max_bytes as u64 => n as usize,
            _ => {
                return Err(CodecError::BadSize {
                    declared,
                    max_bytes,
                })
            }
        };
        let id = frame_dictionary(stored);
        let ddict = if id == 0 {
            None
        } else {
            Some(
                self.decoders
                    .get(&id)
                    .ok_or(CodecError::UnknownDictionary(id))?,
            )
        };
        out.clear();
        out.reserve_exact(size.saturating_add(spare));
        DCTX.with_borrow_mut(|dctx| {
            match ddict {
                Some(d) => dctx.decompress_using_ddict(out, stored, d),
                None => dctx.decompress(out, stored),
            }
            .map_err(|code| CodecError::Corrupt(zstd::zstd_safe::get_error_name(code).to_string()))
        })?;
        if out.len() != size {
            return Err(CodecError::Corrupt(format!(
                "it declares {size} bytes but holds {}",
                out.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                format!(
                    "{{\"otaudit\":1,\"pipeline\":\"otlp\",\"received_at\":\"{}\",\"record\":{{\"attributes\":{{\"audit.action\":\"role_update\",\"enduser.id\":\"user-{}\"}},\"name\":\"PUT /api/v2/users/{}/role\"}}}}",
                    1_700_000_000_000_000_000u64 + i as u64,
                    i % 97,
                    i % 13
                )
                .into_bytes()
            })
            .collect()
    }

    #[test]
    fn plain_bytes_pass_through() {
        let codec = Codec::new(3);
        assert_eq!(
            codec.decode(b"{\"a\":1}", 100).unwrap().as_ref(),
            b"{\"a\":1}"
        );
    }

    #[test]
    fn frames_round_trip_with_and_without_a_dictionary() {
        let recs = records(2000);
        let items: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        let mut codec = Codec::new(3);
        let plain = codec.compress_many(&items).unwrap();
        assert!(plain
            .iter()
            .all(|f| is_frame(f) && frame_dictionary(f) == 0));
        let dict = train(&items, 16 * 1024).unwrap();
        let id = dictionary_id(&dict).unwrap();
        assert!(codec.add_dictionary(id, &dict, true));
        let framed = codec.compress_many(&items).unwrap();
        assert!(framed.iter().all(|f| frame_dictionary(f) == id));
        let with: usize = framed.iter().map(Vec::len).sum();
        let without: usize = plain.iter().map(Vec::len).sum();
        assert!(with < without);
        for (frame, original) in framed.iter().chain(plain.iter()).zip(items.iter().cycle()) {
            assert_eq!(codec.decode(frame, 1 << 20).unwrap().as_ref(), *original);
        }
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let recs = records(1);
        let codec = Codec::new(3);
        let frame = codec
            .compress_many(&[recs[0].as_slice()])
            .unwrap()
            .remove(0);
        assert!(matches!(
            codec.decode(&frame, 10),
            Err(CodecError::BadSize { .. })
        ));
        let mut cut = frame.clone();
        cut.truncate(frame.len() - 3);
        assert!(matches!(
            codec.decode(&cut, 1 << 20),
            Err(CodecError::Corrupt(_))
        ));
        assert!(codec.decode(&MAGIC, 1 << 20).is_err());
        assert!(!Codec::new(3).add_dictionary(7, b"not a dictionary", false));
        let samples = records(500);
        let views: Vec<&[u8]> = samples.iter().map(|r| r.as_slice()).collect();
        let dict = train(&views, 4096).unwrap();
        let mut broken = dict[..8].to_vec();
        broken.resize(dict.len(), 0);
        let id = dictionary_id(&dict).unwrap();
        assert!(!Codec::new(3).add_dictionary(id, &broken, true));
    }
}
