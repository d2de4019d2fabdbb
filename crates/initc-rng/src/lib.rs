//! `jax.random` (threefry2x32, partitionable mode), bit-exact with JAX on XLA:CPU
//! (docs/RNG_SPEC.md): keys, `random_bits`, `uniform`, `normal`, `truncated_normal` in f32, bf16,
//! f16 (uniform also f64).
//!
//! API boundary: pure functions of `(key, flat element indices)`; no allocation beyond the
//! caller's buffers (16-bit paths use a scratch vector), no I/O, no threads.

// XLA's polynomial coefficients are written digit for digit as in XLA's source (more digits
// than f32 holds, `as f32` casts included), so a reader can compare them with it; NaN-aware
// comparisons (`!(x < y)`) are meant.
#![allow(clippy::excessive_precision, clippy::unnecessary_cast, clippy::neg_cmp_op_on_partial_ord)]

mod dist;
mod threefry;
pub mod xla_cpu;

pub use dist::{
    BF16_DRAW_LANES, BF16_PAIRS, BM_COS, BM_SIN, BOX_MULLER_MAX, Half, HalfDraw, HalfTruncBounds, Indices, Mode, SQRT2_F32, TruncBounds,
    bf16_draw_bits, bf16_pair_table, bf16_table, bits32, bits64, box_muller, fast_lanes, half_draw_bits, normal_erf_inv_f32, normal_f32,
    normal_half_bits, truncated_normal_f32, truncated_normal_half_bits, uniform_f32, uniform_f64, uniform_half_bits,
};
pub use threefry::{Key, THREEFRY_PARITY, block_at, fold_in, prng_key, split_at, threefry2x32};
