//! The static words of a launch (see `initc_stablehlo::shard_program`): the shard's counter
//! base and offsets, host-folded scalars, and its keys with their threefry key schedules,
//! packed once per loaded model and seed.

use initc_cpu::{Buf, Evaluator, Idx};
use initc_ir::{BinaryOp, Module, UnaryOp};
use initc_rng::{Half, HalfDraw};
use initc_stablehlo::{ChainStep, HostValue, Slot};

use std::collections::HashMap;

use crate::plan::{Batch, DeviceLaunches, DevicePlan, Launch, Program};

/// Words as the little-endian bytes of a `u32` buffer.
pub fn le_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

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

/// Which draws share one table: the kind and the bits of the bounds (bit-equal bounds give
/// equal tables).
pub fn draw_key(d: &HalfDraw) -> (u8, u64, u64) {
    match *d {
        HalfDraw::Normal => (0, 0, 0),
        HalfDraw::Uniform { min, max } => (1, min.to_bits(), max.to_bits()),
        HalfDraw::TruncatedNormal { lower, upper } => (2, lower.to_bits(), upper.to_bits()),
    }
}

/// One element-wise op of a [`initc_stablehlo::table_chain`], with its constant operand's bf16
/// bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainOp {
    Unary(UnaryOp),
    Binary { op: BinaryOp, constant: u16, constant_first: bool },
}

/// What one table argument holds: a bf16 draw's pair table ([`initc_rng::bf16_pair_table`])
/// with a chain of element-wise ops applied to both of each entry's values. Equal specs give
/// equal tables, so a runtime builds and uploads each distinct one once per device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableSpec {
    /// [`draw_key`] of the draw.
    pub draw: (u8, u64, u64),
    pub ops: Vec<ChainOp>,
}

impl TableSpec {
    pub fn draw(&self) -> HalfDraw {
        let (kind, a, b) = self.draw;
        match kind {
            1 => HalfDraw::Uniform { min: f64::from_bits(a), max: f64::from_bits(b) },
            2 => HalfDraw::TruncatedNormal { lower: f64::from_bits(a), upper: f64::from_bits(b) },
            _ => HalfDraw::Normal,
        }
    }

    /// The table: each value goes through the chain with the CPU engine's bf16 arithmetic
    /// (computed in f32, rounded after every op, as XLA does).
    pub fn build(&self) -> Vec<u32> {
        let pairs = initc_rng::bf16_pair_table(self.draw());
        if self.ops.is_empty() {
            return pairs;
        }
        let lane = |shift: u32| {
            let mut x = Buf::Half(Half::BF16, pairs.iter().map(|&p| (p >> shift) as u16).collect());
            for op in &self.ops {
                x = match *op {
                    ChainOp::Unary(u) => initc_cpu::unary(u, x),
                    ChainOp::Binary { op, constant, constant_first } => {
                        let c = Buf::Half(Half::BF16, vec![constant; pairs.len()]);
                        if constant_first { initc_cpu::binary(op, c, x) } else { initc_cpu::binary(op, x, c) }
                    }
                };
            }
            match x {
                Buf::Half(_, v) => v,
                _ => vec![0; pairs.len()],
            }
        };
        let (lo, hi) = (lane(0), lane(16));
        lo.iter().zip(&hi).map(|(&l, &h)| u32::from(l) | (u32::from(h) << 16)).collect()
    }
}

/// The tables of `launch`'s table arguments (its [`Slot::Bf16Table`]s, in order): arguments
/// 1, 2, ...
pub fn table_specs(m: &Module, ev: &Evaluator, launch: &Launch) -> Vec<TableSpec> {
    launch
        .values
        .iter()
        .filter_map(|v| match v {
            HostValue::Bf16Table(t) => Some(table_spec(m, ev, *t)),
            _ => None,
        })
        .collect()
}

fn table_spec(m: &Module, ev: &Evaluator, v: initc_ir::Value) -> TableSpec {
    let Some((draw, chain)) = initc_stablehlo::table_chain(m, v) else {
        return TableSpec { draw: draw_key(&bf16_draw(m, v)), ops: Vec::new() };
    };
    let ops = chain
        .iter()
        .map(|step| match *step {
            ChainStep::Unary(op) => ChainOp::Unary(op),
            ChainStep::Binary { op, constant, constant_first } => {
                ChainOp::Binary { op, constant: bits(ev, &HostValue::Scalar(constant)) as u16, constant_first }
            }
        })
        .collect();
    TableSpec { draw: draw_key(&bf16_draw(m, draw)), ops }
}

/// The static words of `launch` (of `program`) for the evaluator's seed (only the
/// [`Slot::Key`] words depend on it).
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
            Slot::Key(i) => {
                let [k0, k1] = launch.dyn_keys.get(i).map_or([0, 0], |&k| ev.key(k));
                out.extend([k0, k1, k0 ^ k1 ^ initc_rng::THREEFRY_PARITY]);
            }
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

/// The static words of `batch` (launches of device `dl`) for the evaluator's seed: one vector per
/// group of `fuse` launches, each launch's words one after the other (the arguments of
/// `initc_stablehlo::batched_program`; one vector for a single launch).
pub fn batch_statics(m: &Module, ev: &Evaluator, plan: &DevicePlan, dl: &DeviceLaunches, batch: &Batch, fuse: usize) -> Vec<Vec<u32>> {
    batch
        .launches
        .chunks(fuse.max(1))
        .map(|group| {
            group
                .iter()
                .flat_map(|&k| {
                    let l = &dl.launches[k];
                    pack_static(m, ev, &plan.programs[l.program], l)
                })
                .collect()
        })
        .collect()
}

/// A device's table arguments: each distinct [`TableSpec`] once, and per launch the indices
/// of its tables (its arguments after the static words, in order; none for empty shards).
pub fn device_tables(m: &Module, ev: &Evaluator, dl: &DeviceLaunches) -> (Vec<TableSpec>, Vec<Vec<usize>>) {
    let mut specs: Vec<TableSpec> = Vec::new();
    let mut index: HashMap<TableSpec, usize> = HashMap::new();
    let uses = dl
        .launches
        .iter()
        .map(|l| {
            if l.region.numel() == 0 {
                return Vec::new();
            }
            table_specs(m, ev, l)
                .into_iter()
                .map(|spec| {
                    *index.entry(spec.clone()).or_insert_with(|| {
                        specs.push(spec);
                        specs.len() - 1
                    })
                })
                .collect()
        })
        .collect();
    (specs, uses)
}
