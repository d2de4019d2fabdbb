//! The tracer: the Rust API a frontend calls while it runs a model constructor.
//!
//! Parameters are created by FQN, then filled with an initializer or any traced expression.
//! Writing a parameter again replaces its value (last write wins), so single-device init code
//! — `self.w = f(...)`, `w.copy_(x)`, `w.normal_()` — is captured as written. `finish`
//! compacts away overwritten values and verifies the module.

use std::collections::HashMap;

use initc_ir::{BinaryOp, Builder, CmpDir, DType, F64, Module, NodeError, Op, Param, Type, UnaryOp, Value};

use crate::init::Init;
use crate::key::fqn_fold_data;

/// A traced tensor value (a handle into the module under construction).
pub type Tensor = Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TraceError {
    #[error("parameter `{fqn}`: {error}")]
    Op { fqn: String, error: NodeError },
    #[error("{error}")]
    Expr { error: NodeError },
    #[error("parameter `{fqn}` is already defined")]
    DuplicateParam { fqn: String },
    #[error("parameter name is empty")]
    EmptyFqn,
    #[error("no parameter named `{fqn}`")]
    UnknownParam { fqn: String },
    #[error("parameter `{fqn}` has shape {expected:?}; the assigned value has shape {found:?}")]
    ShapeMismatch { fqn: String, expected: Vec<u64>, found: Vec<u64> },
    #[error("parameter `{fqn}`: {reason}")]
    BadInit { fqn: String, reason: String },
    #[error("parameter `{fqn}`: {n_axes} axis names for a rank-{rank} shape")]
    Axes { fqn: String, n_axes: usize, rank: usize },
}

/// Builds an init program. See the module docs.
#[derive(Debug)]
pub struct Tracer {
    b: Builder,
    seed: Value,
    index: HashMap<String, usize>,
}

impl Tracer {
    pub fn new(name: impl Into<String>) -> Tracer {
        let mut b = Builder::new(name);
        let seed = b.push(Op::Seed, Type::key()).expect("seed is always valid");
        Tracer { b, seed, index: HashMap::new() }
    }

    /// Sets the default seed recorded in the module (a runtime input).
    pub fn set_seed(&mut self, seed: u64) {
        self.b.set_seed(seed);
    }

    /// The counter-to-bits scheme of every random op ([`initc_ir::RngMode`]).
    pub fn set_rng_mode(&mut self, mode: initc_ir::RngMode) {
        self.b.set_rng_mode(mode);
    }

    /// The key `PRNGKey(seed)` of the runtime seed.
    pub fn root_key(&self) -> Tensor {
        self.seed
    }

    /// Declares a parameter and fills it with `init`. Parameters keep the order of declaration.
    pub fn param(&mut self, fqn: &str, ty: Type, axes: &[&str], init: &Init) -> Result<Tensor, TraceError> {
        self.param_keyed(fqn, ty, axes, init, None)
    }

    /// Like [`Tracer::param`], drawing from `key` instead of the FQN-derived key (for frontends
    /// reproducing another key scheme, e.g. Flax's). Values then depend on how `key` is made.
    pub fn param_keyed(&mut self, fqn: &str, ty: Type, axes: &[&str], init: &Init, key: Option<Tensor>) -> Result<Tensor, TraceError> {
        if fqn.is_empty() {
            return Err(TraceError::EmptyFqn);
        }
        if self.index.contains_key(fqn) {
            return Err(TraceError::DuplicateParam { fqn: fqn.to_string() });
        }
        if !axes.is_empty() && axes.len() != ty.rank() {
            return Err(TraceError::Axes { fqn: fqn.into(), n_axes: axes.len(), rank: ty.rank() });
        }
        let value = self.lower_init(fqn, &ty, init, key)?;
        self.index.insert(fqn.to_string(), self.b.module().params.len());
        self.b.params_mut().push(Param {
            fqn: fqn.to_string(),
            value,
            ty,
            axes: axes.iter().map(|s| s.to_string()).collect(),
            init: init.describe(),
            sharding: None,
        });
        Ok(value)
    }

    /// Re-initializes a parameter in place (`nn.init.normal_(w)` after construction).
    pub fn init_(&mut self, fqn: &str, init: &Init) -> Result<Tensor, TraceError> {
        let i = self.lookup(fqn)?;
        let ty = self.b.module().params[i].ty.clone();
        let value = self.lower_init(fqn, &ty, init, None)?;
        let p = &mut self.b.params_mut()[i];
        p.value = value;
        p.init = init.describe();
        Ok(value)
    }

