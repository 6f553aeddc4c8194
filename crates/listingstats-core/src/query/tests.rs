use super::*;
use crate::date::{day_string, parse_day};
use crate::day_index::ListingNames;
use crate::keys::KeyScheme;
use crate::metrics::{builtins, resolve, Metric};
use chrono::NaiveDate;

/// Whole documents from the pieces the command layer writes a slice
/// at a time (`src/engine/render.rs`): the same assembly, all at once.
fn legacy_lines(rows: &[Row], plan: &FieldPlan, scheme: &KeyScheme) -> Vec<String> {
    rows.iter()
        .filter_map(|r| legacy_line(&r.view(), plan, scheme))
        .collect()
}

fn json(rows: &[Row], plan: &FieldPlan, keys_examined: u64) -> String {
    let body: Vec<String> = rows.iter().map(|r| json_row(&r.view(), plan)).collect();
    format!("{JSON_HEAD}{}{}", body.join(","), json_tail(keys_examined))
}

fn a(words: &[&str]) -> Vec<&'static [u8]> {
    words
        .iter()
        .map(|w| &*Box::leak(w.as_bytes().to_vec().into_boxed_slice()))
        .collect()
}

fn day(s: &str) -> NaiveDate {
    parse_day(s.as_bytes()).unwrap()
}

fn plan(names: &[&str]) -> FieldPlan {
    FieldPlan::new(resolve(&builtins(), names).unwrap()).unwrap()
}

#[test]
fn listing_order_is_numeric_first() {
    let mut ids: Vec<&[u8]> = vec![b"b", b"10", b"9", b"A", b"0010", b"a-1", b"100", b"010"];
    ids.sort_by(|x, y| listing_cmp(x, y));
    assert_eq!(
        ids,
        [
            &b"9"[..],
            b"0010",
            b"010",
            b"10",
            b"100",
            b"A",
            b"a-1",
            b"b"
        ]
    );
}

#[test]
fn parses_queries() {
    let q = parse_query(&a(&[
        "cart_to_checkout_ctr,ldp_add_to_cart_ctr,cart_to_checkout_ctr",
        "2015-12-30",
        "2016-01-02",
        "2149,2150,2149",
        "format",
        "json",
        "GroupBy",
        "listing",
    ]))
    .unwrap();
    assert_eq!(q.metrics, ["cart_to_checkout_ctr", "ldp_add_to_cart_ctr"]);
    assert_eq!(q.listings, Listings::Ids(vec![b"2149", b"2150"]));
    assert_eq!((q.group, q.format), (GroupBy::Listing, Format::Json));
    assert_eq!(
        parse_query(&a(&["m", "2015-12-30", "2015-12-30", "*"]))
            .unwrap()
            .listings,
        Listings::All
    );
}

