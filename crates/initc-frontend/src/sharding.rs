//! model.toml's sharding sections — `[mesh]`, `[sharding]`, `[[shard]]`, `[logical_rules]` —
//! and [`ShardSpec::apply`], which runs the shard pass with CLI overrides and turns its
//! errors into span-carrying [`ConfigError`]s where the rule came from the file.
//!
//! ```toml
//! [mesh]                      # axes in order; device k is at the row-major coords of k
//! fsdp = 4
//! tp = 2
//!
//! [sharding]
//! rules = "fsdp+tp"           # built-in set: fsdp, tp, fsdp+tp
//! uneven = "pad"              # accept XLA-style padded shards (default: error)
//!
//! [[shard]]                   # first matching glob wins; before logical and built-in rules
//! match = "output.weight"
//! spec = [["tp", "fsdp"], ""] # PartitionSpec: axis, list of axes, or "" (replicated)
//!
//! [logical_rules]             # Flax/MaxText style, by the presets' logical axis names
//! embed = "fsdp"
//! mlp = "tp"
//! ```

use std::ops::Range;

use initc_ir::{Mesh, Module, Uneven};
use initc_shard::{BUILTINS, Builtin, LogicalRule, Report, Rule, RuleRef, Rules, ShardError};
use toml::Spanned;

use crate::error::{ConfigError, ConfigErrorKind, Result, SpanError};
use crate::pattern::suggest;
use crate::schema::{Ordered, ShardSection, ShardingSection};

/// One spec entry: `"tp"`, `["tp", "fsdp"]`, or `""` / `[]` (replicated).
fn axes(v: &Spanned<toml::Value>, key: &str) -> Result<Vec<String>> {
    let bad = || {
        SpanError::invalid(v.span(), key, format!("`{}` is not a spec entry", v.get_ref()))
            .hint("an entry is a mesh axis (\"tp\"), a list of axes split major to minor ([\"tp\", \"fsdp\"]), or \"\" for replicated")
    };
    match v.get_ref() {
        toml::Value::String(s) if s.is_empty() => Ok(vec![]),
        toml::Value::String(s) => Ok(vec![s.clone()]),
        toml::Value::Array(a) => a.iter().map(|x| x.as_str().filter(|s| !s.is_empty()).map(str::to_string).ok_or_else(bad)).collect(),
        _ => Err(bad()),
    }
}

/// The sections as read, before they meet a mesh.
#[derive(Debug, Default)]
pub(crate) struct RawSharding {
    pub mesh: Option<Spanned<Ordered<i64>>>,
    pub sharding: Option<ShardingSection>,
    pub shard: Vec<ShardSection>,
    pub logical_rules: Option<Ordered<toml::Value>>,
}

/// Sharding as model.toml states it, with spans for error messages.
#[derive(Debug, Clone, Default)]
pub struct ShardSpec {
    /// `[mesh]`, if present.
    pub mesh: Option<Mesh>,
    pub rules: Rules,
    uneven: Uneven,
    mesh_span: Range<usize>,
    builtin_span: Option<Range<usize>>,
    shard_spans: Vec<Range<usize>>,
    logical_spans: Vec<Range<usize>>,
}

pub(crate) fn read(raw: RawSharding) -> Result<ShardSpec> {
    let mut spec = ShardSpec::default();
    if let Some(s) = &raw.sharding {
        if let Some(u) = &s.uneven {
            spec.uneven = Uneven::from_name(u.get_ref()).ok_or_else(|| {
                SpanError::invalid(u.span(), "uneven", format!("`{}` is not a policy", u.get_ref())).hint("`error` (default) or `pad`")
            })?;
        }
        if let Some(r) = &s.rules {
            spec.rules.builtin = Some(
                builtin(r.get_ref())
                    .map_err(|hint| SpanError::invalid(r.span(), "rules", format!("unknown rule set `{}`", r.get_ref())).hint(hint))?,
            );
            spec.builtin_span = Some(r.span());
        }
    }
    if let Some(m) = &raw.mesh {
        spec.mesh_span = m.span();
        let mut axes = Vec::new();
        for (name, size) in &m.get_ref().0 {
            if !initc_ir::is_identifier(name) {
                return Err(SpanError::invalid(size.span(), name, format!("mesh axis name `{name}` is not an identifier"))
                    .hint("letters, digits and `_`, not starting with a digit: fsdp, tp, dp, data, model"));
            }
            let n = *size.get_ref();
            if n <= 0 {
                return Err(SpanError::invalid(size.span(), name, format!("mesh axis sizes are positive integers, got {n}")));
            }
            axes.push((name.clone(), n as u64));
        }
        spec.mesh = Some(Mesh::new(axes, spec.uneven).map_err(|e| SpanError::invalid(m.span(), "mesh", e.to_string()))?);
    }
    for s in &raw.shard {
        let dims: Vec<Vec<String>> = s.spec.get_ref().iter().map(|e| axes(e, "spec")).collect::<Result<_>>()?;
        spec.rules.shard.push(Rule { pattern: s.pattern.get_ref().clone(), spec: dims });
        spec.shard_spans.push(s.pattern.span());
    }
    for (logical, value) in raw.logical_rules.iter().flat_map(|o| &o.0) {
        spec.rules.logical.push(LogicalRule { logical: logical.clone(), axes: axes(value, logical)? });
        spec.logical_spans.push(value.span());
    }
    Ok(spec)
}

