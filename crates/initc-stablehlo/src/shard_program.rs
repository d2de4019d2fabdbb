//! Shard programs: one small single-device StableHLO program per parameter shard, which
//! computes exactly that device's region of the parameter and nothing else.
//!
//! `@main(%arg0: tensor<Sxui32>, %arg1: tensor<Dxui32>) -> tensor<local shape>` reads
//! everything that varies between parameters and devices from two word vectors:
//! - `%arg0`, the static words (the [`Slot`]s): the shard's counter base and per-dim offsets,
//!   the parameter's scalar constants (evaluated on the host) and the `fold_in` data of its
//!   key. They do not depend on the seed, so a runtime uploads them once per loaded model.
//! - `%arg1`, the dynamic words: the root key (`PRNGKey(seed)`), then any key the program
//!   cannot derive from the root with `fold_in` ([`ShardProgram::dyn_keys`], computed on the
//!   host). For the presets that is the root key alone, one upload per device and seed.
//!
//! Parameters with the same structure and local shape therefore get byte-identical text, so a
//! model needs one compiled executable per distinct (initializer, dtype, local shape), however
//! many layers it has, and no SPMD partitioner (hence no collective) is involved.
//!
//! Values equal the whole-array program's: an element's random counter is its flat index in
//! the global array (`base + Σ iota_d·stride_d`), and every constant XLA would fold (uniform
//! and truncated-normal bounds, `normal * c`) is folded on the host the way XLA folds it.
//! Supported: parameters whose every non-scalar node has the parameter's shape (element-wise
//! programs, which all presets are); others get [`LowerError::Unsupported`].

use std::collections::HashMap;
use std::fmt::Write;

use initc_ir::{BinaryOp, DType, Module, Op, Value};
use initc_shard::Region;

use crate::emit::{binary_name, compare_attr, unary_name};
use crate::rng::{fast_truncation_is_vacuous, truncated_consts, uniform_consts, Funcs};
use crate::text::{elem, i64_array, tensor, Body, Val};
use crate::LowerError;

/// Entries of a bf16 pair table ([`initc_rng::bf16_pair_table`]).
const PAIRS: u64 = initc_rng::BF16_PAIRS as u64;

/// A group of words in the packed argument, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The flat global index of the shard's first element (u64: hi, lo).
    Base,
    /// Packed programs: that index divided by the lane count (the first element's group).
    GroupBase(u64),
    /// The shard's offset in dim `d` (u64: hi, lo).
    Offset(usize),
    /// A scalar in `dtype`'s bit format (one word, two for 64-bit types: hi, lo).
    Scalar(DType),
    /// A bf16 pair table ([`HostValue::Bf16Table`], [`initc_rng::bf16_pair_table`]): not in
    /// the words but an argument of its own, `tensor<16384xui32>`, after the dynamic words
    /// (the `i`-th table slot is `%arg{2 + i}`).
    Bf16Table,
}

impl Slot {
    pub fn words(self) -> usize {
        match self {
            Slot::Base | Slot::GroupBase(_) | Slot::Offset(_) => 2,
            Slot::Scalar(d) => if d.size_bytes() == 8 { 2 } else { 1 },
            Slot::Bf16Table => 0,
        }
    }
}

/// How the host computes a parameter's value for a [`Slot::Scalar`].
#[derive(Clone, Debug, PartialEq)]
pub enum HostValue {
    /// The (seed-independent) value of node `v`'s first element, in its dtype.
    Scalar(Value),
    /// `f32(sqrt2_f32 * c)` with `c` the f32 value of node `v` (XLA's fold of `normal * c`).
    NormalFactor(Value),
    /// Bits known when the program is emitted.
    Bits(u64),
    /// `initc_rng::bf16_pair_table` of the bf16 random op at node `v` (for [`Slot::Bf16Table`]).
    Bf16Table(Value),
}

