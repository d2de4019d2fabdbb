//! `jax.random` distributions over a set of flat element indices of a draw (RNG_SPEC.md §3–6).
//! Element `i` depends only on `(key, i)`, so any shard is computed independently.
//!
//! Each kernel first writes the raw threefry bits for its indices, then transforms them in
//! place; both loops vectorize. On x86-64 with AVX2+FMA a `#[target_feature]` copy runs (FMA is
//! what XLA:CPU uses, and `mul_add` is exact either way, so results are identical).

use half::{bf16, f16};

use crate::threefry::{for_list, for_run, Key};
use crate::xla_cpu;

/// Which elements of a draw to produce: a contiguous run of flat indices, or a list.
#[derive(Clone, Copy, Debug)]
pub enum Indices<'a> {
    Run { start: u64, len: usize },
    List(&'a [u64]),
}

impl Indices<'_> {
    pub fn len(&self) -> usize {
        match self {
            Indices::Run { len, .. } => *len,
            Indices::List(l) => l.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 16-bit float formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    BF16,
    F16,
}

impl Half {
    #[inline(always)]
    pub fn to_f32(self, b: u16) -> f32 {
        match self {
            Half::BF16 => bf16::from_bits(b).to_f32(),
            Half::F16 => f16::from_bits(b).to_f32(),
        }
    }

    /// Round-to-nearest-even conversion from f32.
    #[inline(always)]
    pub fn from_f32(self, x: f32) -> u16 {
        match self {
            Half::BF16 => bf16::from_f32(x).to_bits(),
            Half::F16 => f16::from_f32(x).to_bits(),
        }
    }

    /// Round-to-nearest-even conversion from f64 (a Python float cast to the dtype).
    pub fn from_f64(self, x: f64) -> u16 {
        match self {
            Half::BF16 => bf16::from_f64(x).to_bits(),
            Half::F16 => f16::from_f64(x).to_bits(),
        }
    }

    /// `rng_bits` for uniform: bf16 draws 8 bits, f16 16 (RNG_SPEC §4).
    fn unit_from_bits(self, x: u32) -> f32 {
        let fb = match self {
            Half::BF16 => ((x & 0xFF) >> 1) as u16 | 0x3F80,
            Half::F16 => ((x & 0xFFFF) >> 6) as u16 | 0x3C00,
        };
        self.to_f32(fb) - 1.0 // exact
    }
}

#[inline(always)]
fn xor_bits(key: Key, idx: Indices, out: &mut [u32]) {
    match idx {
        Indices::Run { start, len } => for_run(key, start, len, |j, a, b| out[j] = a ^ b),
        Indices::List(l) => for_list(key, l, |j, a, b| out[j] = a ^ b),
    }
}

macro_rules! multiversion {
    ($(#[$m:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$m])*
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn fast($($arg: $ty),*) { body($($arg),*) }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features `fast` was compiled for.
                    return unsafe { fast($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

multiversion! {
    /// `jax.random.bits(key, shape, uint32)` (also the source of 8/16-bit bits: low bits).
    pub fn bits32(key: Key, idx: Indices, out: &mut [u32]) { xor_bits(key, idx, out) }
}

multiversion! {
    /// `jax.random.bits(key, shape, uint64)`: `(y0 << 32) | y1`.
    pub fn bits64(key: Key, idx: Indices, out: &mut [u64]) {
        match idx {
            Indices::Run { start, len } => for_run(key, start, len, |j, a, b| out[j] = (u64::from(a) << 32) | u64::from(b)),
            Indices::List(l) => for_list(key, l, |j, a, b| out[j] = (u64::from(a) << 32) | u64::from(b)),
        }
    }
}

/// f32 uniform from bits: `max(lo, fma(bitcast(bits >> 9 | 1.0) - 1, hi - lo, lo))`.
#[inline(always)]
fn uniform_from_bits(x: u32, lo: f32, scale: f32) -> f32 {
    let unit = f32::from_bits((x >> 9) | 0x3F80_0000) - 1.0;
    lo.max(unit.mul_add(scale, lo))
}

/// f32 bounds of `jax.random.uniform(minval, maxval)`: Python floats cast to f32.
fn f32_bounds(min: f64, max: f64) -> (f32, f32) {
    let (lo, hi) = (min as f32, max as f32);
    (lo, hi - lo)
}

multiversion! {
    /// `jax.random.uniform(key, shape, float32, min, max)` as XLA:CPU computes it.
    pub fn uniform_f32(key: Key, idx: Indices, min: f64, max: f64, out: &mut [f32]) {
        let (lo, scale) = f32_bounds(min, max);
        let bits: &mut [u32] = bytemuck_u32(out);
        xor_bits(key, idx, bits);
        for v in out.iter_mut() {
            *v = uniform_from_bits(v.to_bits(), lo, scale);
        }
    }
}

/// `nextafter(-1, 0)` in f32.
const NORMAL_LO: f32 = f32::from_bits(0xBF7F_FFFF);
/// `float32(sqrt(2))`.
pub const SQRT2_F32: f32 = std::f32::consts::SQRT_2;

multiversion! {
    /// `jax.random.normal(key, shape, float32)` as XLA:CPU computes it.
    pub fn normal_f32(key: Key, idx: Indices, out: &mut [f32]) {
        let scale = 1.0 - NORMAL_LO; // exactly 2.0
        xor_bits(key, idx, bytemuck_u32(out));
        for v in out.iter_mut() {
            let u = uniform_from_bits(v.to_bits(), NORMAL_LO, scale);
            *v = SQRT2_F32 * xla_cpu::erf_inv(u);
        }
    }
}

multiversion! {
    /// `erf_inv(u)` of `jax.random.normal`'s uniform `u`, before the `* sqrt(2)`: what XLA's
    /// algebraic simplifier leaves when it folds `(sqrt(2) * erf_inv(u)) * c` into
    /// `erf_inv(u) * (sqrt(2) * c)` under `jax.jit`.
    pub fn normal_erf_inv_f32(key: Key, idx: Indices, out: &mut [f32]) {
        let scale = 1.0 - NORMAL_LO;
        xor_bits(key, idx, bytemuck_u32(out));
        for v in out.iter_mut() {
            *v = xla_cpu::erf_inv(uniform_from_bits(v.to_bits(), NORMAL_LO, scale));
        }
    }
}

/// Host-computed constants of a truncated normal draw (RNG_SPEC §6).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TruncBounds {
    /// `erf(lower / √2)` and `erf(upper / √2)` as f32.
    pub a: f32,
    pub b: f32,
    /// Clamp bounds `nextafter(lower, +inf)`, `nextafter(upper, -inf)`.
    pub lo: f32,
    pub hi: f32,
}

impl TruncBounds {
    /// The documented method, which is what `jax.jit` does with Python-float bounds (XLA folds
    /// the constants on the host): `a = f32(erf_f64(f32(lower) / f32(√2)))`, true division.
    pub fn new(lower: f64, upper: f64) -> TruncBounds {
        let (l, u) = (lower as f32, upper as f32);
        let fold = |x: f32| libm::erf(f64::from(x / SQRT2_F32)) as f32;
        TruncBounds::with_ab(l, u, fold(l), fold(u))
    }

    /// Bounds with given `a`, `b` (e.g. the eager XLA:CPU values recorded in golden files).
    pub fn with_ab(lower: f32, upper: f32, a: f32, b: f32) -> TruncBounds {
        TruncBounds { a, b, lo: next_up(lower), hi: next_down(upper) }
    }
}

fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        x
    } else if x == 0.0 {
        f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() + 1)
    } else {
        f32::from_bits(x.to_bits() - 1)
    }
}

fn next_down(x: f32) -> f32 {
    -next_up(-x)
}

multiversion! {
    /// `jax.random.truncated_normal(key, lower, upper, shape, float32)` given its bounds.
    pub fn truncated_normal_f32(key: Key, idx: Indices, t: &TruncBounds, out: &mut [f32]) {
        let scale = t.b - t.a;
        xor_bits(key, idx, bytemuck_u32(out));
        for v in out.iter_mut() {
            let u = uniform_from_bits(v.to_bits(), t.a, scale);
            let z = SQRT2_F32 * xla_cpu::erf_inv(u);
            *v = z.max(t.lo).min(t.hi);
        }
    }
}

multiversion! {
    /// `jax.random.uniform(key, shape, float64, min, max)` (x64 mode).
    pub fn uniform_f64(key: Key, idx: Indices, min: f64, max: f64, out: &mut [f64]) {
        let bits: &mut [u64] = bytemuck_u64(out);
        bits64(key, idx, bits);
        let scale = max - min;
        for v in out.iter_mut() {
            let unit = f64::from_bits((v.to_bits() >> 12) | 0x3FF0_0000_0000_0000) - 1.0;
            *v = min.max(unit.mul_add(scale, min));
        }
    }
}

/// Uniform in a 16-bit format: product and sum each rounded to 16 bits (both XLA backends).
#[inline(always)]
fn uniform_half(h: Half, x: u32, lo: u16, scale: f32) -> u16 {
    let lo_f = h.to_f32(lo);
    let prod = h.to_f32(h.from_f32(h.unit_from_bits(x) * scale));
    let sum = h.to_f32(h.from_f32(prod + lo_f));
    h.from_f32(lo_f.max(sum))
}

/// `jax.random.uniform` for bf16/f16 (bit patterns in `out`).
pub fn uniform_half_bits(h: Half, key: Key, idx: Indices, min: f64, max: f64, out: &mut [u16]) {
    let (lo, hi) = (h.from_f64(min), h.from_f64(max));
    let scale = h.to_f32(h.from_f32(h.to_f32(hi) - h.to_f32(lo)));
    let mut bits = vec![0u32; out.len()];
    bits32(key, idx, &mut bits);
    for (o, &x) in out.iter_mut().zip(&bits) {
        *o = uniform_half(h, x, lo, scale);
    }
}

/// `jax.random.normal` for bf16/f16: u in the 16-bit type, erf_inv in f32 rounded to 16 bits,
/// then multiplied by the 16-bit √2 and rounded again (RNG_SPEC §5).
pub fn normal_half_bits(h: Half, key: Key, idx: Indices, out: &mut [u16]) {
    let lo = h.from_f32(-1.0) - 1; // nextafter(-1, 0): one step toward zero
    let scale = h.to_f32(h.from_f32(1.0 - h.to_f32(lo)));
    let sqrt2 = h.to_f32(h.from_f64(std::f64::consts::SQRT_2));
    let mut bits = vec![0u32; out.len()];
    bits32(key, idx, &mut bits);
    for (o, &x) in out.iter_mut().zip(&bits) {
        let u = h.to_f32(uniform_half(h, x, lo, scale));
        let e = h.to_f32(h.from_f32(xla_cpu::erf_inv(u)));
        *o = h.from_f32(sqrt2 * e);
    }
}

/// Host-computed constants of a 16-bit truncated normal draw, as 16-bit bit patterns: the
/// uniform's `a` and `scale = b - a`, and the clamp bounds (nextafter of the rounded bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HalfTruncBounds {
    pub a: u16,
    pub scale: u16,
    pub lo: u16,
    pub hi: u16,
}

impl HalfTruncBounds {
    /// JAX's code path in the 16-bit type (bounds and `erf` constants computed as for f32,
    /// then rounded).
    pub fn new(h: Half, lower: f64, upper: f64) -> HalfTruncBounds {
        let (l, u) = (h.to_f32(h.from_f64(lower)), h.to_f32(h.from_f64(upper)));
        let sqrt2 = h.to_f32(h.from_f64(std::f64::consts::SQRT_2));
        let fold = |x: f32| h.from_f64(libm::erf(f64::from(h.to_f32(h.from_f32(x / sqrt2)))));
        let (a, b) = (fold(l), fold(u));
        let scale = h.from_f32(h.to_f32(b) - h.to_f32(a));
        let step = |x: f32, up: bool| -> u16 {
            let bits = h.from_f32(x);
            if x == 0.0 {
                return if up { 1 } else { 0x8001 };
            }
            if (x >= 0.0) == up { bits.wrapping_add(1) } else { bits.wrapping_sub(1) }
        };
        HalfTruncBounds { a, scale, lo: step(l, true), hi: step(u, false) }
    }
}

/// `jax.random.truncated_normal` for bf16/f16 (see [`HalfTruncBounds`]). Checked against
/// jax.jit by tools/oracle for bf16 (mlp example); f16 not yet.
pub fn truncated_normal_half_bits(h: Half, key: Key, idx: Indices, lower: f64, upper: f64, out: &mut [u16]) {
    let t = HalfTruncBounds::new(h, lower, upper);
    let sqrt2 = h.to_f32(h.from_f64(std::f64::consts::SQRT_2));
    let (scale, clo, chi) = (h.to_f32(t.scale), h.to_f32(t.lo), h.to_f32(t.hi));
    let mut bits = vec![0u32; out.len()];
    bits32(key, idx, &mut bits);
    for (o, &x) in out.iter_mut().zip(&bits) {
        let uu = h.to_f32(uniform_half(h, x, t.a, scale));
        let e = h.to_f32(h.from_f32(xla_cpu::erf_inv(uu)));
        let z = h.to_f32(h.from_f32(sqrt2 * e));
        *o = h.from_f32(z.max(clo).min(chi));
    }
}

/// Views an f32 buffer as its bit patterns (same size and alignment).
fn bytemuck_u32(x: &mut [f32]) -> &mut [u32] {
    // SAFETY: f32 and u32 have the same size and alignment, and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<u32>(), x.len()) }
}

fn bytemuck_u64(x: &mut [f64]) -> &mut [u64] {
    // SAFETY: as above, for f64/u64.
    unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<u64>(), x.len()) }
}
