//! Reading hour keys (`hours yes`): the hours of a query by hour, in a
//! zone of its own, over a range with hour ends, or the hours of the
//! period it is compared with (see the core's `query::span::Periods`).
//!
//! An hour key holds one UTC day of one listing (`YYYY-MM-DDh_<listing>`,
//! fields `HH:<event>`). The keys a query reads are the UTC dates its hours
//! touch times its listings: an explicit set as given, `*` the listings the
//! index holds for the module's days around those dates (an event's hour
//! key is written with its day hash). Each key is read whole, once, and
//! each of its hours counts in the group `Periods::hour` says.

use std::time::Instant;

use chrono::{Duration, NaiveDate};
use redis_module::Context;

use super::Job;
use crate::budget::QUERY_PLAN_STEP;
use crate::index_upkeep;
use crate::redis::reader::Reader;
use listingstats_core::day_index::{ListingNames, Planned, Planner};
use listingstats_core::hours::first_hour;
use listingstats_core::keys::parse_hour_field;
use listingstats_core::number::parse_counter;
use listingstats_core::query::Listings;
use listingstats_core::Result;

/// A job reading its hour keys.
pub(super) struct HourReading {
    /// The UTC dates whose hour keys are read.
    dates: Vec<NaiveDate>,
    names: ListingNames,
    /// (UTC date, listing position), once known.
    cells: Vec<(NaiveDate, u32)>,
    next: usize,
    /// `*`: the index's listings of the module's days around the dates,
    /// copied out in steps.
    planner: Option<Planner>,
}

impl Drop for HourReading {
    fn drop(&mut self) {
        if let Some(planner) = self.planner.as_mut() {
            index_upkeep::release(planner);
        }
    }
}

impl HourReading {
    /// The hour keys of `dates` for `listings`.
    pub(super) fn new(db: i32, dates: Vec<NaiveDate>, listings: &Listings<'_>) -> HourReading {
        let mut names = ListingNames::default();
        let mut cells = Vec::new();
        let planner = match listings {
            Listings::Ids(ids) => {
                for id in ids {
                    names.push(id);
                }
                for &date in &dates {
                    for at in 0..ids.len() as u32 {
                        cells.push((date, at));
                    }
                }
                None
            }
            Listings::All => {
                let (first, last) = match (dates.first(), dates.last()) {
                    (Some(&f), Some(&l)) => (f - Duration::days(1), l + Duration::days(1)),
                    _ => (NaiveDate::MIN, NaiveDate::MIN),
                };
                (!dates.is_empty()).then(|| Planner::new(db, first, last))
            }
        };
        HourReading {
            dates,
            names,
            cells,
            next: 0,
            planner,
        }
    }
}

impl Job {
    /// Reads hour keys until all are read (`Ok(true)`) or `deadline`.
    pub(super) fn read_hours(
        &mut self,
        ctx: &Context,
        r: &mut HourReading,
        reader: &Reader<'_>,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        if let Some(planner) = r.planner.as_mut() {
            loop {
                match index_upkeep::plan_step(ctx, planner, QUERY_PLAN_STEP) {
                    None => return Ok(false), // the index is being rebuilt
                    Some(Planned::More) => {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            return Ok(false);
                        }
                    }
                    Some(Planned::Done) => break,
                }
            }
            let Some(mut planner) = r.planner.take() else {
                return Ok(false);
            };
            // A listing of the module's day `d` may have hours on the UTC
            // dates d-1..=d+1.
            let mut cells: Vec<(NaiveDate, u32)> = Vec::new();
            for &(day, at) in &planner.cells {
                for shift in -1..=1 {
                    let date = day + Duration::days(shift);
                    if r.dates.binary_search(&date).is_ok() {
                        cells.push((date, at));
                    }
                }
            }
            cells.sort_unstable();
            cells.dedup();
            r.cells = cells;
            r.names = std::mem::take(&mut planner.names);
        }
        let scheme = self.settings.keys.clone();
        let plan = self.plan.clone();
        let Some(periods) = self.periods.clone() else {
            return Ok(true);
        };
        let width = plan.width();
        let sums_width = self.agg.width();
        // One key's sums per group, (group, sums) in the order first seen:
        // a key holds at most 24 hours, so a list beats a map.
        let mut groups: Vec<(i32, usize)> = Vec::new();
        let mut sums: Vec<i64> = Vec::new();
        while r.next < r.cells.len() {
            let (date, at) = r.cells[r.next];
            r.next += 1;
            let listing = &r.names[at as usize];
            let key = scheme.hour_key(date, listing);
            if self.skip_unreadable {
                if !reader.may_read(&key) {
                    continue;
                }
            } else {
                reader.check_read(&key)?;
            }
            groups.clear();
            sums.clear();
            let first = first_hour(date);
            let mut fields = 0usize;
            let mut failed: Option<listingstats_core::Error> = None;
            // Absent, or another type: not an hour key of this listing.
            let is_hash = reader.each_field(&key, &mut |field, value| {
                fields += 1;
                if failed.is_some() {
                    return;
                }
                let Some((hh, event)) = parse_hour_field(field) else {
                    return;
                };
                let Some((group, previous)) = periods.hour(first + i64::from(hh)) else {
                    return;
                };
                let exact = plan.fields.iter().position(|f| f.as_slice() == event);
                let mut slots = exact.into_iter().chain(
                    plan.patterns
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.is_match(event))
                        .map(|(i, _)| plan.fields.len() + i),
                );
                let Some(first_slot) = slots.next() else {
                    return;
                };
                let n = match parse_counter(&key, field, value) {
                    Ok(n) => n,
                    Err(e) => {
                        failed = Some(e);
                        return;
                    }
                };
                let base = match groups.iter().find(|(g, _)| *g == group) {
                    Some(&(_, base)) => base,
                    None => {
                        let base = sums.len();
                        sums.resize(base + sums_width, 0);
                        groups.push((group, base));
                        base
                    }
                };
                let offset = base + if previous { width } else { 0 };
                for slot in std::iter::once(first_slot).chain(slots) {
                    let sum = &mut sums[offset + slot];
                    match sum.checked_add(n) {
                        Some(s) => *sum = s,
                        None => {
                            failed = Some(listingstats_core::Error::invalid(format!(
                                "the sum of {} overflows a 64-bit integer",
                                listingstats_core::error::quote(&plan.terms()[slot])
                            )));
                            return;
                        }
                    }
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            if !is_hash || fields == 0 {
                if !self.skip_unreadable {
                    self.examined += 1;
                }
                continue;
            }
            self.examined += 1;
            for &(group, base) in &groups {
                self.agg
                    .merge_group(group, Some(listing), &sums[base..base + sums_width])?;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        Ok(r.next == r.cells.len())
    }
}
