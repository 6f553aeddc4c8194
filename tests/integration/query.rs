//! LISTINGSTATS.QUERY, TOP and METRIC.* against a real server, on data
//! written with plain HSET as a restored production RDB holds it.

use std::collections::BTreeMap;

use crate::common::*;

const ATC_CLICK: &str = "ldp:sellPanel:addToCart:click";
const ATC_IMP: &str = "ldp:sellPanel:addToCart:impression";
const CO_CLICK: &str = "cart::checkoutNow:click";
const CO_IMP: &str = "cart::checkoutNow:impression";

/// (name, numerator field, denominator field) of the built-ins.
const METRICS: [(&str, &str, &str); 2] = [
    ("cart_to_checkout_ctr", CO_CLICK, CO_IMP),
    ("ldp_add_to_cart_ctr", ATC_CLICK, ATC_IMP),
];

fn set(c: &mut Connection, args: &[&str]) {
    call(c, args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

#[test]
fn legacy_is_byte_for_byte_the_lua_output() {
    let server = Server::start();
    let mut c = server.conn();
    int(
        &mut c,
        &[
            "HSET",
            "2015-12-31_2149",
            CO_CLICK,
            "1",
            CO_IMP,
            "1",
            ATC_CLICK,
            "1",
            ATC_IMP,
            "3",
        ],
    );
    let reply = call(
        &mut c,
        &[
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr,ldp_add_to_cart_ctr",
            "2015-12-31",
            "2015-12-31",
            "2149",
            "FORMAT",
            "LEGACY",
        ],
    )
    .unwrap();
    assert_eq!(
        reply,
        Value::Array(vec![
            Value::BulkString(b"cart_to_checkout_ctr=>2015-12-31_2149 : 100.00%".to_vec()),
            Value::BulkString(b"ldp_add_to_cart_ctr=>2015-12-31_2149 : 33.33%".to_vec()),
        ])
    );
    // The seed's second day, across a range: 1/4 and 3/22, date ascending.
    int(
        &mut c,
        &[
            "HSET",
            "2015-12-30_2149",
            CO_CLICK,
            "1",
            CO_IMP,
            "4",
            ATC_CLICK,
            "3",
            ATC_IMP,
            "22",
        ],
    );
    let lines: Vec<String> = redis::cmd("LISTINGSTATS.QUERY")
        .arg("cart_to_checkout_ctr,ldp_add_to_cart_ctr")
        .arg("2015-12-30")
        .arg("2015-12-31")
        .arg("2149")
        .arg("FORMAT")
        .arg("LEGACY")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        lines,
        [
            "cart_to_checkout_ctr=>2015-12-30_2149 : 25.00%",
            "ldp_add_to_cart_ctr=>2015-12-30_2149 : 13.64%",
            "cart_to_checkout_ctr=>2015-12-31_2149 : 100.00%",
            "ldp_add_to_cart_ctr=>2015-12-31_2149 : 33.33%",
        ]
    );
}

// ---- the differential test ------------------------------------------------

/// What the test wrote: (date, listing) -> field -> value.
type Data = BTreeMap<(String, String), BTreeMap<String, i64>>;

fn dates(from: (i32, u32, u32), n: i64) -> Vec<String> {
    let start = chrono::NaiveDate::from_ymd_opt(from.0, from.1, from.2).unwrap();
    (0..n)
        .map(|i| {
            (start + chrono::Duration::days(i))
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect()
}

fn key_of(prefix: &str, tagged: bool, date: &str, listing: &str) -> String {
    if tagged {
        format!("{prefix}{date}_{{{listing}}}")
    } else {
        format!("{prefix}{date}_{listing}")
    }
}

/// Writes a random data set with plain HSET, plus look-alike keys that must
/// never count.
fn write_dataset(c: &mut Connection, prefix: &str, tagged: bool, seed: u64) -> Data {
    let mut rng = Rng(seed);
    let listings = [
        "7",
        "10",
        "0009",
        "2149",
        "2150",
        "9000000000000000000000",
        "sku-a",
        "B.2",
        "x_y",
    ];
    let days = dates((2015, 12, 26), 12); // crosses the year boundary
    let mut data = Data::new();
    for date in &days {
        for listing in listings {
            if rng.below(4) == 0 {
                continue; // not every listing has every day
            }
            let mut fields = BTreeMap::new();
            for (field, max) in [
                (ATC_IMP, 60),
                (ATC_CLICK, 12),
                (CO_IMP, 10),
                (CO_CLICK, 5),
                ("ldp:::impression", 30),
            ] {
                if rng.below(5) != 0 {
                    fields.insert(field.to_string(), rng.below(max) as i64);
                }
            }
            // An unrelated field with a value no metric reads.
            fields.insert("details:raw".to_string(), -1);
            let key = key_of(prefix, tagged, date, listing);
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&key);
            for (f, v) in &fields {
                cmd.arg(f).arg(v);
            }
            if fields.len() == 1 {
                // Sometimes a hash holds only unrelated fields.
            }
            let _: i64 = cmd.query(c).unwrap();
            fields.remove("details:raw");
            data.insert((date.clone(), listing.to_string()), fields);
        }
    }
    let _: i64 = redis::cmd("HSET")
        .arg(format!("{prefix}2015-12-31_weird"))
        .arg("other")
        .arg("text")
        .query(c)
        .unwrap();
    data.insert(("2015-12-31".into(), "weird".into()), BTreeMap::new());
    // Look-alikes: wrong type, impossible date, old flat layout, empty
    // listing part, other prefix, other layout.
    set(
        c,
        &["SET", &key_of(prefix, tagged, "2015-12-30", "str"), "1"],
    );
    set(
        c,
        &["RPUSH", &key_of(prefix, tagged, "2015-12-30", "list"), "1"],
    );
    set(
        c,
        &["HSET", &format!("{prefix}2015-13-40_1"), CO_CLICK, "1"],
    );
    set(c, &["HSET", &format!("{prefix}2015-12-30_"), CO_CLICK, "1"]);
    set(
        c,
        &[
            "SET",
            &format!("{prefix}2015-12-12:cart::checkoutnow:impression_2155"),
            "455",
        ],
    );
    set(
        c,
        &[
            "HSET",
            &format!("other:{}", key_of("", tagged, "2015-12-30", "7")),
            CO_CLICK,
            "1",
        ],
    );
    set(
        c,
        &[
            "HSET",
            &key_of(prefix, !tagged, "2015-12-30", "7"),
            CO_CLICK,
            "1",
        ],
    );
    data
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    metric: String,
    date: String,
    listing: String,
    numerator: i64,
    denominator: i64,
    value: Option<f64>,
}

/// Sorts listings: numeric ids by number, then the others byte-wise.
type ListingKey = (bool, usize, String, String);

/// Groups of the reference computation: (date, listing order, listing).
type Groups = BTreeMap<(String, ListingKey, String), BTreeMap<String, i64>>;

fn listing_key(id: &str) -> ListingKey {
    if id.bytes().all(|b| b.is_ascii_digit()) {
        let trimmed = id.trim_start_matches('0').to_string();
        (false, trimmed.len(), trimmed, id.to_string())
    } else {
        (true, 0, id.to_string(), String::new())
    }
}

/// The straightforward computation the module must agree with.
fn expected(
    data: &Data,
    metrics: &[usize],
    from: &str,
    to: &str,
    listings: Option<&[&str]>,
    group: &str,
) -> Vec<Row> {
    let mut groups = Groups::new();
    for ((date, listing), fields) in data {
        if date.as_str() < from || date.as_str() > to {
            continue;
        }
        if let Some(ids) = listings {
            if !ids.contains(&listing.as_str()) {
                continue;
            }
        }
        let (d, l) = match group {
            "DAY" => (date.clone(), listing.clone()),
            "LISTING" => ("*".into(), listing.clone()),
            "DATE" => (date.clone(), "*".into()),
            _ => ("*".into(), "*".into()),
        };
        let sums = groups.entry((d, listing_key(&l), l)).or_default();
        for (f, v) in fields {
            *sums.entry(f.clone()).or_default() += v;
        }
    }
    let mut rows = Vec::new();
    for ((date, _, listing), sums) in groups {
        for &m in metrics {
            let (name, num_f, den_f) = METRICS[m];
            let n = sums.get(num_f).copied().unwrap_or(0);
            let d = sums.get(den_f).copied().unwrap_or(0);
            if n == 0 && d == 0 {
                continue;
            }
            let value = (d != 0).then(|| n as f64 / d as f64 * 100.0);
            rows.push(Row {
                metric: name.into(),
                date: date.clone(),
                listing: listing.clone(),
                numerator: n,
                denominator: d,
                value,
            });
        }
    }
    rows
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("expected a string, got {other:?}"),
    }
}

fn number(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

fn double(v: &Value) -> Option<f64> {
    match v {
        Value::Nil => None,
        Value::Double(d) => Some(*d),
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).parse().unwrap()),
        other => panic!("expected a double or nil, got {other:?}"),
    }
}

