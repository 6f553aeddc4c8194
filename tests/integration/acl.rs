//! ACL: every key a command computes is checked against the caller's key
//! permissions, before anything is read or written.

use crate::common::*;

#[test]
fn a_user_limited_to_december_2015_touches_nothing_else() {
    let server = Server::start();
    let mut admin = server.conn();
    let mut dec = server.user("dec", &["~2015-12-*"]);
    int(&mut admin, &["HSET", "2016-01-01_1", "e", "5"]);
    assert_eq!(
        int(
            &mut dec,
            &["LISTINGSTATS.INCR", "1", "e", "DATE", "2015-12-22"]
        ),
        1
    );
    let d = digest(&mut admin);

    for args in [
        &["LISTINGSTATS.INCR", "1", "e", "DATE", "2016-01-01"][..],
        &["LISTINGSTATS.INCR", "1", "e", "AT", "1451606400"],
        // The day is allowed, the dedup marker key is not.
        &[
            "LISTINGSTATS.INCR",
            "1",
            "e",
            "DATE",
            "2015-12-22",
            "ID",
            "x-1",
        ],
        &["LISTINGSTATS.GET", "1", "2016-01-01"],
    ] {
        let e = err(&mut dec, args);
        assert!(e.starts_with("ERR NOPERM"), "{args:?}: {e}");
    }
    assert_eq!(digest(&mut admin), d, "a refused command changed the data");
    let e = err(&mut dec, &["LISTINGSTATS.GET", "1", "2016-01-01"]);
    assert_eq!(
        e,
        "ERR NOPERM this user has no permissions to read the key '2016-01-01_1'"
    );
}

#[test]
fn read_only_key_access_allows_get_not_incr() {
    let server = Server::start();
    let mut admin = server.conn();
    let mut reader = server.user("reader", &["%R~*"]);
    int(&mut admin, &["HSET", "2015-12-22_1", "e", "5"]);
    assert_eq!(
        call(&mut reader, &["LISTINGSTATS.GET", "1", "2015-12-22"]).unwrap(),
        Value::Array(vec![Value::BulkString(b"e".to_vec()), Value::Int(5)])
    );
    let e = err(
        &mut reader,
        &["LISTINGSTATS.INCR", "1", "e", "DATE", "2015-12-22"],
    );
    assert_eq!(
        e,
        "ERR NOPERM this user has no permissions to write the key '2015-12-22_1'"
    );
}

fn acl_log_len(admin: &mut Connection) -> usize {
    let log: Vec<Value> = redis::cmd("ACL").arg("LOG").query(admin).unwrap();
    log.len()
}

/// A selector that allows only EXISTS on every key must not let the module
/// read or write keys outside the root pattern: the module asks what
/// HGETALL/HINCRBY/HSET on that key would be allowed, not whether some
/// pattern matches the key.
#[test]
fn selectors_do_not_widen_what_the_module_may_touch() {
    let server = Server::start();
    let mut admin = server.conn();
    int(&mut admin, &["HSET", "2016-01-01_1", "e", "5"]);
    let mut sel = server.user("sel", &["~2015-12-*", "(+exists ~*)"]);
    // The native commands are refused, and so are the module's.
    assert!(err(&mut sel, &["HGETALL", "2016-01-01_1"]).starts_with("NOPERM"));
    let d = digest(&mut admin);
    let before = acl_log_len(&mut admin);
    for args in [
        &["LISTINGSTATS.GET", "1", "2016-01-01"][..],
        &["LISTINGSTATS.INCR", "1", "x", "DATE", "2016-01-01"],
        &[
            "LISTINGSTATS.INGEST",
            r#"{"name":"x","listingIds":[1],"message_date":1451606400}"#,
        ],
        &["LISTINGSTATS.METRIC.SET", "m", "a", "b"],
        &["LISTINGSTATS.METRIC.DEL", "cart_to_checkout_ctr"],
        &[
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2016-01-01",
            "2016-01-01",
            "1",
        ],
    ] {
        let e = err(&mut sel, args);
        assert!(e.starts_with("ERR NOPERM"), "{args:?}: {e}");
    }
    assert_eq!(digest(&mut admin), d, "a refused command changed the data");
    assert!(acl_log_len(&mut admin) > before, "refusals are in ACL LOG");
    // What the root selector allows still works.
    assert_eq!(
        int(
            &mut sel,
            &["LISTINGSTATS.INCR", "1", "x", "DATE", "2015-12-22"]
        ),
        1
    );
}

