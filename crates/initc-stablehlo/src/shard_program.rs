//! Shard programs: one small single-device StableHLO program per parameter shard, which
//! computes exactly that device's region of the parameter and nothing else.
//!
//! `@main(%arg0: tensor<Sxui32>, %table...) -> tensor<local shape>` reads everything that
//! varies between parameters and devices from one word vector, `%arg0`, the static words (the
//! [`Slot`]s): the shard's counter base and per-dim offsets, the parameter's scalar constants
//! and the data of its keys with their threefry key schedule (all evaluated on the host). A
//! runtime uploads them once per loaded model and seed.
//!
//! Every scalar the element-wise work reads is a slice of `%arg0` (or a bitcast of one), so
//! XLA:GPU fuses the whole launch into one kernel. Any arithmetic on a scalar, however small,
//! becomes a kernel of its own (measured with ncu: a `fold_in` on the device, the key schedule
//! `k0 ^ k1 ^ 0x1BD11BDA`, a u32-to-u16 convert of a bf16 constant, ~2 µs each, up to 3 per
//! launch), which is why keys, key schedules and products with bf16 table draws are computed
//! on the host.
//!
//! Parameters with the same structure and local shape therefore get byte-identical text, so a
//! model needs one compiled executable per distinct (initializer, dtype, local shape), however
//! many layers it has, and no SPMD partitioner (hence no collective) is involved.
//!
//! A shard that is one contiguous run of the parameter's row-major elements (any shard of a
//! parameter sharded on its first dimension only) is computed as a flat vector and reshaped:
//! its counters are `base + iota`. With per-dimension counters XLA:GPU computed each row's
//! `base + row * stride` in a kernel of its own (another ~2 µs per launch).
//!
//! Values equal the whole-array program's: an element's random counter is its flat index in
//! the global array (`base + Σ iota_d·stride_d`), and every constant XLA would fold (uniform
//! and truncated-normal bounds, `normal * c`) is folded on the host the way XLA folds it.
//! Supported: parameters whose every non-scalar node has the parameter's shape (element-wise
//! programs, which all presets are); others get [`LowerError::Unsupported`].

use std::collections::HashMap;
use std::fmt::Write;

use initc_ir::{BinaryOp, DType, Module, Op, UnaryOp, Value};
use initc_shard::Region;

use crate::LowerError;
use crate::emit::{binary_name, compare_attr, unary_name};
use crate::rng::{Funcs, fast_truncation_is_vacuous, truncated_consts, uniform_consts};
use crate::text::{Body, Val, elem, i64_array, tensor};

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
    /// The `i`-th of the program's keys ([`ShardProgram::dyn_keys`]): its data `k0, k1` and
    /// its threefry key schedule word `k0 ^ k1 ^ 0x1BD11BDA` (three words, seed-dependent).
    Key(usize),
    /// A bf16 pair table ([`HostValue::Bf16Table`], [`initc_rng::bf16_pair_table`]): not in
    /// the words but an argument of its own, `tensor<16384xui32>`, after the static words
    /// (the `i`-th table slot is `%arg{1 + i}`).
    Bf16Table,
}