/// One parameter shard's program.
#[derive(Clone, Debug)]
pub struct ShardProgram {
    /// The MLIR text (generic form). Identical for parameters that can share an executable.
    pub text: String,
    /// The static words' layout.
    pub slots: Vec<Slot>,
    /// Host values for the `Scalar` slots, in slot order.
    pub values: Vec<HostValue>,
    /// Keys the host computes, in the dynamic words after the root key (two words each).
    pub dyn_keys: Vec<Value>,
    /// Local (result) shape and dtype.
    pub shape: Vec<u64>,
    pub dtype: DType,
    /// e.g. `truncated_normal·mul f32[1024,4096]`.
    pub summary: String,
}

impl ShardProgram {
    pub fn words(&self) -> usize {
        self.slots.iter().map(|s| s.words()).sum()
    }
}

/// The program computing `region` of parameter `param`.
pub fn shard_program(m: &Module, param: usize, region: &Region) -> Result<ShardProgram, LowerError> {
    let p = &m.params[param];
    let global = p.ty.shape.clone();
    let lanes = packed_lanes(m, param, region);
    let (grouped, compute) = if lanes > 1 {
        let last = global.len() - 1;
        let (mut g, mut c) = (global.clone(), region.shape.clone());
        g[last] /= lanes;
        c[last] /= lanes;
        (g, c)
    } else {
        (global.clone(), region.shape.clone())
    };
    // No locations: identical programs must have identical text.
    let mut e = Emitter {
        m,
        fqn: &p.fqn,
        global: &global,
        local: &region.shape,
        compute,
        lanes,
        memo: HashMap::new(),
        seeded: m.seed_dependent(),
        funcs: Funcs::shard(&grouped, m.rng),
        body: Body::new("shard"),
        slots: vec![if lanes > 1 { Slot::GroupBase(lanes) } else { Slot::Base }],
        values: Vec::new(),
        keys: HashMap::new(),
        keys2: HashMap::new(),
        dyn_keys: Vec::new(),
        vals: HashMap::new(),
        ops: Vec::new(),
    };
    e.body.loc = None;
    for v in cone(m, p.value) {
        e.node(v)?;
    }
    let out = e.get(p.value)?;
    let out = if lanes > 1 { e.pack(p.ty.dtype, &out) } else { out.into_iter().next().ok_or(LowerError::Internal("no lanes".into()))? };
    e.body.ret(&[&out]);
    Ok(e.finish(&p.ty.dtype, out))
}

/// Fast mode feeds `L` consecutive elements from one threefry block (`L = 64 / w` for width
/// `w`, 2 for bf16 draws: [`initc_rng::bf16_draw_bits`]); a shard program computes a
/// parameter in groups of `L` (one block, `L` results, one store of `L * w` bits) when every
/// random op in its program draws at the parameter's width with the same `L`, and the last
/// dimension of the array, of the shard and of the shard's offset are multiples of `L` (so no
/// group straddles shards). Returns `L`, or 1 for the element-wise form.
fn packed_lanes(m: &Module, param: usize, region: &Region) -> u64 {
    let p = &m.params[param];
    let dt = p.ty.dtype;
    if m.rng != initc_ir::RngMode::Fast || p.ty.shape.is_empty() || dt == DType::Bool || dt == DType::Key || dt.size_bytes() > 4 {
        return 1;
    }
    let width = 8 * dt.size_bytes() as u32;
    let mut lanes = None;
    for v in cone(m, p.value) {
        let n = m.node(v);
        let w = n.ty.dtype.size_bytes() as u32 * 8;
        let (w, l) = match n.op {
            Op::RandomBits { width: w, .. } => (u32::from(w), initc_rng::fast_lanes(w.into())),
            Op::Uniform { .. } | Op::Normal { .. } | Op::TruncatedNormal { .. } if n.ty.dtype == DType::BF16 => (w, initc_rng::BF16_DRAW_LANES),
            Op::Uniform { .. } | Op::Normal { .. } | Op::TruncatedNormal { .. } => (w, initc_rng::fast_lanes(w)),
            _ => continue,
        };
        if w != width || lanes.is_some_and(|x| x != l) {
            return 1;
        }
        lanes = Some(l);
    }
    let lanes = lanes.unwrap_or_else(|| initc_rng::fast_lanes(width));
    let last = p.ty.shape.len() - 1;
    if p.ty.shape[last] % lanes != 0 || region.shape[last] % lanes != 0 || region.offset[last] % lanes != 0 {
        return 1;
    }
    lanes
}

