//! The last step of `verify_range`: each checked leaf proven into the signed root with an
//! RFC 9162 inclusion proof built from stored nodes. The Python references are
//! `otaudit.merkle` (`inclusion_proof_nodes`, `subtree_ranges`, `root_from_subtrees`,
//! `verify_inclusion`) and `otaudit.tree.range_keys`; this module says which leaf is the
//! first whose proof fails (a node missing or not a hash, or the wrong root), and the
//! Python side words it.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::merkle::{self, Hash};

/// A stored node's key: (level, idx).
pub type Key = (u32, u64);

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The leaf ranges of the inclusion proof of `index` in a tree of `size` leaves, in proof
/// order (`otaudit.merkle.inclusion_proof_nodes`). Requires `index < size`.
pub fn inclusion_proof_nodes(index: u64, size: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let (mut begin, mut end) = (0, size);
    while end - begin > 1 {
        let mid = begin + split_point(end - begin);
        if index < mid {
            ranges.push((mid, end));
            end = mid;
        } else {
            ranges.push((begin, mid));
            begin = mid;
        }
    }
    ranges.reverse();
    ranges
}

/// The stored nodes whose fold is the hash of leaves `[begin, end)`, largest first
/// (`otaudit.tree.range_keys`).
pub fn range_keys(begin: u64, end: u64) -> Vec<Key> {
    let size = end - begin;
    let mut keys = Vec::new();
    let mut at = 0u64;
    for bit in (0..64u32).rev() {
        if (size >> bit) & 1 == 1 {
            keys.push((bit, (begin + at) >> bit));
            at += 1 << bit;
        }
    }
    keys
}

/// The root implied by an inclusion proof (RFC 9162 §2.1.3.2; the proof has the length
/// [`inclusion_proof_nodes`] gives).
fn root_from_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash]) -> Hash {
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if fn_ & 1 == 1 || fn_ == sn {
            r = merkle::node_hash(p, &r);
            while fn_ != 0 && fn_ & 1 == 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = merkle::node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    r
}

/// Every stored node the proofs of the leaves `indexes` (each below `size`) in a tree of
/// `size` leaves read.
pub fn needed(indexes: &[u64], size: u64) -> HashSet<Key> {
    indexes
        .par_iter()
        .fold(HashSet::new, |mut set, &index| {
            for (b, e) in inclusion_proof_nodes(index, size) {
                set.extend(range_keys(b, e));
            }
            set
        })
        .reduce(HashSet::new, |mut a, b| {
            a.extend(b);
            a
        })
}

/// Whether leaf `index` (hash `leaf`) is proven into `root` of a tree of `size` leaves
/// by the stored `nodes` as the reference builds the proof (each range's hash folded from
/// its stored pieces).
fn included(
    leaf: &[u8],
    index: u64,
    size: u64,
    root: &[u8],
    nodes: &HashMap<Key, Vec<u8>>,
) -> bool {
    let Ok(leaf) = <&Hash>::try_from(leaf) else {
        return false;
    };
    let mut proof = Vec::new();
    for (b, e) in inclusion_proof_nodes(index, size) {
        let mut hash: Option<Hash> = None;
        for key in range_keys(b, e).iter().rev() {
            let Some(Ok(piece)) = nodes.get(key).map(|h| <&Hash>::try_from(h.as_slice())) else {
                return false; // missing, or not a hash
            };
            hash = Some(match hash {
                None => *piece,
                Some(right) => merkle::node_hash(piece, &right),
            });
        }
        match hash {
            Some(h) => proof.push(h),
            None => return false,
        }
    }
    root_from_inclusion(leaf, index, size, &proof).as_slice() == root
}

/// The first of `leaves` (`(idx, hash)`, in idx order) whose inclusion proof from the
/// stored `nodes` does not lead to `root` of a tree of `size` leaves, or None.
pub fn first_excluded(
    leaves: &[(i64, Vec<u8>)],
    size: u64,
    root: &[u8],
    nodes: &HashMap<Key, Vec<u8>>,
) -> Option<i64> {
    leaves
        .par_iter()
        .with_min_len(256)
        .find_first(|(idx, leaf)| {
            *idx < 0 || *idx as u64 >= size || !included(leaf, *idx as u64, size, root, nodes)
        })
        .map(|(idx, _)| *idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mth(leaves: &[Hash]) -> Hash {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let k = split_point(leaves.len() as u64) as usize;
        merkle::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
    }

    /// Every perfect aligned subtree of `leaves`, as a store keeps them.
    fn stored(leaves: &[Hash]) -> HashMap<Key, Vec<u8>> {
        let mut nodes = HashMap::new();
        let mut level: Vec<Hash> = leaves.to_vec();
        let mut height = 0;
        while !level.is_empty() {
            for (i, h) in level.iter().enumerate() {
                nodes.insert((height, i as u64), h.to_vec());
            }
            level = level
                .chunks_exact(2)
                .map(|p| merkle::node_hash(&p[0], &p[1]))
                .collect();
            height += 1;
        }
        nodes
    }

    #[test]
    fn every_leaf_of_every_small_tree_is_included() {
        for size in 1..40u64 {
            let leaves: Vec<Hash> = (0..size)
                .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
                .collect();
            let root = mth(&leaves);
            let nodes = stored(&leaves);
            let rows: Vec<(i64, Vec<u8>)> = leaves
                .iter()
                .enumerate()
                .map(|(i, h)| (i as i64, h.to_vec()))
                .collect();
            assert_eq!(
                first_excluded(&rows, size, &root, &nodes),
                None,
                "size {size}"
            );
            let want = needed(&(0..size).collect::<Vec<_>>(), size);
            assert!(want.iter().all(|k| nodes.contains_key(k)));
        }
    }

    #[test]
    fn a_changed_or_missing_node_excludes_the_first_leaf_that_reads_it() {
        let leaves: Vec<Hash> = (0..21u64)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect();
        let root = mth(&leaves);
        let rows: Vec<(i64, Vec<u8>)> = leaves
            .iter()
            .enumerate()
            .map(|(i, h)| (i as i64, h.to_vec()))
            .collect();
        let mut nodes = stored(&leaves);
        nodes.get_mut(&(2, 2)).unwrap()[0] ^= 1; // leaves 8..12: the sibling of 12..16
        assert_eq!(first_excluded(&rows, 21, &root, &nodes), Some(12));
        assert_eq!(first_excluded(&rows[14..], 21, &root, &nodes), Some(14));
        let mut nodes = stored(&leaves);
        nodes.remove(&(0, 20)); // in the right sibling (16, 21) of every leaf of 0..16
        assert_eq!(first_excluded(&rows, 21, &root, &nodes), Some(0));
        let mut bad = rows.clone();
        bad[5].1[0] ^= 1;
        assert_eq!(first_excluded(&bad, 21, &root, &stored(&leaves)), Some(5));
    }

    #[test]
    fn range_keys_match_the_reference_examples() {
        assert_eq!(range_keys(0, 7), vec![(2, 0), (1, 2), (0, 6)]);
        assert_eq!(range_keys(8, 12), vec![(2, 2)]);
        assert_eq!(inclusion_proof_nodes(6, 7), vec![(4, 6), (0, 4)]);
    }
}
