//! Configuration values, their defaults, limits and validation.
//!
//! The same rules apply to module arguments at load time and to
//! `CONFIG SET listingstats.<name>`: the shell feeds both through
//! [`Settings::set`], so a value refused at one door is refused at the other.

use chrono_tz::Tz;

use super::date::parse_timezone;
use super::error::{Error, Result};
use super::keys::{KeyFormat, KeyScheme};

pub const MAX_PREFIX_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    KeyPrefix,
    KeyFormat,
    Timezone,
    DedupWindow,
    MaxBatch,
    MaxQueryCells,
    MaxJsonRows,
    StarSource,
    RetentionDays,
    Cache,
    ClusterTimeout,
    WatchEventLoop,
    MaxQueryMemory,
    AnswerCacheMemory,
    Hours,
    HourRetentionDays,
}

/// Where a `*` query finds its listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StarSource {
    /// The per-day index kept from keyspace notifications: time in
    /// proportion to the answer; run in slices that never stall the server.
    Index,
    /// A scan of the whole keyspace in one go: the simple path, kept as a
    /// reference and a fallback.
    Scan,
}

/// A numeric setting's bounds, as Redis enforces them for `CONFIG SET` and
/// we enforce them for module arguments.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub min: i64,
    pub max: i64,
}

impl Name {
    pub const ALL: [Name; 16] = [
        Name::KeyPrefix,
        Name::KeyFormat,
        Name::Timezone,
        Name::DedupWindow,
        Name::MaxBatch,
        Name::MaxQueryCells,
        Name::MaxJsonRows,
        Name::StarSource,
        Name::RetentionDays,
        Name::Cache,
        Name::ClusterTimeout,
        Name::WatchEventLoop,
        Name::MaxQueryMemory,
        Name::AnswerCacheMemory,
        Name::Hours,
        Name::HourRetentionDays,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Name::KeyPrefix => "key-prefix",
            Name::KeyFormat => "key-format",
            Name::Timezone => "timezone",
            Name::DedupWindow => "dedup-window",
            Name::MaxBatch => "max-batch",
            Name::MaxQueryCells => "max-query-cells",
            Name::MaxJsonRows => "max-json-rows",
            Name::StarSource => "star-source",
            Name::RetentionDays => "retention-days",
            Name::Cache => "cache",
            Name::ClusterTimeout => "cluster-timeout",
            Name::WatchEventLoop => "watch-event-loop",
            Name::MaxQueryMemory => "max-query-memory",
            Name::AnswerCacheMemory => "answer-cache-memory",
            Name::Hours => "hours",
            Name::HourRetentionDays => "hour-retention-days",
        }
    }

    pub fn parse(text: &str) -> Option<Name> {
        Name::ALL
            .into_iter()
            .find(|n| n.as_str().eq_ignore_ascii_case(text))
    }

    /// `Some` for numeric settings.
    pub fn bounds(self) -> Option<Bounds> {
        match self {
            // Ten years is far beyond any stream's redelivery horizon.
            Name::DedupWindow => Some(Bounds {
                min: 0,
                max: 315_360_000,
            }),
            Name::MaxBatch => Some(Bounds {
                min: 1,
                max: 1_000_000,
            }),
            Name::MaxQueryCells => Some(Bounds {
                min: 1,
                max: 1_000_000_000,
            }),
            // 0: no limit.
            Name::MaxJsonRows => Some(Bounds {
                min: 0,
                max: 1_000_000_000,
            }),
            // A hundred years; 0 keeps day hashes forever.
            Name::RetentionDays => Some(Bounds {
                min: 0,
                max: 36_500,
            }),
            // Milliseconds; ten minutes at most.
            Name::ClusterTimeout => Some(Bounds {
                min: 10,
                max: 600_000,
            }),
            // Bytes (`256mb` and the like accepted): 1 MiB to 1 TiB.
            Name::MaxQueryMemory => Some(Bounds {
                min: 1 << 20,
                max: 1 << 40,
            }),
            // Days an hour key is kept after its (UTC) day ends; 0 keeps it.
            Name::HourRetentionDays => Some(Bounds {
                min: 0,
                max: 36_500,
            }),
            // Bytes; 0 keeps no answer (identical calls still share the
            // computations under way).
            Name::AnswerCacheMemory => Some(Bounds {
                min: 0,
                max: 1 << 40,
            }),
            Name::KeyPrefix
            | Name::KeyFormat
            | Name::Timezone
            | Name::StarSource
            | Name::Cache
            | Name::WatchEventLoop
            | Name::Hours => None,
        }
    }
}

