//! model.toml's span-carrying errors. A [`SpanError`] is what the readers return (a byte span,
//! a kind, a hint); [`ConfigError`] is one with its file attached, whose `Display` prints
//! `file:line:col: message (hint: ...)` and whose span the CLI renders with a caret.

use std::fmt;
use std::ops::Range;

use crate::pattern::suggest;

/// What went wrong in a model.toml.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigErrorKind {
    /// TOML syntax, an unknown key, or a value of the wrong type (message from the TOML reader).
    Syntax { message: String },
    /// A key that does not belong where it is.
    UnknownKey { key: String, context: String },
    /// A value that is well-formed but not acceptable.
    Invalid { key: String, reason: String },
}

/// An error in a model.toml, located by byte span in `source`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub source: String,
    pub span: Range<usize>,
    pub kind: ConfigErrorKind,
    pub hint: Option<String>,
}

impl ConfigError {
    /// 1-based line and column of the start of the span.
    pub fn line_col(&self) -> (usize, usize) {
        let start = self.span.start.min(self.source.len());
        let before = &self.source[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    pub fn message(&self) -> String {
        match &self.kind {
            ConfigErrorKind::Syntax { message } => message.clone(),
            ConfigErrorKind::UnknownKey { key, context } => format!("unknown key `{key}` in {context}"),
            ConfigErrorKind::Invalid { key, reason } => format!("`{key}`: {reason}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, col) = self.line_col();
        write!(f, "{}:{line}:{col}: {}", self.path, self.message())?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// An error before its file context is attached.
#[derive(Debug, Clone)]
pub(crate) struct SpanError {
    pub span: Range<usize>,
    pub kind: ConfigErrorKind,
    pub hint: Option<String>,
}

impl SpanError {
    pub fn invalid(span: Range<usize>, key: &str, reason: impl Into<String>) -> SpanError {
        SpanError { span, kind: ConfigErrorKind::Invalid { key: key.into(), reason: reason.into() }, hint: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> SpanError {
        self.hint = Some(hint.into());
        self
    }
}

pub(crate) type Result<T, E = SpanError> = std::result::Result<T, E>;

/// A TOML reader's error as a [`SpanError`]: unknown keys get a suggestion, values of the
/// wrong type name their key.
pub(crate) fn syntax_error(e: &toml::de::Error, source: &str) -> SpanError {
    let message = e.message().trim_end().to_string();
    let span = e.span().unwrap_or(0..0);
    if let Some((field, rest)) = message.strip_prefix("unknown field `").and_then(|r| r.split_once('`')) {
        let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        let hint = match suggest(field, expected.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("expected one of {}", expected.join(", ")),
        };
        return SpanError { span, kind: ConfigErrorKind::UnknownKey { key: field.into(), context: "this table".into() }, hint: Some(hint) };
    }
    // A value of the wrong type: name the key written before it on the same line.
    let line_start = source[..span.start.min(source.len())].rfind('\n').map_or(0, |i| i + 1);
    let before = source.get(line_start..span.start).unwrap_or("");
    let key = before.trim_end().strip_suffix('=').map(str::trim).filter(|k| !k.is_empty() && !k.contains(['[', '{', ',']));
    let kind = match key {
        Some(k) => ConfigErrorKind::Invalid { key: k.to_string(), reason: message },
        None => ConfigErrorKind::Syntax { message },
    };
    SpanError { span, kind, hint: None }
}
