//! The checks of step 1 and 2 on small hand-made ledgers (the cross-check against the
//! Python reference on real ledgers is `tests/core/test_verify_crosscheck.py`).

use super::*;
use crate::codec;

/// Columns of a fake derivation: the pipeline, NULLs, and `{}` for the resource.
struct Fake;

impl Derive for Fake {
    fn columns(&self, envelope: &Value) -> Option<Vec<Cell>> {
        let mut out = vec![Cell::Null; COLUMNS];
        out[0] = Cell::Text(envelope.get("pipeline")?.as_str()?.to_owned());
        out[RESOURCE_COLUMN] = Cell::Text("{}".into());
        Some(out)
    }
}

fn sealed(i: i64) -> Vec<u8> {
    format!(
        "{{\"otaudit\":1,\"pipeline\":\"otlp\",\"received_at\":\"{}\",\"record\":{{\"n\":{i},\"resource\":{{\"attributes\":{{}}}},\"scope\":{{}}}}}}",
        1_000 + i
    )
    .into_bytes()
}

fn content(s: &[u8]) -> &[u8] {
    let at = memmem::find(s, RECORD_MARKER).unwrap();
    &s[at + RECORD_MARKER.len()..s.len() - 1]
}

fn row(i: i64) -> Row {
    let s = sealed(i);
    let mut key = Sha256::new();
    key.update(b"{\"otaudit\":1,\"pipeline\":\"otlp\"");
    key.update(RECORD_MARKER);
    key.update(content(&s));
    key.update(b"}");
    let mut columns = vec![Cell::Null; COLUMNS];
    columns[0] = Cell::Text("otlp".into());
    columns[RESOURCE_COLUMN] = Cell::Text("{}".into());
    Row {
        seq: i,
        dedup_key: key.finalize()[..16].to_vec(),
        sealed: s,
        columns: Stored::Cells(columns),
        kept: None,
        unsure: false,
    }
}

fn set(row: &mut Row, i: usize, value: Cell) {
    match &mut row.columns {
        Stored::Cells(cells) => cells[i] = value,
        Stored::Raw { .. } => unreachable!(),
    }
}

fn ledger(n: i64) -> (Vec<Row>, Vec<Node>) {
    let rows: Vec<Row> = (0..n).map(row).collect();
    let leaves = rows
        .iter()
        .map(|r| (r.seq, merkle::leaf_hash(&r.sealed).to_vec()))
        .collect();
    (rows, leaves)
}

fn run(rows: &[Row], leaves: Vec<Node>, end: Option<i64>) -> Option<Fault> {
    let mut records = Records::new(Arc::new(Fake), 0, leaves, None, no_removals());
    for chunk in rows.chunks(3) {
        if !records.feed(chunk) {
            break;
        }
    }
    records.finish(end)
}

fn no_removals() -> Arc<[(i64, i64)]> {
    Arc::from([])
}

/// Seqs `begin..end` of the 13-record ledger at `path` checked and proven into `root`.
fn prove_range(
    path: &std::path::Path,
    begin: i64,
    end: i64,
    root: &[u8],
    removed: Arc<[(i64, i64)]>,
) -> sqlite::Outcome {
    let ask = sqlite::Ask {
        begin,
        end: Some(end),
        late: None,
        tree: false,
        inclusion: Some((13, root.to_vec())),
        max_record_bytes: 1 << 20,
        removed,
    };
    let uri = format!("file:{}?mode=ro", path.display());
    sqlite::verify(&uri, &ask, Arc::new(Fake), &mut |_| true).unwrap()
}

fn fault(at: i64, kind: Kind) -> Option<Fault> {
    Some(Fault { at, kind })
}

#[test]
fn a_good_ledger_passes() {
    let (rows, leaves) = ledger(10);
    let mut records = Records::new(Arc::new(Fake), 0, leaves, None, no_removals());
    assert!(records.feed(&rows));
    assert_eq!(records.finish(None), None);
    assert_eq!(records.count(), 10);
    assert_eq!(
        records.bytes(),
        rows.iter().map(|r| r.sealed.len() as u64).sum::<u64>()
    );
}

#[test]
fn each_kind_of_record_fault_is_found_at_its_seq() {
    let (mut rows, leaves) = ledger(10);
    set(&mut rows[4], 0, Cell::Text("other".into()));
    rows[7].sealed[20] ^= 1;
    assert_eq!(run(&rows, leaves.clone(), None), fault(4, Kind::Column));
    rows[4] = row(4);
    assert_eq!(run(&rows, leaves.clone(), None), fault(7, Kind::Invalid));
    rows[7] = row(7);
    let at = memmem::find(&rows[7].sealed, b"1007").unwrap();
    rows[7].sealed[at + 3] = b'9'; // still a valid record: only its leaf differs
    assert_eq!(run(&rows, leaves.clone(), None), fault(7, Kind::Leaf));
    rows[7] = row(7);
    rows[2].dedup_key[0] ^= 1;
    assert_eq!(run(&rows, leaves.clone(), None), fault(2, Kind::DedupKey));
    rows[2] = row(2);
    set(&mut rows[3], 5, Cell::Other);
    assert_eq!(run(&rows, leaves, None), fault(3, Kind::Unsure));
}

#[test]
fn the_old_content_key_is_accepted() {
    let (mut rows, leaves) = ledger(3);
    rows[1].dedup_key = Sha256::digest(content(&rows[1].sealed))[..16].to_vec();
    assert_eq!(run(&rows, leaves, None), None);
}