fn resp_rows(reply: Value) -> Vec<Row> {
    let Value::Array(rows) = reply else {
        panic!("expected an array, got {reply:?}")
    };
    rows.into_iter()
        .map(|r| {
            let Value::Array(f) = r else {
                panic!("row {r:?}")
            };
            assert_eq!(f.len(), 6);
            Row {
                metric: text(&f[0]),
                date: text(&f[1]),
                listing: text(&f[2]),
                numerator: number(&f[3]),
                denominator: number(&f[4]),
                value: double(&f[5]),
            }
        })
        .collect()
}

fn json_rows(reply: Value) -> (Vec<Row>, u64) {
    let doc: serde_json::Value = serde_json::from_str(&text(&reply)).unwrap();
    let rows = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Row {
            metric: r["metric"].as_str().unwrap().into(),
            date: r["date"].as_str().unwrap().into(),
            listing: r["listing"].as_str().unwrap().into(),
            numerator: r["numerator"].as_i64().unwrap(),
            denominator: r["denominator"].as_i64().unwrap(),
            value: r["value"].as_f64(),
        })
        .collect();
    (rows, doc["keys_examined"].as_u64().unwrap())
}

fn assert_rows_eq(got: &[Row], want: &[Row], what: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} rows, want {}\n got {got:?}\nwant {want:?}",
        got.len(),
        want.len()
    );
    for (g, w) in got.iter().zip(want) {
        let same_value = match (g.value, w.value) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            (None, None) => true,
            _ => false,
        };
        assert!(
            g.metric == w.metric
                && g.date == w.date
                && g.listing == w.listing
                && g.numerator == w.numerator
                && g.denominator == w.denominator
                && same_value,
            "{what}:\n got {g:?}\nwant {w:?}"
        );
    }
}

