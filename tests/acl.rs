//! ACL: every key a command computes is checked against the caller's key
//! permissions, before anything is read or written.

mod common;

use common::*;

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
