//! Comparing device shards with the CPU engine (the reference semantics).
//!
//! Integer data must be identical. Floats may differ where XLA:GPU and XLA:CPU legitimately
//! differ (docs/RNG_SPEC.md §7: FMA contraction, `log1p`; XLA:GPU also keeps f32 precision between
//! 16-bit ops, `xla_allow_excess_precision`):
//! - bf16/f16: within 1 ULP of the element, or within 2^-16 of the parameter's largest
//!   magnitude: initializers compute 16-bit parameters in f32 and round once, so the f32
//!   differences below reach the 16-bit value, and near zero one f32 step is many 16-bit ULPs
//!   (measured on an H200, fast-mode bf16 8B: ≤ 12.5k ULP, 70 of 58.7M elements beyond 1 ULP);
//! - f32: within 4 ULP of the element, or within 2^-16 of the parameter's largest magnitude.
//!   The second term covers `u * (b - a) + a` rounded once (FMA) or twice: the uniform draw
//!   `u` differs by up to one ULP of `b - a`, which is many ULPs of a result near zero, and
//!   `erf_inv` multiplies it by up to ~110 in a ±3σ truncated normal's tails (measured on an
//!   H200: ≤ 28k ULP near 0, all within this bound).
//!
//! A bug (wrong key, counter, offset or distribution) moves elements by about the parameter's
//! own scale, 2^16 times this tolerance. Bit-identity is expected against JAX on the same GPU,
//! which `tools/device/jax_gpu_compare.py` checks.

use initc_cpu::{Evaluator, materialize};
use initc_ir::{DType, Module};

use crate::DeviceError;
use crate::runtime::{DeviceShards, Shard};

/// f32 tolerance in ULPs of the element.
pub const F32_ULPS: u32 = 4;
/// f32 tolerance relative to the parameter's largest magnitude.
pub const F32_SCALE_TOLERANCE: f32 = 1.0 / 65536.0;

/// How a shard compared.
#[derive(Clone, Debug, Default)]
pub struct ShardCheck {
    pub fqn: String,
    pub mesh_device: u64,
    pub elements: u64,
    /// Elements whose bits differ.
    pub differing: u64,
    /// Largest difference in ULPs of the reference element.
    pub max_ulp: u64,
    /// Elements outside the tolerance.
    pub failing: u64,
    /// First failing element: (flat index in the shard, device value, reference value).
    pub first_failure: Option<(u64, f64, f64)>,
}

/// Copies a shard to the host.
pub fn to_host(s: &Shard) -> Result<Vec<u8>, DeviceError> {
    let mut out = vec![0u8; s.bytes() as usize];
    if !out.is_empty() {
        s.buffer.to_host(&mut out)?;
    }
    Ok(out)
}

fn ulp_distance(a: f32, b: f32) -> u64 {
    let key = |x: f32| {
        let i = x.to_bits() as i32;
        if i < 0 { i64::from(i32::MIN) - i64::from(i) } else { i64::from(i) }
    };
    (key(a) - key(b)).unsigned_abs()
}

/// ULP distance of two 16-bit float bit patterns (sign-magnitude, as for f32).
fn half_ulp_distance(a: u16, b: u16) -> u64 {
    let key = |x: u16| if x & 0x8000 != 0 { -i64::from(x & 0x7fff) } else { i64::from(x) };
    (key(a) - key(b)).unsigned_abs()
}

/// Compares every shard of `devices` with the CPU engine under `seed`.
pub fn verify(m: &Module, seed: u64, devices: &[DeviceShards]) -> Result<Vec<ShardCheck>, DeviceError> {
    let ev = Evaluator::new(m, seed);
    let mut out = Vec::new();
    for d in devices {
        for s in &d.shards {
            let got = to_host(s)?;
            let mut want = Vec::with_capacity(got.len());
            let region = initc_shard::Region { offset: s.offset.clone(), shape: s.shape.clone() };
            let p = &m.params[s.param];
            materialize(&ev, p.value, &p.ty.shape, &region, |b: &[u8]| -> Result<(), DeviceError> {
                want.extend_from_slice(b);
                Ok(())
            })?;
            out.push(compare(s, d.mesh_device, &got, &want));
        }
    }
    Ok(out)
}

fn compare(s: &Shard, mesh_device: u64, got: &[u8], want: &[u8]) -> ShardCheck {
    ShardCheck { fqn: s.fqn.clone(), mesh_device, elements: s.shape.iter().product(), ..compare_bytes(s.dtype, got, want) }
}

