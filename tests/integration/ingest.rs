//! LISTINGSTATS.INGEST: events and stream-consumer envelopes, counting
//! rules, pre-aggregation, exactly-once effect under redelivery.

use std::collections::BTreeMap;

use crate::common::*;
use base64::Engine;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// INGEST's reply as (applied, duplicates, rejected, errors).
fn ingest(c: &mut Connection, args: &[&str]) -> (i64, i64, i64, Vec<String>) {
    let mut cmd = redis::cmd("LISTINGSTATS.INGEST");
    for a in args {
        cmd.arg(*a);
    }
    let reply: Value = cmd
        .query(c)
        .unwrap_or_else(|e| panic!("INGEST failed: {}", error_text(&e)));
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(flat) => flat
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect(),
        Value::Map(pairs) => pairs,
        other => panic!("unexpected reply {other:?}"),
    };
    let keys: Vec<String> = pairs
        .iter()
        .map(|(k, _)| match k {
            Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(keys, ["applied", "duplicates", "rejected", "errors"]);
    let n = |v: &Value| match v {
        Value::Int(n) => *n,
        other => panic!("{other:?}"),
    };
    let errors = match &pairs[3].1 {
        Value::Array(v) => v
            .iter()
            .map(|e| match e {
                Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
                o => panic!("{o:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    };
    (n(&pairs[0].1), n(&pairs[1].1), n(&pairs[2].1), errors)
}

fn field(c: &mut Connection, key: &str, f: &str) -> Option<i64> {
    let v: Option<i64> = redis::cmd("HGET").arg(key).arg(f).query(c).unwrap();
    v
}

/// The twelve cart::impression events of the seed's Presto table.
fn presto_events() -> Vec<String> {
    [
        (1449855906, "[2150]", "[1]"),
        (1449854809, "[2156,2156,2152]", "[1,1,1]"),
        (1449854930, "[2156,2156,2156,2152]", "[2,1,1,1]"),
        (1449855279, "[2152]", "[1]"),
        (1449855345, "[2150,2152]", "[1,1]"),
        (1449855364, "[2150,2150,2152]", "[1,1,1]"),
        (1449855963, "[2150]", "[1]"),
        (1449855391, "[2150,2150,2152]", "[1,1,1]"),
        (1449855818, "[2150,2152]", "[1,1]"),
        (1449855898, "[2157]", "[3]"),
        (1449855958, "[2157]", "[3]"),
        (1449856259, "[2150]", "[1]"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (t, ids, q))| {
        format!(r#"{{"id":"presto-{i}","name":"cart::impression","visitor_id":"v{i}","message_date":{t},"listingIds":{ids},"quantities":{q}}}"#)
    })
    .collect()
}

#[test]
fn reproduces_the_presto_result_table() {
    let server = Server::start();
    let mut c = server.conn();
    let events = presto_events();
    let refs: Vec<&str> = events.iter().map(String::as_str).collect();
    assert_eq!(ingest(&mut c, &refs), (12, 0, 0, vec![]));
    for (listing, count) in [("2156", 5), ("2152", 7), ("2150", 9), ("2157", 2)] {
        assert_eq!(
            field(&mut c, &format!("2015-12-11_{listing}"), "cart::impression"),
            Some(count),
            "{listing}"
        );
    }
    // The same batch again, as a redelivery: nothing changes.
    let d = digest(&mut c);
    assert_eq!(ingest(&mut c, &refs), (0, 12, 0, vec![]));
    assert_eq!(digest(&mut c), d);
}

#[test]
fn every_field_form_and_the_kinesis_envelope() {
    let server = Server::start_with(Options::default().module(&["timezone", "Asia/Tokyo"]));
    let mut c = server.conn();
    let inner1 = r#"{"id":"k-1","name":"ldp:sellPanel:addToCart:click","listingId":"2155","timestamp":"2015-12-31T23:30:00-05:00","details":{"a":[1]}}"#;
    let inner2 = r#"{"name":"ldp:sellPanel:addToCart:click","listing_id":2155,"timestamp":1451606400000,"count":4}"#;
    let envelope = format!(
        r#"{{"Records":[{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"foo","sequenceNumber":"1","data":"{}"}},"eventSource":"aws:kinesis","eventID":"shardId-000000000000:1"}},{{"kinesis":{{"data":"{}"}}}}]}}"#,
        b64(inner1),
        b64(inner2)
    );
    let plain = r#"{"name":"cart::checkoutNow:click","listingIds":["sku-9", 12],"message_date":1451606400,"count":2}"#;
    assert_eq!(ingest(&mut c, &[&envelope, plain]), (3, 0, 0, vec![]));
    // 2016-01-01T04:30Z and 2016-01-01T00:00Z are both 2016-01-01 in Tokyo.
    assert_eq!(
        field(&mut c, "2016-01-01_2155", "ldp:sellPanel:addToCart:click"),
        Some(5)
    );
    assert_eq!(
        field(&mut c, "2016-01-01_sku-9", "cart::checkoutNow:click"),
        Some(2)
    );
    assert_eq!(
        field(&mut c, "2016-01-01_12", "cart::checkoutNow:click"),
        Some(2)
    );
    // Records are events: a record's id is remembered like any other.
    assert_eq!(ingest(&mut c, &[&envelope]), (1, 1, 0, vec![]));
}

#[test]
fn malformed_events_are_skipped_and_reported() {
    let server = Server::start();
    let mut c = server.conn();
    let good = r#"{"name":"a","listingIds":[1],"message_date":0}"#;
    let bad: &[(&str, &str)] = &[
        ("not json", "invalid JSON"),
        ("[1,2,3]", "invalid JSON"),
        (r#"{"listingIds":[1],"message_date":0}"#, "missing name"),
        (r#"{"name":"a","message_date":0}"#, "missing listings"),
        (
            r#"{"name":"a","listingIds":[],"message_date":0}"#,
            "listingIds is empty",
        ),
        (r#"{"name":"a","listingIds":[1]}"#, "missing time"),
        (
            r#"{"name":"a b","listingIds":[1],"message_date":0}"#,
            "invalid event name 'a b'",
        ),
        (
            r#"{"name":"a","listingIds":["no way"],"message_date":0}"#,
            "invalid listing id 'no way'",
        ),
        (
            r#"{"name":"a","listingIds":[1],"timestamp":"12/11/2015"}"#,
            "is not RFC 3339",
        ),
        (
            r#"{"Records":[{"kinesis":{"data":"***"}}]}"#,
            "kinesis.data is not valid base64",
        ),
    ];
    let mut args = vec![good];
    args.extend(bad.iter().map(|(j, _)| *j));
    args.push(good);
    let (applied, dups, rejected, errors) = ingest(&mut c, &args);
    assert_eq!((applied, dups, rejected), (2, 0, bad.len() as i64));
    for (i, (_, reason)) in bad.iter().enumerate() {
        let e = &errors[i];
        assert!(e.starts_with(&format!("{}: ", i + 1)), "{e}");
        assert!(e.contains(reason), "{e} should say {reason}");
    }
    assert_eq!(field(&mut c, "1970-01-01_1", "a"), Some(2));
    assert_eq!(
        info_field(&mut c, "listingstats", "listingstats_events_rejected").as_deref(),
        Some("10")
    );

    // STRICT: one bad event and nothing at all is written.
    let d = digest(&mut c);
    let e = err(
        &mut c,
        &["LISTINGSTATS.INGEST", "STRICT", good, "not json", good],
    );
    assert!(
        e.starts_with("ERR STRICT batch refused, nothing written: event 1: invalid JSON"),
        "{e}"
    );
    assert_eq!(digest(&mut c), d);
    assert_eq!(ingest(&mut c, &["strict", good]), (1, 0, 0, vec![]));
}

#[test]
fn batch_limits_and_arity() {
    let server = Server::start_with(Options::default().module(&["max-batch", "3"]));
    let mut c = server.conn();
    let good = r#"{"name":"a","listingIds":[1],"message_date":0}"#;
    let d = digest(&mut c);
    assert_eq!(
        err(&mut c, &["LISTINGSTATS.INGEST", good, good, good, good]),
        "ERR batch of 4 events is over max-batch 3"
    );
    // An envelope counts its records.
    let rec = format!(r#"{{"kinesis":{{"data":"{}"}}}}"#, b64(good));
    let env = format!(r#"{{"Records":[{rec},{rec},{rec},{rec}]}}"#);
    assert_eq!(
        err(&mut c, &["LISTINGSTATS.INGEST", &env]),
        "ERR batch of 4 events is over max-batch 3"
    );
    assert_eq!(
        err(&mut c, &["LISTINGSTATS.INGEST"]),
        "ERR wrong number of arguments for 'listingstats.ingest' command"
    );
    assert_eq!(
        err(&mut c, &["LISTINGSTATS.INGEST", "STRICT"]),
        "ERR wrong number of arguments for 'listingstats.ingest' command"
    );
    // A key of another type fails the batch before anything is written.
    let _: () = redis::cmd("SET")
        .arg("1970-01-01_2")
        .arg("x")
        .query(&mut c)
        .unwrap();
    let d2 = digest(&mut c);
    assert_ne!(d, d2);
    let e = err(
        &mut c,
        &[
            "LISTINGSTATS.INGEST",
            good,
            r#"{"name":"a","listingIds":[2],"message_date":0,"id":"w-1"}"#,
        ],
    );
    assert!(e.starts_with("WRONGTYPE"), "{e}");
    assert_eq!(digest(&mut c), d2);
    assert_eq!(
        ingest(
            &mut c,
            &[r#"{"name":"a","listingIds":[3],"message_date":0,"id":"w-1"}"#]
        ),
        (1, 0, 0, vec![]),
        "w-1 was not remembered by the failed batch"
    );
}

#[test]
fn one_write_per_key_reaches_the_aof() {
    let server = Server::start_with(Options::default().plain_aof());
    let mut c = server.conn();
    let e = |l: &str, n: &str| {
        format!(r#"{{"name":"{n}","listingIds":[{l}],"message_date":1449855906}}"#)
    };
    let batch = [
        e("1,1,2", "x"),
        e("1", "x"),
        e("2", "y"),
        e("1", "x"),
        e("3,3,3", "x"),
    ];
    let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
    assert_eq!(ingest(&mut c, &refs).0, 5);
    let aof = server.aof_text();
    // Distinct pairs: (1,x)=4, (2,x)=1, (2,y)=1, (3,x)=3. A key with one
    // counter replicates HINCRBY by the sum; a key with several, one HSET
    // of their final values (exact: the batch is atomic).
    assert_eq!(aof.matches("HINCRBY").count(), 2, "{aof}");
    assert_eq!(aof.matches("HSET").count(), 1, "{aof}");
    assert!(
        aof.contains("HSET\r\n$12\r\n2015-12-11_2\r\n$1\r\nx\r\n$1\r\n1\r\n$1\r\ny\r\n$1\r\n1\r\n"),
        "{aof}"
    );
    assert_eq!(field(&mut c, "2015-12-11_1", "x"), Some(4));
    assert_eq!(field(&mut c, "2015-12-11_3", "x"), Some(3));
    assert!(!aof.to_ascii_uppercase().contains("LISTINGSTATS"), "{aof}");
}

/// A deterministic stream of events with ids, some listings repeated.
fn stream(n: usize, start: i64, step: i64) -> Vec<String> {
    (0..n)
        .map(|i| {
            let t = start + step * i as i64;
            let name = if i % 5 == 0 {
                "ldp:sellPanel:addToCart:click"
            } else {
                "ldp:sellPanel:addToCart:impression"
            };
            let ids = match i % 3 {
                0 => format!("[{}]", 2150 + i % 4),
                1 => format!("[{}, {}]", 2150 + i % 4, 2150 + (i + 1) % 4),
                _ => format!("[{}, {}]", 2150 + i % 4, 2150 + i % 4),
            };
            format!(r#"{{"id":"s-{i}","name":"{name}","listingIds":{ids},"message_date":{t}}}"#)
        })
        .collect()
}

/// What the stream must produce: (day, listing, event) -> count.
fn expected_counts(events: &[String]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for e in events {
        let v: serde_json::Value = serde_json::from_str(e).unwrap();
        let day = chrono::DateTime::from_timestamp(v["message_date"].as_i64().unwrap(), 0)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string();
        for l in v["listingIds"].as_array().unwrap() {
            *out.entry(format!("{day}_{l}|{}", v["name"].as_str().unwrap()))
                .or_insert(0) += 1;
        }
    }
    out
}

fn actual_counts(c: &mut Connection) -> BTreeMap<String, i64> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("20*").query(c).unwrap();
    let mut out = BTreeMap::new();
    for k in keys {
        for (f, v) in hgetall(c, &k) {
            out.insert(format!("{k}|{f}"), v.parse().unwrap());
        }
    }
    out
}

#[test]
fn redelivery_shuffles_and_restarts_count_once() {
    let server = Server::start_with(Options::default().durable_aof());
    let mut c = server.conn();
    let events = stream(600, 1449855906, 977);
    let want = expected_counts(&events);
    // Batches of 100, then every batch delivered again, then a shuffled mix
    // with repeats inside one batch.
    for chunk in events.chunks(100) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        assert_eq!(ingest(&mut c, &refs).0, chunk.len() as i64);
    }
    for chunk in events.chunks(150) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        assert_eq!(ingest(&mut c, &refs), (0, chunk.len() as i64, 0, vec![]));
    }
    let mut mixed: Vec<&str> = events.iter().step_by(7).map(String::as_str).collect();
    mixed.extend(events.iter().rev().step_by(11).map(String::as_str));
    mixed.extend(mixed.clone());
    assert_eq!(ingest(&mut c, &mixed).0, 0);
    assert_eq!(actual_counts(&mut c), want);

    // After a restart from the AOF the ids are still known.
    let server = server.restart();
    let mut c = server.conn();
    let refs: Vec<&str> = events.iter().take(200).map(String::as_str).collect();
    assert_eq!(ingest(&mut c, &refs), (0, 200, 0, vec![]));
    assert_eq!(actual_counts(&mut c), want);
}

#[test]
fn a_backward_running_stream_lands_on_its_own_days() {
    let server = Server::start();
    let mut c = server.conn();
    // Newest first, one event every ~3 hours going back three weeks, like
    // the seed's generator run with `backwards`.
    let events = stream(170, 1451606400, -10_800);
    let want = expected_counts(&events);
    assert!(
        want.keys().any(|k| k.starts_with("2015-12-1"))
            && want.keys().any(|k| k.starts_with("2016-01-01"))
    );
    for chunk in events.chunks(17) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        ingest(&mut c, &refs);
    }
    assert_eq!(actual_counts(&mut c), want);
}

#[test]
fn a_promoted_replica_knows_the_ids() {
    let master = Server::start();
    let replica = Server::start();
    let (mut m, mut r) = (master.conn(), replica.conn());
    replica.replicate(&master);
    let events = stream(300, 1449855906, 3600);
    for chunk in events.chunks(60) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        ingest(&mut m, &refs);
    }
    let _: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut m).unwrap();
    assert_eq!(digest(&mut m), digest(&mut r));
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut r)
        .unwrap();
    let refs: Vec<&str> = events.iter().map(String::as_str).collect();
    assert_eq!(
        ingest(&mut r, &refs),
        (0, 300, 0, vec![]),
        "the replica counted redelivered events again"
    );
    assert_eq!(actual_counts(&mut r), expected_counts(&events));
}

#[test]
fn resp3_clients_see_a_map() {
    let server = Server::start();
    let mut c = server.conn_resp3();
    let reply: Value = redis::cmd("LISTINGSTATS.INGEST")
        .arg(r#"{"name":"a","listingIds":[1],"message_date":0}"#)
        .arg("{}")
        .query(&mut c)
        .unwrap();
    match reply {
        Value::Map(pairs) => {
            assert_eq!(pairs.len(), 4);
            assert_eq!(
                pairs[0],
                (Value::BulkString(b"applied".to_vec()), Value::Int(1))
            );
            assert_eq!(
                pairs[2],
                (Value::BulkString(b"rejected".to_vec()), Value::Int(1))
            );
        }
        other => panic!("expected a map, got {other:?}"),
    }
}
