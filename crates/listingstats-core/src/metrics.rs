//! Named ratio metrics: `numerator / denominator * scale` over summed
//! counters.
//!
//! Definitions live in an ordinary hash, `<prefix>listingstats:metrics`
//! (field = metric name, value = a small JSON object), so they persist and
//! replicate like any data. The two built-ins exist unless the hash
//! overrides them; deleting an override brings the built-in back.

use super::error::{quote, Error, Result};
use super::keys::check_event;

pub const MAX_NAME_LEN: usize = 64;
pub const DEFAULT_SCALE: f64 = 100.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub numerator: Vec<u8>,
    pub denominator: Vec<u8>,
    pub scale: f64,
}

/// The metrics every deployment has, as the Lua script defined them.
pub fn builtins() -> [Metric; 2] {
    [
        Metric {
            name: "ldp_add_to_cart_ctr".into(),
            numerator: b"ldp:sellPanel:addToCart:click".to_vec(),
            denominator: b"ldp:sellPanel:addToCart:impression".to_vec(),
            scale: DEFAULT_SCALE,
        },
        Metric {
            name: "cart_to_checkout_ctr".into(),
            numerator: b"cart::checkoutNow:click".to_vec(),
            denominator: b"cart::checkoutNow:impression".to_vec(),
            scale: DEFAULT_SCALE,
        },
    ]
}

pub fn is_builtin(name: &str) -> bool {
    builtins().iter().any(|m| m.name == name)
}

pub fn check_name(name: &[u8]) -> Result<&str> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    match std::str::from_utf8(name) {
        Ok(text) if ok => Ok(text),
        _ => Err(Error::invalid(format!(
            "invalid metric name {}: use 1-{MAX_NAME_LEN} characters of a-z 0-9 _",
            quote(name)
        ))),
    }
}

/// A finite number, as SCALE takes it.
/// The largest SCALE magnitude. A ratio's numerator is at most 2^63, so
/// every value stays finite (|value| <= 9.3e33): no `inf`, no JSON `null`.
pub const MAX_SCALE: f64 = 1e15;

/// Whether `scale` is usable: non-zero and at most [`MAX_SCALE`] in size.
pub fn valid_scale(scale: f64) -> bool {
    scale.is_finite() && scale != 0.0 && scale.abs() <= MAX_SCALE
}

pub fn parse_scale(text: &[u8]) -> Result<f64> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|s| valid_scale(*s))
        .ok_or_else(|| {
            Error::invalid(format!(
                "SCALE must be a non-zero finite number of magnitude at most 1e15, got {}",
                quote(text)
            ))
        })
}

/// The largest compiled size of a pattern (the regex crate's own limit is
/// 10 MB): enough for any reasonable alternation of event names.
const MAX_PATTERN_BYTES: usize = 1 << 16;

/// The inside of a pattern term `/.../`; `None` for an event name.
pub fn pattern_of(term: &[u8]) -> Option<&[u8]> {
    (term.len() >= 3 && term.starts_with(b"/") && term.ends_with(b"/"))
        .then(|| &term[1..term.len() - 1])
}

/// Compiles a pattern's inside, matched against the whole event name
/// (implicitly anchored). The regex crate matches in time linear in the
/// name, and the compiled size is bounded, so no pattern can hang the
/// server.
pub fn compile_pattern(inner: &[u8]) -> Result<regex::bytes::Regex> {
    let text = std::str::from_utf8(inner).map_err(|_| Error::invalid("a pattern must be ASCII"))?;
    regex::bytes::RegexBuilder::new(&format!("^(?:{text})$"))
        .size_limit(MAX_PATTERN_BYTES)
        .dfa_size_limit(MAX_PATTERN_BYTES)
        .build()
        .map_err(|e| {
            let last = e
                .to_string()
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string();
            Error::invalid(format!("invalid pattern {}: {last}", quote(inner)))
        })
}

/// A numerator or denominator: an event name, or a pattern `/.../`.
pub fn check_term(term: &[u8]) -> Result<()> {
    check_event(term)?;
    if let Some(inner) = pattern_of(term) {
        compile_pattern(inner)?;
    }
    Ok(())
}

