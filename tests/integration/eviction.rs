//! Eviction: dedup state must not be what `maxmemory` takes first.

use crate::common::*;

fn events(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"id":"evt-{i}","name":"cart::checkoutNow:impression","listingIds":[{}],"message_date":{}}}"#,
                i % 50,
                1_450_742_400 + i
            )
        })
        .collect()
}

fn ingest_all(c: &mut Connection, events: &[String]) {
    for batch in events.chunks(100) {
        let mut cmd = redis::cmd("LISTINGSTATS.INGEST");
        for e in batch {
            cmd.arg(e);
        }
        let _: Value = cmd.query(c).unwrap();
    }
}

fn total_count(c: &mut Connection) -> i64 {
    (0..50)
        .map(|l| {
            let v: Option<i64> = redis::cmd("HGET")
                .arg(format!("2015-12-22_{l}"))
                .arg("cart::checkoutNow:impression")
                .query(c)
                .unwrap();
            v.unwrap_or(0)
        })
        .sum()
}

/// Under `volatile-lru`, filling memory with volatile cache keys evicts
/// only them: the dedup shards have no TTL, so redelivered events still
/// count once.
#[test]
fn volatile_eviction_never_counts_a_redelivery_twice() {
    let server = Server::start_with(Options::default().server(&[
        "maxmemory",
        "20mb",
        "maxmemory-policy",
        "volatile-lru",
    ]));
    let mut c = server.conn();
    let sent = events(1000);
    ingest_all(&mut c, &sent);
    assert_eq!(total_count(&mut c), 1000);

    let value = "x".repeat(1000);
    for chunk in 0..40 {
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            pipe.cmd("SET")
                .arg(format!("cache:{}", chunk * 1000 + i))
                .arg(&value)
                .arg("EX")
                .arg(3600)
                .ignore();
        }
        let _: () = pipe.query(&mut c).unwrap();
    }
    let evicted: u64 = info_field(&mut c, "stats", "evicted_keys")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        evicted > 1000,
        "the fill should have evicted cache keys, evicted {evicted}"
    );

    ingest_all(&mut c, &sent);
    assert_eq!(
        total_count(&mut c),
        1000,
        "redelivered events counted again"
    );
    assert_eq!(
        info_field(
            &mut c,
            "listingstats",
            "listingstats_dedup_safe_under_eviction"
        )
        .as_deref(),
        Some("1")
    );
}

/// Under `allkeys-*` any key can go: the module says so in INFO and in the
/// log, and takes it back when the policy changes again.
#[test]
fn allkeys_policies_are_flagged() {
    let server = Server::start();
    let mut c = server.conn();
    let field = |c: &mut Connection| {
        info_field(c, "listingstats", "listingstats_dedup_safe_under_eviction")
    };
    assert_eq!(field(&mut c).as_deref(), Some("1"));
    let set = |c: &mut Connection, policy: &str| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .query(c)
            .unwrap();
    };
    set(&mut c, "allkeys-lru");
    assert_eq!(field(&mut c).as_deref(), Some("0"));
    assert!(
        server
            .log()
            .contains("maxmemory-policy allkeys-lru may evict any key"),
        "{}",
        server.log()
    );
    set(&mut c, "volatile-lfu");
    assert_eq!(field(&mut c).as_deref(), Some("1"));

    let at_load =
        Server::start_with(Options::default().server(&["maxmemory-policy", "allkeys-lfu"]));
    assert_eq!(field(&mut at_load.conn()).as_deref(), Some("0"));
}