#[test]
fn query_errors() {
    let err = |w: &[&str]| parse_query(&a(w)).unwrap_err().to_string();
    assert!(err(&["m", "2015-12-30", "2015-12-31"]).contains("wrong number of arguments"));
    assert_eq!(
        err(&["m", "2016-01-02", "2015-12-30", "1"]),
        "ERR start date 2016-01-02 is after end date 2015-12-30"
    );
    assert!(err(&["m", "2015-12-32", "2015-12-30", "1"]).starts_with("ERR start must be a date"));
    assert!(err(&["m", "2015-12-30", "x", "1"]).starts_with("ERR end must be a date"));
    assert!(err(&["", "2015-12-30", "2015-12-30", "1"]).starts_with("ERR invalid metric name ''"));
    assert!(
        err(&["a,,b", "2015-12-30", "2015-12-30", "1"]).starts_with("ERR invalid metric name ''")
    );
    assert!(err(&["m", "2015-12-30", "2015-12-30", ""]).starts_with("ERR invalid listing id ''"));
    assert!(
        err(&["m", "2015-12-30", "2015-12-30", "1,*"]).starts_with("ERR invalid listing id '*'")
    );
    assert!(
        err(&["m", "2015-12-30", "2015-12-30", "1", "GROUPBY", "WEEK"])
            .contains("GROUPBY takes DAY, LISTING, DATE, TOTAL or HOUR")
    );
    assert!(
        err(&["m", "2015-12-30", "2015-12-30", "1", "FORMAT", "XML"])
            .contains("FORMAT takes RESP, LEGACY or JSON")
    );
    assert!(err(&["m", "2015-12-30", "2015-12-30", "1", "FORMAT"])
        .contains("option FORMAT needs a value"));
    assert!(err(&[
        "m",
        "2015-12-30",
        "2015-12-30",
        "1",
        "FORMAT",
        "JSON",
        "format",
        "RESP"
    ])
    .contains("FORMAT given more than once"));
    assert!(err(&["m", "2015-12-30", "2015-12-30", "1", "LIMIT", "5"])
        .contains("unknown option 'LIMIT'"));
    assert!(err(&[
        "m",
        "2015-12-30",
        "2015-12-30",
        "1",
        "GROUPBY",
        "TOTAL",
        "FORMAT",
        "LEGACY"
    ])
    .starts_with("ERR FORMAT LEGACY needs GROUPBY DAY"));
}

#[test]
fn top_arguments() {
    let t = parse_top(&a(&[
        "m",
        "2015-12-30",
        "2015-12-31",
        "5",
        "MINDENOM",
        "10",
        "LISTINGS",
        "1,2",
    ]))
    .unwrap();
    assert_eq!((t.n, t.min_denominator), (5, 10));
    assert_eq!(t.listings, Listings::Ids(vec![b"1", b"2"]));
    assert_eq!(
        parse_top(&a(&["m", "2015-12-30", "2015-12-31", "5"]))
            .unwrap()
            .listings,
        Listings::All
    );
    let err = |w: &[&str]| parse_top(&a(w)).unwrap_err().to_string();
    assert!(err(&["m", "2015-12-30", "2015-12-31", "-1"]).starts_with("ERR n must be 0 or more"));
    assert!(
        err(&["m", "2015-12-30", "2015-12-31", "x"]).starts_with("ERR n must be a 64-bit integer")
    );
    assert!(
        err(&["m", "2015-12-30", "2015-12-31", "1", "MINDENOM", "0"])
            .starts_with("ERR MINDENOM must be 1 or more")
    );
    assert!(
        err(&["m", "2015-12-30", "2015-12-31", "1", "GROUPBY", "DAY"])
            .contains("unknown option 'GROUPBY'")
    );
}

#[test]
fn cell_limit() {
    assert!(check_cells(day("2015-01-01"), day("2015-01-10"), 100, 1000).is_ok());
    let e = check_cells(day("2015-01-01"), day("2015-01-10"), 101, 1000)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "ERR query covers 1010 day hashes (days x listings), more than max-query-cells 1000"
    );
}