fn differential(prefix: &str, tagged: bool, seed: u64) {
    let mut opts = Options::default();
    if !prefix.is_empty() {
        opts = opts.module(&["key-prefix", prefix]);
    }
    if tagged {
        opts = opts.module(&["key-format", "tagged"]);
    }
    let server = Server::start_with(opts);
    let mut c = server.conn();
    let mut c3 = server.conn_resp3();
    let data = write_dataset(&mut c, prefix, tagged, seed);
    let explicit: &[&str] = &[
        "2150",
        "10",
        "sku-a",
        "0009",
        "B.2",
        "missing",
        "9000000000000000000000",
    ];
    let metric_sets: [&[usize]; 3] = [&[0], &[1, 0], &[0, 1]];
    for (from, to) in [
        ("2015-12-26", "2016-01-06"),
        ("2015-12-30", "2016-01-02"),
        ("2016-01-01", "2016-01-01"),
    ] {
        for metrics in metric_sets {
            let names: Vec<&str> = metrics.iter().map(|&m| METRICS[m].0).collect();
            let names = names.join(",");
            for group in ["DAY", "LISTING", "DATE", "TOTAL"] {
                for (listings_arg, listings) in [
                    ("*".to_string(), None),
                    (explicit.join(","), Some(explicit)),
                ] {
                    let want = expected(&data, metrics, from, to, listings, group);
                    let what = format!("{names} {from}..{to} {listings_arg} GROUPBY {group}");
                    if from == "2015-12-26" && group == "DAY" && listings.is_none() {
                        assert!(
                            want.len() > 40,
                            "{what}: the data set is too thin to test anything"
                        );
                        assert!(
                            want.iter().any(|r| r.value.is_none()),
                            "{what}: no zero-denominator row"
                        );
                    }
                    let base = [
                        "LISTINGSTATS.QUERY",
                        &names,
                        from,
                        to,
                        &listings_arg,
                        "GROUPBY",
                        group,
                    ];
                    let got = resp_rows(call(&mut c, &base).unwrap());
                    assert_rows_eq(&got, &want, &what);
                    let got3 = resp_rows(call(&mut c3, &base).unwrap());
                    assert_rows_eq(&got3, &want, &format!("{what} (RESP3)"));
                    let mut with_json = base.to_vec();
                    with_json.extend(["FORMAT", "JSON"]);
                    let (got, examined) = json_rows(call(&mut c, &with_json).unwrap());
                    assert_rows_eq(&got, &want, &format!("{what} FORMAT JSON"));
                    if listings.is_some() {
                        let days = dates((2015, 12, 26), 12)
                            .iter()
                            .filter(|d| d.as_str() >= from && d.as_str() <= to)
                            .count();
                        assert_eq!(
                            examined as usize,
                            days * explicit.len(),
                            "{what}: keys_examined"
                        );
                    }
                    if group == "DAY" {
                        let mut legacy = base.to_vec();
                        legacy.extend(["FORMAT", "LEGACY"]);
                        let lines: Vec<String> = match call(&mut c, &legacy).unwrap() {
                            Value::Array(v) => v.iter().map(text).collect(),
                            other => panic!("{other:?}"),
                        };
                        let want_lines: Vec<String> = want
                            .iter()
                            .filter_map(|r| {
                                let key = key_of(prefix, tagged, &r.date, &r.listing);
                                r.value
                                    .map(|v| format!("{}=>{} : {:.2}%", r.metric, key, v))
                            })
                            .collect();
                        assert_eq!(lines, want_lines, "{what} FORMAT LEGACY");
                    }
                }
            }
        }
    }
}

#[test]
fn every_grouping_and_format_matches_a_straightforward_computation() {
    differential("", false, 0x1234_5678_9abc_def1);
}

#[test]
fn differential_with_prefix_and_tagged_keys() {
    differential("ls:", true, 0x0fed_cba9_8765_4321);
}

// ---- errors -----------------------------------------------------------------

