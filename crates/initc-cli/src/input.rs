//! Reading a model: model.toml (traced), text IR, or protobuf IR — chosen by extension.

use std::path::Path;

use codespan_reporting::diagnostic::{Diagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor::{ColorChoice, StandardStream}};
use initc_ir::Module;

/// A user-facing failure: rendered once by `main`, exit code 1 (2 for usage errors from clap).
pub enum CliError {
    /// A diagnostic over a source file (span + message + hint).
    Source { path: String, source: String, span: std::ops::Range<usize>, message: String, hint: Option<String> },
    Plain(String),
}

impl CliError {
    pub fn render(&self) {
        match self {
            CliError::Plain(msg) => {
                let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("error: {msg}\n").as_bytes());
            }
            CliError::Source { path, source, span, message, hint } => {
                let file = SimpleFile::new(path, source);
                let mut d = Diagnostic::error().with_message(message).with_labels(vec![Label::primary((), span.clone())]);
                if let Some(h) = hint {
                    d = d.with_notes(vec![format!("hint: {h}")]);
                }
                let choice = if std::env::var_os("NO_COLOR").is_some() { ColorChoice::Never } else { ColorChoice::Auto };
                let w = StandardStream::stderr(choice);
                let _ = term::emit(&mut w.lock(), &term::Config::default(), &file, &d);
            }
        }
    }
}

impl From<String> for CliError {
    fn from(s: String) -> CliError {
        CliError::Plain(s)
    }
}

/// Byte offset of a 1-based line/column in `src`.
fn offset(src: &str, line: usize, col: usize) -> usize {
    let start: usize = src.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    let line_text = src[start..].split('\n').next().unwrap_or("");
    start + line_text.char_indices().nth(col.saturating_sub(1)).map_or(line_text.len(), |(i, _)| i)
}

/// Loads a model from `path`: `.toml` is traced, `.pb` is protobuf IR, anything else text IR.
pub fn load(path: &Path) -> Result<Module, CliError> {
    let shown = path.display().to_string();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "pb" {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        return initc_proto::decode(&bytes).map_err(|e| CliError::Plain(format!("{shown}: {e}")));
    }
    let source = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if ext == "toml" {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        return initc_frontend::trace_toml(&shown, &source, stem).map(|t| t.module).map_err(|e| CliError::Source {
            path: e.path.clone(),
            span: e.span.clone(),
            message: e.message(),
            hint: e.hint.clone(),
            source: e.source,
        });
    }
    initc_ir::parse(&source).map_err(|e| {
        let at = offset(&source, e.line, e.col);
        let end = (at + 1).min(source.len()).max(at);
        CliError::Source { path: shown, message: e.kind.to_string(), span: at..end, hint: None, source }
    })
}

/// Writes `bytes` to `path` atomically (temp file in the same directory, then rename), or to
/// stdout when `path` is `None`.
pub fn write_output(path: Option<&Path>, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    let Some(path) = path else {
        return std::io::stdout().write_all(bytes).map_err(|e| CliError::Plain(format!("writing to stdout: {e}")));
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| CliError::Plain(format!("cannot write {}: {e}", path.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}