/// Compares raw little-endian elements of `dtype` under the module docs' tolerances.
pub fn compare_bytes(dtype: DType, got: &[u8], want: &[u8]) -> ShardCheck {
    let mut c = ShardCheck::default();
    let half = match dtype {
        DType::BF16 => Some(initc_rng::Half::BF16),
        DType::F16 => Some(initc_rng::Half::F16),
        _ => None,
    };
    if dtype != DType::F32 && half.is_none() {
        // integers and f64: identical bits
        let w = dtype.size_bytes() as usize;
        for (i, (g, r)) in got.chunks(w).zip(want.chunks(w)).enumerate() {
            if g != r {
                c.differing += 1;
                c.failing += 1;
                c.max_ulp = u64::MAX;
                c.first_failure.get_or_insert((i as u64, f64::NAN, f64::NAN));
            }
        }
        return c;
    }
    // element words (f32 bits, or a 16-bit pattern widened), their values and ULP distances
    let w = if half.is_some() { 2 } else { 4 };
    let word = |b: &[u8]| if w == 2 { u32::from(u16::from_le_bytes([b[0], b[1]])) } else { u32::from_le_bytes([b[0], b[1], b[2], b[3]]) };
    let value = |x: u32| match half {
        Some(h) => h.to_f32(x as u16),
        None => f32::from_bits(x),
    };
    let ulps = |a: u32, b: u32| match half {
        Some(_) => half_ulp_distance(a as u16, b as u16),
        None => ulp_distance(f32::from_bits(a), f32::from_bits(b)),
    };
    let ulp_tol = if half.is_some() { 1 } else { u64::from(F32_ULPS) };
    let scale = want.chunks_exact(w).fold(0f32, |a, x| a.max(value(word(x)).abs()));
    let param_tol = F32_SCALE_TOLERANCE * scale;
    for (i, (g, r)) in got.chunks_exact(w).zip(want.chunks_exact(w)).enumerate() {
        let (gw, rw) = (word(g), word(r));
        if gw == rw {
            continue;
        }
        c.differing += 1;
        let u = ulps(gw, rw);
        c.max_ulp = c.max_ulp.max(u);
        let (gv, rv) = (value(gw), value(rw));
        let within = u <= ulp_tol || (gv - rv).abs() <= param_tol; // false for NaN
        if !within {
            c.failing += 1;
            c.first_failure.get_or_insert((i as u64, gv.into(), rv.into()));
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulps_count_across_zero_and_between_neighbours() {
        assert_eq!(ulp_distance(1.0, 1.0), 0);
        assert_eq!(ulp_distance(1.0, f32::from_bits(1.0f32.to_bits() + 3)), 3);
        assert_eq!(ulp_distance(f32::from_bits(1), -f32::from_bits(1)), 2);
        assert_eq!(half_ulp_distance(0x3F80, 0x3F81), 1);
        assert_eq!(half_ulp_distance(0x0001, 0x8001), 2);
    }

    #[test]
    fn bf16_tolerance_is_one_ulp_or_the_f32_scale_term() {
        let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|&x| half::bf16::from_f32(x).to_bits().to_le_bytes()).collect() };
        let want = [1.0f32, 1e-6, 0.5, -0.25];
        // 1e-6 -> 2e-6: over a hundred bf16 ULPs near zero, but within 2^-16 of the largest magnitude
        let c = compare_bytes(DType::BF16, &bytes(&[1.0, 2e-6, 0.5, -0.25]), &bytes(&want));
        assert_eq!((c.differing, c.failing), (1, 0));
        assert!(c.max_ulp > 100, "{}", c.max_ulp);
        // one ULP at full scale passes, two do not (and the failure names the values)
        let up = |x: f32, k: u16| half::bf16::from_bits(half::bf16::from_f32(x).to_bits() + k).to_f32();
        let c = compare_bytes(DType::BF16, &bytes(&[up(1.0, 1), 1e-6, up(0.5, 2), -0.25]), &bytes(&want));
        assert_eq!((c.differing, c.failing), (2, 1));
        assert_eq!(c.first_failure, Some((2, f64::from(up(0.5, 2)), 0.5)));
        // integers must be identical
        let c = compare_bytes(DType::U32, &[1, 0, 0, 0], &[2, 0, 0, 0]);
        assert_eq!(c.failing, 1);
    }
}
