//! A `*` job's cells: copied out of the index in steps ([`Planning`]), then
//! put in output order in steps ([`Ordering`]) where rows follow them.

use std::time::Instant;

use chrono::NaiveDate;
use redis_module::Context;

use super::read::{CacheRead, Reading};
use super::{Finish, Job, State, RESERVE_MAX};
use crate::budget::QUERY_PLAN_STEP;
use crate::index_upkeep;
use crate::redis::context::now_ms;
use crate::redis::reader::Reader;
use crate::stats;
use listingstats_core::day_index::{Planned, Planner};
use listingstats_core::query::{CellOrdering, Cells, GroupBy};
use listingstats_core::{Error, Result};

/// A `*` job copying its cells out of the index. While it does, the index
/// is pinned (no listing number freed or renumbered); dropping it (the
/// job done, failed, or its client gone) unpins it.
pub(super) struct Planning {
    planner: Planner,
    cache: Option<CacheRead>,
}

impl Planning {
    /// `totals`: whole days may come from their totals (see
    /// `Planner::with_totals`), read with `cache`'s columns; `rows`: each
    /// listing's known rows are summed as they are planned (see
    /// `Planner::with_rows`).
    pub(super) fn new(
        db: i32,
        start: NaiveDate,
        end: NaiveDate,
        cache: Option<CacheRead>,
        totals: bool,
        rows: bool,
    ) -> Planning {
        let mut planner = Planner::new(db, start, end);
        if let Some(cache) = &cache {
            if totals {
                planner = planner.with_totals(cache.version(), now_ms());
            }
            if rows {
                let columns = cache.term_columns().to_vec();
                planner = planner.with_rows(cache.version(), now_ms(), columns);
            }
        }
        Planning { planner, cache }
    }
}

impl Drop for Planning {
    fn drop(&mut self) {
        index_upkeep::release(&mut self.planner);
    }
}

/// A `*` job's cells being put in output order.
pub(super) struct Ordering {
    ordering: CellOrdering,
    reading: Reading,
}

impl Ordering {
    /// Orders until `deadline` (`None`: to the end); `true` when the cells
    /// are in order.
    pub(super) fn step(&mut self, deadline: Option<Instant>) -> bool {
        let reading = &mut self.reading;
        let Cells::List(cells) = &mut reading.cells else {
            return true; // A grid is in order already.
        };
        loop {
            if self.ordering.step(&reading.names, cells, QUERY_PLAN_STEP) {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
        }
    }

    pub(super) fn into_reading(self) -> Reading {
        self.reading
    }
}

/// Whether reading the cells in output order pays: rows per day hash or
/// per listing come out in the order they were read, with no sort at the
/// end. DATE and TOTAL have a few groups, and TOP ranks without ordering,
/// so their cells are read as they come: sorting 600,000 listing ids of a
/// big day would hold the server for a second.
fn rows_follow_cells(group: GroupBy, finish: &Finish) -> bool {
    !matches!(finish, Finish::Top { .. }) && matches!(group, GroupBy::Day | GroupBy::Listing)
}

impl Job {
    /// Takes a `*` job's cells from the index, [`QUERY_PLAN_STEP`] at a
    /// time until `deadline` (`None`: to the end): the next state once all
    /// are taken, `None` while there are more, or while the index is being
    /// rebuilt (the job waits for it). Keys the caller may not read do not
    /// exist for a `*` query, in its limits and its errors too.
    pub(super) fn plan_from_index(
        &mut self,
        ctx: &Context,
        reader: &Reader<'_>,
        planning: &mut Planning,
        deadline: Option<Instant>,
    ) -> Result<Option<State>> {
        let max = usize::try_from(self.settings.max_query_cells).unwrap_or(0);
        loop {
            match index_upkeep::plan_step(ctx, &mut planning.planner, QUERY_PLAN_STEP) {
                None => return Ok(None),
                Some(Planned::Done) => break,
                Some(Planned::More) => {
                    if planning.planner.planned() > max && reader.reads_everything() {
                        return Err(Error::invalid(format!(
                            "query matches more than max-query-cells {max} day hashes"
                        )));
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(None);
                    }
                }
            }
        }
        // Whole days from their totals: one group per day (or the total).
        let day_totals = std::mem::take(&mut planning.planner.day_totals);
        if let Some(cache) = planning.cache.as_ref().filter(|_| !day_totals.is_empty()) {
            let mut sums = vec![0i64; self.plan.width()];
            for (day, totals, hashes) in &day_totals {
                // As many day hashes as reading them would have examined.
                self.examined += *hashes as u64;
                for ((sum, &column), name) in sums
                    .iter_mut()
                    .zip(cache.term_columns())
                    .zip(self.plan.terms())
                {
                    *sum = i64::try_from(totals[column]).map_err(|_| {
                        Error::invalid(format!(
                            "the sum of {} overflows a 64-bit integer",
                            listingstats_core::error::quote(name)
                        ))
                    })?;
                }
                self.count(*day, None, &sums)?;
            }
            stats::TOTALS_DAYS.add(day_totals.len() as u64);
        }
        let names = std::mem::take(&mut planning.planner.names);
        let mut cells = std::mem::take(&mut planning.planner.cells);
        // Day hashes whose known rows were summed as they were planned
        // (their listings' sums): only for a caller who may read them all.
        let summed_cells = planning.planner.summed_cells;
        if cells.len() + summed_cells > max {
            // Over the limit only if the caller may read that many: keep
            // the readable cells (the usual case, an unrestricted user,
            // never pays for these checks).
            let scheme = &self.settings.keys;
            cells.retain(|&(day, at)| reader.may_read(&scheme.day_key(day, &names[at as usize])));
            if cells.len() + summed_cells > max {
                return Err(Error::invalid(format!(
                    "query matches {} day hashes, more than max-query-cells {max}",
                    cells.len() + summed_cells
                )));
            }
        }
        self.agg.reserve(cells.len().min(RESERVE_MAX), names.len());
        if summed_cells > 0 {
            let summed = std::mem::take(&mut planning.planner.summed);
            let sums = std::mem::take(&mut planning.planner.row_sums);
            let k = self.plan.width();
            for (at, _) in summed.iter().enumerate().filter(|(_, &n)| n > 0) {
                let values = &sums[at * k..(at + 1) * k];
                self.count(self.start, Some((at as u32, &names[at])), values)?;
            }
            self.examined += summed_cells as u64;
            stats::CACHE_HITS.add(summed_cells as u64);
        }
        let mut cache = planning.cache.take();
        if let Some(cache) = cache.as_mut() {
            let p = &mut planning.planner;
            cache.know_ids(std::mem::take(&mut p.ids), p.id_epoch);
        }
        let reading = Reading::new(names, Cells::List(cells), cache, self.plan.width());
        Ok(Some(if rows_follow_cells(self.group, &self.finish) {
            State::Ordering(Ordering {
                ordering: CellOrdering::new(reading.names.len(), reading.cells.len()),
                reading,
            })
        } else {
            State::Reading(reading)
        }))
    }
}
