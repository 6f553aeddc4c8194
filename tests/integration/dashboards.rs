//! Dashboards: site-wide answers from the days' totals (analytics on
//! write), identical queries computed once, and `MAXAGE`.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::common::*;

const CLICK: &str = "cart::checkoutNow:click";
const IMP: &str = "cart::checkoutNow:impression";
const METRIC: &str = "cart_to_checkout_ctr";
const FROM: &str = "2015-12-28";
const TO: &str = "2016-01-03";

fn info_num(c: &mut Connection, field: &str) -> u64 {
    info_field(c, "listingstats", &format!("listingstats_{field}"))
        .unwrap()
        .parse()
        .unwrap()
}

fn day(i: u64) -> String {
    const DAYS: [&str; 7] = [
        "2015-12-28",
        "2015-12-29",
        "2015-12-30",
        "2015-12-31",
        "2016-01-01",
        "2016-01-02",
        "2016-01-03",
    ];
    DAYS[(i % 7) as usize].to_string()
}

/// The site-wide sums by date, from the hashes themselves (SCAN +
/// HGETALL): (date, clicks, impressions), dates with either non-zero.
fn recomputed(c: &mut Connection) -> Vec<(String, i64, i64)> {
    let mut sums: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    let keys: Vec<String> = redis::cmd("KEYS").arg("20*_*").query(c).unwrap();
    for key in keys {
        let date = key[..10].to_string();
        if date.as_str() < FROM || date.as_str() > TO {
            continue;
        }
        let kind: String = redis::cmd("TYPE").arg(&key).query(c).unwrap();
        if kind != "hash" {
            continue;
        }
        let fields = hgetall(c, &key);
        let get = |f: &str| {
            fields
                .iter()
                .find(|(k, _)| k == f)
                .map_or(0, |(_, v)| v.parse::<i64>().unwrap())
        };
        let e = sums.entry(date).or_default();
        e.0 += get(CLICK);
        e.1 += get(IMP);
    }
    sums.into_iter()
        .filter(|(_, (n, d))| *n != 0 || *d != 0)
        .map(|(day, (n, d))| (day, n, d))
        .collect()
}

/// QUERY `*` GROUPBY DATE as (date, numerator, denominator).
fn by_date(c: &mut Connection) -> Vec<(String, i64, i64)> {
    let Value::Array(rows) = call(
        c,
        &[
            "LISTINGSTATS.QUERY",
            METRIC,
            FROM,
            TO,
            "*",
            "GROUPBY",
            "DATE",
        ],
    )
    .unwrap() else {
        panic!("not an array")
    };
    rows.iter()
        .map(|r| {
            let Value::Array(f) = r else { panic!("{r:?}") };
            let (Value::BulkString(d), Value::Int(n), Value::Int(den)) = (&f[1], &f[3], &f[4])
            else {
                panic!("{f:?}")
            };
            (String::from_utf8_lossy(d).into_owned(), *n, *den)
        })
        .collect()
}

fn total(c: &mut Connection) -> Option<(i64, i64)> {
    let Value::Array(rows) = call(
        c,
        &[
            "LISTINGSTATS.QUERY",
            METRIC,
            FROM,
            TO,
            "*",
            "GROUPBY",
            "TOTAL",
        ],
    )
    .unwrap() else {
        panic!("not an array")
    };
    rows.first().map(|r| {
        let Value::Array(f) = r else { panic!("{r:?}") };
        let (Value::Int(n), Value::Int(d)) = (&f[3], &f[4]) else {
            panic!("{f:?}")
        };
        (*n, *d)
    })
}

fn assert_totals_exact(c: &mut Connection, what: &str) {
    let want = recomputed(c);
    assert_eq!(by_date(c), want, "{what}: by date");
    let sum = want.iter().fold((0, 0), |(n, d), (_, a, b)| (n + a, d + b));
    assert_eq!(total(c), (sum != (0, 0)).then_some(sum), "{what}: in total");
}