#[test]
fn ratios_are_ratios_of_sums_in_every_grouping() {
    // Fields: checkout click, checkout impression (cart_to_checkout_ctr).
    let p = plan(&["cart_to_checkout_ctr"]);
    let data: &[(&str, &str, [i64; 2])] = &[
        ("2015-12-31", "2149", [1, 1]),
        ("2015-12-30", "2149", [1, 4]),
        ("2015-12-30", "10", [0, 5]),
        ("2015-12-30", "x", [0, 0]),
    ];
    let run = |g| {
        let mut agg = Aggregator::new(&p, g);
        for (d, l, v) in data {
            agg.add(day(d), l.as_bytes(), v).unwrap();
        }
        agg.rows(&p)
    };
    let by_day = run(GroupBy::Day);
    let keys: Vec<_> = by_day
        .iter()
        .map(|r| {
            (
                day_string(r.date.unwrap()),
                String::from_utf8(r.listing.clone().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("2015-12-30".into(), "10".into()),
            ("2015-12-30".into(), "2149".into()),
            ("2015-12-31".to_string(), "2149".to_string())
        ]
    );
    assert_eq!(by_day[0].value, Some(0.0));
    assert_eq!(by_day[1].value, Some(25.0));

    let by_listing = run(GroupBy::Listing);
    assert_eq!(by_listing.len(), 2);
    assert_eq!(by_listing[1].listing.as_deref(), Some(&b"2149"[..]));
    assert_eq!((by_listing[1].numerator, by_listing[1].denominator), (2, 5));
    assert_eq!(
        by_listing[1].value,
        Some(40.0),
        "2/5, not the mean of 100% and 25%"
    );
    assert_eq!(by_listing[1].date, None);

    let total = run(GroupBy::Total);
    assert_eq!((total[0].numerator, total[0].denominator), (2, 10));
    let by_date = run(GroupBy::Date);
    assert_eq!(by_date.len(), 2);
    assert_eq!((by_date[0].numerator, by_date[0].denominator), (1, 9));
}

#[test]
fn order_does_not_depend_on_insertion_order() {
    let p = plan(&["cart_to_checkout_ctr"]);
    let mut sorted = Aggregator::new(&p, GroupBy::Day);
    let mut shuffled = Aggregator::new(&p, GroupBy::Day);
    let data = [
        ("2015-12-30", "9"),
        ("2015-12-30", "10"),
        ("2015-12-31", "2"),
        ("2015-12-31", "a"),
    ];
    for (d, l) in data {
        sorted.add(day(d), l.as_bytes(), &[1, 2]).unwrap();
    }
    for (d, l) in data.iter().rev() {
        shuffled.add(day(d), l.as_bytes(), &[1, 2]).unwrap();
    }
    assert!(sorted.in_order && !shuffled.in_order);
    assert_eq!(sorted.rows(&p), shuffled.rows(&p));
}

#[test]
fn zero_denominator_gives_no_value() {
    let p = plan(&["cart_to_checkout_ctr"]);
    let mut agg = Aggregator::new(&p, GroupBy::Day);
    agg.add(day("2015-12-31"), b"1", &[3, 0]).unwrap();
    let rows = agg.rows(&p);
    assert_eq!(rows[0].value, None);
    assert!(legacy_lines(&rows, &p, &KeyScheme::default()).is_empty());
    let doc: serde_json::Value = serde_json::from_str(&json(&rows, &p, 1)).unwrap();
    assert_eq!(doc["rows"][0]["value"], serde_json::Value::Null);
    assert_eq!(doc["keys_examined"], 1);
    assert_eq!(json(&[], &p, 0), r#"{"rows":[],"keys_examined":0}"#);
}

#[test]
fn sums_that_overflow_are_errors() {
    let p = plan(&["cart_to_checkout_ctr"]);
    let mut agg = Aggregator::new(&p, GroupBy::Total);
    agg.add(day("2015-12-31"), b"1", &[i64::MAX, 1]).unwrap();
    let e = agg
        .add(day("2015-12-31"), b"2", &[1, 1])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "ERR the sum of 'cart::checkoutNow:click' overflows a 64-bit integer"
    );
}

#[test]
fn legacy_matches_the_lua_output() {
    let p = plan(&["cart_to_checkout_ctr", "ldp_add_to_cart_ctr"]);
    // Fields in plan order: checkout click, checkout imp, atc click, atc imp.
    assert_eq!(p.fields.len(), 4);
    let mut agg = Aggregator::new(&p, GroupBy::Day);
    agg.add(day("2015-12-31"), b"2149", &[1, 1, 1, 3]).unwrap();
    let lines = legacy_lines(&agg.rows(&p), &p, &KeyScheme::default());
    assert_eq!(
        lines,
        [
            "cart_to_checkout_ctr=>2015-12-31_2149 : 100.00%",
            "ldp_add_to_cart_ctr=>2015-12-31_2149 : 33.33%"
        ]
    );
}

#[test]
fn top_ranks_by_value_then_listing() {
    let p = plan(&["cart_to_checkout_ctr"]);
    let mut agg = Aggregator::new(&p, GroupBy::Listing);
    for (l, v) in [
        ("5", [1, 2]),
        ("3", [1, 2]),
        ("9", [9, 10]),
        ("7", [1, 1]),
        ("8", [0, 0]),
    ] {
        agg.add(day("2015-12-31"), l.as_bytes(), &v).unwrap();
    }
    let ranked = top(agg.rows(&p), 3, 2, Rank::Value, 100.0).unwrap();
    let ids: Vec<_> = ranked
        .iter()
        .map(|r| String::from_utf8(r.row.listing.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(
        ids,
        ["9", "3", "5"],
        "7 has denominator 1 < MINDENOM 2; 3 and 5 tie"
    );
}

#[test]
fn cells_are_ordered_by_day_then_listing_order() {
    let d = |s: &str| crate::date::parse_day(s.as_bytes()).unwrap();
    let names: ListingNames = ["10", "9", "sku-a", "0009"]
        .iter()
        .map(|n| n.as_bytes())
        .collect();
    let mut cells = vec![
        (d("2016-01-01"), 0),
        (d("0000-01-01"), 2),
        (d("2015-12-31"), 2),
        (d("2016-01-01"), 1),
        (d("2015-12-31"), 0),
        (d("2016-01-01"), 3),
    ];
    order_cells(&names, &mut cells);
    let got: Vec<(String, &str)> = cells
        .iter()
        .map(|&(day, i)| {
            (
                day.to_string(),
                std::str::from_utf8(&names[i as usize]).unwrap(),
            )
        })
        .collect();
    let mut want: Vec<(String, &str)> = got.clone();
    want.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| listing_cmp(a.1.as_bytes(), b.1.as_bytes()))
    });
    assert_eq!(got, want);
    assert_eq!(got[0].0, "0000-01-01");
    // Numbers by value before other ids, as the spec orders listings.
    let jan1: Vec<&str> = got
        .iter()
        .filter(|c| c.0 == "2016-01-01")
        .map(|c| c.1)
        .collect();
    assert_eq!(jan1.len(), 3);
    assert_eq!(jan1, {
        let mut v = vec!["10", "9", "0009"];
        v.sort_by(|a, b| listing_cmp(a.as_bytes(), b.as_bytes()));
        v
    });
}

#[test]
fn a_grid_is_the_ordered_list_of_every_cell() {
    let names: ListingNames = ["10", "9", "sku-a", "0009", "2155"]
        .iter()
        .map(|n| n.as_bytes())
        .collect();
    let (start, end) = (day("2015-12-30"), day("2016-01-02"));
    let mut list: Vec<(NaiveDate, u32)> = crate::date::days_between(start, end)
        .flat_map(|d| (0..names.len() as u32).map(move |i| (d, i)))
        .collect();
    order_cells(&names, &mut list);
    let grid = Cells::grid(start, end, &names);
    assert_eq!(grid.len(), list.len());
    let got: Vec<_> = (0..grid.len()).map(|i| grid.get(i)).collect();
    assert_eq!(got, list);
    // The years 0000-9999 for 10 listings: 36.5M cells, no list.
    let grid = Cells::grid(day("0000-01-01"), day("9999-12-31"), &names);
    assert_eq!(grid.len(), 3_652_425 * 5);
    assert_eq!(grid.get(grid.len() - 1), (day("9999-12-31"), 2));
}

#[test]
fn listings_whose_hashes_collide_stay_apart() {
    let p = plan(&["cart_to_checkout_ctr"]);
    let mut agg = Aggregator::new(&p, GroupBy::Listing);
    let a = agg.listing_index_hashed(b"a", 7);
    let b = agg.listing_index_hashed(b"b", 7);
    let c = agg.listing_index_hashed(b"c", 7);
    assert_eq!([a, b, c], [0, 1, 2]);
    assert_eq!(agg.listing_index_hashed(b"b", 7), 1);
    assert_eq!(agg.listing_index_hashed(b"a", 7), 0);
    assert_eq!(agg.listing_index(b"a"), 3, "another hash: another entry");
}

#[test]
fn ordering_in_small_steps_equals_ordering_at_once() {
    let d = |n: i32| NaiveDate::from_num_days_from_ce_opt(735_000 + n).unwrap();
    let mut x: u64 = 88172645463325252;
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    // Over several runs (RUN = 4096), numeric and other ids.
    let names: ListingNames = (0..9_000)
        .map(|i| match next(3) {
            0 => format!("{}", next(1_000_000)),
            1 => format!("{:05}", next(100_000)),
            _ => format!("sku-{}-{i}", next(50)),
        })
        .collect::<std::collections::BTreeSet<_>>()
        .iter()
        .map(|s| s.as_bytes())
        .collect();
    let cells: Vec<(NaiveDate, u32)> = (0..20_000)
        .map(|_| (d(next(40) as i32), next(names.len() as u64) as u32))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut shuffled = cells.clone();
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, next(i as u64 + 1) as usize);
    }
    let mut want = shuffled.clone();
    want.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| listing_cmp(&names[a.1 as usize], &names[b.1 as usize]))
    });
    for budget in [1, 97, 5_000, usize::MAX] {
        let mut got = shuffled.clone();
        let mut ordering = CellOrdering::new(names.len(), got.len());
        let mut steps = 0;
        while !ordering.step(&names, &mut got, budget) {
            steps += 1;
        }
        assert_eq!(got, want, "budget {budget}");
        if budget < 5_000 {
            assert!(steps > 100, "budget {budget}: {steps} steps");
        }
    }
}

