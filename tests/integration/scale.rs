//! '*' queries through the per-day index, and long queries in slices:
//! results equal the simple path (one keyspace scan) whatever wrote the
//! data, and other clients are served while a long query runs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;

const CLICK: &str = "cart::checkoutNow:click";
const IMP: &str = "cart::checkoutNow:impression";

fn config_set(c: &mut Connection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(c)
        .unwrap();
}

fn info_num(c: &mut Connection, field: &str) -> u64 {
    info_field(c, "listingstats", &format!("listingstats_{field}"))
        .unwrap()
        .parse()
        .unwrap()
}

/// Every '*' question asked twice, through the index and through a scan.
fn assert_index_matches_scan(c: &mut Connection, what: &str) {
    let questions: Vec<Vec<&str>> = vec![
        vec![
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-12-01",
            "2016-01-31",
            "*",
        ],
        vec![
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr,ldp_add_to_cart_ctr",
            "2015-12-20",
            "2016-01-05",
            "*",
            "GROUPBY",
            "LISTING",
        ],
        vec![
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-12-01",
            "2016-01-31",
            "*",
            "GROUPBY",
            "DATE",
            "FORMAT",
            "JSON",
        ],
        vec![
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-12-31",
            "2015-12-31",
            "*",
            "FORMAT",
            "LEGACY",
        ],
        vec![
            "LISTINGSTATS.TOP",
            "cart_to_checkout_ctr",
            "2015-12-01",
            "2016-01-31",
            "5",
        ],
    ];
    for q in &questions {
        config_set(c, "listingstats.star-source", "scan");
        let scanned = call(c, q);
        config_set(c, "listingstats.star-source", "index");
        let indexed = call(c, q);
        assert_eq!(indexed, scanned, "{what}: {q:?}");
    }
}

fn hset(c: &mut Connection, key: &str, pairs: &[(&str, i64)]) {
    let mut cmd = redis::cmd("HSET");
    cmd.arg(key);
    for (f, v) in pairs {
        cmd.arg(*f).arg(*v);
    }
    let _: i64 = cmd.query(c).unwrap();
}

#[test]
fn the_index_follows_every_writer_and_matches_a_scan() {
    let server = Server::start();
    let mut c = server.conn();
    // Written by other tools, before any '*' query: plain HSET/HINCRBY.
    for (i, listing) in ["7", "10", "2155", "sku-a", "B.2"].iter().enumerate() {
        for day in 25..=31 {
            hset(
                &mut c,
                &format!("2015-12-{day}_{listing}"),
                &[(CLICK, (i + day) as i64 % 3), (IMP, 5 + i as i64)],
            );
        }
    }
    let _: i64 = redis::cmd("HINCRBY")
        .arg("2016-01-01_99")
        .arg(IMP)
        .arg(4)
        .query(&mut c)
        .unwrap();
    assert_index_matches_scan(&mut c, "plain writes");
    let rebuilds = info_num(&mut c, "index_rebuilds");

    // Through the module, after the index exists: no rebuild needed.
    int(
        &mut c,
        &["LISTINGSTATS.INCR", "300", CLICK, "DATE", "2016-01-02"],
    );
    let _: Value = redis::cmd("LISTINGSTATS.INGEST")
        .arg(format!(
            r#"{{"name":"{IMP}","listingIds":[301,301,7],"message_date":1451606400}}"#
        ))
        .query(&mut c)
        .unwrap();
    // And plain writes again, now seen through notifications.
    hset(&mut c, "2016-01-03_sku-new", &[(IMP, 9), (CLICK, 1)]);
    assert_index_matches_scan(&mut c, "module writes");

    // Removals of every kind, and look-alikes.
    let _: () = redis::cmd("DEL").arg("2015-12-25_7").query(&mut c).unwrap();
    let _: () = redis::cmd("RENAME")
        .arg("2015-12-26_7")
        .arg("2015-12-24_777")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("RENAME")
        .arg("2015-12-27_7")
        .arg("not-a-day-key")
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("HDEL")
        .arg("2015-12-28_7")
        .arg(CLICK)
        .arg(IMP)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("2015-12-29_7")
        .arg("now a string")
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("PEXPIRE")
        .arg("2015-12-30_7")
        .arg(1)
        .query(&mut c)
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let _: Option<String> = redis::cmd("GET").arg("2015-12-30_7").query(&mut c).unwrap(); // expire now
    hset(&mut c, "2015-13-40_1", &[(CLICK, 1)]);
    assert_index_matches_scan(&mut c, "deletes, renames, expiry, type change");

    // Other databases: each has its own index; SWAPDB and FLUSHDB follow.
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    hset(&mut c, "2015-12-31_db1", &[(CLICK, 1), (IMP, 2)]);
    assert_index_matches_scan(&mut c, "db 1");
    let _: () = redis::cmd("SWAPDB").arg(0).arg(1).query(&mut c).unwrap();
    assert_index_matches_scan(&mut c, "db 1 after SWAPDB");
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    assert_index_matches_scan(&mut c, "db 0 after SWAPDB");
    let _: () = redis::cmd("FLUSHDB").query(&mut c).unwrap();
    assert_index_matches_scan(&mut c, "after FLUSHDB");
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    assert_index_matches_scan(&mut c, "db 1 after FLUSHDB of db 0");

    // A reload from RDB rebuilds the index from what was loaded.
    let _: () = redis::cmd("DEBUG").arg("RELOAD").query(&mut c).unwrap();
    assert_index_matches_scan(&mut c, "after DEBUG RELOAD");
    assert!(info_num(&mut c, "index_rebuilds") > rebuilds);

    // A new key scheme is indexed afresh.
    config_set(&mut c, "listingstats.key-prefix", "ls:");
    hset(&mut c, "ls:2015-12-31_5", &[(CLICK, 2), (IMP, 3)]);
    assert_index_matches_scan(&mut c, "after changing key-prefix");
}

