//! Reading a model: model.toml (traced), text IR, or protobuf IR — chosen by extension.

use std::path::Path;

use codespan_reporting::diagnostic::{Diagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{
    self,
    termcolor::{ColorChoice, StandardStream},
};
use initc_frontend::{ShardFailure, ShardSpec};
use initc_ir::{Mesh, Module, Uneven};
use initc_shard::Builtin;

/// A user-facing failure: rendered once by `main`, exit code 1 (2 for usage errors from clap).
pub enum CliError {
    /// A diagnostic over a source file (span + message + hint).
    Source {
        path: String,
        source: String,
        span: std::ops::Range<usize>,
        message: String,
        hint: Option<String>,
    },
    Plain(String),
    /// A message without a source span and, where the library gives one, its hint.
    Hinted {
        message: String,
        hint: Option<String>,
    },
}

impl CliError {
    /// A library error and its hint (e.g. `LowerError::hint`), rendered as every hint is: a
    /// `hint:` note under the message.
    pub fn hinted(e: &dyn std::fmt::Display, hint: Option<&str>) -> CliError {
        CliError::Hinted { message: e.to_string(), hint: hint.map(str::to_string) }
    }

    pub fn render(&self) {
        let notes = |hint: &Option<String>| hint.iter().map(|h| format!("hint: {h}")).collect::<Vec<_>>();
        match self {
            CliError::Plain(msg) => {
                let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("error: {msg}\n").as_bytes());
            }
            CliError::Hinted { message, hint } => {
                // the layout of a Source diagnostic's note, without a snippet
                let notes: String = notes(hint).iter().map(|n| format!("  = {n}\n")).collect();
                let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("error: {message}\n{notes}").as_bytes());
            }
            CliError::Source { path, source, span, message, hint } => {
                let file = SimpleFile::new(path, source);
                let d =
                    Diagnostic::error().with_message(message).with_labels(vec![Label::primary((), span.clone())]).with_notes(notes(hint));
                let w = StandardStream::stderr(color_choice());
                let _ = term::emit(&mut w.lock(), &term::Config::default(), &file, &d);
            }
        }
    }
}

/// Colour only on a terminal, and never with `NO_COLOR` set (to anything non-empty, as
/// no-color.org says). termcolor's `Auto` looks at `TERM` and `NO_COLOR` but not at whether
/// stderr is a terminal, so a redirected error log got escape codes.
fn color_choice() -> ColorChoice {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    if no_color || !std::io::stderr().is_terminal() { ColorChoice::Never } else { ColorChoice::Auto }
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

/// `--mesh` and `--rules`, shared by every command that shards.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ShardArgs {
    /// Device mesh as `axis=size,...` in order (e.g. `fsdp=8`, `dp=2,fsdp=4,tp=8`); replaces
    /// the model.toml's [mesh]. Device k sits at the row-major coordinates of k.
    #[arg(long, value_name = "AXES", value_parser = parse_mesh)]
    pub mesh: Option<Mesh>,
    /// Built-in rule set (fsdp, tp, fsdp+tp), replacing [sharding] rules; the file's [[shard]]
    /// and [logical_rules] still come first. Axes the mesh lacks count as size 1.
    #[arg(long, value_name = "SET", value_parser = parse_rules)]
    pub rules: Option<Builtin>,
    /// Dimensions not divisible by their axes: `error` (default) or `pad` (XLA-style padded
    /// shards); replaces [sharding] uneven.
    #[arg(long, value_name = "POLICY", value_parser = parse_uneven)]
    pub uneven: Option<Uneven>,
    /// RNG mode, replacing [rng] mode: `jax` (jax.random's values bit for bit) or `fast`
    /// (initc's packed threefry stream: still sharding-invariant, about 2x faster on GPUs,
    /// different values; README "RNG modes").
    #[arg(long, value_name = "MODE", value_parser = parse_rng)]
    pub rng: Option<initc_ir::RngMode>,
}

/// `--threads` may ask for at most this many threads per core: more only adds contention, and
/// `--threads 100000` spawned threads for seconds before doing anything.
pub const THREADS_PER_CORE: usize = 8;

pub fn parse_threads(s: &str) -> Result<usize, String> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let max = THREADS_PER_CORE * cores;
    let n: u64 = s.trim().parse().map_err(|_| format!("`{s}` is not a thread count (1 to {max})"))?;
    if n == 0 || n > max as u64 {
        return Err(format!("{n} threads: give 1 to {max} ({THREADS_PER_CORE} per core, {cores} cores)"));
    }
    Ok(n as usize)
}

/// The largest input file read (model.toml, text or protobuf IR); the IR of a model at
/// `initc_ir::limits::MAX_PARAMS` parameters is about 100 MB.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// Reads at most [`MAX_INPUT_BYTES`] of `path` (a pipe or `/dev/zero` included); an empty or
/// larger file is an error.
fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let too_large = || CliError::Plain(format!("{shown} is larger than the input limit of {} MiB", MAX_INPUT_BYTES >> 20));
    if file.metadata().is_ok_and(|m| m.is_file() && m.len() > MAX_INPUT_BYTES) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_large());
    }
    if bytes.is_empty() {
        return Err(CliError::Plain(format!("{shown} is empty")));
    }
    Ok(bytes)
}

pub fn parse_rng(s: &str) -> Result<initc_ir::RngMode, String> {
    initc_ir::RngMode::from_name(s).ok_or_else(|| format!("`{s}` is not an RNG mode: `jax` or `fast`"))
}

pub fn parse_uneven(s: &str) -> Result<Uneven, String> {
    Uneven::from_name(s).ok_or_else(|| format!("`{s}` is not a policy: `error` or `pad`"))
}

