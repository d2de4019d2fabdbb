//! The initializer library. Every initializer is a JAX expression (README "Key derivation" and
//! "Distribution contract"): scalars (bounds, std, gains, fans) are computed in f64 on the host
//! exactly as PyTorch's `torch.nn.init` / Flax compute them.
//!
//! The distribution contract: an initializer has, in every dtype, the distribution its name
//! promises. So a 16-bit (bf16/f16) parameter is computed in f32 — the draw, the affine, Flax's
//! variance arithmetic — and rounded to its dtype once, at the end (`convert`, round to nearest
//! even): `(jax.random.normal(key, shape, jnp.float32) * std).astype(jnp.bfloat16)`. JAX's own
//! 16-bit transforms (a draw op whose result type is bf16/f16) take 7 or 10 random bits per
//! element and are never emitted here; they stay in the IR only for frontends that reproduce
//! user code which itself calls `jax.random.*(..., dtype=jnp.bfloat16)`.
//!
//! A truncated normal whose standardized bounds both lie beyond [`NORMAL_REACH`] is the
//! normal: no f32 normal draw reaches them, so the clamp is the identity, and JAX's inverse-CDF
//! truncated normal would instead put mass 2^-23 on the lower bound itself (−100σ for
//! torchtitan's `trunc_normal_(std=0.02, a=-2, b=2)`).

use std::fmt::Write;

use initc_ir::{BinaryOp, DType, Type, UnaryOp};

use crate::tracer::{Tensor, TraceError, Tracer};

/// Which fan `kaiming_*` / `variance_scaling` divide by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FanMode {
    FanIn,
    FanOut,
    /// Flax only: `(fan_in + fan_out) / 2`.
    FanAvg,
}

/// `torch.nn.init.calculate_gain` nonlinearities.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nonlinearity {
    Linear,
    Conv,
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu,
    Selu,
}

/// Flax `variance_scaling` distributions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    TruncatedNormal,
    Normal,
    Uniform,
}

/// An initializer. PyTorch-style variants use PyTorch's fan convention (weight
/// `[out, in, *kernel]`); `VarianceScaling` uses Flax's (`in_axis`, `out_axis`, default -2/-1).
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// `jnp.full(shape, v)`: zeros, ones, constant.
    Constant(f64),
    /// `uniform(key, shape, dtype, a, b)`.
    Uniform { a: f64, b: f64 },
    /// `normal(key, shape, dtype) * std + mean` (`* std` dropped when 1, `+ mean` when 0).
    Normal { mean: f64, std: f64 },
    /// PyTorch `trunc_normal_` with absolute bounds `a`, `b`:
    /// `truncated_normal(key, (a-mean)/std, (b-mean)/std) * std + mean`.
    TruncNormal { mean: f64, std: f64, a: f64, b: f64 },
    /// `xavier_uniform_`: bound = gain·√3·√(2/(fan_in+fan_out)).
    XavierUniform { gain: f64 },
    /// `xavier_normal_`: std = gain·√(2/(fan_in+fan_out)).
    XavierNormal { gain: f64 },
    /// `kaiming_uniform_`: bound = √3·gain/√fan.
    KaimingUniform { a: f64, mode: FanMode, nonlinearity: Nonlinearity },
    /// `kaiming_normal_`: std = gain/√fan.
    KaimingNormal { a: f64, mode: FanMode, nonlinearity: Nonlinearity },
    /// Flax `variance_scaling(scale, mode, distribution, in_axis, out_axis)`; lecun/glorot/he
    /// and Flax `Embed` are instances.
    VarianceScaling { scale: f64, mode: FanMode, distribution: Distribution, in_axis: i64, out_axis: i64 },
    /// Flax `initializers.truncated_normal(stddev, lower, upper)` (bounds in std units):
    /// `truncated_normal(key, lower, upper) * stddev`.
    FlaxTruncatedNormal { stddev: f64, lower: f64, upper: f64 },
}

