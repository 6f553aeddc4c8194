//! Hour buckets (`hours yes`): events counted in their UTC hour beside
//! their day, and QUERY/TOP by hour, over hour ranges, in any zone whose
//! offset is whole hours, and compared with the previous period — all
//! against an oracle computed here from the events themselves.

use std::collections::BTreeMap;

use chrono::{Datelike, TimeZone};
use listingstats_core::date::Tz;

use crate::common::*;

const VIEW: &str = "ldp:sellPanel:addToCart:impression";
const CLICK: &str = "ldp:sellPanel:addToCart:click";
const METRIC: &str = "ldp_add_to_cart_ctr";

/// (unix seconds, listing, event, count)
type Ev = (i64, u32, &'static str, i64);

/// Events every 20 minutes over [from, from + hours h), three listings.
fn events(from: i64, hours: i64, rng: &mut Rng) -> Vec<Ev> {
    let mut out = Vec::new();
    for step in 0..hours * 3 {
        let t = from + step * 1200 + rng.below(1200) as i64;
        let listing = 1 + rng.below(3) as u32;
        out.push((t, listing, VIEW, 1 + rng.below(4) as i64));
        if rng.below(3) == 0 {
            out.push((t, listing, CLICK, 1));
        }
    }
    out
}

fn ingest(c: &mut Connection, evs: &[Ev]) {
    for chunk in evs.chunks(200) {
        let jsons: Vec<String> = chunk
            .iter()
            .map(|(t, l, name, count)| {
                format!(
                    r#"{{"name":"{name}","listingIds":[{l}],"message_date":{t},"count":{count}}}"#
                )
            })
            .collect();
        let mut args = vec!["LISTINGSTATS.INGEST"];
        args.extend(jsons.iter().map(String::as_str));
        call(c, &args).unwrap();
    }
}

/// Rows as (time, listing, numerator, denominator); time is the second
/// column as text.
fn rows(v: Value) -> Vec<(String, String, i64, i64)> {
    let Value::Array(rows) = v else {
        panic!("{v:?}")
    };
    rows.into_iter()
        .map(|r| {
            let Value::Array(f) = r else { panic!() };
            let text = |v: &Value| match v {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("{other:?}"),
            };
            let int = |v: &Value| match v {
                Value::Int(n) => *n,
                other => panic!("{other:?}"),
            };
            (text(&f[1]), text(&f[2]), int(&f[3]), int(&f[4]))
        })
        .collect()
}

/// The oracle: sums of (clicks, views) by a key of each event.
fn oracle<K: Ord>(
    evs: &[Ev],
    keep: impl Fn(i64) -> bool,
    key: impl Fn(i64, u32) -> K,
) -> BTreeMap<K, (i64, i64)> {
    let mut out: BTreeMap<K, (i64, i64)> = BTreeMap::new();
    for &(t, l, name, count) in evs {
        if !keep(t) {
            continue;
        }
        let e = out.entry(key(t, l)).or_default();
        if name == CLICK {
            e.0 += count;
        } else {
            e.1 += count;
        }
    }
    out
}

fn hour_text(h: i64, tz: Tz) -> String {
    listingstats_core::query::span::hour_label(h, tz)
}

fn day_text(t: i64, tz: Tz) -> String {
    let d = tz.timestamp_opt(t, 0).unwrap().date_naive();
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

fn query(c: &mut Connection, args: &[&str]) -> Vec<(String, String, i64, i64)> {
    let mut all = vec!["LISTINGSTATS.QUERY", METRIC];
    all.extend_from_slice(args);
    rows(call(c, &all).unwrap_or_else(|e| panic!("{args:?}: {e}")))
}

/// A server counting hours, keeping hour keys (the tests' days are in the
/// past).
fn hours_server() -> Server {
    Server::start_with(Options::default().module(&["hours", "yes", "hour-retention-days", "0"]))
}

/// By hour and by day in New York and London across both DST changes of
/// 2016 (23- and 25-hour days), from hour keys; +05:30 refused.
#[test]
fn hours_and_days_of_any_whole_hour_zone_equal_the_oracle() {
    let server = hours_server();
    let mut c = server.conn();
    let mut rng = Rng(0x40075);
    let mut evs = Vec::new();
    // 2016-03-12..15 (New York springs forward on the 13th), 2016-03-26..28
    // (London on the 27th), 2016-10-29..31 (London falls back on the 30th),
    // 2016-11-05..07 (New York on the 6th).
    for (start, hours) in [
        (1457740800, 96),
        (1458950400, 72),
        (1477699200, 72),
        (1478304000, 72),
    ] {
        evs.extend(events(start, hours, &mut rng));
    }
    ingest(&mut c, &evs);
    let ny: Tz = "America/New_York".parse().unwrap();
    let london: Tz = "Europe/London".parse().unwrap();
    for (tz, name, from, to) in [
        (ny, "America/New_York", "2016-03-12", "2016-03-14"),
        (london, "Europe/London", "2016-03-26", "2016-03-28"),
        (london, "Europe/London", "2016-10-29", "2016-10-31"),
        (ny, "America/New_York", "2016-11-05", "2016-11-06"),
    ] {
        let first = listingstats_core::query::span::day_start_hour(
            listingstats_core::date::parse_day_arg("d", from.as_bytes()).unwrap(),
            tz,
        )
        .unwrap();
        let end_day = listingstats_core::date::parse_day_arg("d", to.as_bytes())
            .unwrap()
            .succ_opt()
            .unwrap();
        let last = listingstats_core::query::span::day_start_hour(end_day, tz).unwrap();
        let keep = |t: i64| t / 3600 >= first && t / 3600 < last;
        // By local day, in total.
        let got = query(&mut c, &[from, to, "*", "GROUPBY", "DATE", "TZ", name]);
        let want: Vec<_> = oracle(&evs, keep, |t, _| day_text(t, tz))
            .into_iter()
            .map(|(d, (n, v))| (d, "*".to_string(), n, v))
            .collect();
        assert_eq!(got, want, "{name} {from}..{to} by date");
        // The days are 23 and 25 hours long where they should be.
        let hours_of = |day: &str| {
            let d = listingstats_core::date::parse_day_arg("d", day.as_bytes()).unwrap();
            listingstats_core::query::span::day_start_hour(d.succ_opt().unwrap(), tz).unwrap()
                - listingstats_core::query::span::day_start_hour(d, tz).unwrap()
        };
        let lengths: Vec<i64> = want.iter().map(|w| hours_of(&w.0)).collect();
        assert!(
            lengths.iter().any(|&h| h != 24),
            "{name}: a DST day in range: {lengths:?}"
        );
        // By hour and listing, hours written with the zone's offset.
        let got = query(&mut c, &[from, to, "1,2,3", "GROUPBY", "HOUR", "TZ", name]);
        let want: Vec<_> = oracle(&evs, keep, |t, l| (t / 3600, l))
            .into_iter()
            .map(|((h, l), (n, v))| (hour_text(h, tz), l.to_string(), n, v))
            .collect();
        assert_eq!(got, want, "{name} {from}..{to} by hour");
    }
    let e = err(
        &mut c,
        &[
            "LISTINGSTATS.QUERY",
            METRIC,
            "2016-03-12",
            "2016-03-13",
            "*",
            "GROUPBY",
            "DATE",
            "TZ",
            "Asia/Kolkata",
        ],
    );
    assert!(
        e.contains("TZ Asia/Kolkata") && e.contains("not a whole number of hours"),
        "{e}"
    );
}

/// A range with hour ends in the module's zone: whole days from the day
/// hashes, the ends from hours; COMPARE PREVIOUS and WEEK; TOP over hours.
#[test]
fn hour_ranges_comparisons_and_top_equal_the_oracle() {
    let server = hours_server();
    let mut c = server.conn();
    let mut rng = Rng(0xc0a1);
    // 2015-12-10T00Z .. 2015-12-24T00Z.
    let evs = events(1449705600, 14 * 24, &mut rng);
    ingest(&mut c, &evs);
    let utc = Tz::UTC;
    let h = |s: i64| s / 3600;
    // 2015-12-18T07 .. 2015-12-21T16 (UTC), both hours included.
    let (from, to) = (h(1450422000), h(1450713600) + 1);
    let keep = |lo: i64, hi: i64| move |t: i64| t / 3600 >= lo && t / 3600 < hi;
    let total = |m: BTreeMap<(), (i64, i64)>| m.get(&()).copied().unwrap_or_default();
    let got = query(
        &mut c,
        &["2015-12-18T07", "2015-12-21T16", "*", "GROUPBY", "TOTAL"],
    );
    let want = total(oracle(&evs, keep(from, to), |_, _| ()));
    assert_eq!(got, vec![("*".into(), "*".into(), want.0, want.1)]);
    let got = query(
        &mut c,
        &["2015-12-18T07", "2015-12-21T16", "*", "GROUPBY", "DATE"],
    );
    let want: Vec<_> = oracle(&evs, keep(from, to), |t, _| day_text(t, utc))
        .into_iter()
        .map(|(d, (n, v))| (d, "*".to_string(), n, v))
        .collect();
    assert_eq!(got, want);
    // COMPARE PREVIOUS: the same length just before, in total.
    let v = call(
        &mut c,
        &[
            "LISTINGSTATS.QUERY",
            METRIC,
            "2015-12-18T07",
            "2015-12-21T16",
            "*",
            "GROUPBY",
            "TOTAL",
            "COMPARE",
            "PREVIOUS",
        ],
    )
    .unwrap();
    let len = to - from;
    let before = total(oracle(&evs, keep(from - len, from), |_, _| ()));
    let Value::Array(rows) = v else { panic!() };
    let Value::Array(f) = &rows[0] else { panic!() };
    assert_eq!(
        (&f[6], &f[7]),
        (&Value::Int(before.0), &Value::Int(before.1))
    );
    // COMPARE WEEK by date: each date against the same date a week before.
    let v = call(
        &mut c,
        &[
            "LISTINGSTATS.QUERY",
            METRIC,
            "2015-12-20",
            "2015-12-22",
            "*",
            "GROUPBY",
            "DATE",
            "COMPARE",
            "WEEK",
        ],
    )
    .unwrap();
    let Value::Array(rows) = v else { panic!() };
    let week_before = oracle(&evs, |_| true, |t, _| day_text(t + 7 * 86400, utc));
    for r in rows {
        let Value::Array(f) = r else { panic!() };
        let Value::BulkString(d) = &f[1] else {
            panic!()
        };
        let d = String::from_utf8_lossy(d).into_owned();
        let want = week_before[&d];
        assert_eq!(
            (&f[6], &f[7]),
            (&Value::Int(want.0), &Value::Int(want.1)),
            "{d}"
        );
    }
    // TOP over the last hours of the data, by listing.
    let Value::Array(top) = call(
        &mut c,
        &[
            "LISTINGSTATS.TOP",
            METRIC,
            "2015-12-23T20",
            "2015-12-23T23",
            "3",
        ],
    )
    .unwrap() else {
        panic!()
    };
    let last = oracle(&evs, keep(h(1450900800), h(1450915200)), |_, l| l);
    for r in top {
        let Value::Array(f) = r else { panic!() };
        let Value::BulkString(l) = &f[0] else {
            panic!()
        };
        let l: u32 = String::from_utf8_lossy(l).parse().unwrap();
        assert_eq!(
            (&f[1], &f[2]),
            (&Value::Int(last[&l].0), &Value::Int(last[&l].1))
        );
    }
}

/// Hours off: a query that needs them is refused, saying how to turn them
/// on; the day hashes are what HINCRBY writes either way.
#[test]
fn without_hours_a_query_that_needs_them_is_refused() {
    let server = Server::start();
    let mut c = server.conn();
    ingest(&mut c, &[(1450791000, 7, CLICK, 1)]);
    let e = err(
        &mut c,
        &[
            "LISTINGSTATS.QUERY",
            METRIC,
            "2015-12-22T10",
            "2015-12-22T14",
            "7",
            "GROUPBY",
            "HOUR",
        ],
    );
    assert!(e.contains("CONFIG SET listingstats.hours yes"), "{e}");
    assert!(hgetall(&mut c, "2015-12-22h_7").is_empty());
    call(&mut c, &["CONFIG", "SET", "listingstats.hours", "yes"]).unwrap();
    // Hour keys older than hour-retention-days (30) are not written.
    ingest(&mut c, &[(1450791000, 7, CLICK, 1)]);
    assert!(hgetall(&mut c, "2015-12-22h_7").is_empty());
    call(
        &mut c,
        &["CONFIG", "SET", "listingstats.hour-retention-days", "0"],
    )
    .unwrap();
    ingest(&mut c, &[(1450791000, 7, CLICK, 1)]);
    assert_eq!(
        hgetall(&mut c, "2015-12-22h_7"),
        vec![(format!("13:{CLICK}"), "1".to_string())]
    );
    assert_eq!(
        hgetall(&mut c, "2015-12-22_7"),
        vec![(CLICK.to_string(), "3".to_string())]
    );
}
