//! LISTINGSTATS.INCR and LISTINGSTATS.GET against a real server.

use std::time::Duration;

use crate::common::*;

const CLICK: &str = "cart::checkoutNow:click";

#[test]
fn module_is_listed_and_incr_writes_a_plain_hash() {
    let server = Server::start();
    let mut c = server.conn();
    let names = module_names(&mut c);
    assert!(names.iter().any(|n| n == "listingstats"), "{names:?}");

    assert_eq!(
        int(
            &mut c,
            &["LISTINGSTATS.INCR", "2155", CLICK, "DATE", "2015-12-22"]
        ),
        1
    );
    assert_eq!(
        int(
            &mut c,
            &[
                "listingstats.incr",
                "2155",
                CLICK,
                "date",
                "2015-12-22",
                "by",
                "4"
            ]
        ),
        5
    );
    // Exactly what HINCRBY would have written, readable by any tool.
    assert_eq!(
        hgetall(&mut c, "2015-12-22_2155"),
        [(CLICK.to_string(), "5".to_string())]
    );
    assert_eq!(int(&mut c, &["HINCRBY", "2015-12-22_2155", CLICK, "1"]), 6);
    assert_eq!(
        int(
            &mut c,
            &["LISTINGSTATS.INCR", "2155", CLICK, "DATE", "2015-12-22"]
        ),
        7
    );
}

#[test]
fn negative_by_and_overflow() {
    let server = Server::start();
    let mut c = server.conn();
    assert_eq!(
        int(
            &mut c,
            &[
                "LISTINGSTATS.INCR",
                "1",
                "e",
                "DATE",
                "2015-12-22",
                "BY",
                "-3"
            ]
        ),
        -3
    );
    let max = i64::MAX.to_string();
    assert_eq!(
        int(
            &mut c,
            &[
                "LISTINGSTATS.INCR",
                "1",
                "big",
                "DATE",
                "2015-12-22",
                "BY",
                &max
            ]
        ),
        i64::MAX
    );
    let d = digest(&mut c);
    assert_eq!(
        err(
            &mut c,
            &[
                "LISTINGSTATS.INCR",
                "1",
                "big",
                "DATE",
                "2015-12-22",
                "ID",
                "ov-1"
            ]
        ),
        "ERR increment or decrement would overflow"
    );
    let min = i64::MIN.to_string();
    assert_eq!(
        err(
            &mut c,
            &[
                "LISTINGSTATS.INCR",
                "1",
                "e",
                "DATE",
                "2015-12-22",
                "BY",
                &min
            ]
        ),
        "ERR increment or decrement would overflow"
    );
    assert_eq!(digest(&mut c), d, "a failed INCR changed the data");
    // The id of a failed call is not remembered.
    assert_eq!(
        int(
            &mut c,
            &[
                "LISTINGSTATS.INCR",
                "1",
                "e",
                "DATE",
                "2015-12-22",
                "BY",
                "3",
                "ID",
                "ov-1"
            ]
        ),
        0
    );
}

#[test]
fn day_comes_from_date_at_or_the_server_clock() {
    let server = Server::start();
    let mut c = server.conn();
    // 1449855906 = 2015-12-11T17:45:06Z.
    int(&mut c, &["LISTINGSTATS.INCR", "7", "e", "AT", "1449855906"]);
    assert_eq!(hgetall(&mut c, "2015-12-11_7").len(), 1);

    let before = chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    int(&mut c, &["LISTINGSTATS.INCR", "7", "today"]);
    let after = chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    let today = [before, after]
        .into_iter()
        .find(|d| !hgetall(&mut c, &format!("{d}_7")).is_empty());
    assert!(today.is_some(), "no hash for today's UTC date");

    // The zone decides the day: 17:45 UTC is already the 12th in Tokyo.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("listingstats.timezone")
        .arg("Asia/Tokyo")
        .query(&mut c)
        .unwrap();
    int(&mut c, &["LISTINGSTATS.INCR", "8", "e", "AT", "1449855906"]);
    assert_eq!(hgetall(&mut c, "2015-12-12_8").len(), 1);
    // DATE is taken as given, whatever the zone.
    int(
        &mut c,
        &["LISTINGSTATS.INCR", "8", "e", "DATE", "2015-12-11"],
    );
    assert_eq!(hgetall(&mut c, "2015-12-11_8").len(), 1);
}