/// std of a standard normal truncated to (-2, 2); Flax divides by it.
const TRUNC_STD_2: f64 = 0.879_625_661_034_239_8;

/// No f32 normal draw exceeds this magnitude: JAX mode's inverse-CDF normal stays within
/// ±5.42 (its uniform is at least `nextafter(-1, 0)` and below 1 − 2^-23), fast mode's
/// Box-Muller within ±5.77 (`sqrt(-2 ln 2^-24)`). A truncated normal with both standardized
/// bounds at or beyond ±6 is therefore drawn as the normal (its clamp would be the identity).
pub const NORMAL_REACH: f64 = 6.0;

/// Whether standardized bounds `[lower, upper]` contain every f32 normal draw.
pub fn vacuous_bounds(lower: f64, upper: f64) -> bool {
    lower <= -NORMAL_REACH && upper >= NORMAL_REACH
}

impl Init {
    pub const ZEROS: Init = Init::Constant(0.0);
    pub const ONES: Init = Init::Constant(1.0);

    /// Flax `lecun_normal()`: the default Dense/Conv kernel init.
    pub fn lecun_normal() -> Init {
        Init::VarianceScaling { scale: 1.0, mode: FanMode::FanIn, distribution: Distribution::TruncatedNormal, in_axis: -2, out_axis: -1 }
    }

    /// Flax `nn.Embed` default: `variance_scaling(1, fan_in, normal, out_axis=0)`.
    pub fn flax_embed() -> Init {
        Init::VarianceScaling { scale: 1.0, mode: FanMode::FanIn, distribution: Distribution::Normal, in_axis: -2, out_axis: 0 }
    }

    /// PyTorch `nn.Linear` / `nn.ConvNd` weight default: `kaiming_uniform_(a=√5)`.
    pub fn torch_linear_weight() -> Init {
        Init::KaimingUniform { a: 5f64.sqrt(), mode: FanMode::FanIn, nonlinearity: Nonlinearity::LeakyRelu }
    }

    /// PyTorch `nn.Linear` / `nn.ConvNd` bias default: `uniform(-1/√fan_in, 1/√fan_in)` with
    /// the weight's fan_in (zeros when fan_in is 0, as torch leaves it untouched but finite).
    pub fn torch_bias(weight_fan_in: u64) -> Init {
        if weight_fan_in == 0 {
            return Init::ZEROS;
        }
        let bound = 1.0 / (weight_fan_in as f64).sqrt();
        Init::Uniform { a: -bound, b: bound }
    }