/// A built-in rule set by name, or a hint listing them.
pub fn builtin(name: &str) -> std::result::Result<Builtin, String> {
    Builtin::from_name(name).ok_or_else(|| match suggest(name, BUILTINS.iter().copied()) {
        Some(s) => format!("did you mean `{s}`? built-in rule sets: {}", BUILTINS.join(", ")),
        None => format!("built-in rule sets: {}", BUILTINS.join(", ")),
    })
}

/// Why sharding failed: located in the model.toml, or caused by command-line choices.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShardFailure {
    #[error("{0}")]
    Config(Box<ConfigError>),
    #[error("{0}")]
    Rules(ShardError),
}

impl ShardSpec {
    /// Shards `m` on `mesh` (the command line's, else `[mesh]`) with the file's rules, the
    /// built-in set replaced by `builtin` when given. Without any mesh `m` stays unsharded.
    /// `(path, source)` locate file errors.
    /// `uneven` overrides `[sharding] uneven`.
    pub fn apply(
        &self,
        m: &mut Module,
        mesh: Option<&Mesh>,
        builtin: Option<Builtin>,
        uneven: Option<Uneven>,
        file: Option<(&str, &str)>,
    ) -> std::result::Result<Option<Report>, ShardFailure> {
        let Some(mesh) = mesh.or(self.mesh.as_ref()) else { return Ok(None) };
        let mut mesh = mesh.clone();
        mesh.uneven = uneven.unwrap_or(self.uneven);
        let mut rules = self.rules.clone();
        let builtin_from_cli = builtin.is_some();
        if builtin.is_some() {
            rules.builtin = builtin;
        }
        initc_shard::shard(m, &mesh, &rules).map(Some).map_err(|e| {
            let span = match e.rule {
                RuleRef::Shard(i) => self.shard_spans.get(i).cloned(),
                RuleRef::Logical(i) => self.logical_spans.get(i).cloned(),
                RuleRef::Builtin(_) if !builtin_from_cli => self.builtin_span.clone(),
                RuleRef::Builtin(_) => None,
            };
            match (span, file) {
                (Some(span), Some((path, source))) => ShardFailure::Config(Box::new(ConfigError {
                    path: path.into(),
                    source: source.into(),
                    span,
                    kind: ConfigErrorKind::Invalid { key: rule_key(e.rule).into(), reason: e.to_string() },
                    hint: hint(&e),
                })),
                _ => ShardFailure::Rules(e),
            }
        })
    }
}

fn rule_key(r: RuleRef) -> &'static str {
    match r {
        RuleRef::Shard(_) => "match",
        RuleRef::Logical(_) => "logical_rules",
        RuleRef::Builtin(_) => "rules",
    }
}

/// What to do about a sharding error.
pub fn hint(e: &ShardError) -> Option<String> {
    use initc_ir::ShardingError as S;
    Some(match &e.error {
        S::UnknownAxis { mesh, .. } => format!("the mesh is {mesh}; set it in [mesh] or with --mesh"),
        S::AxisTwice { .. } => "a mesh axis can split only one dimension of a parameter".into(),
        S::Rank { .. } => "a spec has at most one entry per dimension; missing trailing entries are replicated".into(),
        S::Indivisible { .. } => {
            "choose axis sizes that divide the dimension, or set `uneven = \"pad\"` in [sharding] for XLA-style padded shards".into()
        }
    })
}