/// `-@write` stops every module write and `-@read` every module read, as
/// they stop HINCRBY/HSET and HMGET/HGETALL, on every server: refused by
/// the server where the commands carry ACL categories (7.2+), by the
/// module's own check where they cannot (7.0).
#[test]
fn denied_categories_stop_module_commands() {
    let server = Server::start();
    let mut admin = server.conn();
    int(
        &mut admin,
        &["HSET", "2015-12-22_1", "cart::checkoutNow:impression", "5"],
    );
    let d = digest(&mut admin);
    let mut nowrite = server.user("nowrite", &["-@write", "~*"]);
    assert!(err(&mut nowrite, &["HINCRBY", "2015-12-22_1", "e", "1"]).starts_with("NOPERM"));
    for args in [
        &["LISTINGSTATS.INCR", "1", "e", "DATE", "2015-12-22"][..],
        &[
            "LISTINGSTATS.INGEST",
            r#"{"name":"e","listingIds":[1],"message_date":1450742400}"#,
        ],
        &["LISTINGSTATS.METRIC.SET", "m", "a", "b"],
        &["LISTINGSTATS.METRIC.DEL", "cart_to_checkout_ctr"],
    ] {
        let e = err(&mut nowrite, args);
        assert!(e.contains("NOPERM"), "{args:?}: {e}");
    }
    assert_eq!(digest(&mut admin), d, "a refused write changed the data");
    // Reads stay allowed for the write-denied user.
    call(&mut nowrite, &["LISTINGSTATS.GET", "1", "2015-12-22"]).unwrap();

    let mut noread = server.user("noread", &["-@read", "~*"]);
    assert!(err(&mut noread, &["HMGET", "2015-12-22_1", "e"]).starts_with("NOPERM"));
    for args in [
        &["LISTINGSTATS.GET", "1", "2015-12-22"][..],
        &[
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-12-22",
            "2015-12-22",
            "1",
        ],
        &["LISTINGSTATS.METRIC.LIST"],
    ] {
        let e = err(&mut noread, args);
        assert!(e.contains("NOPERM"), "{args:?}: {e}");
    }
    // `*` passes over what the caller may not read: refused by the server
    // where the commands carry the `read` category, otherwise an empty
    // answer (every key is unreadable to this user). Never data.
    for args in [
        &[
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-12-22",
            "2015-12-22",
            "*",
        ][..],
        &[
            "LISTINGSTATS.TOP",
            "cart_to_checkout_ctr",
            "2015-12-22",
            "2015-12-22",
            "5",
        ],
    ] {
        match call(&mut noread, args) {
            Err(e) => assert!(e.starts_with("NOPERM"), "{args:?}: {e}"),
            Ok(v) => assert_eq!(v, Value::Array(vec![]), "{args:?}"),
        }
    }
}

/// A `*` query behaves as if keys the caller may not read did not exist:
/// they count toward no limit and appear in no error text.
#[test]
fn star_queries_do_not_count_unreadable_keys() {
    let server = Server::start_with(Options::default().module(&["max-query-cells", "1"]));
    let mut admin = server.conn();
    for l in 1..=6 {
        int(
            &mut admin,
            &[
                "HSET",
                &format!("2016-01-0{l}_{l}"),
                "cart::checkoutNow:impression",
                "5",
            ],
        );
    }
    int(
        &mut admin,
        &["HSET", "2015-12-31_9", "cart::checkoutNow:impression", "7"],
    );
    // The admin sees all seven, over the limit.
    let e = err(
        &mut admin,
        &[
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-12-01",
            "2016-01-31",
            "*",
        ],
    );
    assert!(e.contains("max-query-cells"), "{e}");

    let mut dec = server.user("dec", &["~2015-12-*"]);
    let q = [
        "LISTINGSTATS.QUERY",
        "cart_to_checkout_ctr",
        "2016-01-01",
        "2016-01-31",
        "*",
    ];
    assert_eq!(call(&mut dec, &q).unwrap(), Value::Array(vec![]));
    let reply = call(
        &mut dec,
        &[
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-12-01",
            "2016-01-31",
            "*",
            "FORMAT",
            "LEGACY",
        ],
    )
    .unwrap();
    let Value::Array(rows) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(rows.len(), 1, "{rows:?}");
    let top = call(
        &mut dec,
        &[
            "LISTINGSTATS.TOP",
            "cart_to_checkout_ctr",
            "2015-12-01",
            "2016-01-31",
            "5",
            "MINDENOM",
            "1",
        ],
    )
    .unwrap();
    let Value::Array(top) = top else {
        panic!("{top:?}")
    };
    assert_eq!(top.len(), 1, "{top:?}");
}

