//! The checks of step 1 and 2 on small hand-made ledgers (the cross-check against the
//! Python reference on real ledgers is `tests/core/test_verify_crosscheck.py`).

use super::*;

/// Columns of a fake derivation: the pipeline, then NULLs.
struct Fake;

impl Derive for Fake {
    fn columns(&self, envelope: &Value) -> Option<Vec<Cell>> {
        let mut out = vec![Cell::Null; COLUMNS];
        out[0] = Cell::Text(envelope.get("pipeline")?.as_str()?.to_owned());
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
    let mut records = Records::new(&Fake, 0, leaves, None);
    for chunk in rows.chunks(3) {
        if !records.feed(chunk) {
            break;
        }
    }
    records.finish(end)
}

fn fault(at: i64, kind: Kind) -> Option<Fault> {
    Some(Fault { at, kind })
}

#[test]
fn a_good_ledger_passes() {
    let (rows, leaves) = ledger(10);
    let mut records = Records::new(&Fake, 0, leaves, None);
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
        buf: b"otlp".to_vec(),
        spans,
    };
    r
}

#[test]
fn raw_columns_compare_as_the_cells_do() {
    let (_, leaves) = ledger(3);
    let rows: Vec<Row> = (0..3).map(|i| raw(i, Span::Null)).collect();
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
    // The fake derivation derives NULL for the resource column: a kept resource whose
    // flat is NULL-like passes only if it is NULL; no kept resource means NULL.
    let (_, leaves) = ledger(1);
    let rows = vec![raw(0, Span::Flat)];
    assert_eq!(run(&rows, leaves.clone(), None), None);
    let mut with_flat = rows;
    let body = b"{\"attributes\":{}}".to_vec();
    let hash = Sha256::digest(&body).to_vec();
    let at = resource_offset(&with_flat[0].sealed, &body);
    let res = Resource::new(body, &hash, Cell::Text("{}".into()));
    with_flat[0].kept = Some(Kept {
        at,
        hash,
        body: Some(Arc::new(res)),
    });
    assert_eq!(run(&with_flat, leaves, None), fault(0, Kind::Column));
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