#[test]
fn wilson_bounds_match_the_issue_and_rank_confidently() {
    let z = wilson_z(0.95).unwrap();
    assert!((z - 1.959964).abs() < 1e-6, "{z}");
    let b = |num, den| (wilson_lower(num, den, z).unwrap() * 100.0 * 100.0).round() / 100.0;
    assert_eq!(b(90, 100), 82.56);
    assert_eq!(b(1, 1), 20.65);
    assert_eq!(wilson_lower(0, 10, z), Some(0.0));
    assert_eq!(wilson_lower(5, 3, z), None);
    assert_eq!(wilson_lower(-1, 3, z), None);
    assert!(wilson_z(1.0).is_err() && wilson_z(0.0).is_err());
    assert!(wilson_z(0.99).unwrap() > z);

    let row = |l: &str, num: i64, den: i64| Row {
        metric: 0,
        date: None,
        hour: None,
        listing: Some(l.as_bytes().into()),
        numerator: num,
        denominator: den,
        value: Some(num as f64 / den as f64 * 100.0),
        previous: None,
    };
    let rows = || vec![row("lucky", 1, 1), row("steady", 90, 100), row("new", 0, 3)];
    let by_value: Vec<_> = top(rows(), 3, 1, Rank::Value, 100.0).unwrap();
    assert_eq!(by_value[0].row.listing.as_deref(), Some(&b"lucky"[..]));
    assert!(by_value[0].bound.is_none());
    let by_wilson = top(rows(), 2, 1, Rank::Wilson { z }, 100.0).unwrap();
    let names: Vec<_> = by_wilson
        .iter()
        .map(|r| r.row.listing.as_deref().unwrap().to_vec())
        .collect();
    assert_eq!(names, [b"steady".to_vec(), b"lucky".to_vec()]);
    assert!((by_wilson[0].bound.unwrap() - 82.56).abs() < 0.01);
    let e = top(vec![row("over", 5, 3)], 1, 1, Rank::Wilson { z }, 100.0)
        .err()
        .unwrap();
    assert!(e.to_string().contains("listing 'over' has 5/3"), "{e}");
}

