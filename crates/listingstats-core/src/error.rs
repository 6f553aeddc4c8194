//! The one error type of the module.
//!
//! Its `Display` text is exactly what the client receives: it always starts
//! with an error code (`ERR` or `WRONGTYPE`), so the command layer can hand it
//! to Redis unchanged.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Anything the caller got wrong: syntax, values, limits. Text after `ERR `.
    Invalid(String),
    /// A key exists but is not a hash.
    WrongType,
    /// Redis Cluster routing: the whole text, with its own code (`MOVED`,
    /// `TRYAGAIN`, `CLUSTERDOWN`), as the server words its own redirections.
    Cluster(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub fn wrong_arity(command: &str) -> Self {
        Error::Invalid(format!(
            "wrong number of arguments for '{}' command",
            command.to_ascii_lowercase()
        ))
    }

    pub fn syntax(detail: impl fmt::Display) -> Self {
        Error::Invalid(format!("syntax error, {detail}"))
    }
}

impl Error {
    /// The reply text: the Display text with anything but printable ASCII
    /// escaped (`\u{e9}`), so the reply is one clean line whatever input
    /// (or a library's message quoting it) went into the text.
    pub fn reply_text(&self) -> String {
        self.to_string()
            .chars()
            .flat_map(|c| {
                let plain = c.is_ascii() && !c.is_ascii_control();
                let escaped: Vec<char> = if plain {
                    vec![c]
                } else {
                    c.escape_unicode().collect()
                };
                escaped
            })
            .collect()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(msg) => write!(f, "ERR {msg}"),
            Error::WrongType => {
                f.write_str("WRONGTYPE Operation against a key holding the wrong kind of value")
            }
            Error::Cluster(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// User bytes as they appear inside an error: quoted, non-ASCII and
/// control bytes escaped (`\xff`), long input cut. Error replies must stay
/// one printable line, whatever the client sent.
pub fn quote(text: &[u8]) -> String {
    const MAX_SHOWN: usize = 80;
    let cut = &text[..text.len().min(MAX_SHOWN)];
    let more = if text.len() > MAX_SHOWN { "..." } else { "" };
    format!("'{}{more}'", cut.escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_replies_printable() {
        assert_eq!(quote(b"2155"), "'2155'");
        assert_eq!(quote(b"a\xff\r\nb"), "'a\\xff\\r\\nb'");
        assert_eq!(quote(&[b'x'; 100]), format!("'{}...'", "x".repeat(80)));
    }

    #[test]
    fn reply_text_is_printable_ascii() {
        assert_eq!(
            Error::invalid("bad \u{e9}\n").reply_text(),
            "ERR bad \\u{e9}\\u{a}"
        );
    }

    #[test]
    fn every_error_text_starts_with_a_code() {
        assert_eq!(Error::invalid("bad").to_string(), "ERR bad");
        assert!(Error::WrongType.to_string().starts_with("WRONGTYPE "));
        assert_eq!(
            Error::wrong_arity("LISTINGSTATS.INCR").to_string(),
            "ERR wrong number of arguments for 'listingstats.incr' command"
        );
    }
}
