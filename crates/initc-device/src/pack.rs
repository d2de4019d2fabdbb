//! The packed argument of a launch: counter base and offsets of the shard, keys for the seed,
//! host-folded scalars (see `initc_stablehlo::shard_program`).

use initc_cpu::{Evaluator, Idx};
use initc_ir::Module;
use initc_stablehlo::{HostValue, Slot};

use crate::plan::{Launch, Program};

fn push_u64(out: &mut Vec<u32>, x: u64) {
    out.push((x >> 32) as u32);
    out.push(x as u32);
}

/// The bits of a host value (in the low bits of the u64).
fn bits(m: &Module, ev: &Evaluator, v: &HostValue) -> u64 {
    let first = |x| {
        let mut bytes = Vec::with_capacity(8);
        ev.eval(x, &Idx::Run { start: 0, len: 1 }).append_le_bytes(&mut bytes);
        bytes.resize(8, 0);
        u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]))
    };
    match v {
        HostValue::Bits(b) => *b,
        HostValue::Scalar(x) => first(*x),
        HostValue::NormalFactor(c) => {
            let c = f32::from_bits(first(*c) as u32);
            (initc_rng::SQRT2_F32 * c).to_bits().into()
        }
        HostValue::Key(k) => {
            let [a, b] = ev.key(*k);
            let _ = m;
            (u64::from(a) << 32) | u64::from(b)
        }
    }
}

/// The words of `launch` (of `program`) under the evaluator's seed.
pub fn pack(m: &Module, ev: &Evaluator, program: &Program, launch: &Launch) -> Vec<u32> {
    let global = &m.params[launch.param].ty.shape;
    let strides = initc_cpu::strides(global);
    let base: u64 = launch.region.offset.iter().zip(&strides).map(|(o, s)| o * s).sum();
    let mut out = Vec::with_capacity(program.words());
    let mut values = launch.values.iter();
    for slot in &program.slots {
        match *slot {
            Slot::Base => push_u64(&mut out, base),
            Slot::Offset(d) => push_u64(&mut out, launch.region.offset[d]),
            Slot::Key => push_u64(&mut out, values.next().map_or(0, |v| bits(m, ev, v))),
            Slot::Scalar(dt) => {
                let b = values.next().map_or(0, |v| bits(m, ev, v));
                if dt.size_bytes() == 8 { push_u64(&mut out, b) } else { out.push(b as u32) }
            }
        }
    }
    out
}