#[test]
fn listing_keys_order_exactly_as_listing_cmp() {
    let mut ids: Vec<Vec<u8>> = [
        "0",
        "00",
        "000",
        "1",
        "01",
        "001",
        "10",
        "010",
        "9",
        "99",
        "100",
        "a",
        "A",
        "a0",
        "0a",
        "-1",
        "1.5",
        "_",
        "sku-9",
        "sku-10",
        "z",
        "9".repeat(38).as_str(),
        "9".repeat(39).as_str(),
        "1".repeat(64).as_str(),
        &format!("0{}", "9".repeat(38)),
        &format!("1{}", "0".repeat(38)),
        &format!("1{}", "0".repeat(37)),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let mut x: u64 = 3;
    for _ in 0..2000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = 1 + (x >> 58) as usize % 45;
        let alphabet: &[u8] = if x & 1 == 0 {
            b"0123456789"
        } else {
            b"0129ab_-."
        };
        let id: Vec<u8> = (0..len)
            .map(|i| alphabet[((x >> (i % 50)) as usize + i * 7) % alphabet.len()])
            .collect();
        ids.push(id);
    }
    for a in &ids {
        for b in ids.iter().step_by(7) {
            assert_eq!(
                ListingKey::of(a).cmp(&ListingKey::of(b)),
                listing_cmp(a, b),
                "{:?} vs {:?}",
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            );
        }
    }
}