/// 400 listings x 30 days: 12,000 day hashes, more than one slice.
fn big_dataset(c: &mut Connection) {
    let mut pipe = redis::pipe();
    for day in 1..=30 {
        for listing in 1..=400 {
            pipe.cmd("HSET")
                .arg(format!("2015-11-{day:02}_{listing}"))
                .arg(CLICK)
                .arg((listing + day) % 4)
                .arg(IMP)
                .arg(1 + (listing * day) % 9)
                .ignore();
        }
    }
    let _: () = pipe.query(c).unwrap();
}

#[test]
fn long_queries_run_in_slices_with_the_same_answer() {
    let server = Server::start();
    let mut c = server.conn();
    big_dataset(&mut c);
    let ids: Vec<String> = (1..=400).map(|i| i.to_string()).collect();
    let ids = ids.join(",");
    let questions: Vec<Vec<&str>> = vec![
        vec![
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-11-01",
            "2015-11-30",
            "*",
        ],
        vec![
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-11-01",
            "2015-11-30",
            &ids,
            "GROUPBY",
            "LISTING",
        ],
        vec![
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-11-01",
            "2015-11-30",
            "*",
            "FORMAT",
            "JSON",
        ],
        vec![
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-11-01",
            "2015-11-30",
            "*",
            "FORMAT",
            "LEGACY",
        ],
        vec![
            "LISTINGSTATS.TOP",
            "cart_to_checkout_ctr",
            "2015-11-01",
            "2015-11-30",
            "10",
            "MINDENOM",
            "100",
        ],
    ];
    for q in &questions {
        let before = info_num(&mut c, "sliced_queries");
        let sliced = call(&mut c, q).unwrap();
        assert_eq!(
            info_num(&mut c, "sliced_queries"),
            before + 1,
            "{q:?} did not run in slices"
        );
        // Inside MULTI the same question runs at once.
        let (at_once,): (Value,) = redis::pipe()
            .atomic()
            .cmd(q[0])
            .arg(&q[1..])
            .query(&mut c)
            .unwrap();
        assert_eq!(at_once, sliced, "{q:?}: MULTI differs");
        assert_eq!(
            info_num(&mut c, "sliced_queries"),
            before + 1,
            "{q:?} was sliced inside MULTI"
        );
        // And so inside a script.
        let script = "return redis.call(unpack(ARGV))";
        let from_lua: Value = redis::cmd("EVAL")
            .arg(script)
            .arg(0)
            .arg(q)
            .query(&mut c)
            .unwrap();
        if q.contains(&"JSON")
            || q.contains(&"LEGACY")
            || q[0] == "LISTINGSTATS.TOP"
            || q.contains(&"LISTING")
        {
            // Lua turns doubles into its numbers; compare only what it keeps.
            assert!(matches!(from_lua, Value::Array(_) | Value::BulkString(_)));
        } else {
            assert!(matches!(from_lua, Value::Array(ref rows) if !rows.is_empty()));
        }
        // And the scan path agrees for '*'.
        if q[4] == "*" {
            config_set(&mut c, "listingstats.star-source", "scan");
            assert_eq!(call(&mut c, q).unwrap(), sliced, "{q:?}: scan differs");
            config_set(&mut c, "listingstats.star-source", "index");
        }
    }
    assert!(info_num(&mut c, "slices") > 5);

    // A stale index (the key scheme changed and changed back): a query
    // waits for the rebuild in slices, or, inside MULTI, completes it.
    let star = &questions[0];
    let expected = call(&mut c, star).unwrap();
    for inside_multi in [false, true] {
        config_set(&mut c, "listingstats.key-prefix", "elsewhere:");
        config_set(&mut c, "listingstats.key-prefix", "");
        assert_eq!(
            info_num(&mut c, "index_entries"),
            0,
            "the index should be dropped"
        );
        let rebuilds = info_num(&mut c, "index_rebuilds");
        let got = if inside_multi {
            let (v,): (Value,) = redis::pipe()
                .atomic()
                .cmd(star[0])
                .arg(&star[1..])
                .query(&mut c)
                .unwrap();
            v
        } else {
            call(&mut c, star).unwrap()
        };
        assert_eq!(
            got, expected,
            "after a rebuild (inside MULTI: {inside_multi})"
        );
        assert_eq!(info_num(&mut c, "index_rebuilds"), rebuilds + 1);
        assert_eq!(info_num(&mut c, "index_entries"), 12_000);
    }
    // A RESP3 client gets the same rows with real doubles.
    let mut c3 = server.conn_resp3();
    match call(&mut c3, &questions[0]).unwrap() {
        Value::Array(rows) => match &rows[0] {
            Value::Array(f) => assert!(matches!(f[5], Value::Double(_) | Value::Nil), "{:?}", f[5]),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_clients_are_served_while_a_long_query_runs() {
    let server = Server::start();
    let mut c = server.conn();
    big_dataset(&mut c);
    // The query on a raw socket, its reply left unread for now.
    let mut raw = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let q = [
        "LISTINGSTATS.QUERY",
        "cart_to_checkout_ctr,ldp_add_to_cart_ctr",
        "2015-11-01",
        "2015-11-30",
        "*",
        "FORMAT",
        "JSON",
    ];
    let mut wire = format!("*{}\r\n", q.len());
    for a in q {
        wire.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    let before = info_num(&mut c, "slices");
    raw.write_all(wire.as_bytes()).unwrap();
    // Wait until the query is under way, then ask something else.
    let mut other = server.conn();
    let mut under_way = false;
    for _ in 0..2000 {
        if info_num(&mut other, "slices") > before {
            under_way = true;
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(under_way, "the query never started slicing");
    let pong: String = redis::cmd("PING").query(&mut other).unwrap();
    assert_eq!(pong, "PONG");
    // The PING was answered while the query still had slices to run: its
    // reply has not arrived yet.
    raw.set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    let pending =
        matches!(raw.read(&mut probe), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(
        pending,
        "the query finished before PING was served: it did not yield"
    );
    raw.set_nonblocking(false).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 65536];
    while !reply.ends_with(b"}\r\n") {
        let n = raw.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed");
        reply.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(reply).unwrap();
    assert!(
        text.starts_with('$') && text.contains("\"keys_examined\":12000"),
        "{}",
        &text[..80.min(text.len())]
    );
}

#[test]
fn writes_during_a_sliced_query_do_not_disturb_it() {
    let server = Server::start();
    let mut c = server.conn();
    big_dataset(&mut c);
    let q = [
        "LISTINGSTATS.QUERY",
        "cart_to_checkout_ctr",
        "2015-11-01",
        "2015-11-30",
        "*",
        "GROUPBY",
        "LISTING",
    ];
    let expected = call(&mut c, &q).unwrap();
    let port = server.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
            let mut w = client.get_connection().unwrap();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Days outside the range, new listings there, and fields no
                // metric reads inside it: none changes the answer.
                let _: i64 = redis::cmd("LISTINGSTATS.INCR")
                    .arg(n % 500)
                    .arg(CLICK)
                    .arg("DATE")
                    .arg("2015-12-01")
                    .query(&mut w)
                    .unwrap();
                let _: i64 = redis::cmd("HINCRBY")
                    .arg(format!("2015-11-{:02}_{}", 1 + n % 30, 1 + n % 400))
                    .arg("other:field")
                    .arg(1)
                    .query(&mut w)
                    .unwrap();
                let _: () = redis::cmd("DEL")
                    .arg(format!("2015-10-31_{n}"))
                    .query(&mut w)
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    for _ in 0..5 {
        assert_eq!(call(&mut c, &q).unwrap(), expected);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
}

#[test]
fn a_client_that_leaves_mid_query_harms_nothing() {
    let server = Server::start();
    let mut c = server.conn();
    big_dataset(&mut c);
    for _ in 0..3 {
        let mut raw = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        let q = "*5\r\n$18\r\nLISTINGSTATS.QUERY\r\n$20\r\ncart_to_checkout_ctr\r\n$10\r\n2015-11-01\r\n$10\r\n2015-11-30\r\n$1\r\n*\r\n";
        raw.write_all(q.as_bytes()).unwrap();
        drop(raw);
    }
    std::thread::sleep(Duration::from_millis(300));
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    let rows = call(
        &mut c,
        &[
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-11-01",
            "2015-11-30",
            "*",
            "GROUPBY",
            "TOTAL",
        ],
    )
    .unwrap();
    assert!(matches!(rows, Value::Array(ref r) if r.len() == 1));
}

#[test]
fn a_replica_indexes_what_it_loads() {
    let master = Server::start();
    let mut m = master.conn();
    big_dataset(&mut m);
    let replica = Server::start();
    let mut r = replica.conn();
    replica.replicate(&master);
    int(
        &mut m,
        &["LISTINGSTATS.INCR", "401", CLICK, "DATE", "2015-11-15"],
    );
    let _: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut m).unwrap();
    let q = [
        "LISTINGSTATS.QUERY",
        "cart_to_checkout_ctr",
        "2015-11-01",
        "2015-11-30",
        "*",
        "GROUPBY",
        "DATE",
    ];
    assert_eq!(call(&mut r, &q).unwrap(), call(&mut m, &q).unwrap());
}

/// Memory follows what is indexed: many short-lived listings, written and
/// deleted, leave neither index bytes nor server memory behind.
#[test]
fn index_memory_is_returned_when_listings_go() {
    let server = Server::start();
    let mut c = server.conn();
    // used_memory once the server's own table resizing (serverCron) has
    // settled: two readings 250 ms apart agree, or 5 s passed.
    let used = |c: &mut Connection| -> i64 {
        let read = |c: &mut Connection| -> i64 {
            info_field(c, "memory", "used_memory")
                .unwrap()
                .parse()
                .unwrap()
        };
        let mut last = read(c);
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let now = read(c);
            if now == last {
                break;
            }
            last = now;
        }
        last
    };
    // A baseline with the keyspace's own tables already grown and shrunk
    // once, so only the module's memory differs below.
    let write_and_delete = |c: &mut Connection, cycle: u32| {
        // Fresh listing ids each cycle: a table that kept old ids would grow.
        let keys: Vec<String> = (0..100_000)
            .map(|i| format!("2016-01-01_c{cycle}-short-lived-{i}"))
            .collect();
        for chunk in keys.chunks(5000) {
            let mut pipe = redis::pipe();
            for k in chunk {
                pipe.cmd("HSET")
                    .arg(k)
                    .arg("cart::checkoutNow:impression")
                    .arg(1)
                    .ignore();
            }
            let _: () = pipe.query(c).unwrap();
        }
        assert_eq!(info_num(c, "index_entries"), 100_000);
        let peak = info_num(c, "index_bytes");
        for chunk in keys.chunks(5000) {
            let _: () = redis::cmd("DEL").arg(chunk).query(c).unwrap();
        }
        assert_eq!(info_num(c, "index_entries"), 0);
        peak
    };
    write_and_delete(&mut c, 0);
    let before = used(&mut c);
    let peak = write_and_delete(&mut c, 1);
    let after = used(&mut c);
    let index_bytes = info_num(&mut c, "index_bytes");
    assert!(peak > 2_000_000, "peak index bytes {peak}");
    assert!(
        index_bytes < 64 * 1024,
        "index bytes {index_bytes} after all listings went (peak {peak})"
    );
    assert!(
        after - before < 1_000_000,
        "used_memory grew by {} bytes over a write-then-delete cycle",
        after - before
    );
}
