//! Another type written over a day hash. The module learns of it from the
//! server's `overwritten` key event (Redis 7.2+, Valkey) or, on Redis 7.0,
//! from the string, list, set and zset keyspace classes; either way it only
//! watches once a day hash is known (loading it costs unrelated traffic
//! nothing before). Each way the first day hash becomes known is tried: a
//! plain HSET, the module's own INCR (which skips its own notification),
//! and day hashes already there when the server starts.

use crate::common::*;

const CLICK: &str = "cart::checkoutNow:click";
const IMP: &str = "cart::checkoutNow:impression";
const METRIC: &str = "cart_to_checkout_ctr";
const DAY: &str = "2015-12-22";

fn cmd(c: &mut Connection, args: &[&str]) -> Value {
    call(c, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn key(listing: u32) -> String {
    format!("{DAY}_{listing}")
}

/// The `*` answer by listing, from the index and its cache, and the same
/// read from the hashes (cache off, `*` by a scan): equal, and returned.
fn star_both_ways(c: &mut Connection, what: &str) -> Value {
    let q = [
        "LISTINGSTATS.QUERY",
        METRIC,
        DAY,
        DAY,
        "*",
        "GROUPBY",
        "LISTING",
    ];
    let cached = cmd(c, &q);
    cmd(c, &["CONFIG", "SET", "listingstats.cache", "no"]);
    cmd(c, &["CONFIG", "SET", "listingstats.star-source", "scan"]);
    let read = cmd(c, &q);
    cmd(c, &["CONFIG", "SET", "listingstats.star-source", "index"]);
    cmd(c, &["CONFIG", "SET", "listingstats.cache", "yes"]);
    assert_eq!(
        cached, read,
        "{what}: index and cache differ from the hashes"
    );
    // Asked again: the cache is filled now, and still equal.
    assert_eq!(cmd(c, &q), read, "{what}: refilled cache");
    read
}

/// The listings a `GROUPBY LISTING` answer has rows for.
fn listings(answer: &Value) -> Vec<String> {
    let Value::Array(rows) = answer else {
        panic!("not an array: {answer:?}")
    };
    rows.iter()
        .map(|row| match row {
            Value::Array(cells) => match &cells[2] {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("listing cell {other:?}"),
            },
            other => panic!("row {other:?}"),
        })
        .collect()
}

/// Writes day hashes 1..=9 (in a way `first` picks for listing 1), answers
/// `*` once so the cache holds every row, then puts each other type over
/// one of them and checks `*` and the cache together after each.
fn overwrite_each_type(c: &mut Connection, first: &str) {
    // Sources of every other type, under names that are no day hash.
    cmd(c, &["SET", "src:string", "x"]);
    cmd(c, &["RPUSH", "src:list", "3", "1"]);
    cmd(c, &["SADD", "src:set", "a"]);
    cmd(c, &["ZADD", "src:zset", "1", "a"]);
    cmd(c, &["XADD", "src:stream", "*", "f", "v"]);
    let before = star_both_ways(c, &format!("{first}: before"));
    assert_eq!(
        listings(&before),
        (1..=9).map(|l| l.to_string()).collect::<Vec<_>>(),
        "{first}: every day hash is counted"
    );
    let dump_of =
        |c: &mut Connection, k: &str| -> Vec<u8> { redis::cmd("DUMP").arg(k).query(c).unwrap() };
    let list_dump = dump_of(c, "src:list");
    let stream_dump = dump_of(c, "src:stream");
    let steps: Vec<(&str, u32, Vec<Vec<String>>)> = vec![
        (
            "SET (string)",
            1,
            vec![vec!["SET".into(), key(1), "x".into()]],
        ),
        (
            "SORT ... STORE (list)",
            2,
            vec![vec![
                "SORT".into(),
                "src:list".into(),
                "STORE".into(),
                key(2),
            ]],
        ),
        (
            "SUNIONSTORE (set)",
            3,
            vec![vec!["SUNIONSTORE".into(), key(3), "src:set".into()]],
        ),
        (
            "ZUNIONSTORE (zset)",
            4,
            vec![vec![
                "ZUNIONSTORE".into(),
                key(4),
                "1".into(),
                "src:zset".into(),
            ]],
        ),
        (
            "COPY ... REPLACE of a stream",
            5,
            vec![vec![
                "COPY".into(),
                "src:stream".into(),
                key(5),
                "REPLACE".into(),
            ]],
        ),
        (
            "BITOP (string)",
            6,
            vec![vec![
                "BITOP".into(),
                "OR".into(),
                key(6),
                "src:string".into(),
            ]],
        ),
        (
            "MSET (strings)",
            7,
            vec![vec![
                "MSET".into(),
                key(7),
                "y".into(),
                "other".into(),
                "z".into(),
            ]],
        ),
    ];
    let mut gone = Vec::new();
    for (what, listing, commands) in &steps {
        for command in commands {
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            cmd(c, &args);
        }
        gone.push(listing.to_string());
        let answer = star_both_ways(c, &format!("{first}: {what}"));
        let left = listings(&answer);
        assert!(
            gone.iter().all(|g| !left.contains(g)),
            "{first}: {what}: {left:?} still counts one of {gone:?}"
        );
    }
    // RESTORE REPLACE of a list and of a stream over the last two.
    for (what, listing, dump) in [("list", 8u32, &list_dump), ("stream", 9, &stream_dump)] {
        let _: () = redis::cmd("RESTORE")
            .arg(key(listing))
            .arg(0)
            .arg(dump.as_slice())
            .arg("REPLACE")
            .query(c)
            .unwrap();
        let answer = star_both_ways(c, &format!("{first}: RESTORE REPLACE of a {what}"));
        assert!(!listings(&answer).contains(&listing.to_string()));
    }
    // And a day hash written again where a string was: counted again.
    cmd(c, &["DEL", &key(1)]);
    cmd(c, &["HSET", &key(1), IMP, "5", CLICK, "2"]);
    let answer = star_both_ways(c, &format!("{first}: a hash again"));
    assert_eq!(listings(&answer), vec!["1".to_string()]);
}

fn write_rest(c: &mut Connection) {
    for l in 2..=9u32 {
        cmd(
            c,
            &[
                "HSET",
                &key(l),
                IMP,
                &(10 + l).to_string(),
                CLICK,
                &l.to_string(),
            ],
        );
    }
}

#[test]
fn another_type_over_a_day_hash_first_written_by_hset() {
    let server = Server::start();
    let mut c = server.conn();
    // Unrelated traffic first: nothing is watched yet.
    cmd(&mut c, &["SET", "key:1", "x"]);
    cmd(&mut c, &["HSET", &key(1), IMP, "4", CLICK, "1"]);
    write_rest(&mut c);
    overwrite_each_type(&mut c, "HSET");
}

#[test]
fn another_type_over_a_day_hash_first_written_by_incr() {
    let server = Server::start();
    let mut c = server.conn();
    for event in [IMP, IMP, IMP, CLICK] {
        cmd(&mut c, &["LISTINGSTATS.INCR", "1", event, "DATE", DAY]);
    }
    write_rest(&mut c);
    overwrite_each_type(&mut c, "INCR");
}

#[test]
fn another_type_over_a_day_hash_found_at_start() {
    let server = Server::start();
    let mut c = server.conn();
    cmd(&mut c, &["HSET", &key(1), IMP, "4", CLICK, "1"]);
    write_rest(&mut c);
    cmd(&mut c, &["SAVE"]);
    // A new server process finds them by its index rebuild only.
    let server = server.restart();
    let mut c = server.conn();
    assert!(eventually(10, || {
        info_field(&mut c, "listingstats", "listingstats_index_building").as_deref() == Some("0")
    }));
    overwrite_each_type(&mut c, "found at start");
}
