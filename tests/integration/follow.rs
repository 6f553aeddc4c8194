//! Following a Redis Stream: entries applied as events, exactly once.

use std::collections::HashMap;

use crate::common::*;

const IMP: &str = "cart::checkoutNow:impression";

fn event(listing: u32, id: Option<&str>) -> String {
    match id {
        Some(id) => format!(
            r#"{{"name":"{IMP}","listingIds":[{listing}],"message_date":1451606400,"id":"{id}"}}"#
        ),
        None => format!(r#"{{"name":"{IMP}","listingIds":[{listing}],"message_date":1451606400}}"#),
    }
}

fn xadd(c: &mut Connection, stream: &str, fields: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (f, v) in fields {
        cmd.arg(*f).arg(*v);
    }
    cmd.query(c).unwrap()
}

/// FOLLOWING as one map per stream.
fn following(c: &mut Connection) -> Vec<HashMap<String, Value>> {
    let Value::Array(all) = call(c, &["LISTINGSTATS.FOLLOWING"]).unwrap() else {
        panic!()
    };
    all.into_iter()
        .map(|m| match m {
            Value::Array(kv) => kv
                .chunks(2)
                .map(|p| match &p[0] {
                    Value::BulkString(k) => (String::from_utf8_lossy(k).into_owned(), p[1].clone()),
                    o => panic!("{o:?}"),
                })
                .collect(),
            o => panic!("{o:?}"),
        })
        .collect()
}

fn num(m: &HashMap<String, Value>, k: &str) -> i64 {
    match &m[k] {
        Value::Int(n) => *n,
        o => panic!("{k}: {o:?}"),
    }
}

fn text(m: &HashMap<String, Value>, k: &str) -> String {
    match &m[k] {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        o => panic!("{k}: {o:?}"),
    }
}

/// Sum of impressions over listings 0..n on the demo day.
fn total(c: &mut Connection, n: u32) -> i64 {
    (0..n)
        .map(|l| {
            let v: Option<i64> = redis::cmd("HGET")
                .arg(format!("2016-01-01_{l}"))
                .arg(IMP)
                .query(c)
                .unwrap();
            v.unwrap_or(0)
        })
        .sum()
}

fn caught_up(c: &mut Connection) -> bool {
    following(c).iter().all(|m| num(m, "lag") == 0)
}

#[test]
fn entries_are_applied_once_bad_ones_are_rejected_and_unfollow_stops() {
    let server = Server::start();
    let mut c = server.conn();
    xadd(&mut c, "events", &[("event", &event(1, Some("a")))]);
    xadd(&mut c, "events", &[("event", "not json")]);
    xadd(&mut c, "events", &[("other", "field")]);
    xadd(&mut c, "events", &[("event", &event(1, Some("a")))]);

    let e = err(&mut c, &["LISTINGSTATS.FOLLOW", "nostream"]);
    assert!(e.contains("no stream 'nostream'"), "{e}");
    let _: () = redis::cmd("SET")
        .arg("astring")
        .arg("x")
        .query(&mut c)
        .unwrap();
    assert!(err(&mut c, &["LISTINGSTATS.FOLLOW", "astring"]).starts_with("WRONGTYPE"));
    assert!(
        err(&mut c, &["LISTINGSTATS.FOLLOW", "events", "FROM", "soon"]).contains("FROM must be")
    );

    assert_eq!(
        call(&mut c, &["LISTINGSTATS.FOLLOW", "events"]).unwrap(),
        Value::Okay
    );
    assert!(err(&mut c, &["LISTINGSTATS.FOLLOW", "events"]).contains("followed already"));
    assert!(eventually(5, || caught_up(&mut c)));
    // New entries arrive through notifications alone: no command asks.
    let last = xadd(&mut c, "events", &[("event", &event(2, None))]);
    assert!(eventually(5, || total(&mut c, 3) == 2), "not applied");
    let state = &following(&mut c)[0];
    assert_eq!(text(state, "stream"), "events");
    assert_eq!(text(state, "last-id"), last);
    assert_eq!(
        (
            num(state, "applied"),
            num(state, "duplicates"),
            num(state, "rejected")
        ),
        (2, 1, 2)
    );
    assert!(
        text(state, "last-rejection").contains("no field 'event'"),
        "{state:?}"
    );
    assert_eq!(num(state, "trimmed"), 0);
    assert_eq!(
        info_field(&mut c, "listingstats", "listingstats_followed_streams").as_deref(),
        Some("1")
    );

    // A day hash of another type fails a whole batch: the entries are then
    // applied one by one, and only the entry that needs it is rejected.
    let _: () = redis::cmd("SET")
        .arg("2016-01-01_5")
        .arg("x")
        .query(&mut c)
        .unwrap();
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("XADD")
        .arg("events")
        .arg("*")
        .arg("event")
        .arg(event(0, None))
        .ignore();
    pipe.cmd("XADD")
        .arg("events")
        .arg("*")
        .arg("event")
        .arg(event(5, None))
        .ignore();
    pipe.cmd("XADD")
        .arg("events")
        .arg("*")
        .arg("event")
        .arg(event(0, None))
        .ignore();
    let _: () = pipe.query(&mut c).unwrap();
    assert!(eventually(5, || total(&mut c, 1) == 2));
    let state = &following(&mut c)[0];
    assert_eq!(num(state, "rejected"), 3, "{state:?}");
    assert!(
        text(state, "last-rejection").contains("WRONGTYPE"),
        "{state:?}"
    );
    int(&mut c, &["DEL", "2016-01-01_5"]);

    assert_eq!(
        call(&mut c, &["LISTINGSTATS.UNFOLLOW", "events"]).unwrap(),
        Value::Okay
    );
    assert!(err(&mut c, &["LISTINGSTATS.UNFOLLOW", "events"]).contains("not followed"));
    xadd(&mut c, "events", &[("event", &event(2, None))]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(total(&mut c, 3), 4, "applied after UNFOLLOW");
    assert!(following(&mut c).is_empty());

    // FROM $: only what comes after.
    assert_eq!(
        call(&mut c, &["LISTINGSTATS.FOLLOW", "events", "FROM", "$"]).unwrap(),
        Value::Okay
    );
    xadd(&mut c, "events", &[("event", &event(0, None))]);
    assert!(eventually(5, || total(&mut c, 3) == 5));
}

#[test]
fn trimmed_deleted_and_retyped_streams_are_reported() {
    let server = Server::start();
    let mut c = server.conn();
    xadd(&mut c, "s", &[("event", &event(1, None))]);
    assert_eq!(
        call(&mut c, &["LISTINGSTATS.FOLLOW", "s"]).unwrap(),
        Value::Okay
    );
    assert!(eventually(5, || caught_up(&mut c)));
    // Entries added and trimmed away before the pump could run.
    let mut pipe = redis::pipe();
    pipe.atomic();
    for _ in 0..5 {
        pipe.cmd("XADD")
            .arg("s")
            .arg("*")
            .arg("event")
            .arg(event(1, None))
            .ignore();
    }
    pipe.cmd("XTRIM").arg("s").arg("MAXLEN").arg(1).ignore();
    let _: () = pipe.query(&mut c).unwrap();
    assert!(eventually(5, || following(&mut c)
        .first()
        .is_some_and(|m| num(m, "trimmed") == 1)));
    assert!(eventually(5, || caught_up(&mut c)));
    assert_eq!(
        total(&mut c, 2),
        2,
        "the first entry and the one left after the trim"
    );

    // Deleting the key stops following it, with a logged reason.
    int(&mut c, &["DEL", "s"]);
    assert!(eventually(5, || following(&mut c).is_empty()));
    assert!(
        server
            .log()
            .contains("stopped following 's': the key was deleted"),
        "{}",
        server.log()
    );
    // Retyping too.
    xadd(&mut c, "t", &[("event", &event(1, None))]);
    assert_eq!(
        call(&mut c, &["LISTINGSTATS.FOLLOW", "t"]).unwrap(),
        Value::Okay
    );
    let _: () = redis::cmd("SET")
        .arg("t")
        .arg("now a string")
        .query(&mut c)
        .unwrap();
    assert!(eventually(5, || following(&mut c).is_empty()));
    assert!(server
        .log()
        .contains("stopped following 't': the key is no longer a stream"));
}

/// The position is written with the counters in one MULTI/EXEC, and both
/// survive a restart from the AOF and DEBUG RELOAD.
#[test]
fn position_and_counters_persist_together() {
    let server = Server::start_with(Options::default().plain_aof());
    let mut c = server.conn();
    xadd(&mut c, "events", &[("event", &event(1, None))]);
    assert_eq!(
        call(&mut c, &["LISTINGSTATS.FOLLOW", "events"]).unwrap(),
        Value::Okay
    );
    assert!(eventually(5, || total(&mut c, 2) == 1));
    let aof = server.aof_text();
    let block = aof
        .split("MULTI")
        .find(|b| b.contains("listingstats:following") && b.contains("HINCRBY"))
        .unwrap_or_else(|| panic!("no MULTI holding both the position and a counter:\n{aof}"));
    assert!(block.contains("EXEC"), "{block}");

    let server = server.restart();
    let mut c = server.conn();
    assert_eq!(total(&mut c, 2), 1);
    assert_eq!(following(&mut c).len(), 1);
    xadd(&mut c, "events", &[("event", &event(1, None))]);
    assert!(
        eventually(5, || total(&mut c, 2) == 2),
        "not followed after restart"
    );
    let _: () = redis::cmd("DEBUG").arg("RELOAD").query(&mut c).unwrap();
    xadd(&mut c, "events", &[("event", &event(1, None))]);
    assert!(
        eventually(5, || total(&mut c, 2) == 3),
        "not followed after DEBUG RELOAD"
    );
    // An AOF rewrite, then a restart from the rewritten file.
    let _: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    assert!(eventually(20, || {
        info_field(&mut c, "persistence", "aof_rewrite_in_progress").as_deref() == Some("0")
            && info_field(&mut c, "persistence", "aof_rewrite_scheduled").as_deref() == Some("0")
    }));
    let server = server.restart();
    let mut c = server.conn();
    assert_eq!(total(&mut c, 2), 3);
    xadd(&mut c, "events", &[("event", &event(1, None))]);
    assert!(
        eventually(5, || total(&mut c, 2) == 4),
        "not followed after an AOF rewrite"
    );
    assert_eq!(num(&following(&mut c)[0], "applied"), 4);
}

/// kill -9 at random moments while entries arrive (appendfsync always):
/// after the last restart every entry in the stream counted exactly once.
#[test]
fn kill_9_neither_loses_nor_doubles_an_entry() {
    let mut server = Server::start_with(Options::default().durable_aof());
    let mut rng = Rng(0x5eed);
    {
        let mut c = server.conn();
        xadd(&mut c, "events", &[("event", &event(0, None))]);
        assert_eq!(
            call(&mut c, &["LISTINGSTATS.FOLLOW", "events"]).unwrap(),
            Value::Okay
        );
    }
    for round in 0..6 {
        let mut c = server.conn();
        let mut pipe = redis::pipe();
        for i in 0..300 {
            pipe.cmd("XADD")
                .arg("events")
                .arg("*")
                .arg("event")
                .arg(event((round * 300 + i) % 7, None))
                .ignore();
        }
        let _: () = pipe.query(&mut c).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.below(30)));
        server = server.kill9_and_restart();
    }
    let mut c = server.conn();
    assert!(
        eventually(20, || caught_up(&mut c)),
        "{:?}",
        following(&mut c)
    );
    let entries = int(&mut c, &["XLEN", "events"]);
    assert!(entries > 1000, "{entries}");
    assert_eq!(
        total(&mut c, 7),
        entries,
        "counted entries differ from the stream's"
    );
}

