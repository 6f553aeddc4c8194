use super::planner::Local;
use super::*;
use crate::date::parse_day;
use chrono::NaiveDate;

fn d(s: &str) -> NaiveDate {
    parse_day(s.as_bytes()).unwrap()
}

#[test]
fn adds_removes_and_ranges() {
    let mut ix = Index::default();
    ix.add(0, d("2015-12-31"), b"2155");
    ix.add(0, d("2015-12-31"), b"2155");
    ix.add(0, d("2016-01-01"), b"sku-a");
    ix.add(0, d("2015-12-30"), b"2155");
    ix.add(1, d("2015-12-31"), b"7");
    assert_eq!(ix.entries(), 4);
    let got: Vec<_> = ix
        .db(0)
        .unwrap()
        .in_range(d("2015-12-31"), d("2016-01-31"))
        .map(|(day, l)| (day, ix.listings.name(l).to_vec()))
        .collect();
    assert_eq!(
        got,
        [
            (d("2015-12-31"), b"2155".to_vec()),
            (d("2016-01-01"), b"sku-a".to_vec())
        ]
    );
    ix.remove(0, d("2015-12-31"), b"2155");
    ix.remove(0, d("2015-12-31"), b"unknown");
    assert_eq!(
        ix.db(0)
            .unwrap()
            .in_range(d("2015-12-31"), d("2015-12-31"))
            .count(),
        0
    );
    assert_eq!(ix.db(0).unwrap().days(), 2);
    ix.swap(0, 1);
    assert_eq!(ix.db(0).unwrap().entries(), 1);
    ix.clear(Some(1));
    assert!(ix.db(1).is_none());
    ix.clear(None);
    assert_eq!(ix.entries(), 0);
}

#[test]
fn cells_name_each_listing_once() {
    let mut ix = Index::default();
    for (day, l) in [
        ("2015-12-31", "b"),
        ("2015-12-31", "a"),
        ("2016-01-01", "b"),
        ("2016-01-02", "c"),
    ] {
        ix.add(0, d(day), l.as_bytes());
    }
    ix.add(1, d("2015-12-31"), b"other-db");
    let cells_of = |ix: &mut Index, db| {
        let mut p = Planner::new(db, d("2015-12-31"), d("2016-01-01"));
        while p.step(ix, 1000) == Planned::More {}
        (p.names, p.cells)
    };
    let (names, cells) = cells_of(&mut ix, 0);
    let named: Vec<(NaiveDate, &[u8])> = cells
        .iter()
        .map(|&(day, i)| (day, &names[i as usize]))
        .collect();
    assert_eq!(names.len(), 2);
    assert_eq!(cells.len(), 3);
    assert!(named.contains(&(d("2016-01-01"), &b"b"[..])));
    assert!(!named.iter().any(|(_, n)| *n == b"c" || *n == b"other-db"));
    assert_eq!(cells_of(&mut ix, 7), (ListingNames::default(), vec![]));
}

#[test]
fn memory_follows_what_is_indexed() {
    let mut ix = Index::default();
    let baseline = ix.heap_bytes();
    let day = d("2016-01-01");
    for i in 0..100_000 {
        ix.add(0, day, format!("short-lived-{i}").as_bytes());
    }
    ix.add(0, d("2016-01-02"), b"keeper");
    ix.add(1, day, b"short-lived-7");
    let peak = ix.heap_bytes();
    assert!(peak > 3_000_000, "{peak}");
    for i in 0..100_000 {
        ix.remove(0, day, format!("short-lived-{i}").as_bytes());
    }
    // Only "keeper" (db 0) and "short-lived-7" (db 1) are left.
    assert_eq!(ix.entries(), 2);
    assert_eq!(ix.listings.len(), 2);
    // What is left is bounded by a constant: compaction stops once the
    // table has at most 1024 numbers (~20 bytes each), whatever the peak.
    let after = ix.heap_bytes();
    assert!(after < baseline + 32 * 1024, "peak {peak}, after {after}");
    // Numbers were compacted; names and ranges still agree.
    let got: Vec<_> = ix
        .db(1)
        .unwrap()
        .in_range(day, day)
        .map(|(_, l)| ix.listings.name(l).to_vec())
        .collect();
    assert_eq!(got, [b"short-lived-7".to_vec()]);
    ix.clear(Some(1));
    assert_eq!(ix.listings.len(), 1);
    assert_eq!(
        ix.listings
            .get(b"keeper")
            .map(|id| ix.listings.name(id).to_vec()),
        Some(b"keeper".to_vec())
    );
}

