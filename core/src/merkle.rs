//! RFC 9162 §2.1.1 hashing: a leaf is `SHA-256(0x00 || data)`, an interior node
//! `SHA-256(0x01 || left || right)`. The Python reference is `otaudit.merkle`.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The leaf hash of `data` (RFC 9162 §2.1.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node over its two children (RFC 9162 §2.1.1).
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn empty_leaf_matches_the_rfc_test_vector() {
        // SHA-256 of the single byte 0x00.
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn node_hash_prefixes_one() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let mut h = Sha256::new();
        h.update([1u8]);
        h.update(a);
        h.update(b);
        let expected: Hash = h.finalize().into();
        assert_eq!(node_hash(&a, &b), expected);
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
    }
}