#[test]
fn prefix_and_tagged_format_from_module_args() {
    let server = Server::start_with(Options::default().module(&[
        "key-prefix",
        "ls:",
        "key-format",
        "tagged",
    ]));
    let mut c = server.conn();
    int(
        &mut c,
        &["LISTINGSTATS.INCR", "2155", CLICK, "DATE", "2016-01-01"],
    );
    assert_eq!(hgetall(&mut c, "ls:2016-01-01_{2155}").len(), 1);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert_eq!(keys, ["ls:2016-01-01_{2155}"]);
}

#[test]
fn ids_are_counted_once_within_the_window() {
    let server = Server::start();
    let mut c = server.conn();
    let args = [
        "LISTINGSTATS.INCR",
        "3",
        "e",
        "DATE",
        "2015-12-22",
        "BY",
        "2",
        "ID",
        "evt-1",
    ];
    assert_eq!(int(&mut c, &args), 2);
    assert_eq!(int(&mut c, &args), 2, "a retried id must not count again");
    assert_eq!(
        info_field(&mut c, "listingstats", "listingstats_duplicates_skipped").as_deref(),
        Some("1")
    );
    // The id lives in a shard hash of the current dedup generation, with
    // no TTL; the registry lists that generation.
    let shard_keys = |c: &mut Connection| -> Vec<String> {
        redis::cmd("KEYS")
            .arg("listingstats:seen:*:*")
            .query(c)
            .unwrap()
    };
    let shards = shard_keys(&mut c);
    assert_eq!(shards.len(), 1, "{shards:?}");
    assert_eq!(int(&mut c, &["HEXISTS", &shards[0], "evt-1"]), 1);
    assert_eq!(int(&mut c, &["TTL", &shards[0]]), -1);
    let generation = shards[0].split(':').nth(2).unwrap().to_string();
    assert_eq!(
        hgetall(&mut c, "listingstats:seen:generations"),
        [(generation, "1".to_string())]
    );

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("listingstats.dedup-window")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let short = [
        "LISTINGSTATS.INCR",
        "3",
        "e",
        "DATE",
        "2015-12-22",
        "ID",
        "evt-2",
    ];
    assert_eq!(int(&mut c, &short), 3);
    assert_eq!(int(&mut c, &short), 3);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        int(&mut c, &short),
        4,
        "the id should be forgotten after two windows at most"
    );
    // The write that remembered the id again deleted every generation no
    // look-up reaches: only the current one (this write's) is left.
    let shards = shard_keys(&mut c);
    assert_eq!(shards.len(), 1, "{shards:?}");
    assert_eq!(hgetall(&mut c, "listingstats:seen:generations").len(), 1);

    // dedup-window 0 turns dedup off: every call counts, no marker is kept.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("listingstats.dedup-window")
        .arg("0")
        .query(&mut c)
        .unwrap();
    let before: Vec<String> = redis::cmd("KEYS")
        .arg("listingstats:seen:*")
        .query(&mut c)
        .unwrap();
    let off = [
        "LISTINGSTATS.INCR",
        "3",
        "e",
        "DATE",
        "2015-12-22",
        "ID",
        "evt-3",
    ];
    assert_eq!(int(&mut c, &off), 5);
    assert_eq!(int(&mut c, &off), 6);
    let after: Vec<String> = redis::cmd("KEYS")
        .arg("listingstats:seen:*")
        .query(&mut c)
        .unwrap();
    assert_eq!(before, after);
}