#[test]
fn every_query_error_names_the_problem_and_changes_nothing() {
    let server = Server::start_with(Options::default().module(&["max-query-cells", "100"]));
    let mut c = server.conn();
    int(
        &mut c,
        &["HSET", "2015-12-31_5", CO_CLICK, "1.5", CO_IMP, "3"],
    );
    for i in 0..120 {
        int(&mut c, &["HSET", &format!("2015-12-30_{i}"), CO_IMP, "1"]);
    }
    let d = digest(&mut c);
    let q = "LISTINGSTATS.QUERY";
    let cases: &[(&[&str], &str)] = &[
        (
            &[q, "cart_to_checkout_ctr", "2015-12-31", "2015-12-30", "1"],
            "ERR start date 2015-12-31 is after end date 2015-12-30",
        ),
        (
            &[q, "cart_to_checkout_ctr", "2015-12-32", "2015-12-31", "1"],
            "ERR start must be a date (YYYY-MM-DD), an hour (YYYY-MM-DDTHH), today, yesterday, now, -Nd or -Nh, got '2015-12-32'",
        ),
        (
            &[q, "cart_to_checkout_ctr", "2015-12-30", "2015/12/31", "1"],
            "ERR end must be a date (YYYY-MM-DD)",
        ),
        (
            &[q, "no_such_metric", "2015-12-30", "2015-12-31", "1"],
            "ERR unknown metric 'no_such_metric'",
        ),
        (
            &[q, "", "2015-12-30", "2015-12-31", "1"],
            "ERR invalid metric name ''",
        ),
        (
            &[q, "cart_to_checkout_ctr,", "2015-12-30", "2015-12-31", "1"],
            "ERR invalid metric name ''",
        ),
        (
            &[q, "cart_to_checkout_ctr", "2015-12-30", "2015-12-31", ""],
            "ERR invalid listing id ''",
        ),
        (
            &[
                q,
                "cart_to_checkout_ctr",
                "2015-12-30",
                "2015-12-31",
                "1,,2",
            ],
            "ERR invalid listing id ''",
        ),
        (
            &[q, "cart_to_checkout_ctr", "2015-12-30", "2015-12-31", "1 2"],
            "ERR invalid listing id '1 2'",
        ),
        (
            &[
                q,
                "cart_to_checkout_ctr",
                "2015-12-30",
                "2015-12-31",
                "1",
                "GROUPBY",
                "WEEK",
            ],
            "ERR syntax error, GROUPBY takes DAY, LISTING, DATE, TOTAL or HOUR",
        ),
        (
            &[
                q,
                "cart_to_checkout_ctr",
                "2015-12-30",
                "2015-12-31",
                "1",
                "FORMAT",
                "CSV",
            ],
            "ERR syntax error, FORMAT takes RESP, LEGACY or JSON",
        ),
        (
            &[
                q,
                "cart_to_checkout_ctr",
                "2015-12-30",
                "2015-12-31",
                "1",
                "GROUPBY",
                "LISTING",
                "FORMAT",
                "LEGACY",
            ],
            "ERR FORMAT LEGACY needs GROUPBY DAY",
        ),
        (
            &[
                q,
                "cart_to_checkout_ctr",
                "2015-12-30",
                "2015-12-31",
                "1",
                "GROUPBY",
            ],
            "ERR syntax error, option GROUPBY needs a value",
        ),
        (
            &[
                q,
                "cart_to_checkout_ctr",
                "2015-12-30",
                "2015-12-31",
                "1",
                "GROUPBY",
                "DAY",
                "GROUPBY",
                "DAY",
            ],
            "ERR syntax error, GROUPBY given more than once",
        ),
        (
            &[
                q,
                "cart_to_checkout_ctr",
                "2015-12-30",
                "2015-12-31",
                "1",
                "LIMIT",
                "1",
            ],
            "ERR syntax error, unknown option 'LIMIT'",
        ),
        (
            &[q, "cart_to_checkout_ctr", "2015-12-30", "2015-12-31"],
            "ERR wrong number of arguments for 'listingstats.query' command",
        ),
        (
            &[q, "cart_to_checkout_ctr", "2015-12-31", "2015-12-31", "5"],
            "ERR value of field 'cart::checkoutNow:click' in key '2015-12-31_5' is not an integer",
        ),
        (
            &[q, "cart_to_checkout_ctr", "2015-01-01", "2015-12-31", "1"],
            "ERR query covers 365 day hashes (days x listings), more than max-query-cells 100",
        ),
        (
            &[q, "cart_to_checkout_ctr", "2015-12-30", "2015-12-30", "*"],
            "ERR query matches ",
        ),
        (
            &[
                "LISTINGSTATS.TOP",
                "cart_to_checkout_ctr",
                "2015-12-30",
                "2015-12-31",
                "-1",
            ],
            "ERR n must be 0 or more",
        ),
        (
            &[
                "LISTINGSTATS.TOP",
                "cart_to_checkout_ctr",
                "2015-12-30",
                "2015-12-31",
                "3",
                "MINDENOM",
                "0",
            ],
            "ERR MINDENOM must be 1 or more",
        ),
        (
            &["LISTINGSTATS.TOP", "nope", "2015-12-30", "2015-12-31", "3"],
            "ERR unknown metric 'nope'",
        ),
        (
            &[
                "LISTINGSTATS.TOP",
                "cart_to_checkout_ctr",
                "2015-12-31",
                "2015-12-30",
                "3",
            ],
            "ERR start date 2015-12-31 is after end date",
        ),
        (
            &[
                "LISTINGSTATS.TOP",
                "cart_to_checkout_ctr",
                "2015-12-30",
                "2015-12-31",
            ],
            "ERR wrong number of arguments for 'listingstats.top' command",
        ),
        (
            &["LISTINGSTATS.METRIC.SET", "Bad-Name", "a", "b"],
            "ERR invalid metric name 'Bad-Name'",
        ),
        (
            &["LISTINGSTATS.METRIC.SET", "m", "a", "b", "SCALE", "nan"],
            "ERR SCALE must be a non-zero finite number",
        ),
        (
            &["LISTINGSTATS.METRIC.SET", "m", "a"],
            "ERR wrong number of arguments",
        ),
        (
            &["LISTINGSTATS.METRIC.DEL", "never_defined"],
            "ERR unknown metric 'never_defined'",
        ),
        (
            &["LISTINGSTATS.METRIC.LIST", "x"],
            "ERR wrong number of arguments",
        ),
    ];
    for (args, want) in cases {
        let got = err(&mut c, args);
        assert!(got.starts_with(want), "{args:?}:\n got {got}\nwant {want}");
    }
    assert_eq!(digest(&mut c), d, "an error changed the data");
    // A non-integer in a field no metric reads does not matter.
    int(
        &mut c,
        &["HSET", "2015-12-29_5", "details:raw", "{json}", CO_IMP, "2"],
    );
    let rows = resp_rows(
        call(
            &mut c,
            &[q, "cart_to_checkout_ctr", "2015-12-29", "2015-12-29", "5"],
        )
        .unwrap(),
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].value, Some(0.0));
}