/// The nodes `v` depends on (itself included), ascending (= topological).
fn cone(m: &Module, v: Value) -> Vec<Value> {
    let mut seen = vec![false; m.nodes.len()];
    let mut stack = vec![v];
    while let Some(x) = stack.pop() {
        if !std::mem::replace(&mut seen[x.index()], true) {
            stack.extend(m.node(x).op.operands());
        }
    }
    (0..m.nodes.len()).filter(|&i| seen[i]).map(|i| Value(i as u32)).collect()
}

struct Emitter<'a> {
    m: &'a Module,
    fqn: &'a str,
    global: &'a [u64],
    local: &'a [u64],
    /// The shape the program computes in: `local`, or with the last dim divided by `lanes`.
    compute: Vec<u64>,
    /// Elements per group (1: element-wise program).
    lanes: u64,
    /// Scalars and offsets read once however many lanes use them.
    memo: HashMap<String, Val>,
    seeded: Vec<bool>,
    funcs: Funcs,
    body: Body,
    slots: Vec<Slot>,
    values: Vec<HostValue>,
    /// Shard-mode key (`tensor<4xui32>`) per key node.
    keys: HashMap<Value, Val>,
    /// Key data (`tensor<2xui32>`) per key node.
    keys2: HashMap<Value, Val>,
    dyn_keys: Vec<Value>,
    /// Per node, one value per lane.
    vals: HashMap<Value, Vec<Val>>,
    /// Op names, for the summary.
    ops: Vec<&'static str>,
}