#[test]
fn compaction_keeps_every_list_sorted_and_named() {
    let mut ix = Index::default();
    let day = d("2016-01-01");
    let keep: Vec<String> = (0..3000)
        .filter(|i| i % 7 == 0)
        .map(|i| format!("l{i}"))
        .collect();
    for i in 0..3000 {
        ix.add(0, day, format!("l{i}").as_bytes());
        ix.add(0, d("2016-01-02"), format!("l{i}").as_bytes());
    }
    for i in (0..3000).filter(|i| i % 7 != 0) {
        ix.remove(0, day, format!("l{i}").as_bytes());
        ix.remove(0, d("2016-01-02"), format!("l{i}").as_bytes());
    }
    for day in [day, d("2016-01-02")] {
        let ids: Vec<u32> = ix
            .db(0)
            .unwrap()
            .in_range(day, day)
            .map(|(_, l)| l)
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let mut names: Vec<String> = ids
            .iter()
            .map(|&l| String::from_utf8(ix.listings.name(l).to_vec()).unwrap())
            .collect();
        names.sort();
        let mut want = keep.clone();
        want.sort();
        assert_eq!(names, want);
    }
    // Freed numbers are reused before the table grows.
    let before = ix.listings.names.len();
    ix.add(0, day, b"new-one");
    assert!(ix.listings.names.len() <= before.max(ix.listings.len()));
}

/// A small deterministic generator (no dependency for one test).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn terms(names: &[&str]) -> Vec<Vec<u8>> {
    names.iter().map(|n| n.as_bytes().to_vec()).collect()
}

/// The cache against a plain model, through every kind of change:
/// a row is served only when the model knows it, and exactly.
#[test]
fn cache_agrees_with_a_model_through_every_change() {
    use std::collections::HashMap;
    #[derive(Clone, Debug, PartialEq)]
    enum Model {
        Known(Vec<i64>),
        Unknown,
    }
    let cols = terms(&["imp", "clk", "atc", "buy"]);
    let mut ix = Index::default();
    ix.set_columns(true, &cols);
    let mut model: HashMap<(i32, NaiveDate, String), Model> = HashMap::new();
    let mut rng = Lcg(7);
    let base = d("2016-01-01");
    for step in 0..60_000u64 {
        let db = rng.next(2) as i32;
        let day = base + chrono::Days::new(rng.next(4));
        let listing = format!("l{}", rng.next(1500));
        let key = (db, day, listing.clone());
        match rng.next(10) {
            0..=2 => {
                ix.add(db, day, listing.as_bytes());
                model.insert(key, Model::Unknown);
            }
            3 => {
                ix.remove(db, day, listing.as_bytes());
                model.remove(&key);
            }
            4..=6 => {
                let row: Vec<i64> = (0..4).map(|_| rng.next(1000) as i64).collect();
                ix.fill(
                    ix.columns_version(),
                    db,
                    day,
                    listing.as_bytes(),
                    &row,
                    None,
                );
                if model.contains_key(&key) {
                    model.insert(key, Model::Known(row));
                }
            }
            7 => {
                let value = rng.next(1000) as i64;
                let field = ["clk", "other", "buy"][rng.next(3) as usize];
                ix.written(db, day, listing.as_bytes(), &[(field.as_bytes(), value)]);
                if let Some(Model::Known(row)) = model.get_mut(&key) {
                    if let Some(c) = cols.iter().position(|t| t == field.as_bytes()) {
                        row[c] = value;
                    }
                }
            }
            8 => {
                ix.forget(db, day, listing.as_bytes());
                if model.contains_key(&key) {
                    model.insert(key, Model::Unknown);
                }
            }
            _ => {
                // Many removals in a row: compaction renumbers.
                for i in 0..rng.next(400) {
                    let l = format!("l{}", (i * 7 + step) % 1500);
                    ix.remove(db, day, l.as_bytes());
                    model.remove(&(db, day, l));
                }
            }
        }
        if step % 5000 == 0 || step == 59_999 {
            for db in 0..2 {
                for k in 0..4 {
                    let day = base + chrono::Days::new(k);
                    for l in 0..1500 {
                        let listing = format!("l{l}");
                        let got = ix.cached(ix.columns_version(), db, day, listing.as_bytes(), 0);
                        let want = model.get(&(db, day, listing.clone()));
                        match (got, want) {
                            (Cached::Row(row), Some(Model::Known(w))) => {
                                assert_eq!(row, &w[..])
                            }
                            (Cached::Unknown, Some(Model::Unknown)) => {}
                            (Cached::Absent, None) => {}
                            (got, want) => panic!("{db} {day} {listing}: {got:?} vs {want:?}"),
                        }
                    }
                    // The day's totals: taken whole exactly when every row
                    // of it is known, and then the sums of those rows.
                    let rows: Vec<&Model> = model
                        .iter()
                        .filter(|((b, t, _), _)| *b == db && *t == day)
                        .map(|(_, m)| m)
                        .collect();
                    let mut want = vec![0i128; 4];
                    let complete = !rows.is_empty()
                        && rows.iter().all(|m| match m {
                            Model::Known(r) => {
                                want.iter_mut()
                                    .zip(r)
                                    .for_each(|(w, &v)| *w += i128::from(v));
                                true
                            }
                            Model::Unknown => false,
                        });
                    let mut p = Planner::new(db, day, day).with_totals(ix.columns_version(), 0);
                    while p.step(&mut ix, 100_000) == Planned::More {}
                    if complete {
                        assert_eq!(p.day_totals, vec![(day, want, rows.len())], "{db} {day}");
                        assert!(p.cells.is_empty());
                    } else {
                        assert!(p.day_totals.is_empty(), "{db} {day}");
                        assert_eq!(p.cells.len(), rows.len());
                    }
                }
            }
            assert_eq!(ix.entries(), model.len());
        }
    }
}