/// The site-wide sums by date and in total equal a recomputation from the
/// day hashes after random interleavings of every kind of writer, and the
/// days' totals do answer (INFO `totals_days` grows).
#[test]
fn totals_equal_the_hashes_after_every_kind_of_writer() {
    let server = Server::start_with(Options::default().server(&["maxmemory-policy", "noeviction"]));
    let mut c = server.conn();
    let mut rng = Rng(0x5eed);
    for i in 0..400u64 {
        let d = day(i % 7);
        int(
            &mut c,
            &[
                "LISTINGSTATS.INCR",
                &(i % 60).to_string(),
                IMP,
                "DATE",
                &d,
                "BY",
                "5",
            ],
        );
    }
    // Warm: the first query reads the days and fills their rows.
    assert_totals_exact(&mut c, "start");
    for step in 0..120 {
        let listing = rng.below(80).to_string();
        let d = day(rng.below(7));
        let key = format!("{d}_{listing}");
        let op = rng.below(12);
        match op {
            0..=2 => {
                int(&mut c, &["LISTINGSTATS.INCR", &listing, CLICK, "DATE", &d]);
            }
            3 => {
                let ev = format!(
                    r#"{{"name":"{IMP}","listingIds":[{listing},{}],"message_date":{}}}"#,
                    rng.below(80),
                    1451260800 + rng.below(7) * 86400
                );
                call(&mut c, &["LISTINGSTATS.INGEST", &ev]).unwrap();
            }
            4 => {
                int(&mut c, &["HINCRBY", &key, CLICK, "3"]);
            }
            5 => {
                call(&mut c, &["HSET", &key, IMP, "11", "other", "1"]).unwrap();
            }
            6 => {
                call(&mut c, &["HDEL", &key, IMP]).unwrap();
            }
            7 => {
                call(&mut c, &["DEL", &key]).unwrap();
            }
            8 => {
                call(&mut c, &["PEXPIRE", &key, "1"]).unwrap();
                std::thread::sleep(Duration::from_millis(5));
                // Expired lazily when read, or by the active cycle.
                let _ = call(&mut c, &["EXISTS", &key]);
            }
            9 => {
                call(&mut c, &["SET", &key, "not a hash"]).unwrap();
            }
            10 if step % 40 == 10 => {
                call(&mut c, &["DEBUG", "RELOAD"]).unwrap();
            }
            10 => {
                call(&mut c, &["SWAPDB", "0", "1"]).unwrap();
                assert_totals_exact(&mut c, "after SWAPDB");
                call(&mut c, &["SWAPDB", "0", "1"]).unwrap();
            }
            _ if step % 50 == 11 => {
                call(&mut c, &["FLUSHALL"]).unwrap();
            }
            _ => {
                int(&mut c, &["HINCRBY", &key, IMP, "2"]);
            }
        }
        assert_totals_exact(&mut c, &format!("step {step} op {op}"));
    }
    assert!(
        info_num(&mut c, "totals_days") > 100,
        "days answered from their totals"
    );
}

/// A replica keeps its own totals from what it replicates.
#[test]
fn a_replica_keeps_exact_totals() {
    let master = Server::start();
    let replica = Server::start();
    replica.replicate(&master);
    let mut m = master.conn();
    let mut r = replica.conn();
    for i in 0..300u64 {
        int(
            &mut m,
            &[
                "LISTINGSTATS.INCR",
                &(i % 40).to_string(),
                IMP,
                "DATE",
                &day(i % 7),
            ],
        );
        if i % 3 == 0 {
            int(
                &mut m,
                &["HINCRBY", &format!("{}_{}", day(i % 5), i % 40), CLICK, "1"],
            );
        }
    }
    let _: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut m).unwrap();
    assert_totals_exact(&mut r, "replica");
    for i in 0..100u64 {
        int(
            &mut m,
            &[
                "LISTINGSTATS.INCR",
                &(i % 40).to_string(),
                CLICK,
                "DATE",
                &day(i % 7),
            ],
        );
    }
    let _: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut m).unwrap();
    assert_totals_exact(&mut r, "replica after more writes");
    assert!(info_num(&mut r, "totals_days") > 0);
}

