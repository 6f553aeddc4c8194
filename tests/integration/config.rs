//! Configuration: module arguments at load, CONFIG SET/GET at run time.

use std::sync::Arc;

use crate::common::*;

fn config_get(c: &mut Connection, name: &str) -> String {
    let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(c).unwrap();
    assert_eq!(pair.len(), 2, "CONFIG GET {name} gave {pair:?}");
    pair[1].clone()
}

#[test]
fn defaults_and_module_args_show_in_config_get() {
    let server = Server::start();
    let mut c = server.conn();
    for (name, value) in [
        ("key-prefix", ""),
        ("key-format", "date_listing"),
        ("timezone", "UTC"),
        ("dedup-window", "604800"),
        ("max-batch", "10000"),
        ("max-query-cells", "1000000"),
        ("max-json-rows", "25000"),
        ("star-source", "index"),
        ("retention-days", "0"),
        ("cache", "yes"),
        ("max-query-memory", "268435456"),
    ] {
        assert_eq!(
            config_get(&mut c, &format!("listingstats.{name}")),
            value,
            "{name}"
        );
    }
    let server = Server::start_with(Options::default().module(&[
        "key-prefix",
        "ls:",
        "timezone",
        "Europe/London",
        "dedup-window",
        "60",
        "max-batch",
        "5",
        "max-query-memory",
        "64mb",
    ]));
    let mut c = server.conn();
    assert_eq!(
        config_get(&mut c, "listingstats.max-query-memory"),
        (64 << 20).to_string()
    );
    assert_eq!(config_get(&mut c, "listingstats.key-prefix"), "ls:");
    assert_eq!(config_get(&mut c, "listingstats.timezone"), "Europe/London");
    assert_eq!(config_get(&mut c, "listingstats.dedup-window"), "60");
    assert_eq!(config_get(&mut c, "listingstats.max-batch"), "5");
}

#[test]
fn bad_module_args_refuse_to_load_and_say_why() {
    for (args, reason) in [
        (
            &["timezone", "Mars/Olympus"][..],
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            &["key-format", "flat"],
            "key-format must be date_listing or tagged",
        ),
        (
            &["max-batch", "0"],
            "max-batch must be between 1 and 1000000",
        ),
        (&["dedup-window", "soon"], "dedup-window must be an integer"),
        (
            &["max-query-memory", "12tb"],
            "max-query-memory must be an integer of bytes",
        ),
        (&["colour", "blue"], "unknown module argument 'colour'"),
        (
            &["key-prefix"],
            "module arguments come in 'name value' pairs",
        ),
    ] {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let opts = Options::default().module(args);
        match Server::start_in(dir, opts) {
            Ok(_) => panic!("{args:?} should not load"),
            Err(log) => {
                assert!(
                    log.contains("listingstats: refusing to load"),
                    "{args:?}:\n{log}"
                );
                assert!(
                    log.contains(reason),
                    "{args:?} should say {reason:?}:\n{log}"
                );
            }
        }
    }
}

#[test]
fn config_set_validates_and_takes_effect() {
    let server = Server::start();
    let mut c = server.conn();
    for (name, bad, reason) in [
        ("timezone", "Nowhere/Land", "unknown time zone"),
        (
            "key-format",
            "flat",
            "key-format must be date_listing or tagged",
        ),
        (
            "key-prefix",
            "has space",
            "key-prefix must be at most 128 printable ASCII",
        ),
        ("max-batch", "0", "between 1 and 1000000"),
        ("max-query-cells", "-1", "between 1 and 1000000000"),
        ("max-json-rows", "-1", "between 0 and 1000000000"),
        ("dedup-window", "abc", "argument couldn't be parsed"),
        ("star-source", "guess", "star-source must be index or scan"),
        ("cache", "maybe", "cache must be yes or no"),
    ] {
        let got = err(
            &mut c,
            &["CONFIG", "SET", &format!("listingstats.{name}"), bad],
        );
        assert!(got.starts_with("ERR "), "{got}");
        assert!(got.contains(reason), "{name}={bad}: {got}");
    }
    assert_eq!(
        config_get(&mut c, "listingstats.timezone"),
        "UTC",
        "a refused value must not stick"
    );

    for (name, value) in [
        ("key-prefix", "app1:"),
        ("key-format", "tagged"),
        ("timezone", "America/New_York"),
    ] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(format!("listingstats.{name}"))
            .arg(value)
            .query(&mut c)
            .unwrap();
        assert_eq!(config_get(&mut c, &format!("listingstats.{name}")), value);
    }
    // 2016-01-01T03:00:00Z is still 2015-12-31 in New York.
    int(&mut c, &["LISTINGSTATS.INCR", "9", "e", "AT", "1451617200"]);
    assert_eq!(hgetall(&mut c, "app1:2015-12-31_{9}").len(), 1);
}