#[test]
fn gaps_missing_and_extra_leaves_are_found() {
    let (rows, leaves) = ledger(10);
    let mut gap = rows.clone();
    gap.remove(5);
    assert_eq!(run(&gap, leaves.clone(), None), fault(5, Kind::Missing));
    let mut no_leaf = leaves.clone();
    no_leaf.remove(6);
    assert_eq!(run(&rows, no_leaf, None), fault(6, Kind::NoLeaf));
    assert_eq!(
        run(&rows[..8], leaves.clone(), None),
        fault(8, Kind::ExtraLeaf)
    );
    assert_eq!(
        run(&rows[..8], leaves.clone(), Some(10)),
        fault(8, Kind::Missing)
    );
    assert_eq!(run(&rows[..8], leaves, Some(8)), None);
}

// -- removed ranges: absent seqs --------------------------------------------------------

/// Step 1 over `rows` fed `batch` at a time (every leaf given first), the seqs of
/// `removed` allowed to be absent: (fault, seqs passed, absent seqs).
fn run_removed(
    rows: &[Row],
    leaves: Vec<Node>,
    end: Option<i64>,
    removed: &[(i64, i64)],
    batch: usize,
) -> (Option<Fault>, i64, i64) {
    let mut records = Records::new(Arc::new(Fake), 0, leaves, None, Arc::from(removed));
    for chunk in rows.chunks(batch) {
        if !records.feed(chunk) {
            break;
        }
    }
    (records.finish(end), records.count(), records.absent())
}

/// The rows of a ledger of `n` without those of `gone`.
fn without(rows: &[Row], gone: impl Fn(i64) -> bool) -> Vec<Row> {
    rows.iter().filter(|r| !gone(r.seq)).cloned().collect()
}

#[test]
fn removed_ranges_are_found_with_a_moving_cursor() {
    let ranges: Arc<[(i64, i64)]> = Arc::from([(2, 4), (7, 7), (9, 12)]);
    let mut removed = Removed::new(ranges.clone(), 0);
    let covered: Vec<i64> = (0..15).filter(|&seq| removed.covers(seq)).collect();
    assert_eq!(covered, vec![2, 3, 4, 7, 9, 10, 11, 12]);
    let mut from = Removed::new(ranges, 8);
    assert!(!from.covers(8) && from.covers(9) && !from.covers(13));
    assert_eq!(Removed::invalid(&[(0, 0), (1, 5), (9, 9)]), None);
    assert_eq!(Removed::invalid(&[(0, 3), (3, 5)]), Some(1)); // overlapping
    assert_eq!(Removed::invalid(&[(4, 5), (0, 1)]), Some(1)); // not sorted
    assert_eq!(Removed::invalid(&[(5, 4)]), Some(0)); // empty
}

#[test]
fn a_removed_gap_is_passed_and_counted() {
    let (rows, leaves) = ledger(12);
    let gone = |seq| (3..=6).contains(&seq);
    for batch in [1, 3, 4, 100] {
        let kept = without(&rows, gone);
        assert_eq!(
            run_removed(&kept, leaves.clone(), None, &[(3, 6)], batch),
            (None, 12, 4),
            "batch {batch}"
        );
        assert_eq!(
            run_removed(&kept, leaves.clone(), Some(12), &[(3, 6)], batch),
            (None, 12, 4)
        );
        // Rows of a removed range that are still there are records as any other.
        assert_eq!(
            run_removed(&rows, leaves.clone(), None, &[(3, 6)], batch),
            (None, 12, 0)
        );
    }
    // Bytes are the present records' only.
    let kept = without(&rows, gone);
    let mut records = Records::new(Arc::new(Fake), 0, leaves, None, Arc::from([(3, 6)]));
    assert!(records.feed(&kept));
    assert_eq!(records.finish(None), None);
    let bytes: u64 = kept.iter().map(|r| r.sealed.len() as u64).sum();
    assert_eq!(records.bytes(), bytes);
}

#[test]
fn a_gap_outside_every_range_is_missing_at_its_first_seq() {
    let (rows, leaves) = ledger(12);
    // 3..=6 gone, only 3..=4 removed: seq 5 is missing.
    let kept = without(&rows, |seq| (3..=6).contains(&seq));
    for batch in [1, 3, 100] {
        assert_eq!(
            run_removed(&kept, leaves.clone(), None, &[(3, 4)], batch),
            (fault(5, Kind::Missing), 5, 2),
            "batch {batch}"
        );
        assert_eq!(
            run_removed(&kept, leaves.clone(), None, &[(5, 8)], batch),
            (fault(3, Kind::Missing), 3, 0)
        );
    }
    // A removed seq keeps its leaf.
    let mut no_leaf = leaves.clone();
    no_leaf.remove(4);
    let kept = without(&rows, |seq| (3..=6).contains(&seq));
    assert_eq!(
        run_removed(&kept, no_leaf, None, &[(3, 6)], 3),
        (fault(4, Kind::NoLeaf), 4, 1)
    );
}

