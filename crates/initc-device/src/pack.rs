//! The word vectors of a launch (see `initc_stablehlo::shard_program`): static words (the
//! shard's counter base and offsets, host-folded scalars, `fold_in` data), packed once per
//! loaded model, and dynamic words (the root key and host-computed keys), packed per seed.

use initc_cpu::{Evaluator, Idx};
use initc_ir::Module;
use initc_rng::HalfDraw;
use initc_stablehlo::{HostValue, Slot};

use crate::plan::{Launch, Program};

fn push_u64(out: &mut Vec<u32>, x: u64) {
    out.push((x >> 32) as u32);
    out.push(x as u32);
}

/// The bits of a host value (in the low bits of the u64).
fn bits(ev: &Evaluator, v: &HostValue) -> u64 {
    let first = |x| {
        let mut bytes = Vec::with_capacity(8);
        ev.eval(x, &Idx::Run { start: 0, len: 1 }).append_le_bytes(&mut bytes);
        bytes.resize(8, 0);
        u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]))
    };
    match v {
        HostValue::Bits(b) => *b,
        HostValue::Scalar(x) => first(*x),
        HostValue::Bf16Table(_) => 0, // an argument of its own: `table_draws`
        HostValue::NormalFactor(c) => {
            let c = f32::from_bits(first(*c) as u32);
            (initc_rng::SQRT2_F32 * c).to_bits().into()
        }
    }
}

/// The bf16 draw of the random op at `v` (its table: [`initc_rng::bf16_pair_table`]).
fn bf16_draw(m: &Module, v: initc_ir::Value) -> HalfDraw {
    match m.node(v).op {
        initc_ir::Op::Uniform { min, max, .. } => HalfDraw::Uniform { min: min.get(), max: max.get() },
        initc_ir::Op::TruncatedNormal { lower, upper, .. } => HalfDraw::TruncatedNormal { lower: lower.get(), upper: upper.get() },
        _ => HalfDraw::Normal,
    }
}

/// The draws whose pair tables are `launch`'s table arguments (its [`Slot::Bf16Table`]s, in
/// order): arguments 2, 3, ...
pub fn table_draws(m: &Module, launch: &Launch) -> Vec<HalfDraw> {
    launch.values.iter().filter_map(|v| match v {
        HostValue::Bf16Table(t) => Some(bf16_draw(m, *t)),
        _ => None,
    }).collect()
}

/// Which draws share one table: the kind and the bits of the bounds (bit-equal bounds give
/// equal tables, so each distinct table is computed and uploaded once per device).
pub fn draw_key(d: &HalfDraw) -> (u8, u64, u64) {
    match *d {
        HalfDraw::Normal => (0, 0, 0),
        HalfDraw::Uniform { min, max } => (1, min.to_bits(), max.to_bits()),
        HalfDraw::TruncatedNormal { lower, upper } => (2, lower.to_bits(), upper.to_bits()),
    }
}

/// The dynamic words of `launch` for the evaluator's seed: `PRNGKey(seed)`, then its
/// host-computed keys.
pub fn pack_dynamic(seed: u64, ev: &Evaluator, launch: &Launch) -> Vec<u32> {
    let mut out = initc_rng::prng_key(seed).to_vec();
    for &k in &launch.dyn_keys {
        out.extend(ev.key(k));
    }
    out
}

/// The static words of `launch` (of `program`); `ev` may be for any seed (they do not depend
/// on it).
pub fn pack_static(m: &Module, ev: &Evaluator, program: &Program, launch: &Launch) -> Vec<u32> {
    let global = &m.params[launch.param].ty.shape;
    let strides = initc_cpu::strides(global);
    let base: u64 = launch.region.offset.iter().zip(&strides).map(|(o, s)| o * s).sum();
    let mut out = Vec::with_capacity(program.words());
    let mut values = launch.values.iter();
    for slot in &program.slots {
        match *slot {
            Slot::Base => push_u64(&mut out, base),
            Slot::GroupBase(lanes) => push_u64(&mut out, base / lanes),
            Slot::Offset(d) => push_u64(&mut out, launch.region.offset[d]),
            Slot::Bf16Table => {
                values.next(); // an argument of its own: `table_draws`
            }
            Slot::Scalar(dt) => {
                let b = values.next().map_or(0, |v| bits(ev, v));
                if dt.size_bytes() == 8 { push_u64(&mut out, b) } else { out.push(b as u32) }
            }
        }
    }
    out
}
