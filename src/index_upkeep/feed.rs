//! The index feed: what keyspace and server events, and the module's own
//! counter writes, do to the index and its cache.

use chrono::NaiveDate;
use redis_module::Context;

use super::rebuild::start_rebuild;
use super::{data_changed, invalidate, metrics_changed_soon, warm, with_state};
use crate::config;
use crate::redis::events;
use crate::redis::events::{class, KeyEvent, ServerEvent, Written};
use crate::redis::reader::Reader;
use listingstats_core::day_index::Index;

/// What one notification does to the index (and its cache). `true` when
/// the key may have a new expiry, which the caller reads (outside the
/// state: opening a key can expire it, which notifies).
fn apply(index: &mut Index, e: &KeyEvent<'_>, day: NaiveDate, listing: &[u8]) -> bool {
    // By event name, not class: Valkey 9 sends a hash field's expiry
    // (`hexpired`) in the `expired` class, and the key stays.
    // `overwritten`: the key event of another value written over the name
    // (Redis 7.2+, Valkey); a hash that arrives in its place (RESTORE,
    // COPY ... REPLACE) sends its own event next and is added again.
    let removes = matches!(
        e.event,
        b"del" | b"rename_from" | b"move_from" | b"expired" | b"evicted" | b"overwritten"
    );
    let arrives = matches!(e.event, b"rename_to" | b"restore" | b"copy_to" | b"move_to");
    let hash_write = e.class & (class::HASH | class::EXPIRED | class::EVICTED) != 0;
    if removes {
        index.remove(e.db, day, listing);
        false
    } else if hash_write || arrives {
        // Indexed, or its cached row made unknown: a hash was written.
        index.add(e.db, day, listing);
        arrives
    } else if e.event == b"expire" {
        true
    } else {
        // `persist`, or another type written over the name (SET,
        // SORT ... STORE, SUNIONSTORE, ...): read it again.
        if e.event != b"persist" {
            index.forget(e.db, day, listing);
        }
        false
    }
}

pub(super) fn on_key_event(ctx: &Context, e: &KeyEvent<'_>) {
    // Only names that may be day hashes or the registry get here.
    data_changed();
    let Some(expiry_of) = with_state(|st| {
        let (scheme, index) = match (&st.built_for, &mut st.rebuild) {
            (Some(scheme), _) => (scheme, &mut st.index),
            (None, Some(rebuild)) => (&rebuild.scheme, &mut rebuild.partial),
            // Stale: the rebuild that follows finds the day hashes.
            (None, None) => return None,
        };
        let (day, listing) = scheme.parse_day_key(e.key)?;
        Some((apply(index, e, day, listing) && st.built_for.is_some()).then_some(day))
    }) else {
        // Not a day hash (or the index is stale). The registry is the
        // other name the gate lets through: when replication, a restore or
        // another client changed the metric definitions, the cache's
        // columns follow. Day hash writes, the hot path, never get here.
        if is_registry(e.key) {
            metrics_changed_soon(ctx);
        }
        return;
    };
    if e.class & (class::HASH | class::GENERIC) != 0 {
        // A day hash may exist from now on: another value written over it
        // must be seen (a no-op after the first time).
        events::watch_overwrites(ctx);
    }
    if let Some(day) = expiry_of {
        if let Some(at) = Reader::unchecked(ctx).expiry(e.key) {
            with_state(|st| st.index.expires(e.db, day, at));
        }
    }
}

/// Whether `key` is the metric registry hash (or, on a cluster, a copy).
fn is_registry(key: &[u8]) -> bool {
    let settings = config::current();
    key.strip_prefix(settings.keys.prefix.as_bytes())
        .is_some_and(|rest| rest.starts_with(b"listingstats:metrics"))
}

/// The module wrote counters of a day hash (its own handlers do not get
/// the notification): a new hash is indexed (its row unknown), a known
/// one's cached row takes the values.
pub(super) fn on_counters_written(
    ctx: &Context,
    db: i32,
    key: &[u8],
    fields: &Written<'_>,
    created: bool,
) {
    data_changed();
    let day_hash = with_state(|st| {
        let current = st.built_for.is_some();
        let (scheme, index) = match (&st.built_for, &mut st.rebuild) {
            (Some(scheme), _) => (scheme, &mut st.index),
            (None, Some(rebuild)) => (&rebuild.scheme, &mut rebuild.partial),
            (None, None) => return false,
        };
        let Some((day, listing)) = scheme.parse_day_key(key) else {
            return false;
        };
        if created && current {
            index.created(db, day, listing, fields);
        } else if created {
            index.add(db, day, listing);
        } else if current {
            index.written(db, day, listing, fields);
        }
        true
    });
    if created && day_hash {
        events::watch_overwrites(ctx);
    }
}

pub(super) fn on_server_event(ctx: &Context, e: &ServerEvent<'_>) {
    data_changed();
    match *e {
        ServerEvent::Flush(which) => with_state(|st| {
            st.index.clear(which);
            if let Some(rebuild) = &mut st.rebuild {
                rebuild.partial.clear(which);
            }
        }),
        ServerEvent::SwapDb(a, b) => {
            let restart = with_state(|st| {
                st.index.swap(a, b);
                // The scan was walking databases that just traded places.
                st.rebuild.take().map(|r| r.scheme)
            });
            if let Some(scheme) = restart {
                start_rebuild(ctx, scheme);
            }
        }
        ServerEvent::Loading { ended } => {
            // Loading replaces the dataset: rebuild from what was loaded.
            invalidate();
            if ended {
                start_rebuild(ctx, config::current().keys.clone());
            }
        }
        ServerEvent::ConfigChanged(names) => {
            // Another key scheme: the index names other keys. Free it now;
            // the next query that needs it rebuilds it.
            let keys = config::current().keys.clone();
            if with_state(|st| st.built_for.as_ref().is_some_and(|b| *b != keys)) {
                invalidate();
            }
            if names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(b"listingstats.cache"))
            {
                if config::current().cache {
                    warm::start(ctx);
                } else {
                    // Off: the memory goes back now, not at the next query.
                    warm::stop();
                    with_state(|st| st.index.set_columns(false, &[]));
                }
            }
        }
        ServerEvent::BecameMaster => {}
    }
}