#[test]
fn a_present_row_inside_a_removed_range_is_checked() {
    let (rows, leaves) = ledger(12);
    let mut kept = without(&rows, |seq| seq == 3 || seq == 5);
    let at = kept.iter().position(|r| r.seq == 4).unwrap();
    set(&mut kept[at], 0, Cell::Text("other".into()));
    for batch in [1, 3, 100] {
        assert_eq!(
            run_removed(&kept, leaves.clone(), None, &[(3, 5)], batch),
            (fault(4, Kind::Column), 4, 1),
            "batch {batch}"
        );
    }
}

#[test]
fn gaps_at_the_edges_of_batches_and_at_the_ends_are_passed() {
    let (rows, leaves) = ledger(12);
    // Batches of 3 rows: gaps before the first row, between batches, inside one, and
    // after the last row (the last seq removed).
    let removed = [(0, 1), (4, 4), (8, 8), (10, 11)];
    let gone = |seq| removed.iter().any(|&(a, b)| (a..=b).contains(&seq));
    let kept = without(&rows, gone);
    for batch in [1, 2, 3, 100] {
        assert_eq!(
            run_removed(&kept, leaves.clone(), None, &removed, batch),
            (None, 12, 6),
            "batch {batch}"
        );
        assert_eq!(
            run_removed(&kept, leaves.clone(), Some(12), &removed, batch),
            (None, 12, 6)
        );
        assert_eq!(
            run_removed(&kept, leaves.clone(), Some(11), &removed, batch),
            (None, 11, 5)
        );
    }
    // The last seq removed and its leaf gone too: below `end` it has no leaf; without
    // an end, the ledger ends before it.
    let mut short = leaves.clone();
    short.pop();
    assert_eq!(
        run_removed(&kept, short.clone(), Some(12), &removed, 3),
        (fault(11, Kind::NoLeaf), 11, 5)
    );
    assert_eq!(run_removed(&kept, short, None, &removed, 3), (None, 11, 5));
    // The last seq gone and not removed: a leaf past the last record.
    assert_eq!(
        run_removed(&kept, leaves.clone(), None, &removed[..3], 3),
        (fault(10, Kind::ExtraLeaf), 10, 4)
    );
    // Everything removed: no rows at all.
    assert_eq!(
        run_removed(&[], leaves, None, &[(0, 11)], 3),
        (None, 12, 12)
    );
}

#[test]
fn leaves_fed_without_rows_are_taken_for_absent_seqs() {
    // The stream as Python feeds it: the leaves of a long gap alone, in pieces.
    let (rows, leaves) = ledger(20);
    let kept = without(&rows, |seq| (2..=15).contains(&seq));
    let mut records = Records::new(Arc::new(Fake), 0, Vec::new(), None, Arc::from([(2, 15)]));
    records.add_leaves(leaves[..2].to_vec());
    assert!(records.feed(&kept[..2]));
    for piece in leaves[2..16].chunks(4) {
        records.add_leaves(piece.to_vec());
        assert!(records.feed(&[]));
    }
    assert_eq!((records.count(), records.absent()), (16, 14));
    records.add_leaves(leaves[16..].to_vec());
    assert!(records.feed(&kept[2..]));
    assert_eq!(records.finish(None), None);
    assert_eq!((records.count(), records.absent()), (20, 14));
    // A removed seq without its leaf, found as its leaves come.
    let mut records = Records::new(Arc::new(Fake), 0, Vec::new(), None, Arc::from([(2, 15)]));
    assert!(records.feed(&kept[..0]));
    records.add_leaves([&leaves[..6], &leaves[7..10]].concat());
    assert!(records.feed(&kept[..2]));
    assert!(!records.feed(&[]));
    assert_eq!(records.fault, fault(6, Kind::NoLeaf));
}

/// What step 1 finds, said the plainest way: seq by seq, a row, or absent (removed), or
/// the fault (missing; past the last row with no end: a leaf left over). (fault, seqs
/// passed, absent seqs), every leaf there.
fn naive(
    n: i64,
    present: &[bool],
    removed: &[(i64, i64)],
    end: Option<i64>,
) -> (Option<Fault>, i64, i64) {
    let upto = end.unwrap_or(n);
    let mut absent = 0;
    for seq in 0..upto {
        if present[seq as usize] {
            continue;
        }
        if removed.iter().any(|&(a, b)| (a..=b).contains(&seq)) {
            absent += 1;
            continue;
        }
        let later = present[seq as usize..upto as usize].iter().any(|p| *p);
        let kind = if end.is_none() && !later {
            Kind::ExtraLeaf
        } else {
            Kind::Missing
        };
        return (fault(seq, kind), seq, absent);
    }
    (None, upto, absent)
}

#[test]
fn every_gap_of_a_small_ledger_is_judged_as_the_plain_walk_judges_it() {
    let n = 8i64;
    let (rows, leaves) = ledger(n);
    let range_sets: [&[(i64, i64)]; 5] = [
        &[],
        &[(0, 7)],
        &[(1, 2), (5, 5)],
        &[(0, 0), (3, 6)],
        &[(2, 3), (4, 4), (7, 7)],
    ];
    for mask in 0u32..1 << n {
        let present: Vec<bool> = (0..n).map(|i| mask & (1 << i) != 0).collect();
        let kept = without(&rows, |seq| !present[seq as usize]);
        for removed in range_sets {
            for end in [None, Some(n), Some(5)] {
                let want = naive(n, &present, removed, end);
                // The stream's rows stop before its end.
                let upto = kept.partition_point(|r| end.is_none_or(|end| r.seq < end));
                for batch in [1, 3, 8] {
                    let got = run_removed(&kept[..upto], leaves.clone(), end, removed, batch);
                    assert_eq!(got, want, "{mask:08b} {removed:?} {end:?} batch {batch}");
                }
            }
        }
    }
}