impl Emitter<'_> {
    fn unsupported(&self, what: String) -> LowerError {
        LowerError::Unsupported(format!("parameter `{}`: {what}; shard programs compute element-wise parameter programs", self.fqn))
    }

    fn get(&self, v: Value) -> Result<Vec<Val>, LowerError> {
        self.vals.get(&v).cloned().ok_or_else(|| self.unsupported(format!("{v} ({}) is used by an op that needs its array", self.m.ty(v))))
    }

    fn is_param_shaped(&self, v: Value) -> bool {
        self.m.ty(v).shape == self.global
    }

    /// Adds a slot; returns the word range it occupies.
    fn slot(&mut self, s: Slot, value: Option<HostValue>) -> (usize, usize) {
        let start: usize = self.slots.iter().map(|s| s.words()).sum();
        self.slots.push(s);
        self.values.extend(value);
        (start, s.words())
    }

    /// `%arg0[start .. start + n]` as a `tensor<nxui32>`.
    fn words(&mut self, start: usize, n: usize) -> Val {
        self.slice_of("%arg0", "ARG0", start, n)
    }

    /// `%arg1[start .. start + n]` (dynamic words).
    fn dyn_words(&mut self, start: usize, n: usize) -> Val {
        self.slice_of("%arg1", "ARG1", start, n)
    }

    fn slice_of(&mut self, name: &str, placeholder: &str, start: usize, n: usize) -> Val {
        let arg = Val { name: name.into(), ty: placeholder.into() };
        let attr = format!("start_indices = {}, limit_indices = {}, strides = {}", i64_array([start as u64]), i64_array([(start + n) as u64]), i64_array([1]));
        self.body.op("stablehlo.slice", &[&arg], &attr, &tensor(&[n as u64], "ui32"))
    }

    /// Whether random op `v` is a packed bf16 draw read from its table (consts: the table).
    fn looks_up(&self, v: Value) -> bool {
        let n = self.m.node(v);
        self.lanes > 1 && n.ty.dtype == DType::BF16 && matches!(n.op, Op::Uniform { .. } | Op::Normal { .. } | Op::TruncatedNormal { .. })
    }

    fn get1(&self, v: Value, lane: usize) -> Result<Val, LowerError> {
        Ok(self.get(v)?.swap_remove(lane))
    }

    /// A scalar slot read as a `tensor<dt>` (once per program, whatever the lane count).
    fn scalar(&mut self, dt: DType, hv: HostValue) -> Val {
        let memo = format!("{dt:?} {hv:?}");
        if let Some(v) = self.memo.get(&memo) {
            return v.clone();
        }
        let v = self.scalar_slot(dt, hv);
        self.memo.insert(memo, v.clone());
        v
    }

    fn scalar_slot(&mut self, dt: DType, hv: HostValue) -> Val {
        let (start, n) = self.slot(Slot::Scalar(dt), Some(hv));
        let w = self.words(start, n);
        let s = tensor(&[], elem(dt));
        let int = match dt.size_bytes() {
            8 => {
                let hi = self.word_u64(&w, 0);
                let lo = self.word_u64(&w, 1);
                let c = self.body.constant("32", &tensor(&[], "ui64"));
                let hs = self.body.ew("stablehlo.shift_left", &[&hi, &c]);
                self.body.ew("stablehlo.or", &[&hs, &lo])
            }
            4 => self.body.op("stablehlo.reshape", &[&w], "", &tensor(&[], "ui32")),
            2 => {
                let x = self.body.op("stablehlo.reshape", &[&w], "", &tensor(&[], "ui32"));
                self.body.op("stablehlo.convert", &[&x], "", &tensor(&[], "ui16"))
            }
            _ => {
                let x = self.body.op("stablehlo.reshape", &[&w], "", &tensor(&[], "ui32"));
                self.body.op("stablehlo.convert", &[&x], "", &tensor(&[], "ui8"))
            }
        };
        match dt {
            DType::Bool => {
                let z = self.body.constant("0", &int.ty);
                self.body.op("stablehlo.compare", &[&int, &z], &compare_attr(initc_ir::CmpDir::Ne), &s)
            }
            DType::U8 | DType::U16 | DType::U32 | DType::U64 => int,
            _ => self.body.op("stablehlo.bitcast_convert", &[&int], "", &s),
        }
    }

    /// Word `i` of a `tensor<2xui32>` as a `tensor<ui64>`.
    fn word_u64(&mut self, w: &Val, i: u64) -> Val {
        let one = tensor(&[1], "ui32");
        let attr = format!("start_indices = {}, limit_indices = {}, strides = {}", i64_array([i]), i64_array([i + 1]), i64_array([1]));
        let x = self.body.op("stablehlo.slice", &[w], &attr, &one);
        let x = self.body.op("stablehlo.reshape", &[&x], "", &tensor(&[], "ui32"));
        self.body.op("stablehlo.convert", &[&x], "", &tensor(&[], "ui64"))
    }

    /// The key data of key node `k`: the root key from the dynamic words, `fold_in` on the
    /// device with static data, or a host-computed key in the dynamic words.
    fn key2(&mut self, k: Value) -> Result<Val, LowerError> {
        if let Some(v) = self.keys2.get(&k) {
            return Ok(v.clone());
        }
        if !self.m.ty(k).shape.is_empty() {
            return Err(self.unsupported(format!("random op on an array of keys ({})", self.m.ty(k))));
        }
        let v = match self.m.node(k).op {
            Op::Seed => self.dyn_words(0, 2),
            Op::FoldIn { key, data } => {
                let parent = self.key2(key)?;
                let d = self.scalar(DType::U32, HostValue::Bits(data.into()));
                let f = self.funcs.fold_in();
                self.body.call(&f, &[&parent, &d], &[tensor(&[2], "ui32")]).remove(0)
            }
            _ => {
                self.dyn_keys.push(k);
                self.dyn_words(2 * self.dyn_keys.len(), 2)
            }
        };
        self.keys2.insert(k, v.clone());
        Ok(v)
    }

    /// The shard-mode key of key node `k`: `[k0, k1, base_hi, base_lo]`.
    fn key(&mut self, k: Value) -> Result<Val, LowerError> {
        if let Some(v) = self.keys.get(&k) {
            return Ok(v.clone());
        }
        let kw = self.key2(k)?;
        let base = self.words(0, 2);
        let v = self.body.op("stablehlo.concatenate", &[&kw, &base], "dimension = 0 : i64", &tensor(&[4], "ui32"));
        self.keys.insert(k, v.clone());
        Ok(v)
    }

    /// Seed-independent scalars and splats: one host-evaluated scalar, broadcast.
    fn is_host_constant(&self, v: Value) -> bool {
        let n = self.m.node(v);
        if self.seeded[v.index()] || n.ty.dtype == DType::Key {
            return false;
        }
        n.ty.numel() == Some(1) || self.m.is_splat(v)
    }

    fn local_ty(&self, dt: DType) -> String {
        tensor(&self.compute, elem(dt))
    }

    /// The pair table of bf16 random op `v` ([`initc_rng::bf16_pair_table`]): an argument of
    /// its own, uploaded once per distinct table (no slice or build kernel per launch).
    fn bf16_table(&mut self, v: Value) -> Val {
        let i = self.slots.iter().filter(|s| **s == Slot::Bf16Table).count();
        self.slot(Slot::Bf16Table, Some(HostValue::Bf16Table(v)));
        Val { name: format!("%arg{}", 2 + i), ty: tensor(&[PAIRS], "ui32") }
    }

    /// `table[index]` for a 1-D `table` and a ui32 `index` of shape `shape` (one gather).
    fn lookup(&mut self, table: &Val, index: &Val, shape: &[u64], out_elem: &str) -> Val {
        let x = self.body.op("stablehlo.convert", &[index], "", &tensor(shape, "i32"));
        let mut col = shape.to_vec();
        col.push(1);
        let x = self.body.op("stablehlo.reshape", &[&x], "", &tensor(&col, "i32"));
        let attr = format!("dimension_numbers = #stablehlo.gather<collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = {}>, indices_are_sorted = false, slice_sizes = array<i64: 1>", shape.len());
        self.body.op("stablehlo.gather", &[table, &x], &attr, &tensor(shape, out_elem))
    }

    /// The shard's offset in dim `d` as a `tensor<ui64>` (one slot per program).
    fn offset(&mut self, d: usize) -> Val {
        let memo = format!("offset {d}");
        if let Some(v) = self.memo.get(&memo) {
            return v.clone();
        }
        let (start, n) = self.slot(Slot::Offset(d), None);
        let w = self.words(start, n);
        let hi = self.word_u64(&w, 0);
        let lo = self.word_u64(&w, 1);
        let c = self.body.constant("32", &tensor(&[], "ui64"));
        let hs = self.body.ew("stablehlo.shift_left", &[&hi, &c]);
        let off = self.body.ew("stablehlo.or", &[&hs, &lo]);
        self.memo.insert(memo, off.clone());
        off
    }

    /// Interleaves the lanes of a packed program's result: lane `j` of group `g` is element
    /// `g * L + j`. Each lane's bits go to bits `j*w ..` of a `L*w`-bit word (u64, or u32 for
    /// bf16 pairs), whose bitcast to `L` values of the dtype (little-endian, as on x86 and
    /// GPUs) is reshaped to the local shape.
    fn pack(&mut self, dt: DType, lanes: &[Val]) -> Val {
        let w = 8 * dt.size_bytes() as u64;
        let uint = format!("ui{w}");
        let tw = tensor(&self.compute, &format!("ui{}", w * lanes.len() as u64));
        let mut acc: Option<Val> = None;
        for (j, v) in lanes.iter().enumerate() {
            let bits = if matches!(dt, DType::F32 | DType::BF16 | DType::F16 | DType::I32) {
                self.body.op("stablehlo.bitcast_convert", &[v], "", &tensor(&self.compute, &uint))
            } else {
                v.clone()
            };
            let x = self.body.op("stablehlo.convert", &[&bits], "", &tw);
            let x = if j == 0 { x } else {
                let sh = self.body.constant(&(j as u64 * w).to_string(), &tw);
                self.body.ew("stablehlo.shift_left", &[&x, &sh])
            };
            acc = Some(match acc {
                None => x,
                Some(a) => self.body.ew("stablehlo.or", &[&a, &x]),
            });
        }
        let acc = acc.unwrap_or_else(|| self.body.constant("0", &tw));
        let mut split = self.compute.clone();
        split.push(lanes.len() as u64);
        let v = self.body.op("stablehlo.bitcast_convert", &[&acc], "", &tensor(&split, elem(dt)));
        self.body.op("stablehlo.reshape", &[&v], "", &tensor(self.local, elem(dt)))
    }

    fn node(&mut self, v: Value) -> Result<(), LowerError> {
        let node = self.m.node(v);
        let dt = node.ty.dtype;
        if dt == DType::Key {
            return Ok(()); // keys are host values, read where a random op uses them
        }
        let lanes = self.lanes as usize;
        if self.is_host_constant(v) {
            let s = self.scalar(dt, HostValue::Scalar(v));
            let shaped = if self.is_param_shaped(v) {
                self.body.splat(&s, &self.local_ty(dt))
            } else if node.ty.shape.is_empty() {
                s
            } else if node.ty.numel() == Some(1) {
                self.body.op("stablehlo.reshape", &[&s], "", &tensor(&node.ty.shape, elem(dt)))
            } else {
                return Err(self.unsupported(format!("constant {v} of shape {} (not the parameter's)", node.ty)));
            };
            self.vals.insert(v, vec![shaped; lanes]);
            return Ok(());
        }
        if !self.is_param_shaped(v) {
            return Err(self.unsupported(format!("{v} = {} has shape {}, not the parameter's {:?}", node.op.mnemonic(), node.ty, self.global)));
        }
        let out = self.local_ty(dt);
        let local = self.compute.clone();
        self.ops.push(node.op.mnemonic());
        // Host scalars and keys first: read once, shared by every lane.
        let key = match node.op {
            Op::Uniform { key, .. } | Op::Normal { key } | Op::TruncatedNormal { key, .. } | Op::RandomBits { key, .. } => Some(self.key(key)?),
            _ => None,
        };
        let table = self.looks_up(v);
        let consts: Vec<Val> = match node.op {
            _ if table => vec![self.bf16_table(v)],
            Op::Uniform { min, max, .. } => {
                let (lo, scale) = uniform_consts_bits(dt, min.get(), max.get());
                vec![self.scalar(dt, HostValue::Bits(lo)), self.scalar(dt, HostValue::Bits(scale))]
            }
            Op::TruncatedNormal { lower, upper, .. } if !fast_truncation_is_vacuous(self.funcs.fast, dt, lower.get(), upper.get()) => {
                truncated_consts_bits(dt, lower.get(), upper.get()).into_iter().map(|b| self.scalar(dt, HostValue::Bits(b))).collect()
            }
            Op::Iota { dim } => vec![self.offset(dim as usize)],
            _ => vec![],
        };
        let mut vals = Vec::with_capacity(lanes);
        for j in 0..lanes {
            self.funcs.lane = (lanes > 1).then_some((self.lanes, j as u64));
            let val = self.lane_node(v, j, &out, &local, key.as_ref(), &consts)?;
            vals.push(val);
        }
        self.funcs.lane = None;
        self.vals.insert(v, vals);
        Ok(())
    }

    /// Lane `j` of node `v` (the whole node in an element-wise program).
    fn lane_node(&mut self, v: Value, j: usize, out: &str, local: &[u64], key: Option<&Val>, consts: &[Val]) -> Result<Val, LowerError> {
        let node = self.m.node(v);
        let dt = node.ty.dtype;
        let out = out.to_string();
        let k = || key.cloned().ok_or(LowerError::Internal("random op without key".into()));
        Ok(match node.op.clone() {
            Op::Uniform { .. } | Op::Normal { .. } | Op::TruncatedNormal { .. } if self.looks_up(v) => {
                // both elements of a group are one pair-table entry at the 14 bits `y0 & 0x3FFF`
                // (the lanes' gathers are identical, so XLA's CSE keeps one per block)
                let t = tensor(local, "ui32");
                let f = self.funcs.bits(local);
                let y = self.body.call(&f, &[&k()?], &[t.clone(), t.clone()]);
                let m = self.body.constant(&(PAIRS - 1).to_string(), &t);
                let x = self.body.ew("stablehlo.and", &[&y[0], &m]);
                let pair = self.lookup(&consts[0], &x, local, "ui32");
                let pair = if j == 0 { pair } else {
                    let s = self.body.constant("16", &t);
                    self.body.ew("stablehlo.shift_right_logical", &[&pair, &s])
                };
                let h = self.body.op("stablehlo.convert", &[&pair], "", &tensor(local, "ui16"));
                self.body.op("stablehlo.bitcast_convert", &[&h], "", &out)
            }
            Op::Uniform { .. } => {
                let f = self.funcs.uniform(dt, local);
                self.body.call(&f, &[&k()?, &consts[0], &consts[1]], &[out]).remove(0)
            }
            Op::Normal { .. } => {
                let f = self.funcs.normal(dt, local);
                self.body.call(&f, &[&k()?], &[out]).remove(0)
            }
            Op::TruncatedNormal { lower, upper, .. } if fast_truncation_is_vacuous(self.funcs.fast, dt, lower.get(), upper.get()) => {
                let f = self.funcs.normal(dt, local);
                self.body.call(&f, &[&k()?], &[out]).remove(0)
            }
            Op::TruncatedNormal { .. } => {
                let f = self.funcs.truncated_normal(dt, local);
                self.body.call(&f, &[&k()?, &consts[0], &consts[1], &consts[2], &consts[3]], &[out]).remove(0)
            }
            Op::RandomBits { width, .. } => self.funcs.random_bits(&mut self.body, &k()?, width, local, &out),
            Op::Binary { op: BinaryOp::Mul, .. } if self.m.normal_times_constant(v, &self.seeded).is_some() => {
                let (key, c) = self.m.normal_times_constant(v, &self.seeded).ok_or(LowerError::Internal("pattern".into()))?;
                let k = self.key(key)?;
                let f = self.funcs.normal_erf_inv(dt, local);
                let e = self.body.call(&f, &[&k], std::slice::from_ref(&out)).remove(0);
                let s = self.scalar(DType::F32, HostValue::NormalFactor(c));
                let s = self.body.splat(&s, &out);
                self.body.ew("stablehlo.multiply", &[&e, &s])
            }
            Op::Iota { dim } => {
                let d = dim as usize;
                let t64 = tensor(local, "ui64");
                let mut io = self.body.op("stablehlo.iota", &[], &format!("iota_dimension = {dim} : i64"), &t64);
                if self.lanes > 1 && d + 1 == local.len() {
                    // element index in the last dim = group * L + lane
                    let l = self.body.constant(&self.lanes.to_string(), &t64);
                    io = self.body.ew("stablehlo.multiply", &[&io, &l]);
                    if j > 0 {
                        let jc = self.body.constant(&j.to_string(), &t64);
                        io = self.body.ew("stablehlo.add", &[&io, &jc]);
                    }
                }
                let off = self.body.splat(&consts[0], &t64);
                let g = self.body.ew("stablehlo.add", &[&io, &off]);
                self.body.op("stablehlo.convert", &[&g], "", &out)
            }
            Op::Unary { op, x } => {
                let x = self.get1(x, j)?;
                self.body.op(unary_name(op), &[&x], "", &out)
            }
            Op::Binary { op, a, b } => {
                let (a, b) = (self.get1(a, j)?, self.get1(b, j)?);
                self.body.op(binary_name(op), &[&a, &b], "", &out)
            }
            Op::Compare { dir, a, b } => {
                let (a, b) = (self.get1(a, j)?, self.get1(b, j)?);
                self.body.op("stablehlo.compare", &[&a, &b], &compare_attr(dir), &out)
            }
            Op::Select { pred, on_true, on_false } => {
                let (p, t, f) = (self.get1(pred, j)?, self.get1(on_true, j)?, self.get1(on_false, j)?);
                self.body.op("stablehlo.select", &[&p, &t, &f], "", &out)
            }
            Op::Convert { x } => {
                let x = self.get1(x, j)?;
                self.body.op("stablehlo.convert", &[&x], "", &out)
            }
            Op::Reshape { x } if self.m.ty(x).shape == self.global => self.get1(x, j)?,
            op => return Err(self.unsupported(format!("{v} = {} changes the layout of a non-scalar array", op.mnemonic()))),
        })
    }

    fn finish(mut self, dt: &DType, out: Val) -> ShardProgram {
        let words: usize = self.slots.iter().map(|s| s.words()).sum();
        let arg_ty = tensor(&[words as u64], "ui32");
        let dyn_ty = tensor(&[2 + 2 * self.dyn_keys.len() as u64], "ui32");
        let mut text = String::new();
        let _ = writeln!(text, "module @shard attributes {{mhlo.num_partitions = 1 : i32, mhlo.num_replicas = 1 : i32}} {{");
        let tables: String = (0..self.slots.iter().filter(|s| **s == Slot::Bf16Table).count()).map(|i| format!(", %arg{}: {}", 2 + i, tensor(&[PAIRS], "ui32"))).collect();
        let _ = writeln!(text, "  func.func public @main(%arg0: {arg_ty}, %arg1: {dyn_ty}{tables}) -> ({}) {{", out.ty);
        for l in &self.body.lines {
            let _ = writeln!(text, "    {}", l.replace(": (ARG0)", &format!(": ({arg_ty})")).replace(": (ARG1)", &format!(": ({dyn_ty})")));
        }
        text.push_str("  }\n");
        for f in std::mem::take(&mut self.funcs.text) {
            text.push_str(&f);
        }
        text.push_str("}\n");
        self.ops.dedup();
        let summary = format!("{} {}{:?}", self.ops.join("·"), elem(*dt), self.local);
        ShardProgram { text, slots: self.slots, values: self.values, dyn_keys: self.dyn_keys, shape: self.local.to_vec(), dtype: *dt, summary }
    }
}