#[test]
fn the_picker_ranks_exactly_as_top_does() {
    let p = plan(&["cart_to_checkout_ctr"]);
    let z = wilson_z(0.95).unwrap();
    // A deterministic pseudo-random aggregation with many ties.
    let mut agg = Aggregator::new(&p, GroupBy::Listing);
    let mut x: u64 = 7;
    for i in 0..5000u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let den = (x >> 33) % 12;
        let num = (x >> 40) % (den + 1);
        let listing = if i % 3 == 0 {
            format!("sku-{i}")
        } else {
            format!("{}", i * 7 % 4999)
        };
        agg.add(
            day("2015-12-31"),
            listing.as_bytes(),
            &[num as i64, den as i64],
        )
        .unwrap();
    }
    let names = |v: &[Ranked]| -> Vec<(Vec<u8>, Option<u64>)> {
        v.iter()
            .map(|r| {
                (
                    r.row.listing.clone().unwrap().to_vec(),
                    r.bound.map(f64::to_bits),
                )
            })
            .collect()
    };
    for (n, min_den, rank) in [
        (10, 1, Rank::Value),
        (1, 3, Rank::Value),
        (700, 2, Rank::Value),
        (10, 1, Rank::Wilson { z }),
        (3000, 1, Rank::Wilson { z }),
        (0, 1, Rank::Value),
    ] {
        let want = top(agg.rows(&p), n, min_den, rank, 100.0).unwrap();
        for chunk in [1, 97, 100_000] {
            let mut picker = TopPicker::new(n, min_den, rank, 100.0);
            while !picker.feed(&agg, &p, chunk) {}
            let got = picker.finish(&agg, &p).unwrap();
            assert_eq!(
                names(&got),
                names(&want),
                "n {n} min {min_den} chunk {chunk}"
            );
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.row, w.row);
            }
        }
    }
    // A row that is not a proportion: the same error, naming the first
    // such listing in listing order, whatever the chunks.
    agg.add(day("2015-12-31"), b"zz-over", &[5, 3]).unwrap();
    agg.add(day("2015-12-31"), b"aa-over", &[9, 4]).unwrap();
    let want = top(agg.rows(&p), 5, 1, Rank::Wilson { z }, 100.0)
        .err()
        .unwrap();
    let mut picker = TopPicker::new(5, 1, Rank::Wilson { z }, 100.0);
    while !picker.feed(&agg, &p, 13) {}
    let got = picker.finish(&agg, &p).err().unwrap();
    assert_eq!(got, want);
    assert!(got.to_string().contains("'aa-over' has 9/4"), "{got}");
}