/// What the cache holds for listing "a" on 2016-01-01 of db 0, read
/// with the current columns.
fn cached_a(ix: &mut Index) -> Cached<'_> {
    let v = ix.columns_version();
    ix.cached(v, 0, d("2016-01-01"), b"a", 0)
}

fn fill_a(ix: &mut Index, row: &[i64]) {
    let v = ix.columns_version();
    ix.fill(v, 0, d("2016-01-01"), b"a", row, None);
}

#[test]
fn columns_change_only_for_a_new_term() {
    let mut ix = Index::default();
    ix.set_columns(true, &terms(&["imp", "clk"]));
    ix.add(0, d("2016-01-01"), b"a");
    fill_a(&mut ix, &[10, 2]);
    // The same terms, in any order, keep what is cached.
    ix.set_columns(true, &terms(&["clk", "imp"]));
    assert_eq!(cached_a(&mut ix), Cached::Row(&[10, 2]));
    assert_eq!(ix.column(b"clk"), Some(1));
    // A new term replaces the columns and drops the values; a reader
    // that planned with the old columns is told to read the hash, and
    // fills nothing.
    let old = ix.columns_version();
    ix.set_columns(true, &terms(&["imp", "clk", "/c.*/"]));
    assert_eq!(ix.cached(old, 0, d("2016-01-01"), b"a", 0), Cached::Stale);
    ix.fill(old, 0, d("2016-01-01"), b"a", &[1, 1, 1], None);
    assert_eq!(cached_a(&mut ix), Cached::Unknown);
    fill_a(&mut ix, &[10, 2, 12]);
    // With a pattern column, a counter write cannot be applied.
    ix.written(0, d("2016-01-01"), b"a", &[(b"clk", 3)]);
    assert_eq!(cached_a(&mut ix), Cached::Unknown);
    fill_a(&mut ix, &[10, 3, 13]);
    assert_eq!(cached_a(&mut ix), Cached::Row(&[10, 3, 13]));
    // Off: nothing cached, nothing kept.
    ix.set_columns(false, &[]);
    assert_eq!(cached_a(&mut ix), Cached::Unknown);
    assert_eq!(ix.cache_bytes(), 0);
    fill_a(&mut ix, &[1, 2, 3]);
    assert_eq!(ix.cache_bytes(), 0);
}