/// A user who may not read every day hash never gets the totals: its `*`
/// answer counts only the hashes it may read.
#[test]
fn totals_are_for_users_who_may_read_every_day_hash() {
    let server = Server::start();
    let mut c = server.conn();
    for i in 0..50u64 {
        int(
            &mut c,
            &[
                "LISTINGSTATS.INCR",
                &(i % 10).to_string(),
                IMP,
                "DATE",
                &day(i % 3),
            ],
        );
    }
    assert_totals_exact(&mut c, "all");
    let before = info_num(&mut c, "totals_days");
    let mut limited = server.user("dec", &["resetkeys", "~2015-12-*"]);
    let rows = by_date(&mut limited);
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["2015-12-28", "2015-12-29", "2015-12-30"]
    );
    assert_eq!(info_num(&mut c, "totals_days"), before);
}

/// MAXAGE: an answer computed at most that long ago is served (no work);
/// never an older one, checked against the clock; without MAXAGE every
/// answer is fresh.
#[test]
fn maxage_never_serves_an_answer_older_than_asked() {
    let server = Server::start();
    let mut c = server.conn();
    let q = |extra: &[&str]| {
        let mut v = vec![
            "LISTINGSTATS.QUERY",
            METRIC,
            FROM,
            TO,
            "1",
            "GROUPBY",
            "TOTAL",
        ];
        v.extend_from_slice(extra);
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let ask = |c: &mut Connection, extra: &[&str]| -> i64 {
        let args = q(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match call(c, &args).unwrap() {
            Value::Array(rows) if rows.is_empty() => 0,
            Value::Array(rows) => match &rows[0] {
                Value::Array(f) => match f[4] {
                    Value::Int(d) => d,
                    _ => panic!("{f:?}"),
                },
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    };
    // Each INCR makes the true denominator one more; an answer of n was
    // computed after the n-th INCR and before the (n+1)-th.
    let mut written_at: Vec<Instant> = Vec::new();
    let mut served_stale = 0;
    let start = Instant::now();
    let mut round = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        int(&mut c, &["LISTINGSTATS.INCR", "1", IMP, "DATE", FROM]);
        written_at.push(Instant::now());
        let truth = written_at.len() as i64;
        for _ in 0..3 {
            let asked_at = Instant::now();
            let got = ask(&mut c, &["MAXAGE", "200"]);
            assert!(got <= truth && got >= 1, "{got} of {truth}");
            if got < truth {
                served_stale += 1;
                // Computed before write number `got` + 1, which happened
                // at written_at[got]: it is at least that old.
                let age = asked_at.duration_since(written_at[got as usize]);
                assert!(
                    age <= Duration::from_millis(200),
                    "served an answer at least {age:?} old for MAXAGE 200"
                );
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        round += 1;
        if round % 4 == 0 {
            assert_eq!(ask(&mut c, &[]), truth, "without MAXAGE: fresh");
        }
    }
    assert!(served_stale > 0, "MAXAGE served recent answers");
    assert!(info_num(&mut c, "shared_answers") > 0);
    assert!(err(
        &mut c,
        &q(&["MAXAGE", "-1"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    )
    .contains("MAXAGE must be between 0 and 86400000"));
}

/// Identical queries asked at once are computed once, and each client gets
/// exactly what it would alone: the same user shares, users with other
/// permissions do not.
#[test]
fn identical_concurrent_queries_share_one_computation_per_user() {
    let server = Arc::new(Server::start());
    let mut c = server.conn();
    // Uncached and big enough to run in slices: calls overlap.
    call(&mut c, &["CONFIG", "SET", "listingstats.cache", "no"]).unwrap();
    let mut ingest = Vec::new();
    for d in 0..7u64 {
        let ids: Vec<String> = (0..1500).map(|i| i.to_string()).collect();
        ingest.push(format!(
            r#"{{"name":"{IMP}","listingIds":[{}],"message_date":{}}}"#,
            ids.join(","),
            1451260800 + d * 86400
        ));
    }
    let mut args = vec!["LISTINGSTATS.INGEST"];
    args.extend(ingest.iter().map(String::as_str));
    call(&mut c, &args).unwrap();
    server.user("low", &["resetkeys", "~*_1??"]);
    let q = [
        "LISTINGSTATS.QUERY",
        METRIC,
        FROM,
        TO,
        "*",
        "GROUPBY",
        "DAY",
    ];
    let alone_all = call(&mut c, &q).unwrap();
    let alone_low = call(&mut server.conn_as("low", "pw"), &q).unwrap();
    let Value::Array(all_rows) = &alone_all else {
        panic!()
    };
    let Value::Array(low_rows) = &alone_low else {
        panic!()
    };
    assert_eq!(all_rows.len(), 7 * 1500);
    assert_eq!(low_rows.len(), 7 * 100);
    let before = info_num(&mut c, "shared_answers");
    let barrier = Arc::new(Barrier::new(12));
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let server = Arc::clone(&server);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut conn = if i % 3 == 0 {
                    server.conn_as("low", "pw")
                } else {
                    server.conn()
                };
                barrier.wait();
                (i % 3 == 0, call(&mut conn, &q).unwrap())
            })
        })
        .collect();
    for t in threads {
        let (low, got) = t.join().unwrap();
        assert_eq!(
            got,
            if low {
                alone_low.clone()
            } else {
                alone_all.clone()
            }
        );
    }
    assert!(
        info_num(&mut c, "shared_answers") > before,
        "some calls took another's computation"
    );
    // A write since: the next call computes again (no MAXAGE).
    int(&mut c, &["LISTINGSTATS.INCR", "1", CLICK, "DATE", FROM]);
    let fresh = call(&mut c, &q).unwrap();
    assert_ne!(fresh, alone_all);
}

/// A kept answer belongs to the metric definitions it was computed with:
/// after `METRIC SET` changes a metric, a call with MAXAGE gets the new
/// definition's answer, never the kept one (the registry is part of what
/// makes calls identical), and going back finds the first answer again.
#[test]
fn maxage_never_serves_an_answer_of_another_metric_definition() {
    let server = Server::start();
    let mut c = server.conn();
    int(
        &mut c,
        &["HSET", &format!("{FROM}_1"), IMP, "10", CLICK, "4"],
    );
    let ask = |c: &mut Connection| -> Value {
        call(
            c,
            &[
                "LISTINGSTATS.QUERY",
                "m",
                FROM,
                FROM,
                "1",
                "GROUPBY",
                "TOTAL",
                "MAXAGE",
                "600000",
            ],
        )
        .unwrap()
    };
    let set = |c: &mut Connection, scale: &str| {
        call(
            c,
            &[
                "LISTINGSTATS.METRIC",
                "SET",
                "m",
                CLICK,
                IMP,
                "SCALE",
                scale,
            ],
        )
        .unwrap();
    };
    set(&mut c, "100");
    let percent = ask(&mut c);
    let shared = info_num(&mut c, "shared_answers");
    set(&mut c, "1");
    let fraction = ask(&mut c);
    assert_ne!(percent, fraction, "a kept answer of the old definition");
    assert_eq!(info_num(&mut c, "shared_answers"), shared);
    set(&mut c, "100");
    assert_eq!(ask(&mut c), percent);
    assert_eq!(ask(&mut c), percent);
    assert!(info_num(&mut c, "shared_answers") > shared);
}