#[test]
fn rank_is_parsed_with_an_optional_confidence() {
    let p = |words: &[&str]| {
        let mut args: Vec<&[u8]> = vec![b"m", b"2015-12-01", b"2015-12-31", b"5"];
        args.extend(words.iter().map(|w| w.as_bytes()));
        parse_top(&args).map(|t| (t.rank, t.min_denominator))
    };
    assert_eq!(p(&[]).unwrap(), (Rank::Value, 1));
    assert_eq!(
        p(&["rank", "value", "MINDENOM", "3"]).unwrap(),
        (Rank::Value, 3)
    );
    let Rank::Wilson { z } = p(&["RANK", "WILSON"]).unwrap().0 else {
        panic!()
    };
    assert!((z - 1.959964).abs() < 1e-6);
    let (Rank::Wilson { z }, 2) = p(&["RANK", "WILSON", "0.99", "MINDENOM", "2"]).unwrap() else {
        panic!()
    };
    assert!((z - 2.575829).abs() < 1e-6);
    let (Rank::Wilson { .. }, 4) = p(&["MINDENOM", "4", "RANK", "WILSON"]).unwrap() else {
        panic!()
    };
    assert!(p(&["RANK", "WILSON", "1.5"]).is_err());
    assert!(p(&["RANK", "BEST"]).is_err());
    assert!(p(&["RANK"]).is_err());
    assert!(p(&["RANK", "VALUE", "RANK", "WILSON"]).is_err());
}

#[test]
fn plans_put_patterns_after_exact_fields() {
    let m = |name: &str, n: &str, d: &str| Metric {
        name: name.into(),
        numerator: n.as_bytes().to_vec(),
        denominator: d.as_bytes().to_vec(),
        scale: 100.0,
    };
    let plan = FieldPlan::new(vec![
        m("p", "/a:.*/", "imp"),
        m("q", "click", "/a:.*/"),
        m("r", "/b/", "imp"),
    ])
    .unwrap();
    assert_eq!(plan.fields, [b"imp".to_vec(), b"click".to_vec()]);
    assert_eq!(plan.patterns.len(), 2, "each distinct pattern once");
    assert_eq!(plan.width(), 4);
    assert_eq!(plan.slots, [(2, 0), (1, 2), (3, 0)]);
    let mut agg = Aggregator::new(&plan, GroupBy::Total);
    let day = crate::date::parse_day(b"2015-12-31").unwrap();
    agg.add(day, b"1", &[10, 1, 4, 2]).unwrap();
    let rows = agg.rows(&plan);
    assert_eq!(
        rows.iter()
            .map(|r| (r.numerator, r.denominator))
            .collect::<Vec<_>>(),
        [(4, 10), (1, 4), (2, 10)]
    );
}

#[test]
fn json_rows_are_written_as_the_json_tree_would_write_them() {
    let p = plan(&["cart_to_checkout_ctr"]);
    for (date, listing, n, d) in [
        (Some(day("2015-12-31")), Some(&b"2155"[..]), 3, 7),
        (None, Some(&b"sku-\"\xff"[..]), 0, 0),
        (Some(day("2016-01-01")), None, 1, 0),
        (None, None, i64::MAX, 3),
    ] {
        let row = RowView {
            metric: 0,
            date,
            hour: None,
            listing,
            numerator: n,
            denominator: d,
            value: (d != 0).then(|| n as f64 / d as f64 * 100.0),
            previous: None,
        };
        let tree = serde_json::json!({
            "metric": p.metrics[0].name,
            "date": row.date.map_or_else(|| "*".to_string(), day_string),
            "listing": row.listing.map_or_else(|| "*".to_string(), |l| String::from_utf8_lossy(l).into_owned()),
            "numerator": row.numerator,
            "denominator": row.denominator,
            "value": row.value,
        })
        .to_string();
        assert_eq!(json_row(&row, &p), tree);
    }
}
