//! The command table Redis reads: COMMAND DOCS, COMMAND INFO, and the
//! METRIC subcommands beside their dotted aliases.

use std::collections::HashMap;

use crate::common::*;

const ALL: [&str; 11] = [
    "listingstats.incr",
    "listingstats.ingest",
    "listingstats.get",
    "listingstats.query",
    "listingstats.top",
    "listingstats.metric",
    "listingstats.metric.set",
    "listingstats.metric.del",
    "listingstats.metric.list",
    "listingstats.metric|set",
    "listingstats.metric|list",
];

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        other => format!("{other:?}"),
    }
}

/// A RESP2 flat list of pairs (or a RESP3 map) as a map of text keys.
fn pairs(v: &Value) -> HashMap<String, Value> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .map(|kv| (text(&kv[0]), kv[1].clone()))
            .collect(),
        Value::Map(items) => items.iter().map(|(k, v)| (text(k), v.clone())).collect(),
        other => panic!("not a map: {other:?}"),
    }
}

#[test]
fn every_command_has_docs_and_its_real_arity() {
    let server = Server::start();
    let mut c = server.conn();
    for name in ALL {
        let docs = call(&mut c, &["COMMAND", "DOCS", name]).unwrap();
        // A subcommand (`parent|sub`) is answered under its own full name.
        let entry = pairs(&pairs(&docs)[name]);
        let summary = text(&entry["summary"]);
        assert!(summary.len() > 20, "{name}: summary {summary:?}");
        assert_eq!(text(&entry["since"]), "0.1.0", "{name}");
        assert!(entry.contains_key("complexity"), "{name}");
        assert_eq!(text(&entry["group"]), "module", "{name}");
    }
    // Arguments as Redis describes them: INCR's optional BY token.
    let incr = pairs(
        &pairs(&call(&mut c, &["COMMAND", "DOCS", "listingstats.incr"]).unwrap())
            ["listingstats.incr"],
    );
    let Value::Array(args) = &incr["arguments"] else {
        panic!("{incr:?}")
    };
    let by = pairs(&args[2]);
    assert_eq!(text(&by["token"]), "BY");
    assert!(format!("{:?}", by["flags"]).contains("optional"));

    for (name, arity) in [
        ("listingstats.incr", -3),
        ("listingstats.ingest", -2),
        ("listingstats.get", 3),
        ("listingstats.query", -5),
        ("listingstats.top", -5),
        ("listingstats.metric.set", -4),
        ("listingstats.metric.list", 1),
        ("listingstats.metric|set", -5),
        ("listingstats.metric|del", 3),
    ] {
        let info: Vec<Vec<Value>> = redis::cmd("COMMAND")
            .arg("INFO")
            .arg(name)
            .query(&mut c)
            .unwrap();
        assert_eq!(info[0][1], Value::Int(arity), "{name}");
    }
    let e = err(&mut c, &["LISTINGSTATS.GET", "1"]);
    assert_eq!(
        e,
        "ERR wrong number of arguments for 'listingstats.get' command"
    );
}

/// METRIC SET/DEL/LIST as subcommands (no command name with two dots for
/// cluster clients) and as the dotted aliases: one registry.
#[test]
fn metric_subcommands_and_aliases_share_the_registry() {
    let server = Server::start();
    let mut c = server.conn();
    let ok: String = redis::cmd("LISTINGSTATS.METRIC")
        .arg("SET")
        .arg("sub_ctr")
        .arg("a")
        .arg("b")
        .arg("SCALE")
        .arg("1")
        .query(&mut c)
        .unwrap();
    assert_eq!(ok, "OK");
    let listed = |c: &mut Connection, cmd: &[&str]| -> Vec<String> {
        match call(c, cmd).unwrap() {
            Value::Array(all) => all
                .iter()
                .map(|m| match m {
                    Value::Array(f) => text(&f[0]),
                    o => panic!("{o:?}"),
                })
                .collect(),
            o => panic!("{o:?}"),
        }
    };
    let via_sub = listed(&mut c, &["LISTINGSTATS.METRIC", "LIST"]);
    let via_alias = listed(&mut c, &["LISTINGSTATS.METRIC.LIST"]);
    assert_eq!(via_sub, via_alias);
    assert!(via_sub.contains(&"sub_ctr".to_string()), "{via_sub:?}");
    assert_eq!(int(&mut c, &["listingstats.metric", "del", "sub_ctr"]), 1);
    assert!(!listed(&mut c, &["LISTINGSTATS.METRIC.LIST"]).contains(&"sub_ctr".to_string()));
    let e = err(&mut c, &["LISTINGSTATS.METRIC", "NOPE"]);
    assert!(e.to_lowercase().contains("unknown subcommand"), "{e}");
    // The subcommand carries the same ACL rules as its alias.
    let mut nowrite = server.user("nowrite", &["~*", "-@write"]);
    let e = err(&mut nowrite, &["LISTINGSTATS.METRIC", "SET", "m", "a", "b"]);
    assert!(e.contains("NOPERM"), "{e}");
}