    /// The value of initializer `init` for a tensor of type `ty`, without declaring a
    /// parameter: for frontends whose draws land in part of a parameter or pass through further
    /// arithmetic (`nn.init.normal_(w[:4])`, a temporary later copied into a fused weight).
    /// It draws from `key`, or from `fqn`'s key when `None`; `fqn` also names the errors.
    pub fn init_value(&mut self, fqn: &str, ty: &Type, init: &Init, key: Option<Tensor>) -> Result<Tensor, TraceError> {
        self.lower_init(fqn, ty, init, key)
    }

    /// Assigns a traced value (`w.copy_(x)` / `self.w = x`): last write wins. A value of another
    /// dtype is converted, as `copy_` does; a different shape is an error.
    pub fn assign(&mut self, fqn: &str, x: Tensor) -> Result<(), TraceError> {
        let i = self.lookup(fqn)?;
        let ty = self.b.module().params[i].ty.clone();
        let xt = self.b.ty(x).clone();
        if xt.shape != ty.shape {
            return Err(TraceError::ShapeMismatch { fqn: fqn.into(), expected: ty.shape, found: xt.shape });
        }
        let value = if xt.dtype == ty.dtype { x } else { self.convert(x, ty.dtype)? };
        let p = &mut self.b.params_mut()[i];
        p.value = value;
        p.init = "traced".into();
        Ok(())
    }

    /// The current value of a parameter.
    pub fn get(&self, fqn: &str) -> Result<Tensor, TraceError> {
        Ok(self.b.module().params[self.lookup(fqn)?].value)
    }

    /// The per-parameter key (DESIGN.md §1) — also usable from custom traced expressions.
    pub fn param_key(&mut self, fqn: &str) -> Result<Tensor, TraceError> {
        self.push(Op::FoldIn { key: self.seed, data: fqn_fold_data(fqn) }, Type::key())
    }

    /// Compacts (drops overwritten values) and verifies the module.
    pub fn finish(self) -> Result<Module, initc_ir::VerifyError> {
        let mut m = self.b.finish();
        initc_ir::compact(&mut m);
        initc_ir::verify(&m)?;
        Ok(m)
    }

    pub fn ty(&self, x: Tensor) -> &Type {
        self.b.ty(x)
    }

    fn lookup(&self, fqn: &str) -> Result<usize, TraceError> {
        self.index.get(fqn).copied().ok_or_else(|| TraceError::UnknownParam { fqn: fqn.into() })
    }

    fn push(&mut self, op: Op, ty: Type) -> Result<Tensor, TraceError> {
        self.b.push(op, ty).map_err(|error| TraceError::Expr { error })
    }

    fn lower_init(&mut self, fqn: &str, ty: &Type, init: &Init, key: Option<Tensor>) -> Result<Tensor, TraceError> {
        init.lower(self, fqn, ty, key).map_err(|e| match e {
            TraceError::Expr { error } => TraceError::Op { fqn: fqn.into(), error },
            other => other,
        })
    }

    // ---- traced expressions (jax.random / jnp / lax spellings) ----

    pub fn fold_in(&mut self, key: Tensor, data: u32) -> Result<Tensor, TraceError> {
        self.push(Op::FoldIn { key, data }, Type::key())
    }

    /// `split(key, n)`: a `key[n]`; pick one with [`Tracer::key_at`].
    pub fn split(&mut self, key: Tensor, count: u64) -> Result<Tensor, TraceError> {
        self.push(Op::Split { key, count }, Type::new(DType::Key, [count]))
    }

    pub fn key_at(&mut self, keys: Tensor, i: u64) -> Result<Tensor, TraceError> {
        let one = self.slice(keys, &[i], &[i + 1])?;
        self.reshape(one, &[])
    }

    pub fn random_bits(&mut self, key: Tensor, width: u8, shape: &[u64]) -> Result<Tensor, TraceError> {
        let dtype = match width {
            8 => DType::U8,
            16 => DType::U16,
            64 => DType::U64,
            _ => DType::U32,
        };
        self.push(Op::RandomBits { key, width }, Type::new(dtype, shape))
    }

    pub fn uniform(&mut self, key: Tensor, ty: &Type, min: f64, max: f64) -> Result<Tensor, TraceError> {
        self.push(Op::Uniform { key, min: F64::new(min), max: F64::new(max) }, ty.clone())
    }

    pub fn normal(&mut self, key: Tensor, ty: &Type) -> Result<Tensor, TraceError> {
        self.push(Op::Normal { key }, ty.clone())
    }

