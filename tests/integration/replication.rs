//! Replicas and the AOF receive effects, not commands: the data on a replica
//! and after an AOF reload equals the master's, dedup markers included.

use crate::common::*;

/// A few hundred INCRs mixing every way of choosing the day and ids,
/// including retries of the same id.
fn mixed_workload(c: &mut Connection, ids_from: usize) {
    let events = [
        "ldp:sellPanel:addToCart:impression",
        "ldp:sellPanel:addToCart:click",
        "cart::checkoutNow:click",
    ];
    for i in 0..300usize {
        let listing = format!("{}", 2150 + i % 7);
        let event = events[i % 3];
        let by = ((i * 7) % 5) as i64 - 1;
        let mut args: Vec<String> = vec![
            "LISTINGSTATS.INCR".into(),
            listing,
            event.into(),
            "BY".into(),
            by.to_string(),
        ];
        match i % 3 {
            0 => args.extend(["DATE".into(), format!("2015-12-{:02}", 25 + i % 7)]),
            1 => args.extend(["AT".into(), (1449855906 + (i as i64) * 40_000).to_string()]),
            _ => {} // today, by the master's clock
        }
        if i % 4 == 0 {
            // Every id is sent twice, the second time as a redelivery.
            args.extend(["ID".into(), format!("evt-{}", ids_from + i / 8)]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        int(c, &refs);
    }
}

#[test]
fn replica_data_equals_master_data() {
    let master = Server::start_with(Options::default().module(&["timezone", "Europe/London"]));
    let replica = Server::start_with(Options::default().module(&["timezone", "Europe/London"]));
    let (mut m, mut r) = (master.conn(), replica.conn());
    replica.replicate(&master);

    mixed_workload(&mut m, 0);
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(10_000).query(&mut m).unwrap();
    assert_eq!(acked, 1);
    let keys: i64 = redis::cmd("DBSIZE").query(&mut m).unwrap();
    assert!(keys > 40, "workload wrote only {keys} keys");
    assert_eq!(
        digest(&mut m),
        digest(&mut r),
        "replica differs from master"
    );
    // Dedup shard hashes and their registry carry no TTL on either side
    // (eviction under volatile-* must never pick them).
    let shards: Vec<String> = redis::cmd("KEYS")
        .arg("listingstats:seen:*")
        .query(&mut m)
        .unwrap();
    assert!(
        shards.iter().any(|k| k == "listingstats:seen:generations"),
        "{shards:?}"
    );
    assert!(shards.len() > 1, "{shards:?}");
    for shard in &shards {
        let t_m: i64 = redis::cmd("PEXPIRETIME").arg(shard).query(&mut m).unwrap();
        let t_r: i64 = redis::cmd("PEXPIRETIME").arg(shard).query(&mut r).unwrap();
        assert_eq!((t_m, t_r), (-1, -1), "{shard}");
    }

    // After a failover the promoted replica still knows the ids.
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut r)
        .unwrap();
    let before = hgetall(&mut r, "2015-12-25_2150");
    let again = int(
        &mut r,
        &[
            "LISTINGSTATS.INCR",
            "2150",
            "ldp:sellPanel:addToCart:impression",
            "BY",
            "5",
            "DATE",
            "2015-12-25",
            "ID",
            "evt-0",
        ],
    );
    assert_eq!(
        hgetall(&mut r, "2015-12-25_2150"),
        before,
        "a known id was counted again after failover"
    );
    assert!(again >= 0);
}

#[test]
fn aof_restart_keeps_counters_and_remembered_ids() {
    let server = Server::start_with(Options::default().durable_aof());
    let mut c = server.conn();
    mixed_workload(&mut c, 1000);
    let before = digest(&mut c);
    let counter = int(
        &mut c,
        &[
            "LISTINGSTATS.INCR",
            "42",
            "e",
            "DATE",
            "2015-12-31",
            "ID",
            "persist-1",
        ],
    );
    let before_marker = digest(&mut c);
    assert_ne!(before, before_marker);

    let server = server.restart();
    let mut c = server.conn();
    assert_eq!(
        digest(&mut c),
        before_marker,
        "data after AOF reload differs"
    );
    let again = int(
        &mut c,
        &[
            "LISTINGSTATS.INCR",
            "42",
            "e",
            "DATE",
            "2015-12-31",
            "ID",
            "persist-1",
        ],
    );
    assert_eq!(
        again, counter,
        "an id remembered before the restart was counted again"
    );
    let shards: Vec<String> = redis::cmd("KEYS")
        .arg("listingstats:seen:*")
        .query(&mut c)
        .unwrap();
    assert!(shards.len() > 1, "{shards:?}");
}

#[test]
fn aof_holds_hincrby_not_module_commands() {
    let server = Server::start_with(Options::default().plain_aof());
    let mut c = server.conn();
    int(
        &mut c,
        &["LISTINGSTATS.INCR", "1", "e", "BY", "3", "ID", "a-1"],
    );
    let aof = server.aof_text();
    assert!(aof.contains("HINCRBY"), "{aof}");
    assert!(
        aof.contains("HSET") && aof.contains("listingstats:seen:generations"),
        "{aof}"
    );
    assert!(
        !aof.contains("PEXPIREAT"),
        "dedup shards carry no TTL: {aof}"
    );
    assert!(
        !aof.to_ascii_uppercase().contains("LISTINGSTATS.INCR"),
        "{aof}"
    );
}