#[test]
fn zero_denominator_rows_have_null_values_and_no_legacy_line() {
    let server = Server::start();
    let mut c = server.conn();
    int(&mut c, &["HSET", "2015-12-31_1", CO_CLICK, "2"]);
    let rows = resp_rows(
        call(
            &mut c,
            &[
                "LISTINGSTATS.QUERY",
                "cart_to_checkout_ctr",
                "2015-12-31",
                "2015-12-31",
                "1",
            ],
        )
        .unwrap(),
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].numerator, rows[0].denominator, rows[0].value),
        (2, 0, None)
    );
    let legacy = call(
        &mut c,
        &[
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-12-31",
            "2015-12-31",
            "1",
            "FORMAT",
            "LEGACY",
        ],
    )
    .unwrap();
    assert_eq!(legacy, Value::Array(vec![]));
}

// ---- TOP ----------------------------------------------------------------------

#[test]
fn top_ranks_by_ratio_of_sums_with_mindenom_and_ties() {
    let server = Server::start();
    let mut c = server.conn();
    // listing: (clicks, impressions) on two days
    for (l, d1, d2) in [
        ("1", (1, 2), (1, 2)),
        ("2", (3, 4), (0, 0)),
        ("3", (1, 1), (0, 0)),
        ("4", (2, 4), (2, 4)),
        ("5", (0, 0), (5, 10)),
        ("sku-z", (1, 2), (0, 0)),
        ("6", (0, 9), (0, 1)),
    ] {
        for (date, (clicks, imps)) in [("2015-12-31", d1), ("2016-01-01", d2)] {
            if clicks + imps > 0 {
                int(
                    &mut c,
                    &[
                        "HSET",
                        &format!("{date}_{l}"),
                        CO_CLICK,
                        &clicks.to_string(),
                        CO_IMP,
                        &imps.to_string(),
                    ],
                );
            }
        }
    }
    let top = |c: &mut Connection, extra: &[&str]| -> Vec<(String, i64, i64, Option<f64>)> {
        let mut args = vec![
            "LISTINGSTATS.TOP",
            "cart_to_checkout_ctr",
            "2015-12-31",
            "2016-01-01",
        ];
        args.extend_from_slice(extra);
        match call(c, &args).unwrap() {
            Value::Array(rows) => rows
                .into_iter()
                .map(|r| match r {
                    Value::Array(f) => (text(&f[0]), number(&f[1]), number(&f[2]), double(&f[3])),
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    };
    // 3: 1/1, 2: 3/4, then 1 (2/4), 4 (4/8), 5 (5/10), sku-z (1/2) all 50%: ties by listing order.
    let all = top(&mut c, &["10"]);
    let ids: Vec<&str> = all.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, ["3", "2", "1", "4", "5", "sku-z", "6"]);
    assert_eq!(all[0].3, Some(100.0));
    assert_eq!((all[3].1, all[3].2), (4, 8));
    assert_eq!(all[6].3, Some(0.0));
    let ids = |rows: Vec<(String, i64, i64, Option<f64>)>| {
        rows.into_iter().map(|r| r.0).collect::<Vec<_>>()
    };
    assert_eq!(ids(top(&mut c, &["3", "MINDENOM", "4"])), ["2", "1", "4"]);
    assert_eq!(
        ids(top(&mut c, &["2", "MINDENOM", "8", "LISTINGS", "5,4,3,6"])),
        ["4", "5"]
    );
    assert_eq!(ids(top(&mut c, &["0"])), Vec::<String>::new());
}

// ---- the metric registry ----------------------------------------------------

#[test]
fn metrics_live_in_a_plain_hash_and_builtins_come_back() {
    let server = Server::start_with(Options::default().module(&["key-prefix", "ls:"]));
    let mut c = server.conn();
    int(
        &mut c,
        &[
            "HSET",
            "ls:2015-12-31_1",
            CO_CLICK,
            "1",
            CO_IMP,
            "4",
            "ldp:::impression",
            "8",
            "ldp:::click",
            "2",
        ],
    );
    assert_eq!(
        call(
            &mut c,
            &[
                "LISTINGSTATS.METRIC.SET",
                "ldp_ctr",
                "ldp:::click",
                "ldp:::impression",
                "SCALE",
                "1"
            ]
        )
        .unwrap(),
        Value::Okay
    );
    let stored = hgetall(&mut c, "ls:listingstats:metrics");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, "ldp_ctr");
    let rows = resp_rows(
        call(
            &mut c,
            &[
                "LISTINGSTATS.QUERY",
                "ldp_ctr,cart_to_checkout_ctr",
                "2015-12-31",
                "2015-12-31",
                "1",
            ],
        )
        .unwrap(),
    );
    assert_eq!(
        rows.iter().map(|r| r.value).collect::<Vec<_>>(),
        [Some(0.25), Some(25.0)]
    );

    // Override a built-in, then delete the override: the default is back.
    set(
        &mut c,
        &[
            "LISTINGSTATS.METRIC.SET",
            "cart_to_checkout_ctr",
            CO_CLICK,
            CO_IMP,
            "SCALE",
            "1000",
        ],
    );
    let rows = resp_rows(
        call(
            &mut c,
            &[
                "LISTINGSTATS.QUERY",
                "cart_to_checkout_ctr",
                "2015-12-31",
                "2015-12-31",
                "1",
            ],
        )
        .unwrap(),
    );
    assert_eq!(rows[0].value, Some(250.0));
    assert_eq!(
        int(&mut c, &["LISTINGSTATS.METRIC.DEL", "cart_to_checkout_ctr"]),
        1
    );
    assert_eq!(
        int(&mut c, &["LISTINGSTATS.METRIC.DEL", "cart_to_checkout_ctr"]),
        0
    );
    let rows = resp_rows(
        call(
            &mut c,
            &[
                "LISTINGSTATS.QUERY",
                "cart_to_checkout_ctr",
                "2015-12-31",
                "2015-12-31",
                "1",
            ],
        )
        .unwrap(),
    );
    assert_eq!(rows[0].value, Some(25.0));

    let list = match call(&mut c, &["LISTINGSTATS.METRIC.LIST"]).unwrap() {
        Value::Array(v) => v,
        other => panic!("{other:?}"),
    };
    let names: Vec<String> = list
        .iter()
        .map(|m| match m {
            Value::Array(f) => text(&f[0]),
            o => panic!("{o:?}"),
        })
        .collect();
    assert_eq!(
        names,
        ["cart_to_checkout_ctr", "ldp_add_to_cart_ctr", "ldp_ctr"]
    );
    assert_eq!(int(&mut c, &["LISTINGSTATS.METRIC.DEL", "ldp_ctr"]), 1);
    assert_eq!(int(&mut c, &["EXISTS", "ls:listingstats:metrics"]), 0);
    assert!(err(
        &mut c,
        &[
            "LISTINGSTATS.QUERY",
            "ldp_ctr",
            "2015-12-31",
            "2015-12-31",
            "1"
        ]
    )
    .starts_with("ERR unknown metric 'ldp_ctr'"));
}

#[test]
fn metric_definitions_replicate() {
    let master = Server::start();
    let replica = Server::start();
    let (mut m, mut r) = (master.conn(), replica.conn());
    replica.replicate(&master);
    set(
        &mut m,
        &["LISTINGSTATS.METRIC.SET", "x_ctr", "a:click", "a:imp"],
    );
    set(
        &mut m,
        &["LISTINGSTATS.METRIC.SET", "y_ctr", "b:click", "b:imp"],
    );
    int(&mut m, &["LISTINGSTATS.METRIC.DEL", "y_ctr"]);
    let _: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut m).unwrap();
    assert_eq!(
        hgetall(&mut r, "listingstats:metrics"),
        hgetall(&mut m, "listingstats:metrics")
    );
    assert_eq!(digest(&mut r), digest(&mut m));
}

