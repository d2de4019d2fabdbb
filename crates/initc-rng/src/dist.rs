//! `jax.random` distributions over a set of flat element indices of a draw (docs/RNG_SPEC.md §3–6).
//! Element `i` depends only on `(key, i)`, so any shard is computed independently.
//!
//! Each kernel first writes the raw threefry bits for its indices, then transforms them in
//! place; both loops vectorize. On x86-64 with AVX2+FMA a `#[target_feature]` copy runs (FMA is
//! what XLA:CPU uses, and `mul_add` is exact either way, so results are identical).

use half::{bf16, f16};

use crate::threefry::{Key, for_list, for_run};
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

    /// `rng_bits` for uniform: bf16 draws 8 bits, f16 16 (docs/RNG_SPEC.md §4).
    fn unit_from_bits(self, x: u32) -> f32 {
        let fb = match self {
            Half::BF16 => ((x & 0xFF) >> 1) as u16 | 0x3F80,
            Half::F16 => ((x & 0xFFFF) >> 6) as u16 | 0x3C00,
        };
        self.to_f32(fb) - 1.0 // exact
    }
}

/// How counters become bits (mirrors `initc_ir::RngMode`; README "RNG modes").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// `jax.random`: element `i` is `y0 ^ y1` of threefry(counter `i`), low bits for narrow types.
    #[default]
    Jax,
    /// Packed: threefry(counter `g = i / L`) feeds `L = 64 / w` elements of width `w`; element
    /// `i` is lane `i % L` of `y0 | y1 << 32`, counted from the low end. bf16 draws (uniform,
    /// normal, truncated normal) are the exception: see [`bf16_draw_bits`].
    Fast,
}

/// Lanes per threefry block in fast mode for values of `width` bits.
pub fn fast_lanes(width: u32) -> u64 {
    64 / u64::from(width.clamp(8, 64))
}

/// Fast mode: elements per threefry block of a bf16 draw ([`bf16_draw_bits`]).
pub const BF16_DRAW_LANES: u64 = 2;

/// Fast mode: the random word of element `i` of a bf16 draw, from the block `(y0, y1)` of
/// its group `i / 2` and its lane `j = i % 2`. JAX's bf16 transforms read 7 bits
/// (`(x & 0xFF) >> 1`), so the two elements of a group take bits `7j .. 7j + 7` of `y0`:
/// the word is `((y0 >> 7j) & 0x7F) << 1`. A shard program then finds both elements of a
/// group with one lookup of the 14 bits `y0 & 0x3FFF` in a 16384-entry table of value pairs
/// (one gather per block fuses into XLA's store kernel; one gather per element does not).
#[inline(always)]
pub fn bf16_draw_bits(y0: u32, j: u64) -> u32 {
    ((y0 >> (7 * j)) & 0x7F) << 1
}

/// Lane `j` (width `w` bits) of the 64-bit block `y0 | y1 << 32`.
#[inline(always)]
fn lane(y0: u32, y1: u32, w: u32, j: u64) -> u32 {
    let word = u64::from(y0) | (u64::from(y1) << 32);
    let mask = if w >= 32 { u64::from(u32::MAX) } else { (1u64 << w) - 1 };
    ((word >> (u64::from(w) * j)) & mask) as u32
}

/// Per-element random words of `width` (8, 16 or 32) bits in `mode`, zero-extended into `out`
/// (Jax mode: the full `y0 ^ y1`; the caller keeps the low bits, as JAX does).
#[inline(always)]
fn stream_bits(mode: Mode, width: u32, key: Key, idx: Indices, out: &mut [u32]) {
    match mode {
        Mode::Jax => xor_bits(key, idx, out),
        Mode::Fast => {
            let l = fast_lanes(width);
            for_blocks(key, idx, l, |j, lane_no, y0, y1| out[j] = lane(y0, y1, width, lane_no));
        }
    }
}