/// `LISTINGSTATS.METRIC.SET name numerator-event denominator-event [SCALE s]`
pub fn parse_set(args: &[&[u8]]) -> Result<Metric> {
    let (name, numerator, denominator, rest) = match args {
        [n, a, b, rest @ ..] => (n, a, b, rest),
        _ => return Err(Error::wrong_arity("LISTINGSTATS.METRIC.SET")),
    };
    let name = check_name(name)?.to_string();
    check_term(numerator)?;
    check_term(denominator)?;
    let scale = match rest {
        [] => DEFAULT_SCALE,
        [opt, value] if opt.eq_ignore_ascii_case(b"SCALE") => parse_scale(value)?,
        [opt, ..] if !opt.eq_ignore_ascii_case(b"SCALE") => {
            return Err(Error::syntax(format!("unknown option {}", quote(opt))))
        }
        [_] => return Err(Error::syntax("option SCALE needs a value")),
        _ => return Err(Error::syntax("SCALE given more than once")),
    };
    Ok(Metric {
        name,
        numerator: numerator.to_vec(),
        denominator: denominator.to_vec(),
        scale,
    })
}

impl Metric {
    /// The value stored in the metrics hash.
    pub fn to_stored(&self) -> String {
        serde_json::json!({
            "numerator": String::from_utf8_lossy(&self.numerator),
            "denominator": String::from_utf8_lossy(&self.denominator),
            "scale": self.scale,
        })
        .to_string()
    }

    /// Reads a stored definition; `None` when the stored text is not one
    /// (written by hand, say), so a broken entry never breaks other metrics.
    pub fn from_stored(name: &str, text: &[u8]) -> Option<Metric> {
        let v: serde_json::Value = serde_json::from_slice(text).ok()?;
        let field = |k: &str| v.get(k)?.as_str().map(|s| s.as_bytes().to_vec());
        let (numerator, denominator) = (field("numerator")?, field("denominator")?);
        check_term(&numerator).ok()?;
        check_term(&denominator).ok()?;
        let scale = v
            .get("scale")
            .map_or(Some(DEFAULT_SCALE), serde_json::Value::as_f64)?;
        valid_scale(scale).then(|| Metric {
            name: name.to_string(),
            numerator,
            denominator,
            scale,
        })
    }
}

