//! Ranking (TOP) and writing a job's reply: rows group by group, in slices
//! when long.

use std::time::Instant;

use chrono::NaiveDate;

use super::{Finish, Job, State};
use crate::budget::{RENDER_STEP, TOP_RANK_STEP};
use crate::redis::reply::Reply;
use crate::stats;
use listingstats_core::date::push_day;
use listingstats_core::query::span::HourLabels;
use listingstats_core::query::{
    json_tail, push_json_row, push_legacy_line, Format, GroupBy, Ranked, RowView, TopPicker,
    JSON_HEAD,
};
use listingstats_core::Result;

/// A job writing its reply: the groups in output order (TOP: its ranked
/// rows instead), how far it is, and the JSON text so far.
pub(super) struct Renderer {
    /// Groups in output order, made in the first step (QUERY).
    groups: Option<Vec<usize>>,
    /// TOP's rows, ranked.
    top_rows: Vec<Ranked>,
    /// Groups rendered so far, rows written so far.
    next_group: usize,
    rendered: usize,
    json: Vec<u8>,
}

impl Renderer {
    /// A QUERY's reply: its groups are ordered in the first step.
    pub(super) fn query() -> Renderer {
        Renderer {
            groups: None,
            top_rows: Vec::new(),
            next_group: 0,
            rendered: 0,
            json: Vec::new(),
        }
    }

    /// TOP's reply: its ranked rows.
    pub(super) fn top(rows: Vec<Ranked>) -> Renderer {
        Renderer {
            groups: Some(Vec::new()),
            top_rows: rows,
            ..Renderer::query()
        }
    }
}

impl Job {
    /// Reading is done: counts the keys examined, refuses an answer too
    /// big to send (nothing is written yet), and starts ranking (TOP) or
    /// rendering.
    pub(super) fn after_reading(&mut self) -> Result<State> {
        // Day hashes read: the hour keys next, when the periods have hours.
        if let Some(hours) = self.pending_hours.take() {
            return Ok(State::ReadingHours(hours));
        }
        stats::KEYS_EXAMINED.add(self.examined);
        match self.finish {
            Finish::Query(_) if self.part => Ok(State::Done),
            Finish::Query(Format::Json) => {
                check_json_rows(self.rows(), self.settings.max_json_rows)?;
                Ok(State::Rendering(Renderer::query()))
            }
            Finish::Query(_) => Ok(State::Rendering(Renderer::query())),
            Finish::Top {
                n,
                min_denominator,
                rank,
            } => {
                // TOP ranks a chunk of groups per check of the deadline,
                // and makes rows for its winners only: no order of every
                // group, no row per listing.
                debug_assert_eq!(self.group, GroupBy::Listing);
                let scale = self.plan.metrics[0].scale;
                Ok(State::Ranking(TopPicker::new(
                    n,
                    min_denominator,
                    rank,
                    scale,
                )))
            }
        }
    }

    /// Ranks TOP's groups until `deadline` (`None`: to the end); `true`
    /// once every group is ranked (`TopPicker::finish` gives the rows).
    pub(super) fn rank(&self, picker: &mut TopPicker, deadline: Option<Instant>) -> bool {
        while !picker.feed(&self.agg, &self.plan, TOP_RANK_STEP) {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
        }
        true
    }

