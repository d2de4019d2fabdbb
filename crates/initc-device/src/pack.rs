//! The arguments of a launch (see `initc_stablehlo::sp`): its static words (the shard's counter
//! base and offsets, host-folded scalars, and its keys with their threefry key schedules) and
//! its pair tables, computed from the launch's [`initc_stablehlo::LaunchData`] once per loaded
//! model and seed.

use initc_cpu::{Buf, Evaluator, Idx};
use initc_ir::{BinaryOp, UnaryOp};
use initc_rng::Half;
use initc_shard::Region;
use initc_stablehlo::{ChainStep, HostValue, LaunchData, ShardProg, Slot, TableDef, TableDraw};

use crate::DeviceError;
use crate::plan::{Launch, Program};

/// Words as the little-endian bytes of a `u32` buffer.
pub(crate) fn le_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn push_u64(out: &mut Vec<u32>, x: u64) {
    out.push((x >> 32) as u32);
    out.push(x as u32);
}

/// The bits of seed-independent node `v`'s first element (in the low bits of the u64).
fn first_bits(ev: &Evaluator, v: initc_ir::Value) -> u64 {
    let mut bytes = Vec::with_capacity(8);
    ev.eval(v, &Idx::Run { start: 0, len: 1 }).append_le_bytes(&mut bytes);
    let mut word = [0u8; 8];
    for (w, b) in word.iter_mut().zip(&bytes) {
        *w = *b;
    }
    u64::from_le_bytes(word)
}

/// The bits of a host value (in the low bits of the u64).
fn host_bits(ev: &Evaluator, v: &HostValue) -> u64 {
    match *v {
        HostValue::Bits(b) => b,
        HostValue::Scalar(x) => first_bits(ev, x),
        HostValue::NormalFactor(c) => {
            let c = f32::from_bits(first_bits(ev, c) as u32);
            (initc_rng::SQRT2_F32 * c).to_bits().into()
        }
    }
}

/// One element-wise op of a [`initc_stablehlo::table_chain`], with its constant operand's bf16
/// bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainOp {
    Unary(UnaryOp),
    Binary { op: BinaryOp, constant: u16, constant_first: bool },
}

/// What one table argument holds, with its constants evaluated: a bf16 draw's pair table
/// ([`initc_rng::bf16_pair_table`]) with a chain of element-wise ops applied to both of each
/// entry's values. Equal specs give equal tables, so a runtime builds and uploads each distinct
/// one once per device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableSpec {
    pub draw: TableDraw,
    pub ops: Vec<ChainOp>,
}

impl TableSpec {
    /// A [`TableDef`] with the values of its chain's constants.
    pub fn new(ev: &Evaluator, def: &TableDef) -> TableSpec {
        let ops = def
            .chain
            .iter()
            .map(|step| match *step {
                ChainStep::Unary(op) => ChainOp::Unary(op),
                ChainStep::Binary { op, constant, constant_first } => {
                    ChainOp::Binary { op, constant: first_bits(ev, constant) as u16, constant_first }
                }
            })
            .collect();
        TableSpec { draw: def.draw, ops }
    }

    /// The table: each value goes through the chain with the CPU engine's bf16 arithmetic
    /// (computed in f32, rounded after every op, as XLA does).
    pub fn build(&self) -> Result<Vec<u32>, DeviceError> {
        let pairs = initc_rng::bf16_pair_table(self.draw.half_draw());
        if self.ops.is_empty() {
            return Ok(pairs);
        }
        let lane = |shift: u32| -> Result<Vec<u16>, DeviceError> {
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
                Buf::Half(Half::BF16, v) => Ok(v),
                _ => Err(DeviceError::TableChain { draw: self.draw }),
            }
        };
        let (lo, hi) = (lane(0)?, lane(16)?);
        Ok(lo.iter().zip(&hi).map(|(&l, &h)| u32::from(l) | (u32::from(h) << 16)).collect())
    }
}

/// The tables of `launch`'s table arguments (its [`Slot::Bf16Table`]s, in order): arguments
/// 1, 2, ...
pub fn table_specs(ev: &Evaluator, launch: &Launch) -> Vec<TableSpec> {
    launch.data.tables.iter().map(|t| TableSpec::new(ev, t)).collect()
}

/// The static words of `launch` (of `program`) for the evaluator's seed (only the
/// [`Slot::Key`] words depend on it).
pub fn pack_static(m: &initc_ir::Module, ev: &Evaluator, program: &Program, launch: &Launch) -> Result<Vec<u32>, DeviceError> {
    let mut out = Vec::with_capacity(program.ir.words());
    let fqn = &m.params[launch.param].fqn;
    pack_words(ev, &program.ir, &m.params[launch.param].ty.shape, &launch.region, &launch.data, fqn, &mut out)?;
    Ok(out)
}

/// Appends the words of `prog`'s slots for `region` of an array of shape `global` (a
/// parameter's, or a concatenated part's for a [`Slot::Piece`]).
fn pack_words(
    ev: &Evaluator,
    prog: &ShardProg,
    global: &[u64],
    region: &Region,
    data: &LaunchData,
    fqn: &str,
    out: &mut Vec<u32>,
) -> Result<(), DeviceError> {
    let strides = initc_cpu::strides(global);
    let base: u64 = region.offset.iter().zip(&strides).map(|(o, s)| o * s).sum();
    let mut values = data.values.iter();
    let mut pieces = data.pieces.iter();
    let missing = |what: String| DeviceError::LaunchData { fqn: fqn.to_string(), what };
    for slot in &prog.slots {
        match *slot {
            Slot::Base => push_u64(out, base),
            Slot::GroupBase(lanes) => push_u64(out, base / lanes),
            Slot::Offset(d) => push_u64(out, *region.offset.get(d).ok_or_else(|| missing(format!("an offset in dim {d}")))?),
            Slot::Key(i) => {
                let &k = data.keys.get(i).ok_or_else(|| missing(format!("key {i}")))?;
                let [k0, k1] = ev.key(k);
                out.extend([k0, k1, k0 ^ k1 ^ initc_rng::THREEFRY_PARITY]);
            }
            Slot::Bf16Table => {} // an argument of its own: `table_specs`
            Slot::Scalar(dt) => {
                let b = host_bits(ev, values.next().ok_or_else(|| missing(format!("the value of a {} scalar", dt.name())))?);
                if dt.size_bytes() == 8 { push_u64(out, b) } else { out.push(b as u32) }
            }
            Slot::Piece { func, .. } => {
                let piece = pieces.next().ok_or_else(|| missing("a piece".into()))?;
                let f = prog.funcs.get(func).ok_or_else(|| missing(format!("piece program {func}")))?;
                pack_words(ev, f, &piece.global, &piece.region, &piece.data, fqn, out)?;
            }
        }
    }
    Ok(())
}