#[test]
fn a_day_past_its_earliest_expiry_is_read_again() {
    let mut ix = Index::default();
    ix.set_columns(true, &terms(&["imp", "clk"]));
    let day = d("2016-01-01");
    for l in [&b"a"[..], b"b"] {
        ix.add(0, day, l);
        ix.fill(ix.columns_version(), 0, day, l, &[5, 1], None);
    }
    ix.fill(ix.columns_version(), 0, day, b"a", &[5, 1], Some(1_000));
    assert_eq!(
        ix.cached(ix.columns_version(), 0, day, b"b", 999),
        Cached::Row(&[5, 1])
    );
    // At 1000 both rows are unknown; the re-read of "b" (no expiry)
    // makes it cached again, "a" (gone) stays unknown.
    assert_eq!(
        ix.cached(ix.columns_version(), 0, day, b"b", 1_000),
        Cached::Unknown
    );
    assert_eq!(
        ix.cached(ix.columns_version(), 0, day, b"a", 1_000),
        Cached::Unknown
    );
    ix.fill(ix.columns_version(), 0, day, b"b", &[6, 1], None);
    assert_eq!(
        ix.cached(ix.columns_version(), 0, day, b"b", 5_000),
        Cached::Row(&[6, 1])
    );
    // An expiry set later (EXPIRE) counts too.
    ix.expires(0, day, 9_000);
    assert_eq!(
        ix.cached(ix.columns_version(), 0, day, b"b", 9_000),
        Cached::Unknown
    );
}

#[test]
fn the_cache_costs_at_most_40_bytes_per_day_hash_for_four_counters() {
    let mut ix = Index::default();
    ix.set_columns(true, &terms(&["a", "b", "c", "d"]));
    for day in 0..10 {
        let day = d("2016-01-01") + chrono::Days::new(day);
        for l in 0..10_000 {
            let name = format!("{l}");
            ix.add(0, day, name.as_bytes());
            ix.fill(
                ix.columns_version(),
                0,
                day,
                name.as_bytes(),
                &[1, 2, 3, 4],
                None,
            );
        }
    }
    // Written as the worst case: every row cached as it arrives, so
    // every list grew step by step.
    let per_entry = |bytes: usize| bytes as f64 / ix.entries() as f64;
    let cache = per_entry(ix.cache_bytes());
    assert!(cache <= 40.0, "{cache}");
    // The index's own number per entry comes on top.
    let index = per_entry(ix.dbs.values().map(DayIndex::heap_bytes).sum::<usize>());
    assert!(index <= 6.0, "{index}");
}

#[test]
fn the_id_epoch_changes_whenever_a_number_may_name_another_listing() {
    let mut ix = Index::default();
    let day = d("2016-01-01");
    ix.add(0, day, b"a");
    let e = ix.id_epoch();
    // New numbers and new entries keep every remembered number right.
    ix.add(0, day, b"b");
    ix.add(0, d("2016-01-02"), b"a");
    assert_eq!(ix.id_epoch(), e);
    // "a" still has an entry: its number stays.
    ix.remove(0, day, b"a");
    assert_eq!(ix.id_epoch(), e);
    // "b" is gone: its number may be reused.
    ix.remove(0, day, b"b");
    let e2 = ix.id_epoch();
    assert_ne!(e2, e);
    ix.clear(Some(0));
    assert_ne!(ix.id_epoch(), e2);
    let e3 = ix.id_epoch();
    ix.clear(None);
    assert_ne!(ix.id_epoch(), e3);
    // A compaction renumbers: the epoch moves too.
    for i in 0..3000 {
        ix.add(0, day, format!("l{i}").as_bytes());
    }
    let before = ix.id_epoch();
    for i in 0..2900 {
        ix.remove(0, day, format!("l{i}").as_bytes());
    }
    assert_ne!(ix.id_epoch(), before);
    let id = ix.listings.get(b"l2999").unwrap();
    let v = ix.columns_version();
    let mut next = usize::MAX;
    assert_eq!(ix.cached_near(v, 0, day, id, 0, &mut next), Cached::Unknown);
    assert_eq!(next, 100, "l2999 is 100th of the 100 left");
    // A wrong guess only costs a search.
    let mut next = 3;
    assert_eq!(ix.cached_near(v, 0, day, id, 0, &mut next), Cached::Unknown);
    assert_eq!(next, 100);
}

