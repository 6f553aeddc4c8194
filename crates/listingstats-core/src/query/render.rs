//! The LEGACY and JSON renderings of rows, a row at a time.

use super::aggregate::RowView;
use super::fields::FieldPlan;
use super::span::HourLabels;

use crate::keys::KeyScheme;

/// [`push_legacy_line`] as a string (tests).
#[cfg(test)]
pub fn legacy_line(row: &RowView<'_>, plan: &FieldPlan, scheme: &KeyScheme) -> Option<String> {
    let mut out = Vec::new();
    push_legacy_line(&mut out, row, plan, scheme)
        .then(|| String::from_utf8_lossy(&out).into_owned())
}

/// Appends the Lua script's line for a row, `metric=>key : 33.33%`, to a
/// reused buffer (no allocation per row); `false` (nothing written) for a
/// row with a zero denominator (the script left those out). GROUPBY DAY
/// rows.
pub fn push_legacy_line(
    out: &mut Vec<u8>,
    row: &RowView<'_>,
    plan: &FieldPlan,
    scheme: &KeyScheme,
) -> bool {
    use std::io::Write;
    let (Some(value), Some(date), Some(listing)) = (row.value, row.date, row.listing) else {
        return false;
    };
    out.extend_from_slice(plan.metrics[row.metric].name.as_bytes());
    out.extend_from_slice(b"=>");
    let start = out.len();
    scheme.push_day_key(out, date, listing);
    if std::str::from_utf8(&out[start..]).is_err() {
        // The key as text, as the script showed it.
        let text = String::from_utf8_lossy(&out[start..]).into_owned();
        out.truncate(start);
        out.extend_from_slice(text.as_bytes());
    }
    let _ = write!(out, " : {value:.2}%");
    true
}

/// [`push_json_row`] as a string (tests).
#[cfg(test)]
pub fn json_row(row: &RowView<'_>, plan: &FieldPlan) -> String {
    let mut out = Vec::new();
    push_json_row(
        &mut out,
        row,
        plan,
        &mut HourLabels::new(chrono_tz::Tz::UTC),
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends one row of the JSON form to a reused buffer; `date`/`listing`
/// are `"*"` where grouped away, as in the RESP form (`date` is the hour,
/// ISO 8601 in `tz`, for GROUPBY HOUR); `value` is null when undefined;
/// with COMPARE, `previous` and `change`. Serialised straight from the
/// row, with no JSON tree built per row.
pub fn push_json_row(
    out: &mut Vec<u8>,
    row: &RowView<'_>,
    plan: &FieldPlan,
    hours: &mut HourLabels,
) {
    #[derive(serde::Serialize)]
    struct JsonPrevious {
        numerator: i64,
        denominator: i64,
        value: Option<f64>,
    }
    #[derive(serde::Serialize)]
    struct JsonRow<'a> {
        metric: &'a str,
        date: &'a str,
        listing: std::borrow::Cow<'a, str>,
        numerator: i64,
        denominator: i64,
        value: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        previous: Option<JsonPrevious>,
        #[serde(skip_serializing_if = "Option::is_none")]
        change: Option<Option<f64>>,
    }
    let mut day = Vec::with_capacity(25);
    if let Some(d) = row.date {
        crate::date::push_day(&mut day, d);
    } else if let Some(h) = row.hour {
        day.extend_from_slice(hours.get(h).as_bytes());
    }
    let json = JsonRow {
        metric: &plan.metrics[row.metric].name,
        date: if row.date.is_some() || row.hour.is_some() {
            std::str::from_utf8(&day).unwrap_or("*")
        } else {
            "*"
        },
        listing: row
            .listing
            .map_or(std::borrow::Cow::Borrowed("*"), String::from_utf8_lossy),
        numerator: row.numerator,
        denominator: row.denominator,
        value: row.value,
        previous: row.previous.map(|p| JsonPrevious {
            numerator: p.numerator,
            denominator: p.denominator,
            value: p.value,
        }),
        change: row.previous.map(|p| p.change),
    };
    // Writing to a Vec cannot fail; the fields are all serialisable.
    let _ = serde_json::to_writer(out, &json);
}

pub const JSON_HEAD: &str = "{\"rows\":[";

/// Closes the document [`JSON_HEAD`] and the rows opened.
pub fn json_tail(keys_examined: u64) -> String {
    format!("],\"keys_examined\":{keys_examined}}}")
}