#[test]
fn a_kept_resource_is_checked_and_its_cut_too() {
    let (mut rows, leaves) = ledger(2);
    let body = b"{\"attributes\":{}}".to_vec();
    let hash = Sha256::digest(&body).to_vec();
    let at = resource_offset(&rows[0].sealed, &body);
    assert!(at > 0);
    let res = Arc::new(Resource::new(body.clone(), &hash, Cell::Null));
    rows[0].kept = Some(Kept {
        at,
        hash: hash.clone(),
        body: Some(res.clone()),
    });
    assert_eq!(run(&rows, leaves.clone(), None), None);
    rows[0].kept = Some(Kept {
        at: at + 1,
        hash: hash.clone(),
        body: Some(res),
    });
    assert_eq!(run(&rows, leaves.clone(), None), fault(0, Kind::Cut));
    rows[0].kept = Some(Kept {
        at,
        hash: hash.clone(),
        body: None,
    });
    assert_eq!(run(&rows, leaves.clone(), None), fault(0, Kind::Resource));
    let wrong = Arc::new(Resource::new(b"{}".to_vec(), &hash, Cell::Null));
    rows[0].kept = Some(Kept {
        at,
        hash,
        body: Some(wrong),
    });
    assert_eq!(run(&rows, leaves, None), fault(0, Kind::Resource));
}

fn levels(leaves: &[Node]) -> Vec<Vec<Node>> {
    let mut out = vec![leaves.to_vec()];
    loop {
        let below = out.last().unwrap();
        if below.len() < 2 {
            break;
        }
        let next: Vec<Node> = below
            .chunks_exact(2)
            .map(|p| {
                let l: &[u8; 32] = p[0].1.as_slice().try_into().unwrap();
                let r: &[u8; 32] = p[1].1.as_slice().try_into().unwrap();
                (p[0].0 / 2, merkle::node_hash(l, r).to_vec())
            })
            .collect();
        out.push(next);
    }
    out
}

fn check_level(level: u32, size: i64, children: &[Node], stored: &[Node]) -> Result<(), Fault> {
    let mut c = children.iter().cloned();
    let mut s = stored.iter().cloned();
    super::check_level::<()>(level, size, || Ok(c.next()), || Ok(s.next())).unwrap()
}

#[test]
fn tree_levels_are_checked_against_their_children() {
    let (_, leaves) = ledger(11);
    let tree = levels(&leaves);
    for lvl in 1..tree.len() {
        assert_eq!(
            check_level(lvl as u32, 11, &tree[lvl - 1], &tree[lvl]),
            Ok(())
        );
    }
    let mut bad = tree[2].clone();
    bad[1].1[3] ^= 1;
    assert!(check_level(2, 11, &tree[1], &bad).is_err());
    let mut short = tree[1].clone();
    short.pop();
    assert!(check_level(1, 11, &tree[0], &short).is_err());
    let mut extra = tree[1].clone();
    extra.push((5, vec![0; 32]));
    assert!(check_level(1, 11, &tree[0], &extra).is_err());
}

/// Row `i` with its columns as the SQLite reader keeps them.
fn raw(i: i64, resource: Span) -> Row {
    let mut r = row(i);
    let mut spans = vec![Span::Null; COLUMNS];
    spans[0] = Span::Text(0, 4);
    spans[RESOURCE_COLUMN] = resource;
    r.columns = Stored::Raw {
        buf: b"otlp{}".to_vec(),
        spans,
    };
    r
}

#[test]
fn raw_columns_compare_as_the_cells_do() {
    let (_, leaves) = ledger(3);
    let rows: Vec<Row> = (0..3).map(|i| raw(i, Span::Text(4, 6))).collect();
    assert_eq!(run(&rows, leaves.clone(), None), None);
    let mut bad = rows.clone();
    if let Stored::Raw { spans, .. } = &mut bad[1].columns {
        spans[0] = Span::Text(0, 3); // "otl"
    }
    assert_eq!(run(&bad, leaves.clone(), None), fault(1, Kind::Column));
    let mut bad = rows.clone();
    if let Stored::Raw { spans, .. } = &mut bad[2].columns {
        spans[7] = Span::Int(0);
    }
    assert_eq!(run(&bad, leaves.clone(), None), fault(2, Kind::Column));
    let mut odd = rows;
    if let Stored::Raw { spans, .. } = &mut odd[0].columns {
        spans[3] = Span::Other;
    }
    assert_eq!(run(&odd, leaves, None), fault(0, Kind::Unsure));
}

#[test]
fn a_row_without_its_own_resource_column_takes_the_kept_one() {
    let (_, leaves) = ledger(1);
    let rows = vec![raw(0, Span::Flat)];
    // No kept resource: NULL stands in, not what the record says.
    assert_eq!(run(&rows, leaves.clone(), None), fault(0, Kind::Column));
    let body = b"{\"attributes\":{}}".to_vec();
    let hash = Sha256::digest(&body).to_vec();
    let at = resource_offset(&rows[0].sealed, &body);
    for (flat, want) in [("{}", None), ("{\"a\":\"b\"}", fault(0, Kind::Column))] {
        let mut with_flat = rows.clone();
        let res = Resource::new(body.clone(), &hash, Cell::Text(flat.into()));
        with_flat[0].kept = Some(Kept {
            at,
            hash: hash.clone(),
            body: Some(Arc::new(res)),
        });
        assert_eq!(run(&with_flat, leaves.clone(), None), want);
    }
}

