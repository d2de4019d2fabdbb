//! Builds the traced module from a parsed model.toml: applies per-FQN overrides while the
//! preset or the generic module list declares parameters.

use std::ops::Range;

use initc_ir::{DType, Type};
use toml::Spanned;

use crate::config::{Result, Root, SpanError, Traced, dtype_of};
use crate::init::Init;
use crate::initspec::parse_init;
use crate::tracer::{TraceError, Tracer};

struct Override {
    pattern: String,
    span: Range<usize>,
    init: Option<Init>,
    dtype: Option<DType>,
    hits: usize,
}

/// Declares parameters through the tracer, applying overrides (later ones win).
pub(crate) struct ModelCtx {
    pub t: Tracer,
    pub dtype: DType,
    /// Span errors fall back to (the `[model]` table or the current `[[module]]`).
    pub span: Range<usize>,
    overrides: Vec<Override>,
    /// Parameters declared so far.
    count: usize,
}

impl ModelCtx {
    pub fn param(&mut self, fqn: &str, shape: &[u64], axes: &[&str], init: Init) -> Result<()> {
        self.param_typed(fqn, shape, axes, init, self.dtype)
    }

    /// Whether an `[[override]]` sets the initializer of `fqn` (a preset that builds a value
    /// from several draws then keeps the override's single initializer).
    pub fn init_overridden(&self, fqn: &str) -> bool {
        self.overrides.iter().any(|o| o.init.is_some() && crate::pattern::glob_match(&o.pattern, fqn))
    }

    pub fn param_typed(&mut self, fqn: &str, shape: &[u64], axes: &[&str], init: Init, dtype: DType) -> Result<()> {
        let (mut init, mut dtype, mut span) = (init, dtype, self.span.clone());
        for o in self.overrides.iter_mut().filter(|o| crate::pattern::glob_match(&o.pattern, fqn)) {
            o.hits += 1;
            span = o.span.clone();
            if let Some(i) = &o.init {
                init = i.clone();
            }
            if let Some(d) = o.dtype {
                dtype = d;
            }
        }
        self.check_limits(fqn, shape, &span)?;
        self.t.param(fqn, Type::new(dtype, shape), axes, &init).map(drop).map_err(|e| trace_error(span, e))
    }

    /// [`initc_ir::limits`] checked as each parameter is declared, so an error points at the
    /// key that made it (and a huge model is refused before it is built).
    fn check_limits(&mut self, fqn: &str, shape: &[u64], span: &Range<usize>) -> Result<()> {
        use initc_ir::limits::{MAX_PARAMS, MAX_RANK, name_problem};
        if let Some(reason) = name_problem(fqn) {
            return Err(SpanError::invalid(span.clone(), "name", format!("parameter {fqn:?}: the name {reason}")));
        }
        if shape.len() > MAX_RANK {
            return Err(SpanError::invalid(
                span.clone(),
                "shape",
                format!("parameter `{fqn}` has rank {} (at most {MAX_RANK})", shape.len()),
            ));
        }
        self.count += 1;
        if self.count > MAX_PARAMS {
            return Err(SpanError::invalid(
                span.clone(),
                "model",
                format!("more than {MAX_PARAMS} parameters (the limit of initc_ir::limits)"),
            )
            .hint("this many tensors would not fit a safetensors header a reader accepts; check the layer counts and {a..b} ranges"));
        }
        Ok(())
    }
}

fn trace_error(span: Range<usize>, e: TraceError) -> SpanError {
    let key = match &e {
        TraceError::DuplicateParam { .. } => "name",
        _ => "init",
    };
    SpanError::invalid(span, key, e.to_string())
}

pub(crate) fn build(root: Root, default_name: &str) -> Result<Traced> {
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
    let mut cx = ModelCtx { t, dtype, span: model_span.clone(), overrides, count: 0 };
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
    if let Some(o) = cx.overrides.iter().find(|o| o.hits == 0) {
        return Err(SpanError::invalid(o.span.clone(), "match", format!("`{}` matches no parameter", o.pattern))
            .hint("`*` matches any run of characters (dots included), `?` one character; `initc trace --format json` lists every FQN"));
    }
    let module = cx.t.finish().map_err(|e| SpanError::invalid(model_span, "model", e.to_string()))?;
    Ok(Traced { module, shard, warnings: Vec::new() })
}

/// Reads an optional positive integer with a default.
pub(crate) fn pos_or(v: &Option<Spanned<i64>>, key: &str, default: u64) -> Result<u64> {
    v.as_ref().map_or(Ok(default), |v| crate::config::positive(v, key))
}