fn uniform_consts_bits(dt: DType, min: f64, max: f64) -> (u64, u64) {
    let (lo, scale) = uniform_consts(dt, min, max);
    (parse_hex(&lo), parse_hex(&scale))
}

fn truncated_consts_bits(dt: DType, lower: f64, upper: f64) -> [u64; 4] {
    truncated_consts(dt, lower, upper).map(|s| parse_hex(&s))
}

/// The bits of a `0x...` literal from `rng` (always hex for floats).
fn parse_hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or(0)
}

/// A shard program's text turned into one that runs `k` launches of it in one execute: its
/// `@main` becomes the private `@shard_main`, and a new `@main` takes `k` argument lists (each
/// `%static, %dynamic, %table...` as before) and returns the `k` shards, in order. XLA compiles
/// the identical bodies once per kernel (its kernel reuse) and the host makes one PJRT call.
pub fn batched_program(text: &str, k: usize) -> Result<String, LowerError> {
    let bad = || LowerError::Internal("shard program text without its `@main` signature".into());
    let head = "  func.func public @main(";
    let start = text.find(head).ok_or_else(bad)?;
    let line_end = start + text[start..].find('\n').ok_or_else(bad)?;
    let line = &text[start..line_end];
    let (args, rest) = line[head.len()..].split_once(") -> (").ok_or_else(bad)?;
    let result = rest.strip_suffix(") {").ok_or_else(bad)?;
    let types: Vec<&str> = args.split(", ").map(|a| a.split_once(": ").map(|(_, t)| t).ok_or_else(bad)).collect::<Result<_, _>>()?;
    let mut main = String::new();
    let params: Vec<String> = (0..k).flat_map(|b| types.iter().enumerate().map(move |(i, t)| format!("%b{b}_{i}: {t}"))).collect();
    let _ = writeln!(main, "{head}{}) -> ({}) {{", params.join(", "), vec![result; k].join(", "));
    for b in 0..k {
        let names: Vec<String> = (0..types.len()).map(|i| format!("%b{b}_{i}")).collect();
        let _ = writeln!(main, "    %r{b} = func.call @shard_main({}) : ({}) -> ({result})", names.join(", "), types.join(", "));
    }
    let rs: Vec<String> = (0..k).map(|b| format!("%r{b}")).collect();
    let _ = writeln!(main, "    func.return {} : {}", rs.join(", "), vec![result; k].join(", "));
    main.push_str("  }\n");
    let private = line.replacen("func.func public @main(", "func.func private @shard_main(", 1);
    Ok(format!("{}{main}{private}{}", &text[..start], &text[line_end..]))
}