impl Slot {
    pub fn words(self) -> usize {
        match self {
            Slot::Base | Slot::GroupBase(_) | Slot::Offset(_) => 2,
            Slot::Scalar(d) => {
                if d.size_bytes() == 8 {
                    2
                } else {
                    1
                }
            }
            Slot::Key(_) => 3,
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
    /// The pair table of node `v` (for [`Slot::Bf16Table`]): `initc_rng::bf16_pair_table` of
    /// the bf16 random op at `v`, or, where `v` ends a [`table_chain`], that table with the
    /// chain applied to each of its values.
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
    /// The keys the host computes, in [`Slot::Key`] order.
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
    let flat = computes_flat(m, param, region);
    let (grouped, compute) = if flat {
        // one run of the row-major elements: counters are base + iota (groups stay whole:
        // packed_lanes only packs when the last dims and offsets are multiples of L)
        (vec![global.iter().product::<u64>() / lanes], vec![region.numel() / lanes])
    } else if lanes > 1 {
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
        absorbed: None,
        pairs: HashMap::new(),
    };
    e.body.loc = None;
    let chain = if lanes > 1 { table_chain(m, p.value) } else { None };
    e.absorbed = chain.map(|(draw, _)| draw);
    let nodes = if e.absorbed.is_some() { vec![p.value] } else { cone(m, p.value) };
    // Keys first, in node order: the slot layout then does not depend on whether a constant
    // was traced before or after the key (torchtitan's wq and wo share text).
    // (With a table chain, `nodes` is the parameter alone and its key is the chain's draw's.)
    for &v in &nodes {
        if let Some(key) = m.node(e.absorbed.unwrap_or(v)).op.random_key() {
            e.key(key)?;
        }
    }
    // Then host constants, then the rest, each in node order (again so that the text does not
    // depend on the order the constructor traced them in).
    let (constants, rest): (Vec<Value>, Vec<Value>) = nodes.into_iter().partition(|&v| e.is_host_constant(v));
    for v in constants.into_iter().chain(rest) {
        e.node(v)?;
    }
    let out = e.get(p.value)?;
    let out = if let Some(pair) = e.pairs.get(&p.value).cloned() {
        // a looked-up entry is already the group's two bf16 values, element 0 in the low half
        let mut split = e.compute.clone();
        split.push(2);
        let v = e.body.op("stablehlo.bitcast_convert", &[&pair], "", &tensor(&split, elem(p.ty.dtype)));
        e.body.op("stablehlo.reshape", &[&v], "", &tensor(&region.shape, elem(p.ty.dtype)))
    } else if lanes > 1 {
        e.pack(p.ty.dtype, &out)
    } else {
        out.into_iter().next().ok_or(LowerError::Internal("no lanes".into()))?
    };
    let out = if out.ty == e.local_ty(p.ty.dtype) && e.compute != region.shape {
        e.body.op("stablehlo.reshape", &[&out], "", &tensor(&region.shape, elem(p.ty.dtype)))
    } else {
        out
    };
    e.body.ret(&[&out]);
    Ok(e.finish(&p.ty.dtype, out))
}

/// Fast mode feeds `L` consecutive elements from one threefry block (`L = 64 / w` for width
/// `w`, 2 for bf16 draws: [`initc_rng::bf16_draw_bits`]); a shard program computes a
/// parameter in groups of `L` (one block, `L` results, one store of `L * w` bits) when every
/// random op in its program has the same `L` (its own width's: a bf16 parameter drawn in f32 and
/// converted packs 2 lanes of the f32 draw into one 32-bit store), the `L` results fit one
/// 64-bit word, and the last dimension of the array, of the shard and of the shard's offset are
/// multiples of `L` (so no group straddles shards). Returns `L`, or 1 for the element-wise form.
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
        let l = match n.op {
            Op::RandomBits { width: w, .. } => initc_rng::fast_lanes(w.into()),
            Op::Uniform { .. } | Op::Normal { .. } | Op::TruncatedNormal { .. } if n.ty.dtype == DType::BF16 => initc_rng::BF16_DRAW_LANES,
            Op::Uniform { .. } | Op::Normal { .. } | Op::TruncatedNormal { .. } => {
                initc_rng::fast_lanes(8 * n.ty.dtype.size_bytes() as u32)
            }
            _ => continue,
        };
        if lanes.is_some_and(|x| x != l) || l * u64::from(width) > 64 {
            return 1;
        }
        lanes = Some(l);
    }
    let lanes = lanes.unwrap_or_else(|| initc_rng::fast_lanes(width));
    let last = p.ty.shape.len() - 1;
    if !p.ty.shape[last].is_multiple_of(lanes) || !region.shape[last].is_multiple_of(lanes) || !region.offset[last].is_multiple_of(lanes) {
        return 1;
    }
    lanes
}

