//! Configuration in the server: `CONFIG SET/GET listingstats.<name>` and
//! module arguments, both validated by [`Settings::set`].
//!
//! Commands read an immutable snapshot (`current()`), so a `CONFIG SET`
//! never changes the rules in the middle of a command, and background work
//! can hold a snapshot without locks.

use std::sync::{Arc, LazyLock, RwLock};

use redis_module::configuration::{
    register_i64_configuration, register_string_configuration, ConfigurationContext,
    ConfigurationFlags,
};
use redis_module::{ConfigurationValue, Context, RedisError, RedisString};

use crate::redis::context::load_configs;
use crate::redis::events::{self, ServerEvent};
use crate::redis::loop_watch;

use listingstats_core::keys::KeyFormat;
use listingstats_core::settings::{Name, Settings};
use listingstats_core::{Error, Result};

static SETTINGS: LazyLock<RwLock<Arc<Settings>>> =
    LazyLock::new(|| RwLock::new(Arc::new(Settings::default())));

/// The settings in force now.
pub fn current() -> Arc<Settings> {
    match SETTINGS.read() {
        Ok(guard) => Arc::clone(&guard),
        Err(poisoned) => Arc::clone(&poisoned.into_inner()),
    }
}

/// Applies a change to a copy and publishes it only when it succeeds.
fn update(change: impl FnOnce(&mut Settings) -> Result<()>) -> Result<()> {
    let mut guard = SETTINGS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut next = Settings::clone(&guard);
    change(&mut next)?;
    *guard = Arc::new(next);
    Ok(())
}

/// Redis wraps a config error as "ERR CONFIG SET failed ... - <text>", so
/// it gets the message without our own error code.
fn config_error(err: Error) -> RedisError {
    let text = err.to_string();
    RedisError::String(text.strip_prefix("ERR ").unwrap_or(&text).to_string())
}

/// The handle Redis calls back for one setting.
pub struct Setting(Name);

static HANDLES: [Setting; 16] = [
    Setting(Name::KeyPrefix),
    Setting(Name::KeyFormat),
    Setting(Name::Timezone),
    Setting(Name::DedupWindow),
    Setting(Name::MaxBatch),
    Setting(Name::MaxQueryCells),
    Setting(Name::MaxJsonRows),
    Setting(Name::StarSource),
    Setting(Name::RetentionDays),
    Setting(Name::Cache),
    Setting(Name::ClusterTimeout),
    Setting(Name::WatchEventLoop),
    Setting(Name::MaxQueryMemory),
    Setting(Name::AnswerCacheMemory),
    Setting(Name::Hours),
    Setting(Name::HourRetentionDays),
];

impl ConfigurationValue<RedisString> for Setting {
    fn get(&self, _: &ConfigurationContext) -> RedisString {
        RedisString::create(None, current().get(self.0).as_str())
    }

    fn set(
        &self,
        _: &ConfigurationContext,
        value: RedisString,
    ) -> std::result::Result<(), RedisError> {
        let text = value
            .try_as_str()
            .map_err(|_| RedisError::Str("value must be ASCII"))?;
        let before = current().keys.clone();
        update(|s| s.set(self.0, text)).map_err(config_error)?;
        if current().keys != before {
            // The index follows with the server's config event.
            crate::redis::events::watch_prefix(current().keys.prefix.as_bytes());
        }
        Ok(())
    }
}

impl ConfigurationValue<i64> for Setting {
    fn get(&self, _: &ConfigurationContext) -> i64 {
        current().get_int(self.0)
    }

    fn set(&self, _: &ConfigurationContext, value: i64) -> std::result::Result<(), RedisError> {
        update(|s| s.set(self.0, &value.to_string())).map_err(config_error)
    }
}

/// Registers every setting with Redis, loads values from the config file,
/// then applies the module arguments, which win. Errors make the module
/// refuse to load. (The server has the 7.0 config API: `lib.rs` checked.)
pub fn init(ctx: &Context, args: &[RedisString]) -> std::result::Result<(), String> {
    if crate::redis::cluster::enabled() {
        // On a cluster keys are tagged by listing from the start; another
        // format, given or set later, is refused (`Settings::set`).
        update(|s| {
            s.cluster = true;
            s.keys.format = KeyFormat::Tagged;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    }
    {
        let defaults = current();
        for handle in &HANDLES {
            let name = handle.0.as_str();
            let flags = if matches!(handle.0, Name::MaxQueryMemory | Name::AnswerCacheMemory) {
                // `CONFIG SET listingstats.max-query-memory 512mb`.
                ConfigurationFlags::MEMORY
            } else {
                ConfigurationFlags::DEFAULT
            };
            match handle.0.bounds() {
                Some(b) => register_i64_configuration(
                    ctx,
                    name,
                    handle,
                    defaults.get_int(handle.0),
                    b.min,
                    b.max,
                    flags,
                    None,
                ),
                None => register_string_configuration(
                    ctx,
                    name,
                    handle,
                    &defaults.get(handle.0),
                    flags,
                    None,
                ),
            }
        }
        if !load_configs(ctx) {
            return Err("could not load listingstats.* settings from the config file".into());
        }
    }

    let words: Vec<String> = args.iter().map(|a| a.to_string_lossy()).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    update(|s| s.apply_module_args(&words)).map_err(|e| e.to_string())?;
    crate::redis::events::watch_prefix(current().keys.prefix.as_bytes());
    loop_watch::watch(ctx, current().watch_event_loop);
    events::on_server_events(ctx, on_server_event);
    Ok(())
}

/// Settings whose change needs a context (the set callback has none)
/// follow the server's config event.
fn on_server_event(ctx: &Context, e: &ServerEvent<'_>) {
    if let ServerEvent::ConfigChanged(names) = e {
        if names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(b"listingstats.watch-event-loop"))
        {
            loop_watch::watch(ctx, current().watch_event_loop);
        }
    }
}