pub fn parse_mesh(s: &str) -> Result<Mesh, String> {
    s.parse::<Mesh>().map_err(|e| e.to_string())
}

pub fn parse_rules(s: &str) -> Result<Builtin, String> {
    initc_frontend::builtin(s).map_err(|hint| format!("unknown rule set `{s}` ({hint})"))
}

/// A model as read: the traced (unsharded) module, and for a model.toml its sharding sections.
pub struct Loaded {
    pub module: Module,
    toml: Option<(String, String, ShardSpec)>,
}

impl Loaded {
    /// The module sharded on `mesh` (else the file's [mesh]) with the file's rules and
    /// `rules` as the built-in set; unsharded when no mesh is given anywhere. Warns on stderr
    /// about parameters no rule matched and `[[shard]]` rules that matched nothing.
    pub fn sharded(&self, mesh: Option<&Mesh>, rules: Option<Builtin>, uneven: Option<Uneven>) -> Result<Module, CliError> {
        let mut m = self.module.clone();
        let report = match &self.toml {
            Some((path, source, spec)) => spec.apply(&mut m, mesh, rules, uneven, Some((path, source))).map_err(|e| match e {
                ShardFailure::Config(e) => config_error(*e),
                ShardFailure::Rules(e) => CliError::hinted(&e, initc_frontend::shard_hint(&e).as_deref()),
            })?,
            None if mesh.is_none() && rules.is_none() && uneven.is_none() => None,
            None => {
                let Some(mut mesh) = mesh.or(m.mesh.as_ref()).cloned() else {
                    return Err(CliError::Plain("--rules needs a mesh: pass --mesh (this IR file has none)".into()));
                };
                let Some(rules) = rules else {
                    return Err(CliError::Plain(
                        "re-sharding an IR file on a new --mesh needs --rules (its original rules are not recorded)".into(),
                    ));
                };
                if let Some(u) = uneven {
                    mesh.uneven = u;
                }
                let r = initc_shard::Rules { builtin: Some(rules), ..Default::default() };
                Some(initc_shard::shard(&mut m, &mesh, &r).map_err(|e| CliError::Plain(e.to_string()))?)
            }
        };
        if let Some(report) = report {
            let unmatched = report.unmatched(&m);
            if !unmatched.is_empty() {
                let shown: Vec<&str> = unmatched.iter().take(5).copied().collect();
                let more = if unmatched.len() > 5 { format!(" and {} more", unmatched.len() - 5) } else { String::new() };
                eprintln!(
                    "warning: {} parameter(s) matched no sharding rule and are replicated on every device: {}{more}",
                    unmatched.len(),
                    shown.join(", ")
                );
            }
            if let Some((_, _, spec)) = &self.toml {
                for (rule, hits) in spec.rules.shard.iter().zip(report.shard_rule_hits(&spec.rules)) {
                    if hits == 0 {
                        eprintln!(
                            "warning: [[shard]] match = \"{}\" decided no parameter (an earlier rule, or no FQN, matched)",
                            rule.pattern
                        );
                    }
                }
            }
        }
        Ok(m)
    }
}

fn config_error(e: initc_frontend::ConfigError) -> CliError {
    CliError::Source { path: e.path.clone(), span: e.span.clone(), message: e.message(), hint: e.hint.clone(), source: e.source }
}

/// Loads a model from `path`: `.toml` is traced, `.pb` is protobuf IR, anything else text IR.
pub fn load(path: &Path) -> Result<Loaded, CliError> {
    let shown = path.display().to_string();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let bytes = read_input(path)?;
    if ext == "pb" {
        let module = initc_proto::decode(&bytes).map_err(|e| CliError::Plain(format!("{shown}: {e}")))?;
        return Ok(Loaded { module, toml: None });
    }
    let source =
        String::from_utf8(bytes).map_err(|e| format!("cannot read {shown}: not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))?;
    if ext == "toml" {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        let t = initc_frontend::trace_toml(&shown, &source, stem).map_err(config_error)?;
        return Ok(Loaded { module: t.module, toml: Some((shown, source, t.shard)) });
    }
    let module = initc_ir::parse(&source).map_err(|e| {
        let at = offset(&source, e.line, e.col);
        let end = (at + 1).min(source.len()).max(at);
        CliError::Source { path: shown, message: e.kind.to_string(), span: at..end, hint: None, source }
    })?;
    Ok(Loaded { module, toml: None })
}

/// Loads and shards in one step (see [`Loaded::sharded`]).
/// The mesh devices a `--device K` option selects: K alone, else every device of the module's
/// mesh (device 0 without a mesh).
pub fn mesh_devices(device: Option<u64>, m: &Module) -> Vec<u64> {
    match (device, &m.mesh) {
        (Some(d), _) => vec![d],
        (None, Some(mesh)) => (0..mesh.devices()).collect(),
        (None, None) => vec![0],
    }
}

pub fn load_sharded(path: &Path, shard: &ShardArgs) -> Result<Module, CliError> {
    let mut m = load(path)?.sharded(shard.mesh.as_ref(), shard.rules, shard.uneven)?;
    if let Some(r) = shard.rng {
        m.rng = r;
    }
    Ok(m)
}

/// Writes `bytes` to `path` atomically (a fsynced temporary file beside it, renamed over it), or
/// to stdout when `path` is `None`.
pub fn write_output(path: Option<&Path>, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    let Some(path) = path else {
        return std::io::stdout().write_all(bytes).map_err(|e| CliError::Plain(format!("writing to stdout: {e}")));
    };
    initc_cpu::publish::write_file(path, bytes).map_err(|e| CliError::Plain(format!("cannot write {e}")))
}