/// A replica applies nothing itself; promoted, it continues from the
/// replicated position.
#[test]
fn a_promoted_replica_continues_from_the_replicated_position() {
    let master = Server::start();
    let replica = Server::start();
    let (mut m, mut r) = (master.conn(), replica.conn());
    replica.replicate(&master);
    for i in 0..50 {
        xadd(&mut m, "events", &[("event", &event(i % 3, None))]);
    }
    assert_eq!(
        call(&mut m, &["LISTINGSTATS.FOLLOW", "events"]).unwrap(),
        Value::Okay
    );
    assert!(eventually(5, || total(&mut m, 3) == 50));
    let _: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut m).unwrap();
    assert_eq!(
        digest(&mut m),
        digest(&mut r),
        "the replica applied entries itself"
    );
    assert!(
        err(&mut r, &["LISTINGSTATS.FOLLOW", "x"]).contains("READONLY")
            || err(&mut r, &["LISTINGSTATS.FOLLOW", "x"]).contains("replica")
    );

    drop(master);
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut r)
        .unwrap();
    xadd(&mut r, "events", &[("event", &event(1, None))]);
    assert!(
        eventually(5, || total(&mut r, 3) == 51),
        "the promoted replica does not follow"
    );
    assert_eq!(num(&following(&mut r)[0], "applied"), 51);
}

/// FOLLOW checks that the caller may read the stream.
#[test]
fn follow_needs_read_access_to_the_stream() {
    let server = Server::start();
    let mut admin = server.conn();
    xadd(&mut admin, "secret", &[("event", &event(1, None))]);
    let mut limited = server.user("limited", &["~events*"]);
    let e = err(&mut limited, &["LISTINGSTATS.FOLLOW", "secret"]);
    assert!(e.contains("NOPERM"), "{e}");
    assert!(following(&mut admin).is_empty());
}