/// MODULE UNLOAD and MODULE LOAD at run time (allowed by
/// `enable-module-command local`): the commands go and come back, and the
/// reloaded module's `*` index sees a day hash written while it was away.
#[test]
fn module_unloads_and_loads_at_run_time() {
    let server = Server::start_with(Options::default().module_command());
    let mut c = server.conn();
    int(
        &mut c,
        &[
            "LISTINGSTATS.INCR",
            "1",
            "cart::checkoutNow:impression",
            "DATE",
            "2016-01-01",
        ],
    );
    let _: () = redis::cmd("MODULE")
        .arg("UNLOAD")
        .arg("listingstats")
        .query(&mut c)
        .unwrap();
    assert!(!module_names(&mut c).iter().any(|n| n == "listingstats"));
    let gone = err(&mut c, &["LISTINGSTATS.GET", "1", "2016-01-01"]);
    assert!(gone.to_lowercase().contains("unknown command"), "{gone}");
    int(
        &mut c,
        &[
            "HINCRBY",
            "2016-01-01_2",
            "cart::checkoutNow:impression",
            "5",
        ],
    );

    let _: () = redis::cmd("MODULE")
        .arg("LOAD")
        .arg(module_path().to_str().unwrap())
        .query(&mut c)
        .unwrap();
    assert!(module_names(&mut c).iter().any(|n| n == "listingstats"));
    let reply = call(
        &mut c,
        &[
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2016-01-01",
            "2016-01-01",
            "*",
            "FORMAT",
            "JSON",
        ],
    )
    .unwrap();
    let Value::BulkString(json) = reply else {
        panic!("{reply:?}")
    };
    let json = String::from_utf8(json).unwrap();
    assert!(
        json.contains("\"listing\":\"1\"") && json.contains("\"listing\":\"2\""),
        "{json}"
    );
}

fn info_us(c: &mut Connection, field: &str) -> u64 {
    info_field(c, "listingstats", &format!("listingstats_{field}"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO listingstats has no {field}"))
}

/// `watch-event-loop yes` measures each pass of the event loop (a command
/// that sleeps 30 ms shows as a pass that long); turning it on starts a
/// new measurement; off, nothing is measured.
#[test]
fn watch_event_loop_measures_the_longest_pass() {
    let server = Server::start();
    let mut c = server.conn();
    assert_eq!(config_get(&mut c, "listingstats.watch-event-loop"), "no");
    let got = err(
        &mut c,
        &["CONFIG", "SET", "listingstats.watch-event-loop", "maybe"],
    );
    assert!(got.contains("watch-event-loop must be yes or no"), "{got}");

    call(&mut c, &["DEBUG", "SLEEP", "0.03"]).unwrap();
    assert_eq!(info_us(&mut c, "longest_loop_pass_usec"), 0, "off");

    call(
        &mut c,
        &["CONFIG", "SET", "listingstats.watch-event-loop", "yes"],
    )
    .unwrap();
    call(&mut c, &["DEBUG", "SLEEP", "0.03"]).unwrap();
    call(&mut c, &["PING"]).unwrap();
    let wall = info_us(&mut c, "longest_loop_pass_usec");
    assert!(wall >= 30_000, "a 30 ms command is a pass of {wall} us");
    // Sleeping uses no CPU.
    assert!(info_us(&mut c, "longest_loop_pass_cpu_usec") < 30_000);

    // Off and on again: a new measurement, without the 30 ms pass.
    call(
        &mut c,
        &["CONFIG", "SET", "listingstats.watch-event-loop", "no"],
    )
    .unwrap();
    call(
        &mut c,
        &["CONFIG", "SET", "listingstats.watch-event-loop", "yes"],
    )
    .unwrap();
    call(&mut c, &["PING"]).unwrap();
    let fresh = info_us(&mut c, "longest_loop_pass_usec");
    assert!(fresh < 30_000, "turning it on starts anew, got {fresh} us");

    // Given at load, it watches from the start.
    let server = Server::start_with(Options::default().module(&["watch-event-loop", "yes"]));
    let mut c = server.conn();
    call(&mut c, &["DEBUG", "SLEEP", "0.03"]).unwrap();
    call(&mut c, &["PING"]).unwrap();
    assert!(info_us(&mut c, "longest_loop_pass_usec") >= 30_000);
}