#[test]
fn get_returns_every_counter_as_a_map() {
    let server = Server::start();
    let mut c = server.conn();
    assert_eq!(
        call(&mut c, &["LISTINGSTATS.GET", "2155", "2015-12-22"]).unwrap(),
        Value::Array(vec![])
    );
    int(
        &mut c,
        &[
            "HSET",
            "2015-12-22_2155",
            "ldp:sellPanel:addToCart:impression",
            "6",
            "cart::checkoutNow:click",
            "1",
        ],
    );
    let flat = call(&mut c, &["LISTINGSTATS.GET", "2155", "2015-12-22"]).unwrap();
    assert_eq!(
        flat,
        Value::Array(vec![
            Value::BulkString(b"cart::checkoutNow:click".to_vec()),
            Value::Int(1),
            Value::BulkString(b"ldp:sellPanel:addToCart:impression".to_vec()),
            Value::Int(6),
        ])
    );
    let mut c3 = server.conn_resp3();
    match call(&mut c3, &["LISTINGSTATS.GET", "2155", "2015-12-22"]).unwrap() {
        Value::Map(pairs) => assert_eq!(pairs.len(), 2),
        other => panic!("RESP3 should see a map, got {other:?}"),
    }
    int(&mut c, &["HSET", "2015-12-23_2155", "x", "1.5"]);
    assert_eq!(
        err(&mut c, &["LISTINGSTATS.GET", "2155", "2015-12-23"]),
        "ERR value of field 'x' in key '2015-12-23_2155' is not an integer"
    );
}

#[test]
fn every_bad_input_is_an_error_that_changes_nothing() {
    let server = Server::start();
    let mut c = server.conn();
    int(&mut c, &["HSET", "2015-12-22_5", "e", "notanumber"]);
    let _: () = redis::cmd("SET")
        .arg("2015-12-22_6")
        .arg("a string")
        .query(&mut c)
        .unwrap();
    let d = digest(&mut c);
    let cases: &[(&[&str], &str)] = &[
        (
            &["LISTINGSTATS.INCR", "1"],
            "ERR wrong number of arguments for 'listingstats.incr' command",
        ),
        (&["LISTINGSTATS.INCR"], "ERR wrong number of arguments"),
        (
            &["LISTINGSTATS.INCR", "bad id", "e"],
            "ERR invalid listing id 'bad id'",
        ),
        (&["LISTINGSTATS.INCR", "", "e"], "ERR invalid listing id ''"),
        (
            &["LISTINGSTATS.INCR", &"9".repeat(65), "e"],
            "ERR invalid listing id",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "has space"],
            "ERR invalid event name",
        ),
        (&["LISTINGSTATS.INCR", "1", ""], "ERR invalid event name"),
        (
            &["LISTINGSTATS.INCR", "1", &"e".repeat(257)],
            "ERR invalid event name",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "e", "BY"],
            "ERR syntax error, option BY needs a value",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "e", "BY", "x"],
            "ERR BY must be a 64-bit integer, got 'x'",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "e", "BY", "1.0"],
            "ERR BY must be a 64-bit integer",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "e", "BY", "9223372036854775808"],
            "ERR BY must be a 64-bit integer",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "e", "DATE", "2015-13-40"],
            "ERR DATE must be a date as YYYY-MM-DD",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "e", "DATE", "2015-02-29"],
            "ERR DATE must be a date as YYYY-MM-DD",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "e", "DATE", "2015-1-1"],
            "ERR DATE must be a date as YYYY-MM-DD",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "e", "AT", "noon"],
            "ERR AT must be a 64-bit integer",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "e", "AT", "99999999999999"],
            "ERR timestamp 99999999999999 is outside years 0000-9999",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "e", "ID", "a b"],
            "ERR invalid event id",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "e", "COLOR", "red"],
            "ERR syntax error, unknown option 'COLOR'",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "e", "BY", "1", "BY", "2"],
            "ERR syntax error, BY given more than once",
        ),
        (
            &[
                "LISTINGSTATS.INCR",
                "1",
                "e",
                "AT",
                "1",
                "DATE",
                "2015-01-01",
            ],
            "ERR syntax error, DATE or AT given more than once",
        ),
        (
            &["LISTINGSTATS.INCR", "1", "e", "ID", "a", "id", "b"],
            "ERR syntax error, ID given more than once",
        ),
        (
            &["LISTINGSTATS.INCR", "5", "e", "DATE", "2015-12-22"],
            "ERR value of field 'e' in key '2015-12-22_5' is not an integer",
        ),
        (
            &["LISTINGSTATS.INCR", "6", "e", "DATE", "2015-12-22"],
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
        (
            &[
                "LISTINGSTATS.INCR",
                "6",
                "e",
                "DATE",
                "2015-12-22",
                "ID",
                "x",
            ],
            "WRONGTYPE",
        ),
        (
            &["LISTINGSTATS.GET", "1"],
            "ERR wrong number of arguments for 'listingstats.get' command",
        ),
        (
            &["LISTINGSTATS.GET", "1", "2015-12-22", "x"],
            "ERR wrong number of arguments",
        ),
        (
            &["LISTINGSTATS.GET", "b@d", "2015-12-22"],
            "ERR invalid listing id",
        ),
        (
            &["LISTINGSTATS.GET", "1", "yesterday"],
            "ERR date must be a date as YYYY-MM-DD, got 'yesterday'",
        ),
        (&["LISTINGSTATS.GET", "6", "2015-12-22"], "WRONGTYPE"),
    ];
    for (args, expected) in cases {
        let got = err(&mut c, args);
        assert!(
            got.starts_with(expected),
            "{args:?}: expected {expected:?}, got {got:?}"
        );
    }
    assert_eq!(digest(&mut c), d, "an error reply changed the data");
    // Calls whose argument count the declared arity (COMMAND INFO) rules
    // out are refused by the server before the module runs; the module
    // counts every other error.
    let arity_ok = |args: &[&str]| {
        let info: Vec<Vec<Value>> = redis::cmd("COMMAND")
            .arg("INFO")
            .arg(args[0])
            .query(&mut server.conn())
            .unwrap();
        let Value::Int(arity) = info[0][1] else {
            panic!("{info:?}")
        };
        let n = args.len() as i64;
        if arity < 0 {
            n >= -arity
        } else {
            n == arity
        }
    };
    let reaching = cases.iter().filter(|(args, _)| arity_ok(args)).count();
    assert!(reaching < cases.len(), "some cases are arity errors");
    let errors: u64 = info_field(&mut c, "listingstats", "listingstats_errors")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(errors, reaching as u64);
}