// ---- ACL --------------------------------------------------------------------

#[test]
fn queries_read_only_keys_the_user_may_read() {
    let server = Server::start();
    let mut admin = server.conn();
    let mut dec = server.user("dec", &["%R~2015-12-*", "%R~listingstats:metrics"]);
    int(
        &mut admin,
        &["HSET", "2015-12-31_1", CO_CLICK, "1", CO_IMP, "2"],
    );
    int(
        &mut admin,
        &["HSET", "2016-01-01_1", CO_CLICK, "1", CO_IMP, "2"],
    );

    let rows = resp_rows(
        call(
            &mut dec,
            &[
                "LISTINGSTATS.QUERY",
                "cart_to_checkout_ctr",
                "2015-12-31",
                "2015-12-31",
                "1",
            ],
        )
        .unwrap(),
    );
    assert_eq!(rows.len(), 1);
    let e = err(
        &mut dec,
        &[
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-12-31",
            "2016-01-01",
            "1",
        ],
    );
    assert_eq!(
        e,
        "ERR NOPERM this user has no permissions to read the key '2016-01-01_1'"
    );
    // With '*', keys the user may not read are left out.
    let rows = resp_rows(
        call(
            &mut dec,
            &[
                "LISTINGSTATS.QUERY",
                "cart_to_checkout_ctr",
                "2015-12-31",
                "2016-01-01",
                "*",
            ],
        )
        .unwrap(),
    );
    assert_eq!(
        rows.iter().map(|r| r.date.as_str()).collect::<Vec<_>>(),
        ["2015-12-31"]
    );
    // Read-only key access may not define metrics.
    let e = err(&mut dec, &["LISTINGSTATS.METRIC.SET", "m", "a", "b"]);
    assert!(e.starts_with("ERR NOPERM"), "{e}");
}

