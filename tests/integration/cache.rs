//! The query cache (the counters the per-day index keeps, see
//! `listingstats_core::day_index`) against the hashes: after every kind of
//! writer, an answer served from the cache equals the answer read from the
//! hashes with the cache off.

use std::time::Duration;

use crate::common::*;

const CLICK: &str = "cart::checkoutNow:click";
const IMP: &str = "cart::checkoutNow:impression";
const LDP_CLICK: &str = "ldp:sellPanel:addToCart:click";

fn cmd(c: &mut Connection, args: &[&str]) -> Value {
    call(c, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn info_num(c: &mut Connection, field: &str) -> u64 {
    info_field(c, "listingstats", &format!("listingstats_{field}"))
        .unwrap()
        .parse()
        .unwrap()
}

fn questions(metrics: &str) -> Vec<Vec<String>> {
    let q = |rest: &[&str]| {
        let mut v = vec!["LISTINGSTATS.QUERY".to_string(), metrics.to_string()];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    vec![
        q(&["2015-12-28", "2016-01-03", "1,2,3,4,5,6,7,8"]),
        q(&[
            "2015-12-28",
            "2016-01-03",
            "1,2,3,4,5,6,7,8",
            "GROUPBY",
            "LISTING",
        ]),
        q(&["2015-12-28", "2016-01-03", "*"]),
        q(&["2015-12-28", "2016-01-03", "*", "GROUPBY", "TOTAL"]),
        q(&["2015-12-28", "2016-01-03", "*", "FORMAT", "JSON"]),
        // TOP over a range sums each listing's known rows as it plans.
        top(&["2015-12-28", "2016-01-03", "20"]),
        top(&["2015-12-30", "2016-01-01", "3", "MINDENOM", "40"]),
    ]
}

fn top(rest: &[&str]) -> Vec<String> {
    let mut v = vec![
        "LISTINGSTATS.TOP".to_string(),
        "cart_to_checkout_ctr".to_string(),
    ];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

/// Asks every question from the cache, then with the cache off (read from
/// the hashes; `*` from a scan of the keyspace), and compares; then turns
/// the cache back on and asks again, which fills it for the next step.
/// Returns the cache hits of the first round.
fn assert_cache_matches_hashes(c: &mut Connection, metrics: &str, what: &str) -> u64 {
    let hits = info_num(c, "cache_hits");
    let cached: Vec<Value> = questions(metrics)
        .iter()
        .map(|q| cmd(c, &q.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect();
    let hits = info_num(c, "cache_hits") - hits;
    cmd(c, &["CONFIG", "SET", "listingstats.cache", "no"]);
    cmd(c, &["CONFIG", "SET", "listingstats.star-source", "scan"]);
    for (q, from_cache) in questions(metrics).iter().zip(&cached) {
        let q: Vec<&str> = q.iter().map(String::as_str).collect();
        assert_eq!(&cmd(c, &q), from_cache, "{what}: {q:?}");
    }
    cmd(c, &["CONFIG", "SET", "listingstats.star-source", "index"]);
    cmd(c, &["CONFIG", "SET", "listingstats.cache", "yes"]);
    for (q, from_cache) in questions(metrics).iter().zip(&cached) {
        let q: Vec<&str> = q.iter().map(String::as_str).collect();
        assert_eq!(&cmd(c, &q), from_cache, "{what} (refilled): {q:?}");
    }
    hits
}

fn day_key(day: &str, listing: u32) -> String {
    format!("{day}_{listing}")
}

const DAYS: [&str; 7] = [
    "2015-12-28",
    "2015-12-29",
    "2015-12-30",
    "2015-12-31",
    "2016-01-01",
    "2016-01-02",
    "2016-01-03",
];

fn write_plain(c: &mut Connection) {
    for (d, day) in DAYS.iter().enumerate() {
        for l in 1..=8u32 {
            let n = (l as usize * 7 + d) as i64;
            cmd(
                c,
                &[
                    "HSET",
                    &day_key(day, l),
                    IMP,
                    &(20 + n % 13).to_string(),
                    CLICK,
                    &(n % 5).to_string(),
                    LDP_CLICK,
                    &(n % 3).to_string(),
                ],
            );
        }
    }
}

#[test]
fn the_cache_equals_the_hashes_after_every_kind_of_writer() {
    let server = Server::start();
    let mut c = server.conn();
    let metrics = "cart_to_checkout_ctr,ldp_add_to_cart_ctr";
    write_plain(&mut c);
    assert_cache_matches_hashes(&mut c, metrics, "plain HSET");
    assert!(info_num(&mut c, "cache_columns") >= 4);
    assert!(info_num(&mut c, "cache_bytes") > 0);

    // Each step changes some cached row; the first round of the next check
    // is served from the cache (hits), so a missed change shows as a
    // difference.
    let steps: Vec<(&str, Vec<Vec<&str>>)> = vec![
        ("HINCRBY", vec![vec!["HINCRBY", "2015-12-28_1", CLICK, "7"]]),
        ("HSET", vec![vec!["HSET", "2015-12-29_2", IMP, "1000"]]),
        ("HDEL", vec![vec!["HDEL", "2015-12-30_3", CLICK]]),
        (
            "INCR of an existing hash",
            vec![vec!["LISTINGSTATS.INCR", "4", CLICK, "DATE", "2015-12-31"]],
        ),
        (
            "INCR of a new hash",
            vec![vec!["LISTINGSTATS.INCR", "9", IMP, "DATE", "2015-12-31"]],
        ),
        (
            "INGEST",
            vec![vec![
                "LISTINGSTATS.INGEST",
                r#"{"name":"cart::checkoutNow:click","listingIds":[5,5,6],"message_date":1451606400}"#,
                r#"{"name":"cart::checkoutNow:impression","listingIds":[5,6],"message_date":1451606400}"#,
            ]],
        ),
        ("DEL", vec![vec!["DEL", "2016-01-02_1"]]),
        ("UNLINK", vec![vec!["UNLINK", "2016-01-02_2"]]),
        (
            "SET over a day hash",
            vec![vec!["SET", "2016-01-02_3", "x"]],
        ),
        (
            "SUNIONSTORE over a day hash",
            vec![
                vec!["SADD", "some-set", "a"],
                vec!["SUNIONSTORE", "2016-01-02_4", "some-set"],
            ],
        ),
        (
            "SORT STORE over a day hash",
            vec![
                vec!["RPUSH", "some-list", "3", "1"],
                vec!["SORT", "some-list", "STORE", "2016-01-02_5"],
            ],
        ),
        (
            "RENAME onto a day hash",
            vec![vec!["RENAME", "2016-01-03_1", "2016-01-03_2"]],
        ),
        (
            "COPY REPLACE onto a day hash",
            vec![vec!["COPY", "2016-01-03_3", "2016-01-03_4", "REPLACE"]],
        ),
        (
            "MULTI/EXEC",
            vec![
                vec!["MULTI"],
                vec!["HINCRBY", "2016-01-01_7", CLICK, "3"],
                vec!["HINCRBY", "2016-01-01_8", IMP, "3"],
                vec!["EXEC"],
            ],
        ),
        (
            "a Lua script",
            vec![vec![
                "EVAL",
                "redis.call('HINCRBY', KEYS[1], ARGV[1], 11) return 1",
                "1",
                "2016-01-01_6",
                CLICK,
            ]],
        ),
        (
            "MOVE out and in",
            vec![
                vec!["MOVE", "2015-12-28_8", "1"],
                vec!["SELECT", "1"],
                vec!["HINCRBY", "2015-12-28_8", CLICK, "100"],
                vec!["MOVE", "2015-12-28_8", "0"],
                vec!["SELECT", "0"],
            ],
        ),
    ];
    for (what, commands) in &steps {
        for command in commands {
            cmd(&mut c, command);
        }
        let hits = assert_cache_matches_hashes(&mut c, metrics, what);
        assert!(hits > 0, "{what}: the cache served nothing");
    }

    // RESTORE REPLACE of a dump of another day hash.
    let dump: Vec<u8> = redis::cmd("DUMP")
        .arg("2015-12-29_5")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("RESTORE")
        .arg("2015-12-29_6")
        .arg(0)
        .arg(dump)
        .arg("REPLACE")
        .query(&mut c)
        .unwrap();
    assert_cache_matches_hashes(&mut c, metrics, "RESTORE REPLACE");

    // A key past its expiry but not yet deleted (active expiry off): the
    // cache must not count it, as a read of the hash does not.
    cmd(&mut c, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    cmd(&mut c, &["PEXPIRE", "2015-12-30_7", "50"]);
    std::thread::sleep(Duration::from_millis(120));
    assert_cache_matches_hashes(&mut c, metrics, "a key past its expiry");

    // A field with its own expiry (HEXPIRE, Redis 7.4+ and Valkey 9), past
    // but not yet reclaimed: the cache must not count it either.
    match call(
        &mut c,
        &["HPEXPIRE", "2015-12-29_3", "50", "FIELDS", "1", CLICK],
    ) {
        Ok(_) => {
            std::thread::sleep(Duration::from_millis(120));
            assert_cache_matches_hashes(&mut c, metrics, "a field past its expiry");
        }
        // Older servers have no field expiry at all.
        Err(e) => assert!(e.to_lowercase().contains("unknown command"), "{e}"),
    }
    cmd(&mut c, &["DEBUG", "SET-ACTIVE-EXPIRE", "1"]);

    // A custom metric: a new column, then writes with a pattern column.
    cmd(
        &mut c,
        &[
            "LISTINGSTATS.METRIC",
            "SET",
            "all_clicks",
            "/.*:click/",
            IMP,
        ],
    );
    assert_cache_matches_hashes(
        &mut c,
        "all_clicks,cart_to_checkout_ctr",
        "a pattern metric",
    );
    cmd(
        &mut c,
        &["LISTINGSTATS.INCR", "2", LDP_CLICK, "DATE", "2015-12-31"],
    );
    cmd(&mut c, &["HINCRBY", "2015-12-31_3", "other:click", "5"]);
    let hits = assert_cache_matches_hashes(&mut c, "all_clicks", "writes under a pattern");
    assert!(hits > 0);

    // FLUSHDB, SWAPDB and a reload replace data wholesale.
    cmd(&mut c, &["SELECT", "1"]);
    cmd(&mut c, &["HSET", "2015-12-28_1", CLICK, "1", IMP, "2"]);
    cmd(&mut c, &["SELECT", "0"]);
    cmd(&mut c, &["SWAPDB", "0", "1"]);
    assert_cache_matches_hashes(&mut c, metrics, "SWAPDB");
    cmd(&mut c, &["SWAPDB", "0", "1"]);
    cmd(&mut c, &["DEBUG", "RELOAD"]);
    assert_cache_matches_hashes(&mut c, metrics, "DEBUG RELOAD");
    cmd(&mut c, &["FLUSHDB"]);
    write_plain(&mut c);
    assert_cache_matches_hashes(&mut c, metrics, "FLUSHDB and new data");
}

#[test]
fn a_replica_keeps_its_own_cache_equal_to_its_data() {
    let master = Server::start();
    let replica = Server::start();
    replica.replicate(&master);
    let mut m = master.conn();
    let mut r = replica.conn();
    write_plain(&mut m);
    let metrics = "cart_to_checkout_ctr,ldp_add_to_cart_ctr";
    let wait = |m: &mut Connection| {
        let _: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(m).unwrap();
    };
    wait(&mut m);
    assert_cache_matches_hashes(&mut r, metrics, "replica, plain writes");
    cmd(
        &mut m,
        &["LISTINGSTATS.INCR", "3", CLICK, "DATE", "2015-12-30"],
    );
    cmd(&mut m, &["HINCRBY", "2015-12-31_2", IMP, "9"]);
    cmd(&mut m, &["DEL", "2016-01-01_4"]);
    wait(&mut m);
    let hits = assert_cache_matches_hashes(&mut r, metrics, "replica, module and plain writes");
    assert!(hits > 0);
    // And the replica's answers are the master's.
    for q in questions(metrics) {
        let q: Vec<&str> = q.iter().map(String::as_str).collect();
        assert_eq!(cmd(&mut r, &q), cmd(&mut m, &q), "{q:?}");
    }
    // The definitions arrive by replication: the replica's columns follow
    // them with no query on the replica, and back again.
    let columns = info_num(&mut r, "cache_columns");
    cmd(
        &mut m,
        &[
            "LISTINGSTATS.METRIC",
            "SET",
            "ldp_clicks",
            "search:click",
            IMP,
        ],
    );
    wait(&mut m);
    assert!(eventually(5, || info_num(&mut r, "cache_columns") == columns + 1));
    cmd(&mut m, &["LISTINGSTATS.METRIC", "DEL", "ldp_clicks"]);
    wait(&mut m);
    assert!(eventually(5, || info_num(&mut r, "cache_columns") == columns));
}

#[test]
fn the_cache_is_filled_ahead_of_queries_after_a_reload_and_a_change() {
    let server = Server::start();
    let mut c = server.conn();
    write_plain(&mut c);
    let entries = info_num(&mut c, "index_entries");
    assert_eq!(entries, 56);
    let warmed = |c: &mut Connection| eventually(10, || info_num(c, "cache_warming") == 0);
    // A reload rebuilds the index; a pass then reads every day hash.
    cmd(&mut c, &["DEBUG", "RELOAD"]);
    assert!(warmed(&mut c));
    assert_eq!(
        info_num(&mut c, "cache_bytes"),
        entries * 4 * 8 + entries * 4
    );
    // Every question is answered from the cache: the pass read every hash.
    let metrics = "cart_to_checkout_ctr,ldp_add_to_cart_ctr";
    let misses = info_num(&mut c, "cache_misses");
    for q in questions(metrics) {
        cmd(&mut c, &q.iter().map(String::as_str).collect::<Vec<_>>());
    }
    assert_eq!(info_num(&mut c, "cache_misses"), misses);
    assert_cache_matches_hashes(&mut c, metrics, "after a warm-up");

    // A metric with a new event name: METRIC SET itself changes the
    // cache's columns (no query needed) and starts a pass, which fills it
    // again.
    cmd(
        &mut c,
        &[
            "LISTINGSTATS.METRIC",
            "SET",
            "ldp_clicks",
            "search:click",
            IMP,
        ],
    );
    assert_eq!(info_num(&mut c, "cache_columns"), 5);
    assert!(warmed(&mut c));
    assert_eq!(
        info_num(&mut c, "cache_bytes"),
        entries * 5 * 8 + entries * 4
    );
    cmd(
        &mut c,
        &[
            "LISTINGSTATS.QUERY",
            "ldp_clicks",
            "2015-12-28",
            "2015-12-28",
            "1",
        ],
    );
    assert!(warmed(&mut c));
    assert_eq!(info_num(&mut c, "cache_columns"), 5);
    assert_eq!(
        info_num(&mut c, "cache_bytes"),
        entries * 5 * 8 + entries * 4
    );
    let misses = info_num(&mut c, "cache_misses");
    cmd(
        &mut c,
        &[
            "LISTINGSTATS.QUERY",
            "ldp_clicks",
            "2015-12-28",
            "2016-01-03",
            "*",
        ],
    );
    assert_eq!(info_num(&mut c, "cache_misses"), misses);

    // Off frees it at once; on fills it again.
    cmd(&mut c, &["CONFIG", "SET", "listingstats.cache", "no"]);
    assert_eq!(info_num(&mut c, "cache_bytes"), 0);
    cmd(&mut c, &["CONFIG", "SET", "listingstats.cache", "yes"]);
    assert!(warmed(&mut c));
    assert_eq!(
        info_num(&mut c, "cache_bytes"),
        entries * 5 * 8 + entries * 4
    );
}