/// Past 2,048 checks a reader looks the user up once: an unrestricted user
/// skips the per-key checks, a restricted one keeps them.
#[test]
fn large_star_queries_filter_exactly_for_restricted_users() {
    let server = Server::start();
    let mut admin = server.conn();
    let mut pipe = redis::pipe();
    for l in 0..2_100 {
        pipe.cmd("HSET")
            .arg(format!("2016-01-01_{l}"))
            .arg("cart::checkoutNow:impression")
            .arg("1")
            .ignore();
    }
    let () = pipe.query(&mut admin).unwrap();
    for l in 0..40 {
        int(
            &mut admin,
            &[
                "HSET",
                &format!("2015-12-31_{l}"),
                "cart::checkoutNow:impression",
                "1",
            ],
        );
    }
    let rows = |c: &mut Connection| -> usize {
        match call(
            c,
            &[
                "LISTINGSTATS.QUERY",
                "cart_to_checkout_ctr",
                "2015-12-01",
                "2016-01-31",
                "*",
            ],
        )
        .unwrap()
        {
            Value::Array(r) => r.len(),
            o => panic!("{o:?}"),
        }
    };
    assert_eq!(rows(&mut admin), 2_140);
    let mut dec = server.user("dec", &["~2015-12-*"]);
    assert_eq!(rows(&mut dec), 40);
    // Broad in effect but not literally `+@all ~*`: still checked per key.
    let mut broad = server.user("broad", &["-hmget", "~*"]);
    let e = err(
        &mut broad,
        &[
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-12-31",
            "2015-12-31",
            "1",
        ],
    );
    assert!(e.contains("NOPERM"), "{e}");
    assert_eq!(rows(&mut broad), 0);
}

/// The module remembers, per user, that a user may do everything (root
/// selector `+@all ~*`) and then skips its checks; any change of users,
/// direct or inside MULTI/EXEC, must be seen by the very next command.
#[test]
fn a_user_change_ends_the_remembered_unrestricted_state() {
    let server = Server::start();
    let mut admin = server.conn();
    let mut app = server.user("app", &["~*"]);
    let incr = ["LISTINGSTATS.INCR", "1", "e", "DATE", "2015-12-22"];
    assert_eq!(int(&mut app, &incr), 1);
    assert_eq!(int(&mut app, &incr), 2, "unrestricted, remembered");
    // A direct change.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "resetkeys", "~2016-*"])
        .query(&mut admin)
        .unwrap();
    let e = err(&mut app, &incr);
    assert!(e.starts_with("ERR NOPERM"), "{e}");
    // Back to everything, remembered again, then a change queued in MULTI:
    // it applies at EXEC, and the next command sees it.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "resetkeys", "~*"])
        .query(&mut admin)
        .unwrap();
    assert_eq!(int(&mut app, &incr), 3);
    assert_eq!(int(&mut app, &incr), 4);
    let _: () = redis::cmd("MULTI").query(&mut admin).unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "-hincrby"])
        .query(&mut admin)
        .unwrap();
    assert_eq!(int(&mut app, &incr), 5, "not applied before EXEC");
    let _: Value = redis::cmd("EXEC").query(&mut admin).unwrap();
    let e = err(&mut app, &incr);
    assert!(e.contains("NOPERM"), "{e}");
}