/// A number of bytes as Redis writes them in its configuration: digits,
/// optionally followed by `k`/`m`/`g` (powers of 1000) or `kb`/`mb`/`gb`
/// (powers of 1024), in any case.
pub fn parse_memory(text: &str) -> Option<i64> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: i64 = match &lower[digits.len()..] {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    digits.parse::<i64>().ok()?.checked_mul(unit)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub keys: KeyScheme,
    pub timezone: Tz,
    /// Seconds an event id is remembered; 0 turns dedup off.
    pub dedup_window: i64,
    pub max_batch: i64,
    pub max_query_cells: i64,
    /// Rows a `FORMAT JSON` answer may hold (0: any). The answer is one
    /// bulk string, which the server copies into the reply in one step.
    pub max_json_rows: i64,
    pub star_source: StarSource,
    /// Days a day hash is kept after its day ends; 0 keeps it forever.
    pub retention_days: i64,
    /// Running on Redis Cluster: keys are `tagged`, the module's own keys
    /// are kept per slot (see `cluster`). Set once at load, never by CONFIG.
    pub cluster: bool,
    /// Whether the per-day index keeps the counters metrics read (the
    /// query cache, see `day_index`).
    pub cache: bool,
    /// Milliseconds a node waits for every master's part of a cluster-wide
    /// QUERY or TOP before it fails the command, naming the node.
    pub cluster_timeout: i64,
    /// Whether the module measures every pass of the server's event loop
    /// (INFO `longest_loop_pass_usec`): two callbacks per pass, so off by
    /// default.
    pub watch_event_loop: bool,
    /// Bytes all queries running in slices may hold together (their cells,
    /// sums and the reply built so far); a query that would pass it waits
    /// its turn, and one that alone would is refused.
    pub max_query_memory: i64,
    /// Bytes of recent answers kept for identical calls (`MAXAGE`).
    pub answer_cache_memory: i64,
    /// Whether events are also counted in their hour (hour keys beside
    /// the day hashes, see `keys`).
    pub hours: bool,
    /// Days an hour key is kept after its UTC day ends; 0 keeps it.
    pub hour_retention_days: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            keys: KeyScheme::default(),
            timezone: Tz::UTC,
            dedup_window: 604_800,
            max_batch: 10_000,
            max_query_cells: 1_000_000,
            max_json_rows: 25_000,
            star_source: StarSource::Index,
            retention_days: 0,
            cluster: false,
            cache: true,
            cluster_timeout: 5_000,
            watch_event_loop: false,
            max_query_memory: 256 << 20,
            answer_cache_memory: 64 << 20,
            hours: false,
            hour_retention_days: 30,
        }
    }
}

impl Settings {
    /// The value as `CONFIG GET` shows it.
    pub fn get(&self, name: Name) -> String {
        match name {
            Name::KeyPrefix => self.keys.prefix.clone(),
            Name::KeyFormat => self.keys.format.name().to_string(),
            Name::Timezone => self.timezone.name().to_string(),
            Name::DedupWindow => self.dedup_window.to_string(),
            Name::MaxBatch => self.max_batch.to_string(),
            Name::MaxQueryCells => self.max_query_cells.to_string(),
            Name::MaxJsonRows => self.max_json_rows.to_string(),
            Name::RetentionDays => self.retention_days.to_string(),
            Name::ClusterTimeout => self.cluster_timeout.to_string(),
            Name::MaxQueryMemory => self.max_query_memory.to_string(),
            Name::AnswerCacheMemory => self.answer_cache_memory.to_string(),
            Name::HourRetentionDays => self.hour_retention_days.to_string(),
            Name::Hours => yes_no(self.hours),
            Name::StarSource => match self.star_source {
                StarSource::Index => "index".into(),
                StarSource::Scan => "scan".into(),
            },
            Name::Cache => yes_no(self.cache),
            Name::WatchEventLoop => yes_no(self.watch_event_loop),
        }
    }