#[test]
fn rows_are_reused_and_a_mostly_free_day_stops_caching() {
    let mut ix = Index::default();
    ix.set_columns(true, &terms(&["a", "b"]));
    let v = ix.columns_version();
    let day = d("2016-01-01");
    let name = |i: i64| format!("{i:04}");
    for i in 0..200 {
        ix.add(0, day, name(i).as_bytes());
        ix.fill(v, 0, day, name(i).as_bytes(), &[i, -i], None);
    }
    // Removing some frees their rows; new listings (in the middle of
    // the order) take them, unknown until read.
    for i in (0..200).step_by(4) {
        ix.remove(0, day, name(i).as_bytes());
    }
    let bytes = ix.cache_bytes();
    for i in (0..200).step_by(4) {
        let late = format!("{i:04}x");
        ix.add(0, day, late.as_bytes());
        assert_eq!(ix.cached(v, 0, day, late.as_bytes(), 0), Cached::Unknown);
        ix.fill(v, 0, day, late.as_bytes(), &[7, 7], None);
    }
    assert_eq!(ix.cache_bytes(), bytes, "freed rows were not reused");
    for i in (1..200).filter(|i| i % 4 != 0) {
        assert_eq!(
            ix.cached(v, 0, day, name(i).as_bytes(), 0),
            Cached::Row(&[i, -i])
        );
    }
    assert_eq!(ix.cached(v, 0, day, b"0004x", 0), Cached::Row(&[7, 7]));
    // Most rows freed: the day stops caching, its entries stay.
    for i in 1..200 {
        ix.remove(0, day, name(i).as_bytes());
    }
    assert_eq!(ix.cached(v, 0, day, b"0004x", 0), Cached::Unknown);
    assert_eq!(ix.entries(), 50);
    ix.fill(v, 0, day, b"0004x", &[8, 8], None);
    assert_eq!(ix.cached(v, 0, day, b"0004x", 0), Cached::Row(&[8, 8]));
}