    /// The human-readable form recorded in the IR and the manifest.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = match self {
            Init::Constant(v) if *v == 0.0 && v.is_sign_positive() => write!(s, "zeros"),
            Init::Constant(v) if *v == 1.0 => write!(s, "ones"),
            Init::Constant(v) => write!(s, "constant(value={v:?})"),
            Init::Uniform { a, b } => write!(s, "uniform(a={a:?}, b={b:?})"),
            Init::Normal { mean, std } => write!(s, "normal(mean={mean:?}, std={std:?})"),
            Init::TruncNormal { mean, std, a, b } => write!(s, "trunc_normal(mean={mean:?}, std={std:?}, a={a:?}, b={b:?})"),
            Init::XavierUniform { gain } => write!(s, "xavier_uniform(gain={gain:?})"),
            Init::XavierNormal { gain } => write!(s, "xavier_normal(gain={gain:?})"),
            Init::KaimingUniform { a, mode, nonlinearity } => {
                write!(s, "kaiming_uniform(a={a:?}, mode={}, nonlinearity={})", mode.name(), nonlinearity.name())
            }
            Init::KaimingNormal { a, mode, nonlinearity } => {
                write!(s, "kaiming_normal(a={a:?}, mode={}, nonlinearity={})", mode.name(), nonlinearity.name())
            }
            Init::VarianceScaling { scale, mode, distribution, in_axis, out_axis } => write!(
                s,
                "variance_scaling(scale={scale:?}, mode={}, distribution={}, in_axis={in_axis}, out_axis={out_axis})",
                mode.name(),
                distribution.name()
            ),
            Init::FlaxTruncatedNormal { stddev, lower, upper } => {
                write!(s, "flax_truncated_normal(stddev={stddev:?}, lower={lower:?}, upper={upper:?})")
            }
        };
        s
    }

    /// Emits the JAX expression of this initializer for a parameter of type `ty`. A 16-bit
    /// parameter's random initializer is computed in f32 and converted once at the end (the
    /// module docs); constants are cast from f64 straight to the dtype (`jnp.full`).
    pub(crate) fn lower(&self, t: &mut Tracer, fqn: &str, ty: &Type, key: Option<Tensor>) -> Result<Tensor, TraceError> {
        if !ty.dtype.is_float() && !matches!(self, Init::Constant(_)) {
            let bad = |reason: String| TraceError::BadInit { fqn: fqn.to_string(), reason };
            return Err(bad(format!("{} needs a float dtype, not {}", self.describe(), ty.dtype)));
        }
        if matches!(ty.dtype, DType::BF16 | DType::F16) && !matches!(self, Init::Constant(_)) {
            let wide = ty.with_dtype(DType::F32);
            let x = self.lower_in(t, fqn, &wide, key)?;
            return t.convert(x, ty.dtype);
        }
        self.lower_in(t, fqn, ty, key)
    }

    /// The initializer's expression computed in `ty` itself.
    fn lower_in(&self, t: &mut Tracer, fqn: &str, ty: &Type, key: Option<Tensor>) -> Result<Tensor, TraceError> {
        let mut key_of = |t: &mut Tracer| -> Result<Tensor, TraceError> { key.map_or_else(|| t.param_key(fqn), Ok) };
        let bad = |reason: String| TraceError::BadInit { fqn: fqn.to_string(), reason };
        match *self {
            Init::Constant(v) => t.full(ty, v),
            Init::Uniform { a, b } => uniform(t, fqn, ty, a, b, &mut key_of),
            Init::Normal { mean, std } => normal(t, fqn, ty, mean, std, &mut key_of),
            Init::TruncNormal { mean, std, a, b } => {
                if !(std > 0.0 && std.is_finite() && a < b) {
                    return Err(bad(format!("trunc_normal needs std > 0 and a < b, got std={std:?}, a={a:?}, b={b:?}")));
                }
                let key = key_of(t)?;
                let z = truncated_normal(t, key, ty, (a - mean) / std, (b - mean) / std)?;
                affine(t, z, mean, std)
            }
            Init::XavierUniform { gain } | Init::XavierNormal { gain } => {
                let (fan_in, fan_out) = torch_fans(ty).map_err(bad)?;
                let std = gain * (2.0 / (fan_in + fan_out) as f64).sqrt();
                if matches!(self, Init::XavierUniform { .. }) {
                    let bound = 3f64.sqrt() * std;
                    uniform(t, fqn, ty, -bound, bound, &mut key_of)
                } else {
                    normal(t, fqn, ty, 0.0, std, &mut key_of)
                }
            }
            Init::KaimingUniform { a, mode, nonlinearity } | Init::KaimingNormal { a, mode, nonlinearity } => {
                let (fan_in, fan_out) = torch_fans(ty).map_err(bad)?;
                let fan = match mode {
                    FanMode::FanIn => fan_in,
                    FanMode::FanOut => fan_out,
                    FanMode::FanAvg => return Err(bad("kaiming_* takes mode fan_in or fan_out".into())),
                };
                if fan == 0 {
                    return t.full(ty, 0.0);
                }
                let std = nonlinearity.gain(a) / (fan as f64).sqrt();
                if matches!(self, Init::KaimingUniform { .. }) {
                    let bound = 3f64.sqrt() * std;
                    uniform(t, fqn, ty, -bound, bound, &mut key_of)
                } else {
                    normal(t, fqn, ty, 0.0, std, &mut key_of)
                }
            }
            Init::VarianceScaling { scale, mode, distribution, in_axis, out_axis } => {
                let (fan_in, fan_out) = flax_fans(ty, in_axis, out_axis).map_err(bad)?;
                let denominator = match mode {
                    FanMode::FanIn => fan_in,
                    FanMode::FanOut => fan_out,
                    FanMode::FanAvg => (fan_in + fan_out) / 2.0,
                };
                variance_scaling(t, ty, scale / denominator, distribution, &mut key_of)
            }
            Init::FlaxTruncatedNormal { stddev, lower, upper } => {
                if lower >= upper {
                    return Err(bad(format!("lower {lower:?} must be below upper {upper:?}")));
                }
                let key = key_of(t)?;
                let z = truncated_normal(t, key, ty, lower, upper)?;
                t.mul_scalar(z, stddev)
            }
        }
    }
}