    pub fn truncated_normal(&mut self, key: Tensor, ty: &Type, lower: f64, upper: f64) -> Result<Tensor, TraceError> {
        self.push(Op::TruncatedNormal { key, lower: F64::new(lower), upper: F64::new(upper) }, ty.clone())
    }

    pub fn full(&mut self, ty: &Type, value: f64) -> Result<Tensor, TraceError> {
        self.push(Op::Full { value: F64::new(value) }, ty.clone())
    }

    pub fn iota(&mut self, ty: &Type, dim: u32) -> Result<Tensor, TraceError> {
        self.push(Op::Iota { dim }, ty.clone())
    }

    pub fn unary(&mut self, op: UnaryOp, x: Tensor) -> Result<Tensor, TraceError> {
        let ty = self.ty(x).clone();
        self.push(Op::Unary { op, x }, ty)
    }

    pub fn binary(&mut self, op: BinaryOp, a: Tensor, b: Tensor) -> Result<Tensor, TraceError> {
        let ty = self.ty(a).clone();
        self.push(Op::Binary { op, a, b }, ty)
    }

    /// `x * s` with a Python-scalar `s` (cast to x's dtype, as JAX's weak typing does).
    pub fn mul_scalar(&mut self, x: Tensor, s: f64) -> Result<Tensor, TraceError> {
        let ty = self.ty(x).clone();
        let c = self.full(&ty, s)?;
        self.binary(BinaryOp::Mul, x, c)
    }

    /// `x + s` with a Python-scalar `s`.
    pub fn add_scalar(&mut self, x: Tensor, s: f64) -> Result<Tensor, TraceError> {
        let ty = self.ty(x).clone();
        let c = self.full(&ty, s)?;
        self.binary(BinaryOp::Add, x, c)
    }

    pub fn compare(&mut self, dir: CmpDir, a: Tensor, b: Tensor) -> Result<Tensor, TraceError> {
        let ty = self.ty(a).with_dtype(DType::Bool);
        self.push(Op::Compare { dir, a, b }, ty)
    }

    pub fn select(&mut self, pred: Tensor, on_true: Tensor, on_false: Tensor) -> Result<Tensor, TraceError> {
        let ty = self.ty(on_true).clone();
        self.push(Op::Select { pred, on_true, on_false }, ty)
    }

    pub fn convert(&mut self, x: Tensor, dtype: DType) -> Result<Tensor, TraceError> {
        let ty = self.ty(x).with_dtype(dtype);
        self.push(Op::Convert { x }, ty)
    }

    pub fn broadcast(&mut self, x: Tensor, shape: &[u64], dims: &[u32]) -> Result<Tensor, TraceError> {
        let ty = Type::new(self.ty(x).dtype, shape);
        self.push(Op::Broadcast { x, dims: dims.to_vec() }, ty)
    }

    pub fn reshape(&mut self, x: Tensor, shape: &[u64]) -> Result<Tensor, TraceError> {
        let ty = Type::new(self.ty(x).dtype, shape);
        self.push(Op::Reshape { x }, ty)
    }

    pub fn transpose(&mut self, x: Tensor, perm: &[u32]) -> Result<Tensor, TraceError> {
        let t = self.ty(x);
        let shape: Vec<u64> = perm.iter().map(|&p| t.shape.get(p as usize).copied().unwrap_or(0)).collect();
        let ty = Type::new(t.dtype, shape);
        self.push(Op::Transpose { x, perm: perm.to_vec() }, ty)
    }

    pub fn slice(&mut self, x: Tensor, start: &[u64], limit: &[u64]) -> Result<Tensor, TraceError> {
        let shape: Vec<u64> = start.iter().zip(limit).map(|(s, l)| l.saturating_sub(*s)).collect();
        let ty = Type::new(self.ty(x).dtype, shape);
        self.push(Op::Slice { x, start: start.to_vec(), limit: limit.to_vec() }, ty)
    }

    pub fn concat(&mut self, xs: &[Tensor], dim: u32) -> Result<Tensor, TraceError> {
        let Some(&first) = xs.first() else {
            return self.push(Op::Concat { xs: vec![], dim }, Type::new(DType::F32, []));
        };
        let mut ty = self.ty(first).clone();
        if let Some(d) = ty.shape.get_mut(dim as usize) {
            *d = xs.iter().map(|&x| self.b.ty(x).shape.get(dim as usize).copied().unwrap_or(0)).sum();
        }
        self.push(Op::Concat { xs: xs.to_vec(), dim }, ty)
    }
}
