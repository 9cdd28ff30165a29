//! Spans/s of `select::prepare_spans` alone (no Python) over length-prefixed export
//! requests in a file: `cargo run --release --example prepare_rate -- FILE`.

use std::time::Instant;

use _core::columns::Conventions;
use _core::select::{prepare_spans, Limits, Options};

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("a file of length-prefixed requests");
    let data = std::fs::read(path).expect("readable");
    let mut batches = Vec::new();
    let mut at = 0;
    while at + 4 <= data.len() {
        let n = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        batches.push(&data[at + 4..at + 4 + n]);
        at += 4 + n;
    }
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let options = Options {
        audit_attribute: "audit.action".into(),
        limits: Limits {
            max_attributes: 128,
            max_value_bytes: 65536,
            max_resource_bytes: 65536,
            max_records: 20000,
            max_sealed_ratio: 16,
            min_sealed_budget: 4 << 20,
        },
        conventions: Conventions {
            field_sources: [
                keys(&["enduser.id", "user.id", "audit.changed_by"]),
                keys(&["enduser.role", "user.roles"]),
                keys(&["client.address", "enduser.ip"]),
                keys(&["audit.action"]),
                keys(&["audit.target_user", "audit.target"]),
                keys(&["audit.resource_type"]),
                keys(&["audit.result"]),
            ],
            status_result: vec![(1, "success".into()), (2, "failure".into())],
            required: vec![0, 6],
            producer_id: "audit.producer.id".into(),
            producer_seq: "audit.producer.seq".into(),
            service: "service.name".into(),
        },
        redactor: None,
        max_reasons: 5,
    };
    for _ in 0..3 {
        decode_only(&batches);
    }
    for _ in 0..5 {
        let started = Instant::now();
        let mut spans = 0;
        for b in &batches {
            spans += prepare_spans(b, &options, "otlp", 1).unwrap().records.len();
        }
        let rate = spans as f64 / started.elapsed().as_secs_f64();
        println!("{rate:.0} spans/s");
    }
}

/// The prost decode and the wire count alone, for comparison.
fn decode_only(batches: &[&[u8]]) {
    use prost::Message;
    let started = Instant::now();
    for b in batches {
        let r = _core::otlp::ExportTraceServiceRequest::decode(*b).unwrap();
        std::hint::black_box(r);
    }
    let n = batches.len() * 512;
    println!(
        "decode only: {:.0} spans/s",
        n as f64 / started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    for b in batches {
        let r = _core::otlp::ExportTraceServiceRequest::decode(*b).unwrap();
        assert_eq!(r.encoded_len(), b.len());
    }
    println!(
        "decode + encoded_len: {:.0} spans/s",
        n as f64 / started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    for b in batches {
        std::hint::black_box(_core::otlp::records_over(b, 20000));
    }
    println!(
        "records_over: {:.0} spans/s",
        n as f64 / started.elapsed().as_secs_f64()
    );
}