fn planned(p: &Planner) -> Vec<(NaiveDate, String)> {
    let mut v: Vec<_> = p
        .cells
        .iter()
        .map(|&(day, at)| {
            (
                day,
                String::from_utf8(p.names[at as usize].to_vec()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_planner_takes_each_cell_once_whatever_is_written_between_steps() {
    let mut ix = Index::default();
    let (a, b) = (d("2016-01-01"), d("2016-01-02"));
    for i in 0..100 {
        ix.add(0, a, format!("l{i}").as_bytes());
        ix.add(0, b, format!("l{i}").as_bytes());
    }
    ix.add(0, b, b"only-b");
    ix.add(1, a, b"other-db");
    let mut p = Planner::new(0, a, b);
    assert_eq!(p.step(&mut ix, 30), Planned::More);
    let epoch = ix.id_epoch();
    // Between steps: "only-b" loses its last entry (its number is kept
    // while pinned), "l5" leaves day b, a new listing arrives.
    ix.remove(0, b, b"only-b");
    ix.remove(0, b, b"l5");
    ix.add(0, b, b"new");
    for i in 0..60 {
        ix.remove(0, a, format!("l{i}").as_bytes());
    }
    assert_eq!(ix.id_epoch(), epoch, "a number was freed while pinned");
    while p.step(&mut ix, 30) == Planned::More {}
    assert!(!p.is_pinned());
    let got = planned(&p);
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "a cell was planned twice");
    // The first 30 cells (l0..l29 of day a) were taken before l0..l59
    // left day a: l60..l99 follow; day b
    // is taken after them: l5 and only-b are gone, "new" is there.
    assert_eq!(got.iter().filter(|(day, _)| *day == a).count(), 30 + 40);
    assert!(got.contains(&(b, "new".to_string())));
    assert!(!got.contains(&(b, "only-b".to_string())));
    assert!(!got.contains(&(b, "l5".to_string())));
    assert_eq!(got.iter().filter(|(day, _)| *day == b).count(), 100);
    // Unpinned: the kept number is freed now.
    assert_ne!(ix.id_epoch(), epoch);
    assert_eq!(ix.listings.get(b"only-b"), None);
}

#[test]
fn a_planner_starts_over_on_a_new_index_and_releases_its_pin() {
    let mut ix = Index::default();
    let a = d("2016-01-01");
    for i in 0..50 {
        ix.add(0, a, format!("l{i}").as_bytes());
    }
    let mut p = Planner::new(0, a, a);
    assert_eq!(p.step(&mut ix, 10), Planned::More);
    ix.clear(None);
    ix.add(0, a, b"after-flush");
    while p.step(&mut ix, 10) == Planned::More {}
    assert_eq!(planned(&p), [(a, "after-flush".to_string())]);
    // Abandoned midway: release unpins, and frees wait no longer.
    for i in 0..50 {
        ix.add(0, a, format!("m{i}").as_bytes());
    }
    let mut q = Planner::new(0, a, a);
    q.step(&mut ix, 5);
    ix.remove(0, a, b"m1");
    assert!(ix.listings.get(b"m1").is_some());
    q.release(&mut ix);
    assert!(ix.listings.get(b"m1").is_none());
    assert!(!q.is_pinned());
}

#[test]
fn a_small_query_in_a_big_index_plans_through_a_map() {
    let mut ix = Index::default();
    let (a, b) = (d("2016-01-01"), d("2016-01-02"));
    for i in 0..10_000 {
        ix.add(0, a, format!("l{i}").as_bytes());
    }
    for name in ["l9999", "l5", "zz"] {
        ix.add(0, b, name.as_bytes());
    }
    let mut p = Planner::new(0, b, b);
    while p.step(&mut ix, 2) == Planned::More {}
    assert!(matches!(p.local, Local::Map(_)));
    let got: Vec<String> = planned(&p).into_iter().map(|(_, n)| n).collect();
    assert_eq!(got, ["l5", "l9999", "zz"]);
}

#[test]
fn a_pass_finds_every_row_not_cached() {
    let mut ix = Index::default();
    ix.set_columns(true, &terms(&["a", "b"]));
    let v = ix.columns_version();
    let mut want = Vec::new();
    for db in [0, 3] {
        for k in 0..3 {
            let day = d("0000-01-01") + chrono::Days::new(k * 1000 * 365);
            for i in 0..50 {
                let name = format!("l{i}");
                ix.add(db, day, name.as_bytes());
                if i % 3 == 0 {
                    ix.fill(v, db, day, name.as_bytes(), &[1, 2], None);
                } else {
                    want.push((db, day, name.into_bytes()));
                }
            }
        }
    }
    let mut pass = Pass::default();
    let mut got = Vec::new();
    let mut calls = 0;
    while ix.unknown_rows(&mut pass, 7, &mut got) {
        calls += 1;
    }
    assert!(calls > 10, "{calls}");
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

/// A day hash the module creates has a known row at once on a cached day
/// (0 for the columns it does not hold), so the day's totals stay whole;
/// an expiry passed makes the day read again.
#[test]
fn created_rows_keep_a_day_whole_until_its_expiry() {
    let mut ix = Index::default();
    ix.set_columns(true, &terms(&["imp", "clk"]));
    let v = ix.columns_version();
    let day = d("2016-01-01");
    ix.add(0, day, b"a");
    ix.fill(v, 0, day, b"a", &[10, 2], Some(5_000));
    let whole = |ix: &mut Index, now| {
        let mut p = Planner::new(0, day, day).with_totals(v, now);
        while p.step(ix, 1000) == Planned::More {}
        p.day_totals
            .into_iter()
            .map(|(d, t, _)| (d, t))
            .collect::<Vec<_>>()
    };
    assert_eq!(whole(&mut ix, 0), vec![(day, vec![10, 2])]);
    ix.created(0, day, b"b", &[(b"clk", 3), (b"other", 9)]);
    assert_eq!(whole(&mut ix, 0), vec![(day, vec![10, 5])]);
    ix.written(0, day, b"b", &[(b"imp", 4)]);
    assert_eq!(whole(&mut ix, 0), vec![(day, vec![14, 5])]);
    // A write the module did not make: that row is unknown until read.
    ix.add(0, day, b"a");
    assert!(whole(&mut ix, 0).is_empty());
    ix.fill(v, 0, day, b"a", &[1, 1], None);
    assert_eq!(whole(&mut ix, 0), vec![(day, vec![5, 4])]);
    ix.remove(0, day, b"b");
    assert_eq!(whole(&mut ix, 0), vec![(day, vec![1, 1])]);
    // Past the earliest expiry seen, the day is read again.
    assert!(whole(&mut ix, 6_000).is_empty());
    // Other columns' version: nothing whole.
    let mut p = Planner::new(0, day, day).with_totals(v + 1, 0);
    while p.step(&mut ix, 1000) == Planned::More {}
    assert!(p.day_totals.is_empty());
}

/// With `with_rows`, each listing's known rows are summed as it plans
/// (the columns asked, in their order) and only the others become cells;
/// in small steps, over several days, each listing is named once and
/// every day hash is either summed or planned, never both.
#[test]
fn a_planner_sums_known_rows_per_listing_and_plans_the_rest() {
    let mut ix = Index::default();
    ix.set_columns(true, &terms(&["imp", "clk", "cart"]));
    let v = ix.columns_version();
    let days = [d("2016-01-01"), d("2016-01-02"), d("2016-01-03")];
    let mut want_sums: std::collections::BTreeMap<String, (i64, i64, u32)> = Default::default();
    let mut want_cells = Vec::new();
    for (n, &day) in days.iter().enumerate() {
        for i in 0..40 {
            let name = format!("l{i}");
            ix.add(0, day, name.as_bytes());
            let (imp, clk) = (i as i64 * 10 + n as i64, i as i64 + 1);
            if n > 0 && (i + n) % 4 == 0 {
                // Written, not read back since: no known row (the first
                // day's rows are all known: steps that plan no cell).
                want_cells.push((day, name.clone()));
            } else {
                ix.fill(v, 0, day, name.as_bytes(), &[imp, clk, 7], None);
                let e = want_sums.entry(name).or_default();
                // Columns asked: clk, then imp.
                e.0 += clk;
                e.1 += imp;
                e.2 += 1;
            }
        }
    }
    // A row that would overflow the sum is planned as a cell.
    ix.add(0, days[2], b"big");
    ix.fill(v, 0, days[1], b"big", &[i64::MAX, 0, 0], None);
    ix.add(0, days[1], b"big");
    ix.fill(v, 0, days[1], b"big", &[i64::MAX, 0, 0], None);
    ix.fill(v, 0, days[2], b"big", &[i64::MAX, 0, 0], None);
    let mut p = Planner::new(0, days[0], days[2]).with_rows(v, 0, vec![1, 0]);
    let mut steps = 0;
    while p.step(&mut ix, 7) == Planned::More {
        steps += 1;
    }
    assert!(steps > 10, "{steps}");
    let names: Vec<String> = (0..p.names.len())
        .map(|at| String::from_utf8(p.names[at].to_vec()).unwrap())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a listing was named twice");
    let mut got_sums = std::collections::BTreeMap::new();
    for (at, name) in names.iter().enumerate() {
        let n = p.summed.get(at).copied().unwrap_or(0);
        if n > 0 && name != "big" {
            let s = &p.row_sums[at * 2..at * 2 + 2];
            got_sums.insert(name.clone(), (s[0], s[1], n));
        }
    }
    assert_eq!(got_sums, want_sums);
    let big = names.iter().position(|n| n == "big").unwrap();
    assert_eq!(p.summed[big], 1);
    assert_eq!(p.row_sums[big * 2 + 1], i64::MAX);
    let mut got_cells: Vec<(NaiveDate, String)> = planned(&p)
        .into_iter()
        .filter(|(_, n)| n != "big")
        .collect();
    want_cells.sort();
    got_cells.sort();
    assert_eq!(got_cells, want_cells);
    assert!(planned(&p).contains(&(days[2], "big".to_string())));
    assert_eq!(p.planned(), 3 * 40 + 2);
    // Other columns' version: nothing summed, every day hash a cell.
    let mut p = Planner::new(0, days[0], days[2]).with_rows(v + 1, 0, vec![1, 0]);
    while p.step(&mut ix, 7) == Planned::More {}
    assert_eq!((p.summed_cells, p.cells.len()), (0, 3 * 40 + 2));
}