/// METRIC LIST shows a scale as the number given (`0.1`, not
/// `0.10000000000000001`), and a scale that could make values infinite is
/// refused with nothing changed.
#[test]
fn metric_scales_are_shown_as_given_and_bounded() {
    let server = Server::start();
    let mut c = server.conn();
    let ok: String = redis::cmd("LISTINGSTATS.METRIC.SET")
        .arg("tenth")
        .arg("a")
        .arg("b")
        .arg("SCALE")
        .arg("0.1")
        .query(&mut c)
        .unwrap();
    assert_eq!(ok, "OK");
    let scale_of = |reply: Value| -> Value {
        let Value::Array(all) = reply else {
            panic!("{reply:?}")
        };
        all.into_iter()
            .find_map(|m| match m {
                Value::Array(f) if text(&f[0]) == "tenth" => Some(f[3].clone()),
                _ => None,
            })
            .expect("tenth listed")
    };
    assert_eq!(
        scale_of(call(&mut c, &["LISTINGSTATS.METRIC.LIST"]).unwrap()),
        Value::BulkString(b"0.1".to_vec())
    );
    let mut c3 = server.conn_resp3();
    assert_eq!(
        scale_of(call(&mut c3, &["LISTINGSTATS.METRIC.LIST"]).unwrap()),
        Value::Double(0.1)
    );

    let d = digest(&mut c);
    let e = err(
        &mut c,
        &[
            "LISTINGSTATS.METRIC.SET",
            "huge",
            "a",
            "b",
            "SCALE",
            "1.7e308",
        ],
    );
    assert!(e.starts_with("ERR SCALE must be"), "{e}");
    assert_eq!(digest(&mut c), d);
}

/// TOP ... RANK WILSON ranks by the Wilson lower bound (scaled like the
/// metric) and returns it as a fifth element; a row that is not a
/// proportion is refused.
#[test]
fn top_ranks_by_wilson_lower_bound() {
    let server = Server::start();
    let mut c = server.conn();
    let imp = "cart::checkoutNow:impression";
    let click = "cart::checkoutNow:click";
    for (listing, clicks, imps) in [("lucky", 1, 1), ("steady", 90, 100), ("cold", 0, 40)] {
        let key = format!("2015-12-31_{listing}");
        int(
            &mut c,
            &[
                "HSET",
                &key,
                imp,
                &imps.to_string(),
                click,
                &clicks.to_string(),
            ],
        );
    }
    let q = [
        "LISTINGSTATS.TOP",
        "cart_to_checkout_ctr",
        "2015-12-31",
        "2015-12-31",
        "3",
    ];
    let rows = |reply: Value| -> Vec<Vec<Value>> {
        let Value::Array(rows) = reply else {
            panic!("{reply:?}")
        };
        rows.into_iter()
            .map(|r| match r {
                Value::Array(f) => f,
                o => panic!("{o:?}"),
            })
            .collect()
    };
    let by_value = rows(call(&mut c, &q).unwrap());
    assert_eq!(text(&by_value[0][0]), "lucky");
    assert_eq!(by_value[0].len(), 4);

    let mut wilson: Vec<&str> = q.to_vec();
    wilson.extend(["RANK", "WILSON"]);
    let ranked = rows(call(&mut c, &wilson).unwrap());
    let names: Vec<String> = ranked.iter().map(|r| text(&r[0])).collect();
    assert_eq!(names, ["steady", "lucky", "cold"]);
    let bound = |r: &Vec<Value>| double(&r[4]).unwrap();
    assert!((bound(&ranked[0]) - 82.56).abs() < 0.005, "{:?}", ranked[0]);
    assert!((bound(&ranked[1]) - 20.65).abs() < 0.005, "{:?}", ranked[1]);
    assert_eq!(bound(&ranked[2]), 0.0);
    // RESP3: the bound is a double.
    let mut c3 = server.conn_resp3();
    let ranked3 = rows(call(&mut c3, &wilson).unwrap());
    assert!(
        matches!(ranked3[0][4], Value::Double(_)),
        "{:?}",
        ranked3[0]
    );
    // A stricter confidence lowers every bound.
    let mut strict = wilson.clone();
    strict.push("0.99");
    let stricter = rows(call(&mut c, &strict).unwrap());
    assert!(bound(&stricter[0]) < bound(&ranked[0]));

    // More clicks than impressions is no proportion: an error, nothing changed.
    int(&mut c, &["HSET", "2015-12-31_odd", imp, "3", click, "5"]);
    let d = digest(&mut c);
    let e = err(&mut c, &wilson);
    assert!(e.starts_with("ERR RANK WILSON needs a proportion"), "{e}");
    assert!(e.contains("'odd' has 5/3"), "{e}");
    assert_eq!(digest(&mut c), d);
    let e = err(&mut c, &[q.as_slice(), &["RANK", "WILSON", "1.5"]].concat());
    assert!(e.contains("confidence must be between 0 and 1"), "{e}");
}