    /// Writes the reply to `out` (a command's or a blocked client's), or
    /// as much of it as fits before `deadline`; `true` when it is
    /// complete. Rows are made group by group as they are written, and the
    /// array length is set at the end, so no step holds the server for
    /// long.
    pub(super) fn render(
        &self,
        r: &mut Renderer,
        out: &mut Reply,
        deadline: Option<Instant>,
    ) -> bool {
        if r.groups.is_none() {
            // The first step orders the groups and opens the reply;
            // sliced, rows start in the next.
            r.groups = Some(self.agg.order());
            match self.finish {
                Finish::Query(Format::Json) => {
                    // About 100 bytes a row: one allocation, not a doubling
                    // (and a copy of tens of megabytes) in one step.
                    r.json.reserve(self.rows() * 100);
                    r.json.extend_from_slice(JSON_HEAD.as_bytes());
                }
                _ => out.array_of_unknown_len(),
            }
            if deadline.is_some() {
                return false;
            }
        }
        let groups = r.groups.as_deref().unwrap_or_default();
        let mut out = RowWriter {
            out,
            resp3: self.resp3,
            day: Vec::with_capacity(10),
            text: String::with_capacity(24),
            hours: HourLabels::new(self.tz),
        };
        let (plan, scheme) = (&self.plan, &self.settings.keys);
        if let Finish::Top { .. } = self.finish {
            out.out.array(r.top_rows.len());
            for ranked in &r.top_rows {
                // [listing, numerator, denominator, value(, wilson bound)
                // (, previous numerator, denominator, value, change)]
                let row = ranked.row.view();
                let len = 4
                    + usize::from(ranked.bound.is_some())
                    + 4 * usize::from(row.previous.is_some());
                out.out.array(len);
                out.listing(ranked.row.listing.as_deref());
                out.counts_and_value(&row);
                if let Some(bound) = ranked.bound {
                    out.value(Some(bound));
                }
                out.previous(&row);
            }
            return true;
        }
        let (finish, json, rendered) = (&self.finish, &mut r.json, &mut r.rendered);
        let mut line = Vec::with_capacity(64);
        while r.next_group < groups.len() {
            self.agg
                .group_views(plan, groups[r.next_group], |row| match finish {
                    Finish::Query(Format::Resp) => {
                        // [metric, date (or hour), listing, numerator,
                        // denominator, value (, previous numerator,
                        // denominator, value, change)]
                        out.out.array(if row.previous.is_some() { 10 } else { 6 });
                        out.bulk(plan.metrics[row.metric].name.as_bytes());
                        out.time(&row);
                        out.listing(row.listing);
                        out.counts_and_value(&row);
                        out.previous(&row);
                        *rendered += 1;
                    }
                    Finish::Query(Format::Legacy) => {
                        line.clear();
                        if push_legacy_line(&mut line, &row, plan, scheme) {
                            out.bulk(&line);
                            *rendered += 1;
                        }
                    }
                    Finish::Query(Format::Json) => {
                        if *rendered > 0 {
                            json.push(b',');
                        }
                        push_json_row(json, &row, plan, &mut out.hours);
                        *rendered += 1;
                    }
                    Finish::Top { .. } => {}
                });
            r.next_group += 1;
            if r.next_group.is_multiple_of(RENDER_STEP)
                && deadline.is_some_and(|d| Instant::now() >= d)
            {
                return false;
            }
        }
        match self.finish {
            Finish::Query(Format::Json) => {
                r.json
                    .extend_from_slice(json_tail(self.examined).as_bytes());
                out.bulk(&r.json);
            }
            _ => out.out.set_array_len(r.rendered),
        }
        true
    }
}

/// A `FORMAT JSON` answer is one bulk string, which the module API copies
/// into the reply in one step (`bench bigday` measures the stall): past
/// `max-json-rows` (0: no limit) it is refused, once its rows are counted
/// and before any of it is built.
fn check_json_rows(rows: usize, max: i64) -> listingstats_core::Result<()> {
    match usize::try_from(max) {
        Ok(max) if max > 0 && rows > max => Err(listingstats_core::Error::invalid(format!(
            "the answer has {rows} rows, over max-json-rows {max}: FORMAT JSON is one string the \
             server copies in one step; use FORMAT RESP (sent row by row), a smaller range or \
             listing set, or raise listingstats.max-json-rows"
        ))),
        _ => Ok(()),
    }
}

/// Writes rows straight to the client: a reply of thousands of rows would
/// otherwise be built as a tree of values and strings first, only to be
/// copied and freed.
pub struct RowWriter<'a> {
    out: &'a mut Reply,
    resp3: bool,
    /// Reused buffers for a date and a number's text.
    day: Vec<u8>,
    text: String,
    /// Hours' labels, in the answer's zone.
    hours: HourLabels,
}

impl RowWriter<'_> {
    pub fn bulk(&mut self, bytes: &[u8]) {
        self.out.bulk(bytes);
    }

    pub fn date(&mut self, date: Option<NaiveDate>) {
        match date {
            Some(d) => {
                self.day.clear();
                push_day(&mut self.day, d);
                self.out.bulk(&self.day);
            }
            None => self.bulk(b"*"),
        }
    }

    /// The row's date, or its hour in the answer's zone (ISO 8601 with
    /// its offset), or `*`.
    pub fn time(&mut self, row: &RowView<'_>) {
        match row.hour {
            Some(h) => self.out.bulk(self.hours.get(h).as_bytes()),
            None => self.date(row.date),
        }
    }

    /// With COMPARE: the previous period's numerator, denominator, value,
    /// and the change (null when undefined).
    pub fn previous(&mut self, row: &RowView<'_>) {
        if let Some(p) = row.previous {
            self.out.int(p.numerator);
            self.out.int(p.denominator);
            self.value(p.value);
            self.value(p.change);
        }
    }

    pub fn listing(&mut self, listing: Option<&[u8]>) {
        self.bulk(listing.unwrap_or(b"*"));
    }

    /// numerator, denominator, value (a double, or null when undefined).
    /// RESP2 has no double type: Redis would send `%.17g` text; this sends
    /// the shortest text that reads back as the same double, which costs a
    /// tenth of the time.
    pub fn counts_and_value(&mut self, row: &RowView<'_>) {
        self.out.int(row.numerator);
        self.out.int(row.denominator);
        self.value(row.value);
    }

    /// A value: a double, or null when undefined.
    pub fn value(&mut self, value: Option<f64>) {
        use std::fmt::Write;
        match value {
            Some(v) if self.resp3 => self.out.double(v),
            Some(v) => {
                self.text.clear();
                let _ = write!(self.text, "{v}");
                self.out.bulk(self.text.as_bytes());
            }
            None => self.out.null(),
        }
    }
}