#[test]
fn info_section_counts_calls_and_increments() {
    let server = Server::start();
    let mut c = server.conn();
    for _ in 0..3 {
        int(
            &mut c,
            &[
                "LISTINGSTATS.INCR",
                "1",
                "e",
                "DATE",
                "2015-12-22",
                "ID",
                "same",
            ],
        );
    }
    int(
        &mut c,
        &["LISTINGSTATS.INCR", "1", "e", "DATE", "2015-12-22"],
    );
    let field =
        |c: &mut Connection, f: &str| info_field(c, "listingstats", &format!("listingstats_{f}"));
    assert_eq!(field(&mut c, "calls").as_deref(), Some("4"));
    assert_eq!(field(&mut c, "increments_applied").as_deref(), Some("2"));
    assert_eq!(field(&mut c, "duplicates_skipped").as_deref(), Some("2"));
}

#[test]
fn works_inside_multi_and_lua() {
    let server = Server::start();
    let mut c = server.conn();
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("LISTINGSTATS.INCR")
        .arg("1")
        .arg("e")
        .arg("DATE")
        .arg("2015-12-22")
        .cmd("LISTINGSTATS.INCR")
        .arg("1")
        .arg("e")
        .arg("DATE")
        .arg("2015-12-22")
        .arg("BY")
        .arg("2")
        .query(&mut c)
        .unwrap();
    assert_eq!((a, b), (1, 3));
    let v: i64 = redis::cmd("EVAL")
        .arg(
            "return redis.call('LISTINGSTATS.INCR', '1', 'e', 'DATE', '2015-12-22', 'ID', ARGV[1])",
        )
        .arg(0)
        .arg("lua-1")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, 4);
}