/// Calls `emit(j, lane, y0, y1)` for output `j` with the threefry block of its group
/// `idx[j] / lanes` (each block is computed once per run of consecutive indices).
#[inline(always)]
fn for_blocks(key: Key, idx: Indices, lanes: u64, mut emit: impl FnMut(usize, u64, u32, u32)) {
    match idx {
        Indices::Run { start, len } => {
            if len == 0 {
                return;
            }
            let g0 = start / lanes;
            let g1 = (start + len as u64 - 1) / lanes;
            for_run(key, g0, (g1 - g0 + 1) as usize, |gj, y0, y1| {
                let g = g0 + gj as u64;
                for l in 0..lanes {
                    let i = g * lanes + l;
                    if i >= start && i < start + len as u64 {
                        emit((i - start) as usize, l, y0, y1);
                    }
                }
            });
        }
        Indices::List(list) => {
            let groups: Vec<u64> = list.iter().map(|i| i / lanes).collect();
            for_list(key, &groups, |j, y0, y1| emit(j, list[j] % lanes, y0, y1));
        }
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
    /// `random_bits(key, shape, uint<width>)` for width 8, 16 or 32, zero-extended (Jax mode:
    /// `y0 ^ y1`, whose low bits JAX keeps for narrow widths).
    pub fn bits32(mode: Mode, width: u32, key: Key, idx: Indices, out: &mut [u32]) { stream_bits(mode, width, key, idx, out) }
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
    pub fn uniform_f32(mode: Mode, key: Key, idx: Indices, min: f64, max: f64, out: &mut [f32]) {
        let (lo, scale) = f32_bounds(min, max);
        let bits: &mut [u32] = bytemuck_u32(out);
        stream_bits(mode, 32, key, idx, bits);
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
    pub fn normal_f32(mode: Mode, key: Key, idx: Indices, out: &mut [f32]) {
        if mode == Mode::Fast {
            for_blocks(key, idx, 2, |j, l, y0, y1| out[j] = box_muller(y0, y1)[l as usize]);
            return;
        }
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

/// Host-computed constants of a truncated normal draw (docs/RNG_SPEC.md §6).
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

    /// Whether the bounds lie beyond [`BOX_MULLER_MAX`] on both sides, so that fast mode's
    /// Box-Muller normal already satisfies them (the truncation is vacuous).
    pub fn wide(&self) -> bool {
        self.lo < -BOX_MULLER_MAX && self.hi > BOX_MULLER_MAX
    }
}

/// Fast mode's Box-Muller never exceeds `sqrt(-2 ln 2^-24) = 5.77` in magnitude; truncated
/// normals with both bounds beyond 6 are therefore plain normals.
pub const BOX_MULLER_MAX: f32 = 6.0;

/// The f32 constants of [`box_muller`]'s sin/cos polynomials on |a| <= pi/4 (Taylor, in this
/// evaluation order; the shard-program emitter spells the same sequence).
pub const BM_SIN: [f32; 4] = [-1.0 / 6.0, 1.0 / 120.0, -1.0 / 5040.0, 1.0 / 362_880.0];
pub const BM_COS: [f32; 4] = [-0.5, 1.0 / 24.0, -1.0 / 720.0, 1.0 / 40_320.0];

/// Fast mode's normal pair from one threefry block, as XLA:CPU evaluates the emitted ops
/// (single-use multiply-adds contracted to FMA):
/// `u1 = ((y0 >> 8) + 1) * 2^-24` in (0, 1], `r = sqrt(-2 ln u1)`; the angle is quadrant
/// `q = y1 >> 30` plus `phi = pi/4 + a`, `a = (((y1 >> 8) & 0x3FFFFF) * 2^-22 - 0.5) * pi/2`,
/// with `sin a`, `cos a` from [`BM_SIN`]/[`BM_COS`] and `sin phi = (c + s)/sqrt2`,
/// `cos phi = (c - s)/sqrt2`. Returns `[r cos theta, r sin theta]` (lanes 0 and 1).
#[inline(always)]
pub fn box_muller(y0: u32, y1: u32) -> [f32; 2] {
    let u1 = ((y0 >> 8) + 1) as f32 * f32::from_bits(0x3380_0000); // 2^-24
    let r = (-2.0f32 * xla_cpu::log(u1)).sqrt();
    let d = (((y1 >> 8) & 0x3F_FFFF) as f32).mul_add(f32::from_bits(0x3480_0000), -0.5); // 2^-22
    let a = d * std::f32::consts::FRAC_PI_2;
    let a2 = a * a;
    let mut ps = BM_SIN[3];
    let mut pc = BM_COS[3];
    for k in (0..3).rev() {
        ps = ps.mul_add(a2, BM_SIN[k]);
        pc = pc.mul_add(a2, BM_COS[k]);
    }
    let s = a * ps.mul_add(a2, 1.0);
    let c = pc.mul_add(a2, 1.0);
    let h = std::f32::consts::FRAC_1_SQRT_2;
    let (sn, cs) = ((s + c) * h, (c - s) * h);
    let (cz, sz) = match y1 >> 30 {
        0 => (cs, sn),
        1 => (-sn, cs),
        2 => (-cs, -sn),
        _ => (sn, -cs),
    };
    [r * cz, r * sz]
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
    pub fn truncated_normal_f32(mode: Mode, key: Key, idx: Indices, t: &TruncBounds, out: &mut [f32]) {
        if mode == Mode::Fast && t.wide() {
            for_blocks(key, idx, 2, |j, l, y0, y1| out[j] = box_muller(y0, y1)[l as usize]);
            return;
        }
        let scale = t.b - t.a;
        stream_bits(mode, 32, key, idx, bytemuck_u32(out));
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
pub fn uniform_half_bits(mode: Mode, h: Half, key: Key, idx: Indices, min: f64, max: f64, out: &mut [u16]) {
    half_draw(mode, h, key, idx, HalfDraw::Uniform { min, max }, out);
}

/// `jax.random.normal` for bf16/f16: u in the 16-bit type, erf_inv in f32 rounded to 16 bits,
/// then multiplied by the 16-bit √2 and rounded again (docs/RNG_SPEC.md §5).
pub fn normal_half_bits(mode: Mode, h: Half, key: Key, idx: Indices, out: &mut [u16]) {
    half_draw(mode, h, key, idx, HalfDraw::Normal, out);
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
pub fn truncated_normal_half_bits(mode: Mode, h: Half, key: Key, idx: Indices, lower: f64, upper: f64, out: &mut [u16]) {
    half_draw(mode, h, key, idx, HalfDraw::TruncatedNormal { lower, upper }, out);
}

/// A 16-bit draw as a function of its random word.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HalfDraw {
    Uniform { min: f64, max: f64 },
    Normal,
    TruncatedNormal { lower: f64, upper: f64 },
}

/// The bf16 value of `draw` for each of the 256 values of the 8 random bits bf16 draws use
/// (`(x & 0xFF) >> 1` is its mantissa), as bit patterns: a bf16 draw is `table[x & 0xFF]`, in
/// either mode. Fast-mode shard programs look values up instead of evaluating `erf_inv`.
pub fn bf16_table(draw: HalfDraw) -> Vec<u16> {
    let bits: Vec<u32> = (0..256).collect();
    let mut out = vec![0u16; 256];
    half_from_bits(Half::BF16, draw, &bits, &mut out);
    out
}

/// The random words of a 16-bit draw: 16-bit words ([`bits32`]), except for bf16 in fast
/// mode ([`bf16_draw_bits`]).
pub fn half_draw_bits(mode: Mode, h: Half, key: Key, idx: Indices, out: &mut [u32]) {
    if mode == Mode::Fast && h == Half::BF16 {
        for_blocks(key, idx, BF16_DRAW_LANES, |j, lane, y0, _| out[j] = bf16_draw_bits(y0, lane));
    } else {
        bits32(mode, 16, key, idx, out);
    }
}

/// Entries of a bf16 pair table ([`bf16_pair_table`]).
pub const BF16_PAIRS: usize = 1 << 14;

/// Fast mode: the values of both elements of a bf16 draw's group for each of the 2^14
/// values of `y0 & 0x3FFF` ([`bf16_draw_bits`]), as bit patterns, element 0 in the low half:
/// entry `k` is `table[(k & 0x7F) << 1] | table[(k >> 7) << 1] << 16` ([`bf16_table`]).
pub fn bf16_pair_table(draw: HalfDraw) -> Vec<u32> {
    let t = bf16_table(draw);
    (0..BF16_PAIRS as u32)
        .map(|k| u32::from(t[(bf16_draw_bits(k, 0)) as usize]) | (u32::from(t[bf16_draw_bits(k, 1) as usize]) << 16))
        .collect()
}

/// A 16-bit draw: its random words ([`half_draw_bits`]), then [`half_from_bits`].
fn half_draw(mode: Mode, h: Half, key: Key, idx: Indices, draw: HalfDraw, out: &mut [u16]) {
    let mut bits = vec![0u32; out.len()];
    half_draw_bits(mode, h, key, idx, &mut bits);
    half_from_bits(h, draw, &bits, out);
}

/// JAX's 16-bit transforms of random words (docs/RNG_SPEC.md §4–6): uniform with per-op 16-bit
/// rounding; normal and truncated normal through `erf_inv` in f32, rounded to 16 bits before
/// and after the multiply by the 16-bit √2.
fn half_from_bits(h: Half, draw: HalfDraw, bits: &[u32], out: &mut [u16]) {
    let sqrt2 = h.to_f32(h.from_f64(std::f64::consts::SQRT_2));
    match draw {
        HalfDraw::Uniform { min, max } => {
            let (lo, hi) = (h.from_f64(min), h.from_f64(max));
            let scale = h.to_f32(h.from_f32(h.to_f32(hi) - h.to_f32(lo)));
            for (o, &x) in out.iter_mut().zip(bits) {
                *o = uniform_half(h, x, lo, scale);
            }
        }
        HalfDraw::Normal => {
            let lo = h.from_f32(-1.0) - 1; // nextafter(-1, 0): one step toward zero
            let scale = h.to_f32(h.from_f32(1.0 - h.to_f32(lo)));
            for (o, &x) in out.iter_mut().zip(bits) {
                let u = h.to_f32(uniform_half(h, x, lo, scale));
                let e = h.to_f32(h.from_f32(xla_cpu::erf_inv(u)));
                *o = h.from_f32(sqrt2 * e);
            }
        }
        HalfDraw::TruncatedNormal { lower, upper } => {
            let t = HalfTruncBounds::new(h, lower, upper);
            let (scale, clo, chi) = (h.to_f32(t.scale), h.to_f32(t.lo), h.to_f32(t.hi));
            for (o, &x) in out.iter_mut().zip(bits) {
                let uu = h.to_f32(uniform_half(h, x, t.a, scale));
                let e = h.to_f32(h.from_f32(xla_cpu::erf_inv(uu)));
                let z = h.to_f32(h.from_f32(sqrt2 * e));
                *o = h.from_f32(z.max(clo).min(chi));
            }
        }
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