/// The registry as the metrics hash defines it: built-ins, overridden or
/// extended by stored entries (invalid entries are ignored), sorted by name.
pub fn registry(stored: &[(Vec<u8>, Vec<u8>)]) -> Vec<Metric> {
    let mut all: Vec<Metric> = builtins().into();
    for (name, value) in stored {
        let Ok(name) = check_name(name) else { continue };
        let Some(metric) = Metric::from_stored(name, value) else {
            continue;
        };
        match all.iter_mut().find(|m| m.name == metric.name) {
            Some(slot) => *slot = metric,
            None => all.push(metric),
        }
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

/// Looks up the metrics a query names, in the order asked.
pub fn resolve(registry: &[Metric], names: &[&str]) -> Result<Vec<Metric>> {
    names
        .iter()
        .map(|name| {
            registry.iter().find(|m| m.name == *name).cloned().ok_or_else(|| {
                Error::invalid(format!(
                    "unknown metric '{name}': see LISTINGSTATS.METRIC.LIST, or define it with LISTINGSTATS.METRIC.SET"
                ))
            })
        })
        .collect()
}

/// The sums a `/pattern/` term reads from one day hash: `out[i]` is the sum
/// of the fields `patterns[i]` matches (a field may count for several).
/// Fed one field at a time, in any order; the first error (a value that is
/// not an integer, a sum that overflows) stops it.
pub struct PatternSums<'a> {
    key: &'a [u8],
    patterns: &'a [regex::bytes::Regex],
    out: &'a mut [i64],
    error: Option<Error>,
}

impl<'a> PatternSums<'a> {
    pub fn new(
        key: &'a [u8],
        patterns: &'a [regex::bytes::Regex],
        out: &'a mut [i64],
    ) -> PatternSums<'a> {
        out.fill(0);
        PatternSums {
            key,
            patterns,
            out,
            error: None,
        }
    }

    /// Adds one field; `value` gives its integer, or its text when it is
    /// not one, and is called only when a pattern matches.
    pub fn add(&mut self, field: &[u8], value: impl FnOnce() -> std::result::Result<i64, Vec<u8>>) {
        if self.error.is_some() {
            return;
        }
        let mut value = Some(value);
        let mut parsed: Option<i64> = None;
        for (re, sum) in self.patterns.iter().zip(self.out.iter_mut()) {
            if !re.is_match(field) {
                continue;
            }
            let v = match (parsed, value.take()) {
                (Some(v), _) => v,
                (None, Some(read)) => match read() {
                    Ok(v) => {
                        parsed = Some(v);
                        v
                    }
                    Err(text) => {
                        self.error = Some(crate::number::counter_error(self.key, field, &text));
                        return;
                    }
                },
                (None, None) => return,
            };
            match sum.checked_add(v) {
                Some(total) => *sum = total,
                None => {
                    self.error = Some(Error::invalid(format!(
                        "the sum of the fields matching /{}/ in {} overflows a 64-bit integer",
                        re.as_str()
                            .trim_start_matches("^(?:")
                            .trim_end_matches(")$"),
                        quote(self.key)
                    )));
                    return;
                }
            }
        }
    }

    /// The sums are in `out`, or the first error.
    pub fn finish(self) -> Result<()> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<&'static [u8]> {
        words
            .iter()
            .map(|w| &*Box::leak(w.as_bytes().to_vec().into_boxed_slice()))
            .collect()
    }

    #[test]
    fn builtins_are_the_lua_scripts_metrics() {
        let reg = registry(&[]);
        let names: Vec<_> = reg.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["cart_to_checkout_ctr", "ldp_add_to_cart_ctr"]);
        assert!(is_builtin("ldp_add_to_cart_ctr"));
    }

    #[test]
    fn stored_entries_override_and_extend() {
        let custom = parse_set(&args(&[
            "view_rate",
            "a:b:c:click",
            "a:b:c:impression",
            "SCALE",
            "1",
        ]))
        .unwrap();
        let over = parse_set(&args(&["cart_to_checkout_ctr", "x", "y"])).unwrap();
        let stored = vec![
            (b"view_rate".to_vec(), custom.to_stored().into_bytes()),
            (
                b"cart_to_checkout_ctr".to_vec(),
                over.to_stored().into_bytes(),
            ),
            (b"broken".to_vec(), b"not json".to_vec()),
            (b"Bad Name".to_vec(), custom.to_stored().into_bytes()),
        ];
        let reg = registry(&stored);
        assert_eq!(reg.len(), 3);
        let found = resolve(&reg, &["view_rate", "cart_to_checkout_ctr"]).unwrap();
        assert_eq!(found[0], custom);
        assert_eq!(found[0].scale, 1.0);
        assert_eq!(found[1].numerator, b"x");
        assert!(resolve(&reg, &["broken"])
            .unwrap_err()
            .to_string()
            .starts_with("ERR unknown metric 'broken'"));
    }

    #[test]
    fn set_arguments_are_checked() {
        let err = |w: &[&str]| parse_set(&args(w)).unwrap_err().to_string();
        assert!(err(&["m", "a"]).contains("wrong number of arguments"));
        assert!(err(&["Bad", "a", "b"]).starts_with("ERR invalid metric name 'Bad'"));
        assert!(err(&[&"m".repeat(65), "a", "b"]).starts_with("ERR invalid metric name"));
        assert!(err(&["m", "a b", "b"]).starts_with("ERR invalid event name"));
        assert!(err(&["m", "a", "b", "SCALE"]).contains("SCALE needs a value"));
        assert!(err(&["m", "a", "b", "SCALE", "inf"])
            .starts_with("ERR SCALE must be a non-zero finite number"));
        assert!(err(&["m", "a", "b", "SCALE", "0"]).starts_with("ERR SCALE must be"));
        // Too large to keep every value finite; the bound itself is fine.
        assert!(err(&["m", "a", "b", "SCALE", "1.7e308"]).starts_with("ERR SCALE must be"));
        assert!(err(&["m", "a", "b", "SCALE", "-1e16"]).starts_with("ERR SCALE must be"));
        assert_eq!(
            parse_set(&[b"m", b"a", b"b", b"SCALE", b"1e15"])
                .map(|m| m.scale)
                .ok(),
            Some(1e15)
        );
        let worst = i64::MAX as f64 / 1.0 * MAX_SCALE;
        assert!(worst.is_finite());
        // A stored entry written by another tool with such a scale is ignored.
        let stored = [(
            b"big".to_vec(),
            br#"{"numerator":"a","denominator":"b","scale":1.7e308}"#.to_vec(),
        )];
        assert!(registry(&stored).iter().all(|m| m.name != "big"));
        assert!(err(&["m", "a", "b", "COLOR", "1"]).contains("unknown option 'COLOR'"));
        assert!(err(&["m", "a", "b", "SCALE", "1", "SCALE", "2"]).contains("more than once"));
        assert_eq!(
            parse_set(&args(&["m", "a", "b", "scale", "0.5"]))
                .unwrap()
                .scale,
            0.5
        );
    }

    #[test]
    fn pattern_terms_compile_anchored_and_bounded() {
        assert_eq!(pattern_of(b"/ldp:.*:click/"), Some(&b"ldp:.*:click"[..]));
        assert_eq!(pattern_of(b"ldp:::click"), None);
        assert_eq!(pattern_of(b"//"), None);
        let re = compile_pattern(b"ldp:.*:click").unwrap();
        assert!(re.is_match(b"ldp:sellPanel:addToCart:click"));
        assert!(
            !re.is_match(b"ldp:sellPanel:addToCart:click:x"),
            "anchored at the end"
        );
        assert!(!re.is_match(b"x:ldp::click"), "anchored at the start");
        assert!(compile_pattern(b"a|b").unwrap().is_match(b"b"));
        let e = compile_pattern(b"ldp:(").unwrap_err().to_string();
        assert!(e.starts_with("ERR invalid pattern 'ldp:('"), "{e}");
        // A pattern whose compiled form exceeds the bound is refused.
        let e = compile_pattern(b"\\w{1000}\\w{1000}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid pattern"), "{e}");
        let m = parse_set(&[b"p", b"/ldp:.*:click/", b"/ldp:.*:impression/"]).unwrap();
        assert_eq!(m.numerator, b"/ldp:.*:click/");
        assert!(parse_set(&[b"p", b"/(/", b"x"]).is_err());
        let stored = [(
            b"bad".to_vec(),
            br#"{"numerator":"/(/","denominator":"b"}"#.to_vec(),
        )];
        assert!(registry(&stored).iter().all(|m| m.name != "bad"));
    }

    #[test]
    fn pattern_sums_add_every_matching_field_once_per_pattern() {
        let patterns = [
            compile_pattern(b"ldp:.*").unwrap(),
            compile_pattern(b".*:click").unwrap(),
        ];
        let mut out = [7, 7];
        let mut sums = PatternSums::new(b"k", &patterns, &mut out);
        sums.add(b"ldp:click", || Ok(2));
        sums.add(b"ldp:view", || Ok(5));
        sums.add(b"cart:click", || Ok(1));
        sums.add(b"other", || Err(b"not read".to_vec()));
        sums.finish().unwrap();
        assert_eq!(out, [7, 3]);
        let mut out = [0, 0];
        let mut sums = PatternSums::new(b"k", &patterns, &mut out);
        sums.add(b"ldp:x", || Err(b"abc".to_vec()));
        assert!(sums
            .finish()
            .unwrap_err()
            .to_string()
            .contains("not an integer"));
        let mut out = [0, 0];
        let mut sums = PatternSums::new(b"k", &patterns, &mut out);
        sums.add(b"ldp:a", || Ok(i64::MAX));
        sums.add(b"ldp:b", || Ok(1));
        assert!(sums.finish().unwrap_err().to_string().contains("overflows"));
    }
}
