//! `LISTINGSTATS.INCR listing event [BY n] [DATE yyyy-mm-dd | AT unix-seconds] [ID event-id]`
//! — argument parsing and the choice of day.

use chrono::NaiveDate;
use chrono_tz::Tz;

use super::cluster::key_slot;
use super::date::{check_retained, day_of, parse_day_arg};
use super::dedup::{marker, Marker};
use super::error::{Error, Result};
use super::keys::{check_event, check_event_id, check_listing};
use super::number::parse_i64_arg;
use super::settings::Settings;
use super::token::token;
use super::write::{apply, CounterStore, Increment};

/// Which day an increment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Date(NaiveDate),
    At(i64),
    Now,
}

impl When {
    /// The absolute hour (see `hours`), when the time is known: AT, or now.
    pub fn hour(self, now: i64) -> Option<i64> {
        match self {
            When::Date(_) => None,
            When::At(secs) => Some(crate::hours::epoch_hour(secs)),
            When::Now => Some(crate::hours::epoch_hour(now)),
        }
    }

    /// The calendar day in `tz`; `now` is the server clock in unix seconds.
    pub fn day(self, tz: Tz, now: i64) -> Result<NaiveDate> {
        match self {
            When::Date(day) => Ok(day),
            When::At(secs) => day_of(secs, tz),
            When::Now => day_of(now, tz),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncrArgs<'a> {
    pub listing: &'a [u8],
    pub event: &'a [u8],
    pub by: i64,
    pub when: When,
    pub id: Option<&'a [u8]>,
}

const COMMAND: &str = "LISTINGSTATS.INCR";

/// Parses the arguments after the command name.
pub fn parse<'a>(args: &[&'a [u8]]) -> Result<IncrArgs<'a>> {
    let [listing, event, options @ ..] = args else {
        return Err(Error::wrong_arity(COMMAND));
    };
    check_listing(listing)?;
    check_event(event)?;

    let mut by = None;
    let mut when = None;
    let mut id = None;
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        // Compared in place: parsing runs on every INCR, so no allocation
        // unless there is an error to describe.
        let is = |name: &str| option.eq_ignore_ascii_case(name.as_bytes());
        let shown = || option.to_ascii_uppercase().escape_ascii().to_string();
        let value = rest
            .next()
            .ok_or_else(|| Error::syntax(format!("option {} needs a value", shown())))?;
        let (slot_taken, what) = if is("BY") {
            (by.replace(parse_i64_arg("BY", value)?).is_some(), "BY")
        } else if is("DATE") {
            (
                when.replace(When::Date(parse_day_arg("DATE", value)?))
                    .is_some(),
                "DATE or AT",
            )
        } else if is("AT") {
            (
                when.replace(When::At(parse_i64_arg("AT", value)?))
                    .is_some(),
                "DATE or AT",
            )
        } else if is("ID") {
            check_event_id(value)?;
            (id.replace(*value).is_some(), "ID")
        } else {
            return Err(Error::syntax(format!("unknown option '{}'", shown())));
        };
        if slot_taken {
            return Err(Error::syntax(format!("{what} given more than once")));
        }
    }
    Ok(IncrArgs {
        listing,
        event,
        by: by.unwrap_or(1),
        when: when.unwrap_or(When::Now),
        id,
    })
}

/// What one INCR will do, with every key computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncrPlan {
    pub increment: Increment,
    /// With `hours yes`: the same count in its hour (not for DATE, whose
    /// hour is unknown).
    pub hour: Option<Increment>,
    /// Where the event id is remembered, when ID was given and dedup is on.
    pub marker: Option<Marker>,
}

/// Resolves the day and key names. `now_ms` is the server clock.
pub fn plan(args: &IncrArgs<'_>, settings: &Settings, now_ms: i64) -> Result<IncrPlan> {
    let day = args.when.day(settings.timezone, now_ms.div_euclid(1000))?;
    let expire_at = check_retained(day, settings.timezone, settings.retention_days, now_ms)?;
    let dedup_on = settings.dedup_window > 0;
    let hour = args.when.hour(now_ms.div_euclid(1000)).and_then(|h| {
        crate::hours::increment(settings, args.listing, args.event, h, args.by, now_ms)
    });
    Ok(IncrPlan {
        increment: Increment {
            key: settings.keys.day_key_token(day, args.listing),
            field: token(args.event),
            delta: args.by,
            expire_at,
        },
        hour,
        marker: args.id.filter(|_| dedup_on).map(|id| {
            // On a cluster the id is remembered in the listing's slot.
            let slot = settings.cluster.then(|| key_slot(args.listing));
            marker(&settings.keys, settings.dedup_window, now_ms, id, slot)
        }),
    })
}

/// The counter after the call, and whether the id was a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncrOutcome {
    pub value: i64,
    pub duplicate: bool,
}