impl FanMode {
    pub fn name(self) -> &'static str {
        match self {
            FanMode::FanIn => "fan_in",
            FanMode::FanOut => "fan_out",
            FanMode::FanAvg => "fan_avg",
        }
    }
    pub fn from_name(s: &str) -> Option<FanMode> {
        [FanMode::FanIn, FanMode::FanOut, FanMode::FanAvg].into_iter().find(|m| m.name() == s)
    }
}

impl Distribution {
    pub fn name(self) -> &'static str {
        match self {
            Distribution::TruncatedNormal => "truncated_normal",
            Distribution::Normal => "normal",
            Distribution::Uniform => "uniform",
        }
    }
    pub fn from_name(s: &str) -> Option<Distribution> {
        [Distribution::TruncatedNormal, Distribution::Normal, Distribution::Uniform].into_iter().find(|m| m.name() == s)
    }
}

impl Nonlinearity {
    pub const ALL: [Nonlinearity; 7] = [
        Nonlinearity::Linear,
        Nonlinearity::Conv,
        Nonlinearity::Sigmoid,
        Nonlinearity::Tanh,
        Nonlinearity::Relu,
        Nonlinearity::LeakyRelu,
        Nonlinearity::Selu,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Nonlinearity::Linear => "linear",
            Nonlinearity::Conv => "conv",
            Nonlinearity::Sigmoid => "sigmoid",
            Nonlinearity::Tanh => "tanh",
            Nonlinearity::Relu => "relu",
            Nonlinearity::LeakyRelu => "leaky_relu",
            Nonlinearity::Selu => "selu",
        }
    }

    pub fn from_name(s: &str) -> Option<Nonlinearity> {
        Self::ALL.into_iter().find(|n| n.name() == s)
    }

    /// `torch.nn.init.calculate_gain(self, a)`.
    pub fn gain(self, a: f64) -> f64 {
        match self {
            Nonlinearity::Linear | Nonlinearity::Conv | Nonlinearity::Sigmoid => 1.0,
            Nonlinearity::Tanh => 5.0 / 3.0,
            Nonlinearity::Relu => 2f64.sqrt(),
            Nonlinearity::LeakyRelu => (2.0 / (1.0 + a.powi(2))).sqrt(),
            Nonlinearity::Selu => 3.0 / 4.0,
        }
    }
}

/// PyTorch `_calculate_fan_in_and_fan_out`: weight `[out, in, *kernel]`.
pub fn torch_fans(ty: &Type) -> Result<(u64, u64), String> {
    if ty.rank() < 2 {
        return Err(format!("fan in/out needs at least 2 dimensions, shape is {:?}", ty.shape));
    }
    let receptive: u64 = ty.shape[2..].iter().product();
    Ok((ty.shape[1] * receptive, ty.shape[0] * receptive))
}

/// Flax `_compute_fans` (float arithmetic, as in Python).
pub fn flax_fans(ty: &Type, in_axis: i64, out_axis: i64) -> Result<(f64, f64), String> {
    let rank = ty.rank() as i64;
    let axis = |a: i64| -> Result<usize, String> {
        let i = if a < 0 { a + rank } else { a };
        if (0..rank).contains(&i) { Ok(i as usize) } else { Err(format!("axis {a} is out of range for shape {:?}", ty.shape)) }
    };
    let (i, o) = (axis(in_axis)?, axis(out_axis)?);
    let numel: f64 = ty.shape.iter().map(|&d| d as f64).product();
    let receptive = numel / ty.shape[i] as f64 / ty.shape[o] as f64;
    Ok((ty.shape[i] as f64 * receptive, ty.shape[o] as f64 * receptive))
}