    pub fn get_int(&self, name: Name) -> i64 {
        match name {
            Name::DedupWindow => self.dedup_window,
            Name::MaxBatch => self.max_batch,
            Name::MaxQueryCells => self.max_query_cells,
            Name::MaxJsonRows => self.max_json_rows,
            Name::RetentionDays => self.retention_days,
            Name::ClusterTimeout => self.cluster_timeout,
            Name::MaxQueryMemory => self.max_query_memory,
            Name::AnswerCacheMemory => self.answer_cache_memory,
            Name::HourRetentionDays => self.hour_retention_days,
            Name::KeyPrefix
            | Name::KeyFormat
            | Name::Timezone
            | Name::StarSource
            | Name::Cache
            | Name::WatchEventLoop
            | Name::Hours => 0,
        }
    }

    /// Sets one value from its text, or explains why not (and changes nothing).
    pub fn set(&mut self, name: Name, value: &str) -> Result<()> {
        if let Some(bounds) = name.bounds() {
            let memory = matches!(name, Name::MaxQueryMemory | Name::AnswerCacheMemory);
            let n = if memory {
                parse_memory(value)
            } else {
                value.parse::<i64>().ok()
            };
            let n = n.ok_or_else(|| {
                Error::invalid(format!(
                    "{} must be an integer{}, got '{value}'",
                    name.as_str(),
                    if memory {
                        " of bytes (or with a unit: 512mb, 2gb)"
                    } else {
                        ""
                    }
                ))
            })?;
            return self.set_int(name, n, bounds);
        }
        match name {
            Name::KeyPrefix => {
                if value.len() > MAX_PREFIX_LEN || !value.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(Error::invalid(format!(
                        "key-prefix must be at most {MAX_PREFIX_LEN} printable ASCII characters without spaces"
                    )));
                }
                if self.cluster && value.bytes().any(|b| b == b'{' || b == b'}') {
                    return Err(Error::invalid(
                        "key-prefix cannot hold '{' or '}' on Redis Cluster: keys are hash-tagged by listing",
                    ));
                }
                self.keys.prefix = value.to_string();
            }
            Name::KeyFormat => {
                let format = KeyFormat::parse(value)?;
                if self.cluster && format != KeyFormat::Tagged {
                    return Err(Error::invalid(
                        "key-format must be tagged on Redis Cluster, so every day of a listing is in the listing's slot",
                    ));
                }
                self.keys.format = format;
            }
            Name::Timezone => self.timezone = parse_timezone(value)?,
            Name::StarSource => {
                self.star_source = match value.to_ascii_lowercase().as_str() {
                    "index" => StarSource::Index,
                    "scan" => StarSource::Scan,
                    _ => {
                        return Err(Error::invalid(format!(
                            "star-source must be index or scan, got '{value}'"
                        )))
                    }
                }
            }
            Name::Cache => self.cache = parse_yes_no(name, value)?,
            Name::WatchEventLoop => self.watch_event_loop = parse_yes_no(name, value)?,
            Name::Hours => self.hours = parse_yes_no(name, value)?,
            Name::DedupWindow
            | Name::MaxBatch
            | Name::MaxQueryCells
            | Name::MaxJsonRows
            | Name::RetentionDays
            | Name::ClusterTimeout
            | Name::MaxQueryMemory
            | Name::AnswerCacheMemory
            | Name::HourRetentionDays => {}
        }
        Ok(())
    }

    fn set_int(&mut self, name: Name, n: i64, bounds: Bounds) -> Result<()> {
        if !(bounds.min..=bounds.max).contains(&n) {
            return Err(Error::invalid(format!(
                "{} must be between {} and {}, got {n}",
                name.as_str(),
                bounds.min,
                bounds.max
            )));
        }
        match name {
            Name::DedupWindow => self.dedup_window = n,
            Name::MaxBatch => self.max_batch = n,
            Name::MaxQueryCells => self.max_query_cells = n,
            Name::MaxJsonRows => self.max_json_rows = n,
            Name::RetentionDays => self.retention_days = n,
            Name::ClusterTimeout => self.cluster_timeout = n,
            Name::MaxQueryMemory => self.max_query_memory = n,
            Name::AnswerCacheMemory => self.answer_cache_memory = n,
            Name::HourRetentionDays => self.hour_retention_days = n,
            Name::KeyPrefix
            | Name::KeyFormat
            | Name::Timezone
            | Name::StarSource
            | Name::Cache
            | Name::WatchEventLoop
            | Name::Hours => {}
        }
        Ok(())
    }

    /// Applies `name value` pairs given to `MODULE LOAD` / `loadmodule`.
    /// All or nothing: on error `self` is unchanged.
    pub fn apply_module_args(&mut self, args: &[&str]) -> Result<()> {
        if !args.len().is_multiple_of(2) {
            return Err(Error::invalid(format!(
                "module arguments come in 'name value' pairs, got {} words",
                args.len()
            )));
        }
        let mut next = self.clone();
        let mut seen = Vec::new();
        for pair in args.chunks(2) {
            let name = Name::parse(pair[0]).ok_or_else(|| {
                let known: Vec<_> = Name::ALL.iter().map(|n| n.as_str()).collect();
                Error::invalid(format!(
                    "unknown module argument '{}': known are {}",
                    pair[0],
                    known.join(", ")
                ))
            })?;
            if seen.contains(&name) {
                return Err(Error::invalid(format!(
                    "module argument '{}' given twice",
                    name.as_str()
                )));
            }
            seen.push(name);
            next.set(name, pair[1])?;
        }
        *self = next;
        Ok(())
    }
}