/// Runs a plan: a remembered id leaves the counter as it is.
pub fn run<S: CounterStore>(store: &mut S, plan: &IncrPlan) -> Result<IncrOutcome> {
    let inc = &plan.increment;
    if let Some(marker) = &plan.marker {
        if store.is_remembered(marker)? {
            let value = store.counter(&inc.key, &inc.field)?.unwrap_or(0);
            return Ok(IncrOutcome {
                value,
                duplicate: true,
            });
        }
    }
    let markers: &[Marker] = plan.marker.as_slice();
    let values = match &plan.hour {
        Some(hour) => apply(store, &[inc.clone(), hour.clone()], markers)?,
        None => apply(store, std::slice::from_ref(inc), markers)?,
    };
    Ok(IncrOutcome {
        value: values[0],
        duplicate: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::date::parse_day;

    fn p(args: &[&str]) -> Result<IncrArgs<'static>> {
        let owned: Vec<&'static [u8]> = args
            .iter()
            .map(|a| &*Box::leak(a.as_bytes().to_vec().into_boxed_slice()))
            .collect();
        parse(&owned)
    }

    fn err(args: &[&str]) -> String {
        p(args).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let a = p(&["2155", "cart::checkoutNow:click"]).unwrap();
        assert_eq!(a.by, 1);
        assert_eq!(a.when, When::Now);
        assert_eq!(a.id, None);
    }

    #[test]
    fn options_in_any_order_and_case() {
        let a = p(&["2155", "ev", "id", "e-1", "date", "2015-12-22", "By", "-3"]).unwrap();
        assert_eq!(a.by, -3);
        assert_eq!(a.when, When::Date(parse_day(b"2015-12-22").unwrap()));
        assert_eq!(a.id, Some(&b"e-1"[..]));
        let b = p(&["2155", "ev", "AT", "1449855906"]).unwrap();
        assert_eq!(b.when, When::At(1449855906));
    }

    #[test]
    fn each_bad_input_has_its_error() {
        assert_eq!(
            err(&["2155"]),
            "ERR wrong number of arguments for 'listingstats.incr' command"
        );
        assert!(err(&["bad id", "ev"]).starts_with("ERR invalid listing id"));
        assert!(err(&["2155", "bad event"]).starts_with("ERR invalid event name"));
        assert_eq!(
            err(&["1", "e", "BY"]),
            "ERR syntax error, option BY needs a value"
        );
        assert_eq!(
            err(&["1", "e", "BY", "1.5"]),
            "ERR BY must be a 64-bit integer, got '1.5'"
        );
        assert_eq!(
            err(&["1", "e", "BY", "99999999999999999999"]),
            "ERR BY must be a 64-bit integer, got '99999999999999999999'"
        );
        assert_eq!(
            err(&["1", "e", "DATE", "2015-13-40"]),
            "ERR DATE must be a date as YYYY-MM-DD, got '2015-13-40'"
        );
        assert!(err(&["1", "e", "AT", "soon"]).starts_with("ERR AT must be a 64-bit integer"));
        assert!(err(&["1", "e", "ID", "a b"]).starts_with("ERR invalid event id"));
        assert_eq!(
            err(&["1", "e", "COLOR", "red"]),
            "ERR syntax error, unknown option 'COLOR'"
        );
        assert_eq!(
            err(&["1", "e", "BY", "1", "by", "2"]),
            "ERR syntax error, BY given more than once"
        );
        assert_eq!(
            err(&["1", "e", "DATE", "2015-01-01", "AT", "0"]),
            "ERR syntax error, DATE or AT given more than once"
        );
        assert_eq!(
            err(&["1", "e", "ID", "a", "ID", "b"]),
            "ERR syntax error, ID given more than once"
        );
    }

    #[test]
    fn plans_keys_in_the_configured_scheme() {
        let mut settings = Settings::default();
        settings
            .apply_module_args(&["key-prefix", "ls:", "key-format", "tagged"])
            .unwrap();
        let args = p(&["2155", "ev", "ID", "e-1", "AT", "1449855906"]).unwrap();
        let plan = plan(&args, &settings, 1_000).unwrap();
        assert_eq!(&plan.increment.key[..], b"ls:2015-12-11_{2155}");
        let m = plan.marker.unwrap();
        assert!(m.current.starts_with(b"ls:listingstats:seen:0:"));
        assert_eq!(
            (m.id.as_slice(), m.generation, &*m.registry),
            (&b"e-1"[..], 0, &b"ls:listingstats:seen:generations"[..])
        );

        settings.dedup_window = 0;
        assert_eq!(super::plan(&args, &settings, 0).unwrap().marker, None);
    }

    #[test]
    fn a_remembered_id_counts_once() {
        use crate::write::memory::MemoryStore;
        let mut store = MemoryStore::default();
        let settings = Settings::default();
        let args = p(&["2155", "ev", "BY", "5", "DATE", "2015-12-22", "ID", "e-1"]).unwrap();
        let plan = plan(&args, &settings, 0).unwrap();
        assert_eq!(
            run(&mut store, &plan).unwrap(),
            IncrOutcome {
                value: 5,
                duplicate: false
            }
        );
        assert_eq!(
            run(&mut store, &plan).unwrap(),
            IncrOutcome {
                value: 5,
                duplicate: true
            }
        );
        assert_eq!(store.writes, 1);
    }

    #[test]
    fn day_choice() {
        let london: Tz = "Europe/London".parse().unwrap();
        let day = parse_day(b"2015-12-11").unwrap();
        assert_eq!(When::Date(day).day(london, 0).unwrap(), day);
        assert_eq!(When::At(1449855906).day(Tz::UTC, 0).unwrap(), day);
        assert_eq!(When::Now.day(Tz::UTC, 1449855906).unwrap(), day);
        assert!(When::At(i64::MIN).day(Tz::UTC, 0).is_err());
    }
}