type KeyOf<'a> = &'a mut dyn FnMut(&mut Tracer) -> Result<Tensor, TraceError>;

fn uniform(t: &mut Tracer, fqn: &str, ty: &Type, a: f64, b: f64, key_of: KeyOf) -> Result<Tensor, TraceError> {
    if !(a.is_finite() && b.is_finite() && a <= b) {
        return Err(TraceError::BadInit { fqn: fqn.into(), reason: format!("uniform needs finite a <= b, got a={a:?}, b={b:?}") });
    }
    if a == b {
        return t.full(ty, a);
    }
    let key = key_of(t)?;
    t.uniform(key, ty, a, b)
}

fn normal(t: &mut Tracer, fqn: &str, ty: &Type, mean: f64, std: f64, key_of: KeyOf) -> Result<Tensor, TraceError> {
    if !(std >= 0.0 && std.is_finite() && mean.is_finite()) {
        return Err(TraceError::BadInit {
            fqn: fqn.into(),
            reason: format!("normal needs a finite mean and std >= 0, got mean={mean:?}, std={std:?}"),
        });
    }
    let key = key_of(t)?;
    let z = t.normal(key, ty)?;
    affine(t, z, mean, std)
}

/// `jax.random.truncated_normal(key, lower, upper)`, or `jax.random.normal(key)` when the bounds
/// are vacuous ([`vacuous_bounds`]).
fn truncated_normal(t: &mut Tracer, key: Tensor, ty: &Type, lower: f64, upper: f64) -> Result<Tensor, TraceError> {
    if vacuous_bounds(lower, upper) { t.normal(key, ty) } else { t.truncated_normal(key, ty, lower, upper) }
}

/// `z * std + mean`, dropping `* 1` and `+ 0` (README, "Distribution contract").
fn affine(t: &mut Tracer, z: Tensor, mean: f64, std: f64) -> Result<Tensor, TraceError> {
    let z = if std == 1.0 { z } else { t.mul_scalar(z, std)? };
    if mean == 0.0 { Ok(z) } else { t.add_scalar(z, mean) }
}

/// Flax `variance_scaling` with its exact op sequence in the parameter dtype:
/// `variance = dtype(scale/denominator)`; truncated_normal: `tn(key,-2,2) * (sqrt(variance) / 0.8796…)`;
/// normal: `normal(key) * sqrt(variance)`; uniform: `uniform(key,-1,1) * sqrt(3 * variance)`.
fn variance_scaling(t: &mut Tracer, ty: &Type, variance: f64, dist: Distribution, key_of: KeyOf) -> Result<Tensor, TraceError> {
    let scalar = Type::new(ty.dtype, []);
    let var = t.full(&scalar, variance)?;
    let key = key_of(t)?;
    let (z, factor) = match dist {
        Distribution::TruncatedNormal => {
            let s = t.unary(UnaryOp::Sqrt, var)?;
            let c = t.full(&scalar, TRUNC_STD_2)?;
            (t.truncated_normal(key, ty, -2.0, 2.0)?, t.binary(BinaryOp::Div, s, c)?)
        }
        Distribution::Normal => (t.normal(key, ty)?, t.unary(UnaryOp::Sqrt, var)?),
        Distribution::Uniform => {
            let three = t.full(&scalar, 3.0)?;
            let v3 = t.binary(BinaryOp::Mul, three, var)?;
            (t.uniform(key, ty, -1.0, 1.0)?, t.unary(UnaryOp::Sqrt, v3)?)
        }
    };
    let b = t.broadcast(factor, &ty.shape, &[])?;
    t.binary(BinaryOp::Mul, z, b)
}
