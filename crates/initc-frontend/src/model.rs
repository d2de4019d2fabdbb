//! The model.toml driver: [`trace_toml`] reads the file into its schema (`schema.rs`) and
//! builds the traced module, applying per-FQN overrides while the preset (`presets.rs`) or the
//! generic module list (`modules.rs`) declares parameters through a [`ModelCtx`].

use initc_ir::{DType, Module};

use crate::ctx::{ModelCtx, Override};
use crate::error::{ConfigError, Result, SpanError, syntax_error};
use crate::initspec::parse_init;
use crate::schema::{Root, dtype_of};
use crate::tracer::Tracer;

fn build(root: Root, default_name: &str) -> Result<Traced> {
    let shard = crate::sharding::read(crate::sharding::RawSharding {
        mesh: root.mesh,
        sharding: root.sharding,
        shard: root.shard,
        logical_rules: root.logical_rules,
    })?;
    let model_span = root.model.span();
    let model = root.model.into_inner();
    let name = model.name.as_ref().map_or(default_name.to_string(), |n| n.get_ref().clone());
    let dtype = model.dtype.as_ref().map(|d| dtype_of(d, "dtype")).transpose()?.unwrap_or(DType::F32);
    let mut t = Tracer::new(name);
    if let Some(seed) = root.rng.as_ref().and_then(|r| r.seed.as_ref()) {
        let s = *seed.get_ref();
        if s < 0 {
            return Err(SpanError::invalid(seed.span(), "seed", format!("must be a non-negative integer, got {s}"))
                .hint("TOML integers are signed 64-bit; pass seeds >= 2^63 with --seed"));
        }
        t.set_seed(s as u64);
    }
    if let Some(mode) = root.rng.as_ref().and_then(|r| r.mode.as_ref()) {
        let m = initc_ir::RngMode::from_name(mode.get_ref()).ok_or_else(|| {
            SpanError::invalid(mode.span(), "mode", format!("unknown RNG mode `{}`", mode.get_ref()))
                .hint("`jax` (default: jax.random's values bit for bit) or `fast` (initc's packed threefry stream: sharding-invariant, about 2x faster on GPUs, not jax.random's values)")
        })?;
        t.set_rng_mode(m);
    }
    let mut overrides = Vec::new();
    for o in &root.overrides {
        if o.init.is_none() && o.dtype.is_none() {
            return Err(SpanError::invalid(o.pattern.span(), "match", "an override needs `init`, `dtype` or both"));
        }
        overrides.push(Override {
            pattern: o.pattern.get_ref().clone(),
            span: o.pattern.span(),
            init: o.init.as_ref().map(parse_init).transpose()?,
            dtype: o.dtype.as_ref().map(|d| dtype_of(d, "dtype")).transpose()?,
            hits: 0,
        });
    }
    let mut cx = ModelCtx::new(t, dtype, model_span.clone(), overrides);
    match model.preset.as_ref() {
        Some(p) => {
            if let Some(m) = root.modules.first() {
                return Err(SpanError::invalid(
                    m.span(),
                    "module",
                    format!("[[module]] entries cannot be combined with preset `{}`", p.get_ref()),
                )
                .hint("drop `preset` to describe the model module by module"));
            }
            crate::presets::build_preset(&mut cx, p, &model)?
        }
        None => {
            crate::presets::reject_preset_keys(&model)?;
            if root.modules.is_empty() {
                return Err(SpanError::invalid(model_span, "model", "no `preset` and no [[module]] entries: the model has no parameters")
                    .hint("set `preset = \"llama3\"` (or gpt2, hf_llama) or add [[module]] tables"));
            }
            for m in &root.modules {
                crate::modules::build_module(&mut cx, m)?;
            }
        }
    }
    if let Some(o) = cx.unmatched_override() {
        return Err(SpanError::invalid(o.span.clone(), "match", format!("`{}` matches no parameter", o.pattern))
            .hint("`*` matches any run of characters (dots included), `?` one character; `initc trace --format json` lists every FQN"));
    }
    let module = cx.t.finish().map_err(|e| SpanError::invalid(model_span, "model", e.to_string()))?;
    Ok(Traced { module, shard, warnings: Vec::new() })
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
    build(root, default_name).map_err(attach)
}