fn yes_no(on: bool) -> String {
    if on { "yes" } else { "no" }.into()
}

fn parse_yes_no(name: Name, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(Error::invalid(format!(
            "{} must be yes or no, got '{value}'",
            name.as_str()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let s = Settings::default();
        let shown: Vec<_> = Name::ALL.iter().map(|n| (n.as_str(), s.get(*n))).collect();
        assert_eq!(
            shown,
            [
                ("key-prefix", "".to_string()),
                ("key-format", "date_listing".into()),
                ("timezone", "UTC".into()),
                ("dedup-window", "604800".into()),
                ("max-batch", "10000".into()),
                ("max-query-cells", "1000000".into()),
                ("max-json-rows", "25000".into()),
                ("star-source", "index".into()),
                ("retention-days", "0".into()),
                ("cache", "yes".into()),
                ("cluster-timeout", "5000".into()),
                ("watch-event-loop", "no".into()),
                ("max-query-memory", "268435456".into()),
                ("answer-cache-memory", "67108864".into()),
                ("hours", "no".into()),
                ("hour-retention-days", "30".into()),
            ]
        );
    }

    #[test]
    fn memory_takes_redis_units() {
        assert_eq!(parse_memory("512mb"), Some(512 << 20));
        assert_eq!(parse_memory("2GB"), Some(2 << 30));
        assert_eq!(parse_memory("3m"), Some(3_000_000));
        assert_eq!(parse_memory("1048576"), Some(1 << 20));
        assert_eq!(parse_memory("12tb"), None);
        assert_eq!(parse_memory("mb"), None);
        let mut s = Settings::default();
        s.set(Name::MaxQueryMemory, "64mb").unwrap();
        assert_eq!(s.max_query_memory, 64 << 20);
        let e = s.set(Name::MaxQueryMemory, "1kb").unwrap_err().to_string();
        assert!(
            e.contains("max-query-memory must be between 1048576"),
            "{e}"
        );
        let e = s.set(Name::MaxQueryMemory, "lots").unwrap_err().to_string();
        assert!(e.contains("(or with a unit: 512mb, 2gb)"), "{e}");
    }

    #[test]
    fn module_args_apply_all_or_nothing() {
        let mut s = Settings::default();
        s.apply_module_args(&[
            "key-prefix",
            "ls:",
            "TIMEZONE",
            "Europe/London",
            "dedup-window",
            "0",
        ])
        .unwrap();
        assert_eq!(s.keys.prefix, "ls:");
        assert_eq!(s.timezone.name(), "Europe/London");
        assert_eq!(s.dedup_window, 0);

        let before = s.clone();
        for bad in [
            &["key-prefix", "x:", "timezone", "Nowhere/Land"][..],
            &["timezone"],
            &["colour", "blue"],
            &["max-batch", "0"],
            &["max-batch", "ten"],
            &["key-format", "flat"],
            &["key-prefix", "a b"],
            &["key-prefix", "a", "key-prefix", "b"],
        ] {
            let err = s.apply_module_args(bad).unwrap_err();
            assert!(err.to_string().starts_with("ERR "), "{err}");
            assert_eq!(s, before, "{bad:?} changed the settings");
        }
    }

    #[test]
    fn errors_name_the_setting() {
        let mut s = Settings::default();
        let err = s.set(Name::MaxQueryCells, "-5").unwrap_err().to_string();
        assert_eq!(
            err,
            "ERR max-query-cells must be between 1 and 1000000000, got -5"
        );
        let err = s.set(Name::DedupWindow, "1.5").unwrap_err().to_string();
        assert_eq!(err, "ERR dedup-window must be an integer, got '1.5'");
    }
}
