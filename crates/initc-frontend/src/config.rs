//! model.toml: schema, span-carrying errors, and the entry point [`trace_toml`].
//!
//! Errors carry the file, the byte span, the key and a hint; [`ConfigError`]'s `Display`
//! prints `file:line:col: message`, and the CLI renders the span with a caret.

use std::fmt;
use std::ops::Range;

use initc_ir::{DType, Module};
use serde::Deserialize;
use toml::Spanned;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Root {
    pub model: Spanned<ModelSection>,
    pub rng: Option<RngSection>,
    #[serde(default, rename = "override")]
    pub overrides: Vec<OverrideSection>,
    #[serde(default, rename = "module")]
    pub modules: Vec<Spanned<ModuleSection>>,
    pub mesh: Option<Spanned<crate::sharding::Ordered<i64>>>,
    pub sharding: Option<crate::sharding::ShardingSection>,
    #[serde(default)]
    pub shard: Vec<crate::sharding::ShardSection>,
    pub logical_rules: Option<crate::sharding::Ordered<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RngSection {
    pub seed: Option<Spanned<i64>>,
    pub mode: Option<Spanned<String>>,
}

type SInt = Option<Spanned<i64>>;
type SFloat = Option<Spanned<f64>>;
type SBool = Option<Spanned<bool>>;

/// `[model]`: the preset selector and every preset's arguments (each preset checks that only
/// its own are present, so a misplaced key gets a precise error).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelSection {
    pub preset: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub dtype: Option<Spanned<String>>,
    // llama3 (torchtitan ModelArgs)
    pub dim: SInt,
    pub n_layers: SInt,
    pub n_heads: SInt,
    pub n_kv_heads: SInt,
    pub vocab_size: SInt,
    pub multiple_of: SInt,
    pub ffn_dim_multiplier: SFloat,
    pub norm_eps: SFloat,
    pub depth_init: SBool,
    /// llama3: the torchtitan release whose layout and init to follow (`0.2.2` or `0.3.0`).
    pub torchtitan: Option<Spanned<String>>,
    /// llama3 with torchtitan 0.3.0: `tok_embeddings` and `lm_head` share one weight.
    pub enable_weight_tying: SBool,
    // gpt2 (HF GPT2Config)
    pub n_embd: SInt,
    pub n_layer: SInt,
    pub n_head: SInt,
    pub n_positions: SInt,
    pub n_inner: SInt,
    pub layer_norm_epsilon: SFloat,
    pub initializer_range: SFloat,
    // hf_llama (HF LlamaConfig)
    pub hidden_size: SInt,
    pub intermediate_size: SInt,
    pub num_hidden_layers: SInt,
    pub num_attention_heads: SInt,
    pub num_key_value_heads: SInt,
    pub rms_norm_eps: SFloat,
    pub tie_word_embeddings: SBool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverrideSection {
    #[serde(rename = "match")]
    pub pattern: Spanned<String>,
    pub init: Option<Spanned<InitValue>>,
    pub dtype: Option<Spanned<String>>,
}

/// `init = "zeros"` or `init = { kind = "normal", std = 0.02 }`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum InitValue {
    Name(String),
    Table(toml::Table),
}

/// One `[[module]]` of the generic form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModuleSection {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub dtype: Option<Spanned<String>>,
    pub in_features: SInt,
    pub out_features: SInt,
    pub bias: SBool,
    pub num_embeddings: SInt,
    pub embedding_dim: SInt,
    pub padding_idx: SInt,
    pub normalized_shape: Option<Spanned<IntOrList>>,
    pub elementwise_affine: SBool,
    pub in_channels: SInt,
    pub out_channels: SInt,
    pub kernel_size: Option<Spanned<IntOrList>>,
    pub groups: SInt,
    pub weight_init: Option<Spanned<InitValue>>,
    pub bias_init: Option<Spanned<InitValue>>,
    pub axes: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum IntOrList {
    One(i64),
    Many(Vec<i64>),
}

/// A positive integer argument, at most 2^32 (so shapes multiply without overflow surprises).
pub(crate) fn positive(v: &Spanned<i64>, key: &str) -> Result<u64> {
    let x = *v.get_ref();
    if x <= 0 {
        return Err(SpanError::invalid(v.span(), key, format!("must be a positive integer, got {x}")));
    }
    if x > 1 << 32 {
        return Err(SpanError::invalid(v.span(), key, format!("{x} is too large (at most 2^32)")));
    }
    Ok(x as u64)
}

pub(crate) fn dtype_of(v: &Spanned<String>, key: &str) -> Result<DType> {
    let name = v.get_ref().as_str();
    match DType::from_name(name) {
        Some(d) if d.is_float() => Ok(d),
        _ => {
            let floats = ["f32", "bf16", "f16", "f64"];
            let e = SpanError::invalid(v.span(), key, format!("`{name}` is not a parameter dtype"));
            Err(match suggest(name, floats) {
                Some(s) => e.hint(format!("did you mean `{s}`? (one of f32, bf16, f16, f64)")),
                None => e.hint("one of f32, bf16, f16, f64"),
            })
        }
    }
}

/// Where a traced model.toml came from, alongside the module.
#[derive(Debug, Clone)]
pub struct Traced {
    /// The traced program, unsharded ([`Traced::shard`] attaches the mesh and shardings).
    pub module: Module,
    /// `[mesh]`, `[sharding]`, `[[shard]]` and `[logical_rules]` as the file states them.
    pub shard: crate::sharding::ShardSpec,
    /// Warnings (e.g. nothing to report yet); the CLI prints them.
    pub warnings: Vec<String>,
}

impl Traced {
    /// The module sharded as the file itself says (`[mesh]` and its rules); unchanged when
    /// the file has no `[mesh]`. `(path, source)` locate errors.
    pub fn sharded(&self, path: &str, source: &str) -> std::result::Result<Module, crate::sharding::ShardFailure> {
        let mut m = self.module.clone();
        self.shard.apply(&mut m, None, None, None, Some((path, source)))?;
        Ok(m)
    }
}

/// Parses a model.toml (`source`, read from `path`) and traces it.
// The error carries the source text for its caret diagnostic; it is built once per failed run.
#[allow(clippy::result_large_err)]
pub fn trace_toml(path: &str, source: &str, default_name: &str) -> std::result::Result<Traced, ConfigError> {
    let attach = |e: SpanError| ConfigError { path: path.into(), source: source.into(), span: e.span, kind: e.kind, hint: e.hint };
    let root: Root = toml::from_str(source).map_err(|e| attach(syntax_error(&e, source)))?;
    crate::model::build(root, default_name).map_err(attach)
}

fn syntax_error(e: &toml::de::Error, source: &str) -> SpanError {
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
