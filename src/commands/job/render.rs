//! Writing a job's reply: rows group by group, in slices when long.

use std::time::Instant;

use chrono::NaiveDate;

use super::{Finish, Job};
use crate::redis::reply::Reply;
use crate::stats;
use listingstats_core::date::push_day;
use listingstats_core::query::{
    json_tail, push_json_row, push_legacy_line, Format, GroupBy, RowView, TopPicker, JSON_HEAD,
};

impl Job {
    /// Writes the reply to `ctx` (a command's or a thread-safe one), or as
    /// much of it as fits before `deadline`; `true` when it is complete.
    /// Rows are made group by group as they are written, and the array
    /// length is set at the end, so no step holds the server for long.
    pub(super) fn render(&mut self, out: &mut Reply, deadline: Option<Instant>) -> bool {
        if self.order.is_none() {
            if !self.counted {
                stats::KEYS_EXAMINED.add(self.examined);
                self.counted = true;
            }
            if let Finish::Query(Format::Json) = self.finish {
                let rows = self.agg.len() * self.plan.metrics.len();
                if let Err(e) = check_json_rows(rows, self.settings.max_json_rows) {
                    // Nothing is written yet: the reply is the error.
                    stats::ERRORS.add(1);
                    out.error(&e.reply_text());
                    return true;
                }
            }
            let order = if let Finish::Top {
                n,
                min_denominator,
                rank,
            } = self.finish
            {
                // TOP ranks a chunk of groups per check of the deadline,
                // and makes rows for its winners only: no order of every
                // group, no row per listing.
                debug_assert_eq!(self.group, GroupBy::Listing);
                let scale = self.plan.metrics[0].scale;
                let mut picker = self
                    .picker
                    .take()
                    .unwrap_or_else(|| TopPicker::new(n, min_denominator, rank, scale));
                while !picker.feed(&self.agg, &self.plan, 4096) {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        self.picker = Some(picker);
                        return false;
                    }
                }
                match picker.finish(&self.agg, &self.plan) {
                    Ok(rows) => self.top_rows = rows,
                    Err(e) => {
                        // Nothing is written yet: the reply is the error.
                        stats::ERRORS.add(1);
                        out.error(&e.reply_text());
                        return true;
                    }
                }
                Vec::new()
            } else {
                self.agg.order()
            };
            self.order = Some(order);
            match self.finish {
                Finish::Query(Format::Json) => {
                    // About 100 bytes a row: one allocation, not a doubling
                    // (and a copy of tens of megabytes) in one step.
                    self.json
                        .reserve(self.agg.len() * self.plan.metrics.len() * 100);
                    self.json.extend_from_slice(JSON_HEAD.as_bytes());
                }
                _ => out.array_of_unknown_len(),
            }
            if deadline.is_some() {
                return false;
            }
        }
        let mut out = RowWriter {
            out,
            resp3: self.resp3,
            day: Vec::with_capacity(10),
            text: String::with_capacity(24),
        };
        let (plan, scheme) = (&self.plan, &self.settings.keys);
        let groups = self.order.as_deref().unwrap_or_default();
        if let Finish::Top { .. } = self.finish {
            for ranked in &self.top_rows {
                // [listing, numerator, denominator, value(, wilson bound)]
                out.out.array(if ranked.bound.is_some() { 5 } else { 4 });
                out.listing(ranked.row.listing.as_deref());
                out.counts_and_value(&ranked.row.view());
                if let Some(bound) = ranked.bound {
                    out.value(Some(bound));
                }
            }
            self.rendered = self.top_rows.len();
            self.next_group = groups.len();
        }
        let (finish, json, rendered) = (&self.finish, &mut self.json, &mut self.rendered);
        let mut line = Vec::with_capacity(64);
        while self.next_group < groups.len() {
            self.agg
                .group_views(plan, groups[self.next_group], |row| match finish {
                    Finish::Query(Format::Resp) => {
                        // [metric, date, listing, numerator, denominator, value]
                        out.out.array(6);
                        out.bulk(plan.metrics[row.metric].name.as_bytes());
                        out.date(row.date);
                        out.listing(row.listing);
                        out.counts_and_value(&row);
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
                        push_json_row(json, &row, plan);
                        *rendered += 1;
                    }
                    Finish::Top { .. } => {}
                });
            self.next_group += 1;
            if self.next_group.is_multiple_of(128) && deadline.is_some_and(|d| Instant::now() >= d)
            {
                return false;
            }
        }
        match self.finish {
            Finish::Query(Format::Json) => {
                self.json
                    .extend_from_slice(json_tail(self.examined).as_bytes());
                out.bulk(&self.json);
            }
            _ => out.out.set_array_len(self.rendered),
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
