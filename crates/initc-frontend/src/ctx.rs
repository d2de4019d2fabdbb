//! [`ModelCtx`]: what the presets and the generic module list declare parameters through
//! (the tracer, the model's dtype, the `[[override]]`s and the limits checked per parameter).

use std::ops::Range;

use initc_ir::{DType, Type};
use toml::Spanned;

use crate::error::{Result, SpanError};
use crate::init::Init;
use crate::tracer::{TraceError, Tracer};

pub(crate) struct Override {
    pub pattern: String,
    pub span: Range<usize>,
    pub init: Option<Init>,
    pub dtype: Option<DType>,
    pub hits: usize,
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
    pub fn new(t: Tracer, dtype: DType, span: Range<usize>, overrides: Vec<Override>) -> ModelCtx {
        ModelCtx { t, dtype, span, overrides, count: 0 }
    }

    /// The first override no parameter matched.
    pub fn unmatched_override(&self) -> Option<&Override> {
        self.overrides.iter().find(|o| o.hits == 0)
    }

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

/// Reads an optional positive integer with a default.
pub(crate) fn pos_or(v: &Option<Spanned<i64>>, key: &str, default: u64) -> Result<u64> {
    v.as_ref().map_or(Ok(default), |v| crate::schema::positive(v, key))
}