#[test]
fn progress_is_told_at_each_multiple_of_ten_thousand() {
    let mut told = Vec::new();
    let mut tell = |n: i64| {
        told.push(n);
        true
    };
    assert!(sqlite::report_progress(5, 0, 9_994, &mut tell));
    assert!(sqlite::report_progress(5, 9_994, 9_995, &mut tell));
    assert!(sqlite::report_progress(5, 9_995, 40_000, &mut tell));
    assert_eq!(told, vec![9_995, 19_995, 29_995, 39_995]);
    assert!(!sqlite::report_progress(0, 0, 20_000, &mut |_| false));
}

// -- the SQLite reader -------------------------------------------------------------------

/// A SQLite ledger file of `n` records in this process's temp directory: records
/// 0..n/2 whole, the others with their resource kept once; every tree node stored.
fn sqlite_ledger(name: &str, n: i64) -> (std::path::PathBuf, rusqlite::Connection) {
    let path = std::env::temp_dir().join(format!("otaudit-core-{}-{name}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let columns: Vec<String> = sqlite::COLUMN_NAMES
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect();
    conn.execute_batch(&format!(
        "CREATE TABLE records (seq INTEGER PRIMARY KEY, sealed BLOB, dedup_key BLOB, {},
           resource_hash BLOB, resource_at INTEGER);
         CREATE TABLE resources (hash BLOB PRIMARY KEY, body BLOB, flat TEXT);
         CREATE TABLE tree_nodes (level INTEGER, idx INTEGER, hash BLOB,
           PRIMARY KEY (level, idx));",
        columns.join(", ")
    ))
    .unwrap();
    let body = b"{\"attributes\":{}}".to_vec();
    let hash = Sha256::digest(&body).to_vec();
    conn.execute(
        "INSERT INTO resources VALUES (?1, ?2, '{}')",
        rusqlite::params![hash, body],
    )
    .unwrap();
    let (rows, leaves) = ledger(n);
    let marks = vec!["?"; COLUMNS + 5].join(", ");
    conn.execute_batch("BEGIN").unwrap();
    for r in &rows {
        let mut values: Vec<rusqlite::types::Value> = vec![r.seq.into()];
        let (stored, resource, kept_hash, at) = if r.seq < n / 2 {
            (r.sealed.clone(), "{}", None, None)
        } else {
            let at = resource_offset(&r.sealed, &body) as usize;
            let mut cut = r.sealed[..at].to_vec();
            cut.extend_from_slice(&r.sealed[at + body.len()..]);
            (cut, "", Some(hash.clone()), Some(at as i64))
        };
        values.push(stored.into());
        values.push(r.dedup_key.clone().into());
        values.push("otlp".to_string().into());
        for _ in 1..RESOURCE_COLUMN {
            values.push(rusqlite::types::Value::Null);
        }
        values.push(resource.to_string().into());
        values.push(kept_hash.into());
        values.push(at.into());
        conn.execute(
            &format!("INSERT INTO records VALUES ({marks})"),
            rusqlite::params_from_iter(values),
        )
        .unwrap();
    }
    for (lvl, nodes) in levels(&leaves).iter().enumerate() {
        for (idx, h) in nodes {
            conn.execute(
                "INSERT INTO tree_nodes VALUES (?1, ?2, ?3)",
                rusqlite::params![lvl as i64, idx, h],
            )
            .unwrap();
        }
    }
    conn.execute_batch("COMMIT").unwrap();
    (path, conn)
}

fn verify_file(path: &std::path::Path, begin: i64, end: Option<i64>) -> sqlite::Outcome {
    let ask = sqlite::Ask {
        begin,
        end,
        late: None,
        tree: true,
        inclusion: None,
        max_record_bytes: 1 << 20,
        removed: no_removals(),
    };
    let uri = format!("file:{}?mode=ro", path.display());
    sqlite::verify(&uri, &ask, Arc::new(Fake), &mut |_| true).unwrap()
}

#[test]
fn the_sqlite_reader_splices_resources_back_and_checks_the_tree() {
    let (path, conn) = sqlite_ledger("good", 13);
    let out = verify_file(&path, 0, None);
    assert_eq!(
        (out.records, out.records_fault, out.tree_fault),
        (13, None, None)
    );
    let (rows, _) = ledger(13);
    assert_eq!(
        out.bytes,
        rows.iter().map(|r| r.sealed.len() as u64).sum::<u64>()
    );
    let ranged = verify_file(&path, 4, Some(9));
    assert_eq!((ranged.records, ranged.records_fault), (5, None));
    let tampered: [(&str, Option<Fault>, Option<Fault>); 6] = [
        (
            "UPDATE records SET resource_at = resource_at + 1 WHERE seq = 8",
            fault(8, Kind::Invalid),
            None,
        ),
        (
            "UPDATE records SET pipeline = 'otlq' WHERE seq = 2",
            fault(2, Kind::Column),
            None,
        ),
        (
            "UPDATE records SET resource = '' WHERE seq = 3",
            fault(3, Kind::Column),
            None,
        ),
        (
            "UPDATE resources SET flat = '{\"x\":\"y\"}'",
            fault(6, Kind::Column),
            None,
        ),
        (
            "DELETE FROM records WHERE seq = 4",
            fault(4, Kind::Missing),
            None,
        ),
        (
            "DELETE FROM tree_nodes WHERE level = 2 AND idx = 1",
            None,
            Some(Fault {
                at: 2,
                kind: Kind::Tree,
            }),
        ),
    ];
    drop(conn);
    let _ = std::fs::remove_file(&path);
    for (i, (statement, records_fault, tree_fault)) in tampered.into_iter().enumerate() {
        let (path, conn) = sqlite_ledger(&format!("case{i}"), 13);
        conn.execute_batch(statement).unwrap();
        drop(conn);
        let out = verify_file(&path, 0, None);
        assert_eq!(
            (out.records_fault, out.tree_fault),
            (records_fault, tree_fault),
            "{statement}"
        );
        let _ = std::fs::remove_file(&path);
    }
}

fn root_of(leaves: &[Node]) -> Vec<u8> {
    fn mth(h: &[[u8; 32]]) -> [u8; 32] {
        if h.len() == 1 {
            return h[0];
        }
        let k = 1usize << (usize::BITS - 1 - (h.len() - 1).leading_zeros());
        merkle::node_hash(&mth(&h[..k]), &mth(&h[k..]))
    }
    let hashes: Vec<[u8; 32]> = leaves
        .iter()
        .map(|(_, h)| h.as_slice().try_into().unwrap())
        .collect();
    mth(&hashes).to_vec()
}

#[test]
fn a_range_is_proven_into_the_signed_root_from_the_stored_nodes() {
    let (_, leaves) = ledger(13);
    let root = root_of(&leaves);
    let prove = |path: &std::path::Path, begin: i64, end: i64, root: &[u8]| {
        prove_range(path, begin, end, root, no_removals())
    };
    let (path, conn) = sqlite_ledger("proofs", 13);
    drop(conn);
    for (begin, end) in [(0, 13), (3, 9), (12, 13), (5, 5)] {
        let out = prove(&path, begin, end, &root);
        assert_eq!(
            (out.records, out.excluded),
            (end - begin, None),
            "{begin}..{end}"
        );
    }
    let mut other = root.clone();
    other[0] ^= 1;
    assert_eq!(prove(&path, 3, 9, &other).excluded, Some(3));
    let _ = std::fs::remove_file(&path);
    // A node of the right edge changed: every leaf left of it reads it in its proof.
    let (path, conn) = sqlite_ledger("edge", 13);
    conn.execute_batch("UPDATE tree_nodes SET hash = zeroblob(32) WHERE level = 0 AND idx = 12")
        .unwrap();
    drop(conn);
    assert_eq!(prove(&path, 2, 12, &root).excluded, Some(2));
    let _ = std::fs::remove_file(&path);
}

/// Store the records of a [`sqlite_ledger`] as zstd frames, as a schema-6 ledger keeps
/// them: those below `plain` without a dictionary, the others with one trained on them
/// and kept in `dictionaries`. Returns the dictionary's ID.
fn compress(conn: &rusqlite::Connection, plain: i64) -> u32 {
    let stored: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT seq, sealed FROM records ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let views: Vec<&[u8]> = stored.iter().map(|(_, s)| s.as_slice()).collect();
    let dictionary = codec::train(&views, 4096).unwrap();
    let id = codec::dictionary_id(&dictionary).unwrap();
    let without = codec::Codec::new(3);
    let mut with = codec::Codec::new(3);
    assert!(with.add_dictionary(id, &dictionary, true));
    conn.execute_batch(
        "BEGIN; CREATE TABLE dictionaries (id INTEGER PRIMARY KEY, body BLOB, created_at TEXT);",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO dictionaries VALUES (?1, ?2, '')",
        rusqlite::params![i64::from(id), dictionary],
    )
    .unwrap();
    for (seq, s) in &stored {
        let codec = if *seq < plain { &without } else { &with };
        let frame = codec.compress_many(&[s.as_slice()]).unwrap().remove(0);
        assert!(codec::is_frame(&frame));
        conn.execute(
            "UPDATE records SET sealed = ?1 WHERE seq = ?2",
            rusqlite::params![frame, seq],
        )
        .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
    id
}

#[test]
fn the_sqlite_reader_decompresses_frames_with_the_ledgers_dictionary() {
    let (n, plain) = (600, 200);
    let (rows, _) = ledger(n);
    let frame_of = |conn: &rusqlite::Connection, seq: i64| -> Vec<u8> {
        conn.query_row("SELECT sealed FROM records WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .unwrap()
    };
    type Tamper = fn(&rusqlite::Connection, Vec<u8>);
    let cases: [(&str, Tamper, Option<Fault>); 6] = [
        ("intact", |_, _| {}, None),
        (
            "a frame cut short",
            |conn, frame| {
                conn.execute(
                    "UPDATE records SET sealed = ?1 WHERE seq = 450",
                    [&frame[..frame.len() - 3]],
                )
                .unwrap();
            },
            fault(450, Kind::Invalid),
        ),
        (
            "a frame without a dictionary cut short",
            |conn, _| {
                let frame: Vec<u8> = conn
                    .query_row("SELECT sealed FROM records WHERE seq = 7", [], |r| r.get(0))
                    .unwrap();
                conn.execute(
                    "UPDATE records SET sealed = ?1 WHERE seq = 7",
                    [&frame[..frame.len() - 3]],
                )
                .unwrap();
            },
            fault(7, Kind::Invalid),
        ),
        (
            "the dictionary gone",
            |conn, _| {
                conn.execute_batch("DELETE FROM dictionaries").unwrap();
            },
            fault(200, Kind::Invalid),
        ),
        (
            "the dictionary's tables zeroed",
            |conn, _| {
                let body: Vec<u8> = conn
                    .query_row("SELECT body FROM dictionaries", [], |r| r.get(0))
                    .unwrap();
                let mut forged = body[..8].to_vec(); // its ID kept
                forged.resize(body.len(), 0);
                conn.execute("UPDATE dictionaries SET body = ?1", [forged])
                    .unwrap();
            },
            fault(200, Kind::Invalid),
        ),
        (
            "the dictionary as text",
            |conn, _| {
                conn.execute_batch("UPDATE dictionaries SET body = 'x'")
                    .unwrap();
            },
            fault(200, Kind::Unsure),
        ),
    ];
    for (i, (case, tamper, want)) in cases.into_iter().enumerate() {
        let (path, conn) = sqlite_ledger(&format!("frames{i}"), n);
        compress(&conn, plain);
        let frame = frame_of(&conn, 450);
        tamper(&conn, frame);
        drop(conn);
        let out = verify_file(&path, 0, None);
        assert_eq!((out.records_fault, out.tree_fault), (want, None), "{case}");
        if want.is_none() {
            assert_eq!(out.records, n);
            let bytes: u64 = rows.iter().map(|r| r.sealed.len() as u64).sum();
            assert_eq!(out.bytes, bytes);
            let uri = format!("file:{}?mode=ro", path.display());
            assert_eq!(sqlite::scan(&uri, true, 1 << 20).unwrap(), (n, bytes));
            // A frame declaring more than the limit is not read.
            let ask = sqlite::Ask {
                begin: 0,
                end: None,
                late: None,
                tree: false,
                inclusion: None,
                max_record_bytes: 64,
                removed: no_removals(),
            };
            let out = sqlite::verify(&uri, &ask, Arc::new(Fake), &mut |_| true).unwrap();
            assert_eq!(out.records_fault, fault(0, Kind::Invalid));
        }
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn the_sqlite_readers_chunks_meet_at_their_edges() {
    // Three chunks of seqs, read on two threads or more: faults at their edges are found
    // where one stream would find them.
    let n = 17_000;
    let cases: [(&str, Option<Fault>); 8] = [
        ("", None),
        (
            "UPDATE records SET seq = 9223372036854775807 WHERE seq = 16999",
            fault(16999, Kind::Missing),
        ),
        (
            "DELETE FROM records WHERE seq = 8191",
            fault(8191, Kind::Missing),
        ),
        (
            "DELETE FROM records WHERE seq = 8192",
            fault(8192, Kind::Missing),
        ),
        (
            "DELETE FROM tree_nodes WHERE level = 0 AND idx = 16384",
            fault(16384, Kind::NoLeaf),
        ),
        (
            "UPDATE records SET pipeline = 'x' WHERE seq = 16383",
            fault(16383, Kind::Column),
        ),
        (
            "DELETE FROM records WHERE seq = 16999",
            fault(16999, Kind::ExtraLeaf),
        ),
        (
            "UPDATE records SET seq = 99999 WHERE seq = 16999",
            fault(16999, Kind::Missing),
        ),
    ];
    let (path, conn) = sqlite_ledger("chunks", n);
    drop(conn);
    let pristine = std::fs::read(&path).unwrap();
    for (statement, want) in cases {
        std::fs::write(&path, &pristine).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(statement).unwrap();
        drop(conn);
        let out = verify_file(&path, 0, None);
        assert_eq!(out.records_fault, want, "{statement}");
        match want {
            None => assert_eq!((out.records, out.tree_fault), (n, None)),
            Some(fault) => assert_eq!(out.records, fault.at),
        }
        let ranged = verify_file(&path, 8000, Some(16500));
        let want = want.filter(|f| f.at < 16500 && f.kind != Kind::ExtraLeaf);
        assert_eq!(ranged.records_fault, want, "{statement} (a range)");
    }
    let _ = std::fs::remove_file(&path);
}

fn verify_removed(
    path: &std::path::Path,
    begin: i64,
    end: Option<i64>,
    removed: &[(i64, i64)],
) -> sqlite::Outcome {
    let ask = sqlite::Ask {
        begin,
        end,
        late: None,
        tree: end.is_none(),
        inclusion: None,
        max_record_bytes: 1 << 20,
        removed: Arc::from(removed),
    };
    let uri = format!("file:{}?mode=ro", path.display());
    sqlite::verify(&uri, &ask, Arc::new(Fake), &mut |_| true).unwrap()
}

#[test]
fn the_sqlite_reader_passes_removed_rows_across_its_chunks() {
    // Chunks of 8192 seqs: removed ranges across their edges, a whole chunk, the tail.
    let n = 17_000;
    type Case = (&'static str, &'static [(i64, i64)], Option<Fault>, i64);
    let cases: [Case; 8] = [
        ("seq BETWEEN 8000 AND 8500", &[(8000, 8500)], None, 501),
        ("seq <= 8191", &[(0, 8191)], None, 8192),
        (
            "seq < 10 OR seq > 16989",
            &[(0, 9), (16990, 16999)],
            None,
            20,
        ),
        (
            "seq BETWEEN 8000 AND 8500",
            &[(8000, 8400)],
            fault(8401, Kind::Missing),
            401,
        ),
        (
            "seq BETWEEN 8000 AND 8500",
            &[(8100, 9000)],
            fault(8000, Kind::Missing),
            0,
        ),
        (
            "seq > 16989",
            &[(16990, 16998)],
            fault(16999, Kind::ExtraLeaf),
            9,
        ),
        // A present row inside a range is checked as any other (8200, altered).
        (
            "seq BETWEEN 8100 AND 8300 AND seq != 8200;
             UPDATE records SET pipeline = 'x' WHERE seq = 8200",
            &[(8100, 8300)],
            fault(8200, Kind::Column),
            100,
        ),
        ("seq = 16999", &[(16999, 16999)], None, 1),
    ];
    let (path, conn) = sqlite_ledger("removed", n);
    drop(conn);
    let pristine = std::fs::read(&path).unwrap();
    for (gone, removed, want, absent) in cases {
        std::fs::write(&path, &pristine).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!("DELETE FROM records WHERE {gone}"))
            .unwrap();
        drop(conn);
        let out = verify_removed(&path, 0, None, removed);
        assert_eq!((out.records_fault, out.absent), (want, absent), "{gone}");
        match want {
            None => assert_eq!((out.records, out.tree_fault), (n, None)),
            Some(fault) => assert_eq!(out.records, fault.at),
        }
        // A range: from inside the first removed range to past the chunk's edge.
        let ranged = verify_removed(&path, 8100, Some(16995), removed);
        let want = want.filter(|f| (8100..16995).contains(&f.at) && f.kind != Kind::ExtraLeaf);
        assert_eq!(ranged.records_fault, want, "{gone} (a range)");
        if want.is_none() {
            assert_eq!(ranged.records, 16995 - 8100);
        }
    }
    // Removed seqs keep their leaves.
    std::fs::write(&path, &pristine).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DELETE FROM records WHERE seq BETWEEN 8000 AND 8500 AND seq != 8200;
         DELETE FROM tree_nodes WHERE level = 0 AND idx = 8192;",
    )
    .unwrap();
    drop(conn);
    let out = verify_removed(&path, 0, None, &[(8000, 8500)]);
    assert_eq!(out.records_fault, fault(8192, Kind::NoLeaf));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_sqlite_reader_judges_gaps_as_the_stream_does() {
    let n = 8i64;
    let (path, conn) = sqlite_ledger("gaps", n);
    drop(conn);
    let pristine = std::fs::read(&path).unwrap();
    let removed: &[(i64, i64)] = &[(0, 0), (2, 3), (6, 7)];
    for mask in 0u32..1 << n {
        let present: Vec<bool> = (0..n).map(|i| mask & (1 << i) != 0).collect();
        std::fs::write(&path, &pristine).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        for seq in (0..n).filter(|&seq| !present[seq as usize]) {
            conn.execute("DELETE FROM records WHERE seq = ?1", [seq])
                .unwrap();
        }
        drop(conn);
        for (begin, end) in [(0, None), (0, Some(n)), (0, Some(5))] {
            let out = verify_removed(&path, begin, end, removed);
            let want = naive(n, &present, removed, end);
            assert_eq!(
                (out.records_fault, out.records, out.absent),
                want,
                "{mask:08b} {end:?}"
            );
        }
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn absent_seqs_are_not_proven_and_the_others_are() {
    let (_, leaves) = ledger(13);
    let root = root_of(&leaves);
    let prove = |path: &std::path::Path, begin: i64, end: i64, root: &[u8], removed| {
        prove_range(path, begin, end, root, Arc::from(removed))
    };
    let (path, conn) = sqlite_ledger("proofs-removed", 13);
    conn.execute_batch("DELETE FROM records WHERE seq <= 2 OR seq BETWEEN 5 AND 6")
        .unwrap();
    drop(conn);
    let removed: &[(i64, i64)] = &[(0, 2), (5, 7)];
    let out = prove(&path, 0, 13, &root, removed);
    assert_eq!((out.records, out.absent, out.excluded), (13, 5, None));
    let mut other = root.clone();
    other[0] ^= 1;
    // The first leaf proven is the first of a present record.
    assert_eq!(prove(&path, 0, 13, &other, removed).excluded, Some(3));
    assert_eq!(prove(&path, 5, 13, &other, removed).excluded, Some(7));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_cut_is_checked_from_where_it_is_as_from_the_start() {
    let body = b"{\"attributes\":{}}".to_vec();
    let res = Resource::new(body.clone(), &Sha256::digest(&body), Cell::Null);
    let member = [RESOURCE_KEY, body.as_slice(), SCOPE_KEY].concat();
    let once = [b"{\"a\":1".as_slice(), &member, b"{}}"].concat();
    let twice = [once.as_slice(), &member, b"{}}"].concat();
    let early = [member.as_slice(), b"{}}"].concat();
    for sealed in [once, twice, early, b"{}".to_vec(), member.clone()] {
        for at in -2..sealed.len() as i64 + 2 {
            assert_eq!(
                res.is_cut_at(&sealed, at),
                res.offset_in(&sealed) == at,
                "{at} in {}",
                String::from_utf8_lossy(&sealed)
            );
        }
    }
}