/// Whether the shard of `param` in `region` is computed as a flat vector: its elements are one
/// contiguous run of the parameter's row-major order (every dimension after the first one the
/// shard splits is whole, every one before it has extent 1), the parameter has at least two
/// dimensions and no node of its program reads per-dimension coordinates (`iota`).
fn computes_flat(m: &Module, param: usize, region: &Region) -> bool {
    let global = &m.params[param].ty.shape;
    if global.len() < 2 || region.numel() == 0 || cone(m, m.params[param].value).iter().any(|&v| matches!(m.node(v).op, Op::Iota { .. })) {
        return false;
    }
    match (0..global.len()).find(|&d| region.shape[d] != global[d]) {
        None => true,
        Some(first) => (first + 1..global.len()).all(|d| region.shape[d] == global[d]) && (0..first).all(|d| region.shape[d] == 1),
    }
}

/// One element-wise op of a [`table_chain`], applied to the value coming up the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainStep {
    Unary(UnaryOp),
    /// `op(constant, x)` when `constant_first`, else `op(x, constant)`; `constant` is a
    /// seed-independent bf16 scalar or splat node.
    Binary {
        op: BinaryOp,
        constant: Value,
        constant_first: bool,
    },
}

/// A fast-mode bf16 parameter value `v` that one table lookup computes: a bf16 draw (uniform,
/// normal, truncated normal) followed by element-wise bf16 ops whose other operands are
/// seed-independent scalars (e.g. `truncated_normal * std`). Returns the draw and the chain's
/// steps from the draw's user up to `v`; the host applies them to the draw's pair table with
/// the CPU engine's arithmetic, and the program has no arithmetic on a scalar (which XLA:GPU
/// would run as a kernel of its own: a u32-to-u16 convert of the constant).
pub fn table_chain(m: &Module, v: Value) -> Option<(Value, Vec<ChainStep>)> {
    let seeded = m.seed_dependent();
    let shape = &m.ty(v).shape;
    let host = |u: Value| !seeded[u.index()] && m.ty(u).dtype == DType::BF16 && (m.ty(u).numel() == Some(1) || m.is_splat(u));
    let mut chain = Vec::new();
    let mut x = v;
    loop {
        let n = m.node(x);
        if n.ty.dtype != DType::BF16 || &n.ty.shape != shape {
            return None;
        }
        match n.op {
            Op::Uniform { .. } | Op::Normal { .. } | Op::TruncatedNormal { .. } => break,
            Op::Unary { op, x: a } => {
                chain.push(ChainStep::Unary(op));
                x = a;
            }
            Op::Binary { op, a, b } => {
                let (next, constant, constant_first) = match (host(a), host(b)) {
                    (false, true) => (a, b, false),
                    (true, false) => (b, a, true),
                    _ => return None,
                };
                chain.push(ChainStep::Binary { op, constant, constant_first });
                x = next;
            }
            _ => return None,
        }
    }
    if chain.is_empty() {
        return None;
    }
    chain.reverse();
    Some((x, chain))
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
    /// Key data (`tensor<2xui32>`) and schedule word (`tensor<1xui32>`) per key node.
    keys2: HashMap<Value, (Val, Val)>,
    dyn_keys: Vec<Value>,
    /// Per node, one value per lane.
    vals: HashMap<Value, Vec<Val>>,
    /// Op names, for the summary.
    ops: Vec<&'static str>,
    /// The draw of a [`table_chain`]: the program is one lookup in the table of the whole chain.
    absorbed: Option<Value>,
    /// Per table-lookup node, the looked-up entry (both elements of a group, as `ui32`).
    pairs: HashMap<Value, Val>,
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

    fn slice_of(&mut self, name: &str, placeholder: &str, start: usize, n: usize) -> Val {
        let arg = Val { name: name.into(), ty: placeholder.into() };
        let attr = format!(
            "start_indices = {}, limit_indices = {}, strides = {}",
            i64_array([start as u64]),
            i64_array([(start + n) as u64]),
            i64_array([1])
        );
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

    /// Key node `k` as `(data, schedule)`: its `tensor<2xui32>` data and its threefry key
    /// schedule word as a `tensor<1xui32>`, from its [`Slot::Key`] (computed on the host,
    /// `fold_in`s included).
    fn key2(&mut self, k: Value) -> Result<(Val, Val), LowerError> {
        if let Some(v) = self.keys2.get(&k) {
            return Ok(v.clone());
        }
        if !self.m.ty(k).shape.is_empty() {
            return Err(self.unsupported(format!("random op on an array of keys ({})", self.m.ty(k))));
        }
        let (start, _) = self.slot(Slot::Key(self.dyn_keys.len()), None);
        self.dyn_keys.push(k);
        let v = (self.words(start, 2), self.words(start + 2, 1));
        self.keys2.insert(k, v.clone());
        Ok(v)
    }

    /// The shard-mode key of key node `k`: `[k0, k1, base_hi, base_lo, k0 ^ k1 ^ 0x1BD11BDA]`.
    fn key(&mut self, k: Value) -> Result<Val, LowerError> {
        if let Some(v) = self.keys.get(&k) {
            return Ok(v.clone());
        }
        let (kw, ks) = self.key2(k)?;
        let base = self.words(0, 2);
        let v = self.body.op("stablehlo.concatenate", &[&kw, &base, &ks], "dimension = 0 : i64", &tensor(&[5], "ui32"));
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
        Val { name: format!("%arg{}", 1 + i), ty: tensor(&[PAIRS], "ui32") }
    }

    /// `table[index]` for a 1-D `table` and a ui32 `index` of shape `shape` (one gather).
    fn lookup(&mut self, table: &Val, index: &Val, shape: &[u64], out_elem: &str) -> Val {
        let x = self.body.op("stablehlo.convert", &[index], "", &tensor(shape, "i32"));
        let mut col = shape.to_vec();
        col.push(1);
        let x = self.body.op("stablehlo.reshape", &[&x], "", &tensor(&col, "i32"));
        let attr = format!(
            "dimension_numbers = #stablehlo.gather<collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = {}>, indices_are_sorted = false, slice_sizes = array<i64: 1>",
            shape.len()
        );
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
        let w = 8 * dt.size_bytes();
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
            let x = if j == 0 {
                x
            } else {
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
            return Err(self.unsupported(format!(
                "{v} = {} has shape {}, not the parameter's {:?}",
                node.op.mnemonic(),
                node.ty,
                self.global
            )));
        }
        let out = self.local_ty(dt);
        let local = self.compute.clone();
        let draw = self.absorbed.unwrap_or(v);
        if draw != v {
            self.ops.push(self.m.node(draw).op.mnemonic());
        }
        self.ops.push(node.op.mnemonic());
        // Host scalars and keys first: read once, shared by every lane.
        let key = match self.m.node(draw).op.random_key() {
            Some(k) => Some(self.key(k)?),
            None => None,
        };
        let table = self.looks_up(v) || draw != v;
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
            _ if self.looks_up(v) || self.absorbed.is_some() => {
                // both elements of a group are one pair-table entry at the 14 bits `y0 & 0x3FFF`
                // (the lanes' gathers are identical, so XLA's CSE keeps one per block)
                let t = tensor(local, "ui32");
                let f = self.funcs.bits(local);
                let y = self.body.call(&f, &[&k()?], &[t.clone(), t.clone()]);
                let m = self.body.constant(&(PAIRS - 1).to_string(), &t);
                let x = self.body.ew("stablehlo.and", &[&y[0], &m]);
                let pair = self.lookup(&consts[0], &x, local, "ui32");
                if j == 0 {
                    self.pairs.insert(v, pair.clone());
                }
                let pair = if j == 0 {
                    pair
                } else {
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
        let mut text = String::new();
        let _ = writeln!(text, "module @shard attributes {{mhlo.num_partitions = 1 : i32, mhlo.num_replicas = 1 : i32}} {{");
        let tables: String = (0..self.slots.iter().filter(|s| **s == Slot::Bf16Table).count())
            .map(|i| format!(", %arg{}: {}", 1 + i, tensor(&[PAIRS], "ui32")))
            .collect();
        let _ = writeln!(text, "  func.func public @main(%arg0: {arg_ty}{tables}) -> ({}) {{", out.ty);
        for l in &self.body.lines {
            let _ = writeln!(text, "    {}", l.replace("(ARG0", &format!("({arg_ty}")));
        }
        text.push_str("  }\n");
        for f in std::mem::take(&mut self.funcs.text) {
            text.push_str(&f);
        }
        text.push_str("}\n");
        self.ops.dedup();
        let summary = format!("{} {}{:?}", self.ops.join("·"), elem(*dt), self.local);
        ShardProgram {
            text,
            slots: self.slots,
            values: self.values,
            dyn_keys: self.dyn_keys,
            shape: self.local.to_vec(),
            dtype: *dt,
            summary,
        }
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
/// `@main` becomes the private `@shard_main`, and a new `@main` takes the launches' static
/// words in groups of `fuse` launches (one vector per group, `tensor<g*S x ui32>`, launch `i` of
/// a group reading words `i*S .. (i+1)*S`), then each launch's table arguments, and returns
/// the `k` shards, in order.
///
/// A group's shared static vector is what lets XLA:GPU fuse its element-wise loops into one
/// multi-output kernel (sibling fusion needs a shared operand): a group is one kernel launch.
/// Groups stay apart, as wider kernels ran slower (8 bf16 loops in one kernel: 16.5 ms for
/// the 8B model on an H200, against 13.1 ms with 4).
pub fn batched_program(text: &str, k: usize, fuse: usize) -> Result<String, LowerError> {
    let bad = || LowerError::Internal("shard program text without its `@main(%arg0: tensor<Sxui32>...` signature".into());
    let head = "  func.func public @main(";
    let start = text.find(head).ok_or_else(bad)?;
    let line_end = start + text[start..].find('\n').ok_or_else(bad)?;
    let line = &text[start..line_end];
    let (args, rest) = line[head.len()..].split_once(") -> (").ok_or_else(bad)?;
    let result = rest.strip_suffix(") {").ok_or_else(bad)?;
    let types: Vec<&str> = args.split(", ").map(|a| a.split_once(": ").map(|(_, t)| t).ok_or_else(bad)).collect::<Result<_, _>>()?;
    let words: u64 = types
        .first()
        .and_then(|t| t.strip_prefix("tensor<"))
        .and_then(|t| t.strip_suffix("xui32>"))
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)?;
    let groups = batch_groups(k, fuse);
    let mut params: Vec<String> =
        groups.iter().enumerate().map(|(g, &n)| format!("%statics{g}: tensor<{}xui32>", words * n as u64)).collect();
    params.extend((0..k).flat_map(|b| types.iter().enumerate().skip(1).map(move |(i, t)| format!("%b{b}_{i}: {t}"))));
    let mut main = String::new();
    let _ = writeln!(main, "{head}{}) -> ({}) {{", params.join(", "), vec![result; k].join(", "));
    let mut b = 0usize;
    for (g, &n) in groups.iter().enumerate() {
        for i in 0..n as u64 {
            let _ = writeln!(
                main,
                "    %s{b} = \"stablehlo.slice\"(%statics{g}) {{start_indices = {}, limit_indices = {}, strides = {}}} : (tensor<{}xui32>) -> {}",
                i64_array([i * words]),
                i64_array([(i + 1) * words]),
                i64_array([1]),
                words * n as u64,
                types[0]
            );
            let mut names = vec![format!("%s{b}")];
            names.extend((1..types.len()).map(|i| format!("%b{b}_{i}")));
            let _ = writeln!(main, "    %r{b} = func.call @shard_main({}) : ({}) -> ({result})", names.join(", "), types.join(", "));
            b += 1;
        }
    }
    let rs: Vec<String> = (0..k).map(|b| format!("%r{b}")).collect();
    let _ = writeln!(main, "    func.return {} : {}", rs.join(", "), vec![result; k].join(", "));
    main.push_str("  }\n");
    let private = line.replacen("func.func public @main(", "func.func private @shard_main(", 1);
    Ok(format!("{}{main}{private}{}", &text[..start], &text[line_end..]))
}

/// The sizes of the groups of `fuse` launches (the last one smaller) that a batch of `k`
/// launches passes its static words in ([`batched_program`]).
pub fn batch_groups(k: usize, fuse: usize) -> Vec<usize> {
    let fuse = fuse.max(1);
    (0..k.div_ceil(fuse)).map(|g| fuse.min(k - g * fuse)).collect()
}
