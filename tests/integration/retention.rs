//! Retention: day hashes expire `retention-days` after their day ends.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::*;

const IMP: &str = "cart::checkoutNow:impression";

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The expiry of a UTC day hash of the day holding `t` (seconds).
fn expiry_of_day(t: i64, days: i64) -> i64 {
    (t.div_euclid(86_400) + 1 + days) * 86_400_000
}

fn day_text(t: i64) -> String {
    // Days since 1970 to a civil date (UTC), without a date crate.
    let z = t.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn pexpiretime(c: &mut Connection, key: &str) -> i64 {
    int(c, &["PEXPIRETIME", key])
}

#[test]
fn writes_expire_after_retention_and_old_days_are_refused() {
    let master = Server::start_with(Options::default().module(&["retention-days", "30"]));
    let replica = Server::start_with(Options::default().module(&["retention-days", "30"]));
    let (mut m, mut r) = (master.conn(), replica.conn());
    replica.replicate(&master);

    let now = now_s();
    let today = day_text(now);
    int(
        &mut m,
        &["LISTINGSTATS.INCR", "1", IMP, "AT", &now.to_string()],
    );
    let key = format!("{today}_1");
    assert_eq!(pexpiretime(&mut m, &key), expiry_of_day(now, 30));

    // A day already past retention: refused, nothing written.
    let d = digest(&mut m);
    let e = err(
        &mut m,
        &["LISTINGSTATS.INCR", "1", IMP, "DATE", "2015-12-22"],
    );
    assert_eq!(
        e,
        "ERR day 2015-12-22 is past retention (retention-days 30): nothing written"
    );
    assert_eq!(digest(&mut m), d);

    // INGEST rejects just that event.
    let old =
        r#"{"name":"cart::checkoutNow:impression","listingIds":[2],"message_date":1450742400}"#;
    let fresh = format!(
        r#"{{"name":"cart::checkoutNow:impression","listingIds":[2],"message_date":{now}}}"#
    );
    let reply = call(&mut m, &["LISTINGSTATS.INGEST", old, &fresh]).unwrap();
    let text = format!("{reply:?}");
    assert!(text.contains("past retention"), "{text}");
    assert_eq!(
        pexpiretime(&mut m, &format!("{today}_2")),
        expiry_of_day(now, 30)
    );
    let e = err(&mut m, &["LISTINGSTATS.INGEST", "STRICT", old, &fresh]);
    assert!(
        e.contains("STRICT batch refused") && e.contains("past retention"),
        "{e}"
    );

    // RETAIN's writes happen in timer slices: they replicate too.
    let yesterday = format!("{}_5", day_text(now - 86_400));
    int(&mut m, &["HSET", &yesterday, IMP, "1"]);
    int(&mut m, &["HSET", "2015-12-22_5", IMP, "1"]);
    call(&mut m, &["LISTINGSTATS.RETAIN"]).unwrap();
    assert_eq!(int(&mut m, &["EXISTS", "2015-12-22_5"]), 0);

    // Replicas get the same absolute expiries (PEXPIREAT) and deletions.
    let _: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut m).unwrap();
    assert_eq!(int(&mut r, &["EXISTS", "2015-12-22_5"]), 0);
    assert_eq!(
        pexpiretime(&mut m, &yesterday),
        pexpiretime(&mut r, &yesterday)
    );
    assert!(pexpiretime(&mut r, &yesterday) > 0);
    assert_eq!(digest(&mut m), digest(&mut r));
    for k in [key.as_str(), &format!("{today}_2")] {
        assert_eq!(pexpiretime(&mut m, k), pexpiretime(&mut r, k), "{k}");
    }
}

#[test]
fn retain_gives_old_hashes_their_expiry_or_deletes_them() {
    let server = Server::start();
    let mut c = server.conn();
    let e = err(&mut c, &["LISTINGSTATS.RETAIN"]);
    assert!(e.contains("retention-days is 0"), "{e}");
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "listingstats.retention-days", "30"])
        .query(&mut c)
        .unwrap();
    let yesterday = now_s() - 86_400;
    let recent = format!("{}_7", day_text(yesterday));
    int(&mut c, &["HSET", &recent, IMP, "3"]);
    int(&mut c, &["HSET", "2015-12-22_7", IMP, "3"]);
    int(&mut c, &["HSET", "not-a-day-hash", IMP, "3"]);
    let _: () = redis::cmd("SET")
        .arg("2015-12-22_8")
        .arg("a string")
        .query(&mut c)
        .unwrap();
    let counts = |reply: Value| -> Vec<(String, i64)> {
        let Value::Array(v) = reply else {
            panic!("{reply:?}")
        };
        v.chunks(2)
            .map(|p| match (&p[0], &p[1]) {
                (Value::BulkString(k), Value::Int(n)) => {
                    (String::from_utf8_lossy(k).into_owned(), *n)
                }
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let first = counts(call(&mut c, &["LISTINGSTATS.RETAIN"]).unwrap());
    assert_eq!(
        first,
        [
            ("set".into(), 1),
            ("deleted".into(), 1),
            ("denied".into(), 0)
        ]
    );
    assert_eq!(pexpiretime(&mut c, &recent), expiry_of_day(yesterday, 30));
    assert_eq!(int(&mut c, &["EXISTS", "2015-12-22_7"]), 0);
    assert_eq!(int(&mut c, &["TTL", "not-a-day-hash"]), -1);
    assert_eq!(
        int(&mut c, &["EXISTS", "2015-12-22_8"]),
        1,
        "not a hash: left alone"
    );
    // Nothing left to do; the same inside MULTI (run at once).
    let again = counts(call(&mut c, &["LISTINGSTATS.RETAIN"]).unwrap());
    assert_eq!(
        again,
        [
            ("set".into(), 0),
            ("deleted".into(), 0),
            ("denied".into(), 0)
        ]
    );
    int(&mut c, &["HSET", "2015-12-23_9", IMP, "1"]);
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    let _: String = redis::cmd("LISTINGSTATS.RETAIN").query(&mut c).unwrap();
    let exec: Vec<Value> = redis::cmd("EXEC").query(&mut c).unwrap();
    assert_eq!(
        counts(exec[0].clone()),
        [
            ("set".into(), 0),
            ("deleted".into(), 1),
            ("denied".into(), 0)
        ]
    );
    // A user who may not touch those keys: counted as denied, untouched.
    int(&mut c, &["HSET", "2015-12-24_9", IMP, "1"]);
    let mut limited = server.user("limited", &["~other:*"]);
    let denied = counts(call(&mut limited, &["LISTINGSTATS.RETAIN"]).unwrap());
    assert_eq!(denied[2], ("denied".into(), 1));
    assert_eq!(int(&mut c, &["EXISTS", "2015-12-24_9"]), 1);
}
