//! LISTINGSTATS.MIGRATE: the old flat counters folded into day hashes.

use crate::common::*;

fn report(reply: Value) -> (i64, i64, i64, Vec<String>) {
    let Value::Array(v) = reply else {
        panic!("{reply:?}")
    };
    let num = |i: usize| match &v[i] {
        Value::Int(n) => *n,
        o => panic!("{o:?}"),
    };
    let Value::Array(errors) = &v[7] else {
        panic!("{v:?}")
    };
    let errors = errors
        .iter()
        .map(|e| match e {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            o => panic!("{o:?}"),
        })
        .collect();
    (num(1), num(3), num(5), errors)
}

#[test]
fn flat_counters_fold_into_day_hashes_once() {
    let master = Server::start();
    let replica = Server::start();
    let (mut m, mut r) = (master.conn(), replica.conn());
    replica.replicate(&master);
    for (k, v) in [
        ("2015-12-17:cart::checkoutnow:impression_2276", "455"),
        ("2015-12-17:cart::checkoutnow:click_2276", "5"),
        ("2015-12-18:ldp:x:click_7", "3"),
        ("2015-12-17:cart::checkoutnow:click_9", "lots"),
        ("2015-13-45:cart::checkoutnow:click_9", "1"),
    ] {
        let _: () = redis::cmd("SET").arg(k).arg(v).query(&mut m).unwrap();
    }
    int(
        &mut m,
        &[
            "HSET",
            "2015-12-17_2276",
            "cart::checkoutNow:impression",
            "45",
        ],
    );
    int(&mut m, &["HSET", "2015-12-17_other", "x", "1"]);

    let d = digest(&mut m);
    let (migrated, keys, skipped, errors) =
        report(call(&mut m, &["LISTINGSTATS.MIGRATE", "DRYRUN"]).unwrap());
    assert_eq!((migrated, keys, skipped), (3, 2, 2), "{errors:?}");
    assert_eq!(digest(&mut m), d, "DRYRUN changed data");

    let (migrated, keys, skipped, mut errors) =
        report(call(&mut m, &["LISTINGSTATS.MIGRATE"]).unwrap());
    assert_eq!((migrated, keys, skipped), (3, 2, 2));
    errors.sort();
    assert!(
        errors[0]
            .starts_with("2015-12-17:cart::checkoutnow:click_9: value 'lots' is not an integer"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("2015-13-45:cart::checkoutnow:click_9: impossible date"),
        "{errors:?}"
    );
    // Registered spellings: the built-in metric sees the migrated counts.
    assert_eq!(
        hgetall(&mut m, "2015-12-17_2276"),
        [
            ("cart::checkoutNow:click".to_string(), "5".to_string()),
            (
                "cart::checkoutNow:impression".to_string(),
                "500".to_string()
            )
        ]
    );
    assert_eq!(
        hgetall(&mut m, "2015-12-18_7"),
        [("ldp:x:click".to_string(), "3".to_string())]
    );
    assert_eq!(
        int(
            &mut m,
            &["EXISTS", "2015-12-17:cart::checkoutnow:impression_2276"]
        ),
        0
    );
    assert_eq!(
        int(&mut m, &["EXISTS", "2015-12-17:cart::checkoutnow:click_9"]),
        1,
        "left untouched"
    );
    let reply = call(
        &mut m,
        &[
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-12-17",
            "2015-12-17",
            "2276",
            "FORMAT",
            "LEGACY",
        ],
    )
    .unwrap();
    assert_eq!(
        reply,
        Value::Array(vec![Value::BulkString(
            b"cart_to_checkout_ctr=>2015-12-17_2276 : 1.00%".to_vec()
        )])
    );
    // A second run finds nothing more to migrate.
    let (migrated, keys, skipped, _) = report(call(&mut m, &["LISTINGSTATS.MIGRATE"]).unwrap());
    assert_eq!((migrated, keys, skipped), (0, 0, 2));
    // Effects replicate: the replica ends equal.
    let _: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut m).unwrap();
    assert_eq!(digest(&mut m), digest(&mut r));
    let e = err(&mut m, &["LISTINGSTATS.MIGRATE", "NOW"]);
    assert!(e.contains("unknown option"), "{e}");
}

/// A user who may not read or delete the flat keys migrates nothing.
#[test]
fn migrate_checks_each_key_as_get_del_and_hincrby() {
    let server = Server::start();
    let mut admin = server.conn();
    let _: () = redis::cmd("SET")
        .arg("2015-12-17:e_1")
        .arg("2")
        .query(&mut admin)
        .unwrap();
    let mut days_only = server.user("days", &["~2015-12-17_*"]);
    let d = digest(&mut admin);
    let (migrated, _, skipped, errors) =
        report(call(&mut days_only, &["LISTINGSTATS.MIGRATE"]).unwrap());
    assert_eq!((migrated, skipped), (0, 1));
    assert!(errors[0].contains("NOPERM"), "{errors:?}");
    assert_eq!(digest(&mut admin), d);
}