/// A metric whose terms are patterns sums every matching field (the whole
/// name must match); exact-name metrics in the same query are unchanged;
/// a bad pattern is refused at SET with nothing changed.
#[test]
fn pattern_metrics_sum_matching_fields() {
    let server = Server::start();
    let mut c = server.conn();
    let ok: String = redis::cmd("LISTINGSTATS.METRIC")
        .arg(&[
            "SET",
            "ldp_clicks_per_impression",
            "/ldp:.*:click/",
            "/ldp:.*:impression/",
        ])
        .query(&mut c)
        .unwrap();
    assert_eq!(ok, "OK");
    for (listing, fields) in [
        (
            "1",
            &[
                ("ldp:a:click", "2"),
                ("ldp:b:click", "3"),
                ("ldp:a:impression", "10"),
                ("ldp:b:impression", "10"),
                ("ldp:a:click:extra", "50"),
                ("cart::checkoutNow:click", "4"),
                ("cart::checkoutNow:impression", "8"),
            ][..],
        ),
        ("2", &[("ldp:z:impression", "5")][..]),
    ] {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(format!("2015-12-31_{listing}"));
        for (f, v) in fields {
            cmd.arg(*f).arg(*v);
        }
        let _: i64 = cmd.query(&mut c).unwrap();
    }
    for listings in ["1,2", "*"] {
        let reply = call(
            &mut c,
            &[
                "LISTINGSTATS.QUERY",
                "ldp_clicks_per_impression,cart_to_checkout_ctr",
                "2015-12-31",
                "2015-12-31",
                listings,
                "FORMAT",
                "JSON",
            ],
        )
        .unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text(&reply)).unwrap();
        let rows: Vec<(String, String, i64, i64)> = doc["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].as_str().unwrap().to_string(),
                    r["listing"].as_str().unwrap().to_string(),
                    r["numerator"].as_i64().unwrap(),
                    r["denominator"].as_i64().unwrap(),
                )
            })
            .collect();
        let expect = |m: &str, l: &str, n: i64, d: i64| (m.to_string(), l.to_string(), n, d);
        assert_eq!(
            rows,
            [
                expect("ldp_clicks_per_impression", "1", 5, 20),
                expect("cart_to_checkout_ctr", "1", 4, 8),
                expect("ldp_clicks_per_impression", "2", 0, 5),
            ],
            "{listings}"
        );
    }
    // METRIC LIST shows the pattern as given.
    let Value::Array(all) = call(&mut c, &["LISTINGSTATS.METRIC", "LIST"]).unwrap() else {
        panic!()
    };
    let listed = all
        .iter()
        .find_map(|m| match m {
            Value::Array(f) if text(&f[0]) == "ldp_clicks_per_impression" => Some(text(&f[1])),
            _ => None,
        })
        .unwrap();
    assert_eq!(listed, "/ldp:.*:click/");

    let d = digest(&mut c);
    let e = err(
        &mut c,
        &["LISTINGSTATS.METRIC", "SET", "bad", "/ldp:(/", "x"],
    );
    assert!(e.starts_with("ERR invalid pattern 'ldp:('"), "{e}");
    assert_eq!(digest(&mut c), d);
    // A matched field that is not an integer is an error, as for exact names.
    int(&mut c, &["HSET", "2015-12-31_3", "ldp:q:click", "many"]);
    let e = err(
        &mut c,
        &[
            "LISTINGSTATS.QUERY",
            "ldp_clicks_per_impression",
            "2015-12-31",
            "2015-12-31",
            "3",
        ],
    );
    assert!(e.contains("not an integer"), "{e}");
}

#[test]
fn a_json_answer_over_max_json_rows_is_refused_and_resp_is_not() {
    let server = Server::start();
    let mut c = server.conn();
    for l in 1..=9 {
        set(
            &mut c,
            &[
                "HSET",
                &format!("2015-12-22_{l}"),
                CO_IMP,
                "10",
                CO_CLICK,
                "3",
            ],
        );
    }
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("listingstats.max-json-rows")
        .query(&mut c)
        .unwrap();
    assert_eq!(v[1], "25000");
    set(
        &mut c,
        &["CONFIG", "SET", "listingstats.max-json-rows", "5"],
    );
    for set_of in ["*", "1,2,3,4,5,6,7,8,9"] {
        let q = |format: &'static str| {
            vec![
                "LISTINGSTATS.QUERY",
                "cart_to_checkout_ctr",
                "2015-12-22",
                "2015-12-22",
                set_of,
                "GROUPBY",
                "LISTING",
                "FORMAT",
                format,
            ]
        };
        let e = err(&mut c, &q("JSON"));
        assert!(
            e.contains("9 rows") && e.contains("max-json-rows 5") && e.contains("FORMAT RESP"),
            "{e}"
        );
        // The same answer row by row is not limited.
        let Value::Array(rows) = call(&mut c, &q("RESP")).unwrap() else {
            panic!("RESP answer is not an array")
        };
        assert_eq!(rows.len(), 9);
        // A total is one row: under the limit.
        let total = call(
            &mut c,
            &[
                "LISTINGSTATS.QUERY",
                "cart_to_checkout_ctr",
                "2015-12-22",
                "2015-12-22",
                set_of,
                "GROUPBY",
                "TOTAL",
                "FORMAT",
                "JSON",
            ],
        );
        assert!(total.is_ok(), "{total:?}");
    }
    // 0: no limit.
    set(
        &mut c,
        &["CONFIG", "SET", "listingstats.max-json-rows", "0"],
    );
    let ok = call(
        &mut c,
        &[
            "LISTINGSTATS.QUERY",
            "cart_to_checkout_ctr",
            "2015-12-22",
            "2015-12-22",
            "*",
            "GROUPBY",
            "LISTING",
            "FORMAT",
            "JSON",
        ],
    );
    assert!(ok.is_ok(), "{ok:?}");
}
