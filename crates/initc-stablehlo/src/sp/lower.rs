//! Lowering one parameter shard of an initc module into a [`ShardProg`] (one pass, verified
//! after it runs).
//!
//! A shard program computes exactly one device's region of one parameter and nothing else.
//! Everything that varies between parameters and devices is read from the static words
//! ([`Slot`]s): the shard's counter base and per-dim offsets, the parameter's scalar constants
//! and the data of its keys with their threefry key schedule (all evaluated on the host).
//!
//! Every scalar the element-wise work reads is a slice of the static words (or a bitcast of
//! one), so XLA:GPU fuses the whole launch into one kernel. Any arithmetic on a scalar, however
//! small, becomes a kernel of its own (measured with ncu: a `fold_in` on the device, the key
//! schedule `k0 ^ k1 ^ 0x1BD11BDA`, a u32-to-u16 convert of a bf16 constant, ~2 µs each, up to
//! 3 per launch), which is why keys, key schedules and products with bf16 table draws are
//! computed on the host.
//!
//! Parameters with the same structure and local shape therefore get equal programs, so a model
//! needs one compiled executable per distinct (initializer, dtype, local shape), however many
//! layers it has, and no SPMD partitioner (hence no collective) is involved.
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
//! programs, which all presets are), and row slices of a (reshaped) concatenation of such
//! arrays (torchtitan 0.3.0's fused `wqkv`: [`lower_concat`]); others get
//! [`LowerError::Unsupported`] (the device runtime then assembles concatenations from their
//! parts: `initc_device::split_fused`).
//!
//! Definitions are made in a fixed order — keys first, then host constants, then the rest, each
//! in node order — so that the program does not depend on the order a constructor traced its
//! nodes in (torchtitan's wq and wo share one program).

use std::collections::HashMap;

use initc_ir::{BinaryOp, DType, Module, Op, UnaryOp, Value};
use initc_shard::Region;

use super::{
    Counters, Def, Draw, HostValue, Id, Inst, Lane, LaunchData, Piece, ShardProg, ShardProgram, Slot, TableDef, TableDraw, Ty, verify,
};
use crate::LowerError;
use crate::rng::{fast_truncation_is_vacuous, truncated_bits, uniform_bits};
use crate::text::elem;

/// The program computing `region` of parameter `param` ([`Lowerer::lower`]).
pub fn shard_program(m: &Module, param: usize, region: &Region) -> Result<ShardProgram, LowerError> {
    Lowerer::new(m).lower(param, region)
}

/// Lowers the shards of one module: what every lowering reads about the module is computed
/// once, when it is made (a plan lowers every parameter once per device).
pub struct Lowerer<'m> {
    m: &'m Module,
    /// Per node, whether its value depends on the seed.
    seeded: Vec<bool>,
}

impl<'m> Lowerer<'m> {
    pub fn new(m: &'m Module) -> Lowerer<'m> {
        Lowerer { m, seeded: m.seed_dependent() }
    }

    /// The program computing `region` of parameter `param`, verified.
    pub fn lower(&self, param: usize, region: &Region) -> Result<ShardProgram, LowerError> {
        let p = &self.m.params[param];
        match concat_parts(self.m, p.value) {
            Some(c) => lower_concat(self.m, &self.seeded, &p.fqn, p.value, &c, region),
            None => lower_value(self.m, &self.seeded, &p.fqn, p.value, region).map(|(sp, _)| sp),
        }
    }
}

/// The program computing `region` of the array `value` (a parameter's, or a concatenated
/// part's), its counters the flat indices in that array.
/// Also returns the program's op names (`normal·mul`), for a concatenation's summary.
fn lower_value(m: &Module, seeded: &[bool], fqn: &str, value: Value, region: &Region) -> Result<(ShardProgram, String), LowerError> {
    let p = initc_ir::Param { fqn: fqn.to_string(), value, ty: m.ty(value).clone(), axes: Vec::new(), init: String::new(), sharding: None };
    let global = p.ty.shape.clone();
    let cone = cone(m, p.value);
    let lanes = packed_lanes(m, &p.ty, region, &cone);
    let flat = computes_flat(&p.ty.shape, region, &cone, m);
    let (counters, compute) = if flat {
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
    let mut e = Lowering {
        m,
        fqn: &p.fqn,
        global: &global,
        compute,
        lanes,
        fast: m.rng == initc_ir::RngMode::Fast,
        seeded,
        defs: Vec::new(),
        slots: vec![if lanes > 1 { Slot::GroupBase(lanes) } else { Slot::Base }],
        data: LaunchData::default(),
        scalars: HashMap::new(),
        offsets: HashMap::new(),
        keys: HashMap::new(),
        vals: HashMap::new(),
        ops: Vec::new(),
        absorbed: None,
        pairs: HashMap::new(),
    };
    let chain = if lanes > 1 { chain_of(m, seeded, p.value) } else { None };
    e.absorbed = chain.map(|(draw, _)| draw);
    let nodes = if e.absorbed.is_some() { vec![p.value] } else { cone };
    // Keys first, in node order: the slot layout then does not depend on whether a constant
    // was traced before or after the key (torchtitan's wq and wo share a program).
    // (With a table chain, `nodes` is the parameter alone and its key is the chain's draw's.)
    for &v in &nodes {
        if let Some(key) = m.node(e.absorbed.unwrap_or(v)).op.random_key() {
            e.key(key)?;
        }
    }
    // Then host constants, then the rest, each in node order.
    let (constants, rest): (Vec<Value>, Vec<Value>) = nodes.into_iter().partition(|&v| e.is_host_constant(v));
    for v in constants.into_iter().chain(rest) {
        e.node(v)?;
    }
    let out = e.get(p.value)?;
    let dt = p.ty.dtype;
    let out = if let Some(&pair) = e.pairs.get(&p.value) {
        // a looked-up entry is already the group's two bf16 values, element 0 in the low half
        e.def(Inst::Unpair { pair }, Ty::new(&region.shape, dt))
    } else if lanes > 1 {
        e.def(Inst::Pack { lanes: out }, Ty::new(&region.shape, dt))
    } else {
        out.into_iter().next().ok_or(LowerError::Internal("a node without lanes".into()))?
    };
    let out = if e.defs[out.index()].ty == Ty::new(&e.compute, dt) && e.compute != region.shape {
        e.def(Inst::ToLocal { x: out }, Ty::new(&region.shape, dt))
    } else {
        out
    };
    let mut ops = std::mem::take(&mut e.ops);
    ops.dedup();
    let ops = ops.join("·");
    let summary = format!("{ops} {}{:?}", elem(dt), region.shape);
    let prog = ShardProg {
        rng: m.rng,
        counters: Counters::row_major(&counters),
        lanes,
        compute: e.compute,
        shape: region.shape.clone(),
        dtype: dt,
        slots: e.slots,
        defs: e.defs,
        result: out,
        funcs: Vec::new(),
    };
    verify(&prog).map_err(|err| LowerError::Verify { fqn: p.fqn.clone(), err })?;
    Ok((ShardProgram { prog, data: e.data, summary }, ops))
}

/// A concatenation's parts, as [`concat_parts`] finds them.
#[derive(Clone, Debug)]
pub struct Concat {
    /// Per part, its own array (a reshape's operand, or the concatenated value itself) and its
    /// shape as concatenated (a row-major reshape of the own array).
    pub parts: Vec<(Value, Vec<u64>)>,
    pub dim: usize,
    /// The concatenation's shape (the parameter's is a row-major reshape of it).
    pub shape: Vec<u64>,
}

/// The parts of `v` if it is `concat(xs)` or `reshape(concat(xs))`, each `x` an array or a
/// reshape of one (torchtitan 0.3.0's fused `wqkv`).
pub fn concat_parts(m: &Module, v: Value) -> Option<Concat> {
    let cat = match m.node(v).op {
        Op::Reshape { x } if matches!(m.node(x).op, Op::Concat { .. }) => x,
        Op::Concat { .. } => v,
        _ => return None,
    };
    let Op::Concat { xs, dim } = &m.node(cat).op else { return None };
    let parts = xs
        .iter()
        .map(|&x| {
            let own = match m.node(x).op {
                Op::Reshape { x: y } => y,
                _ => x,
            };
            (own, m.ty(x).shape.clone())
        })
        .collect();
    Some(Concat { parts, dim: *dim as usize, shape: m.ty(cat).shape.clone() })
}

/// `(start, len)` if `region` of an array of shape `global` is one contiguous run of its
/// row-major elements (a row slice: every dimension before the last one it splits has extent 1).
fn contiguous_run(global: &[u64], region: &Region) -> Option<(u64, u64)> {
    let strides = Counters::row_major(global).strides;
    let start = region.offset.iter().zip(&strides).map(|(o, s)| o * s).sum();
    // the last dimension that is not whole: every one before it has extent 1
    let whole = match (0..global.len()).rev().find(|&d| region.shape[d] != global[d]) {
        None => true,
        Some(last) => (0..last).all(|d| region.shape[d] == 1),
    };
    (whole || region.numel() == 0).then_some((start, region.numel()))
}

/// Rectangles of an array of shape `shape` that cover its row-major elements `[a, b)`, in
/// order, each one contiguous run (a partial first row, whole rows, a partial last row,
/// recursively).
fn run_rects(shape: &[u64], a: u64, b: u64, out: &mut Vec<Region>) {
    if a >= b {
        return;
    }
    if shape.len() <= 1 {
        out.push(Region { offset: vec![a], shape: vec![b - a] });
        return;
    }
    let row: u64 = shape[1..].iter().product();
    // `[a, b)` within row `r` (`a`, `b` relative to the row's start), as rectangles of extent 1
    // in dim 0
    let within =
        |r: u64, a: u64, b: u64, out: &mut Vec<Region>| {
            let mut sub = Vec::new();
            run_rects(&shape[1..], a, b, &mut sub);
            out.extend(sub.into_iter().map(|s| Region {
                offset: std::iter::once(r).chain(s.offset).collect(),
                shape: std::iter::once(1).chain(s.shape).collect(),
            }));
        };
    let (r0, r1) = (a.div_ceil(row), b / row);
    if r0 > r1 {
        let r = a / row;
        within(r, a - r * row, b - r * row, out);
        return;
    }
    if a < r0 * row {
        within(r0 - 1, a - (r0 - 1) * row, row, out);
    }
    if r0 < r1 {
        out.push(Region {
            offset: std::iter::once(r0).chain(shape[1..].iter().map(|_| 0)).collect(),
            shape: std::iter::once(r1 - r0).chain(shape[1..].iter().copied()).collect(),
        });
    }
    if r1 * row < b {
        within(r1, 0, b - r1 * row, out);
    }
}

/// The program computing `region` (a row slice) of `value = [reshape](concat(parts))`: per
/// piece of the region that comes from one part (a sub-rectangle of the part, which the
/// concatenation's row-major layout gives), the part's own program for that rectangle (its
/// counters the part's own flat indices, as if the part were a parameter), called as
/// `@piece{i}` with its slice of the static words. Where the region holds whole indices of the
/// dims before the concatenated one (whole KV groups of `wqkv`), each part's share of them is
/// one piece, and the pieces are concatenated along the concatenated dim; the partial ones at
/// either end are flattened and concatenated around them, and the result is reshaped to the
/// region. Pieces with equal programs share one function, so every layer's fused parameter of
/// one shape has one program (its pieces' keys and bases are launch data).
fn lower_concat(m: &Module, seeded: &[bool], fqn: &str, value: Value, c: &Concat, region: &Region) -> Result<ShardProgram, LowerError> {
    let unsupported = |what: String| {
        LowerError::Unsupported(format!(
            "parameter `{fqn}`: {what}; shard programs compute a concatenation of element-wise parts in row slices"
        ))
    };
    let ty = m.ty(value);
    let (global, dt) = (&ty.shape, ty.dtype);
    let (start, len) = contiguous_run(global, region).ok_or_else(|| {
        unsupported(format!("the region offset={:?} shape={:?} is not one run of its row-major elements", region.offset, region.shape))
    })?;
    let d = c.dim;
    let concat_numel: u64 = c.shape.iter().product();
    let fits = d < c.shape.len()
        && concat_numel == ty.numel().unwrap_or(u64::MAX)
        && c.parts.iter().all(|(own, view)| {
            view.len() == c.shape.len()
                && (0..view.len()).all(|k| k == d || view[k] == c.shape[k])
                && m.ty(*own).numel() == Some(view.iter().product())
                && m.ty(*own).dtype == dt
                && !m.ty(*own).shape.is_empty()
        });
    if !fits {
        return Err(unsupported(format!("its concatenation {:?} along dim {d} is not a row-major view of its parts", c.shape)));
    }
    // The concatenation's row-major elements: for each index `o` of the dims before `d`, one
    // chunk of each part in turn (`view[d] * inner` elements: the part's own elements
    // `o * chunk ..`).
    let inner: u64 = c.shape[d + 1..].iter().product();
    let chunks: Vec<u64> = c.parts.iter().map(|(_, view)| view[d] * inner).collect();
    let row: u64 = chunks.iter().sum();
    let end = start + len;
    // The region in up to three segments: a partial `o` at each end, whose pieces are runs of
    // one part each, and between them the whole `o`s `o0..o1`, where each part's elements are
    // one run of the part (`o0 * chunk .. o1 * chunk`), computed at once and concatenated with
    // the others along the chunk dimension. (Piece by piece, the whole 8B `wqkv` was 24
    // calls per launch, and XLA:GPU took 56 s to compile the model.)
    let (o0, o1) = (start.div_ceil(row).min(end / row), end / row);
    let whole = o1 > o0;
    let (head, tail) = if whole { ((start, o0 * row), (o1 * row, end)) } else { ((start, end), (end, end)) };
    let runs = |(a, b): (u64, u64)| -> Vec<(usize, Region)> {
        let mut pieces = Vec::new();
        let mut pos = a;
        while pos < b {
            let (o, r) = (pos / row, pos % row);
            let (mut i, mut acc) = (0, 0);
            while r >= acc + chunks[i] {
                acc += chunks[i];
                i += 1;
            }
            let at = r - acc;
            let n = (b - pos).min(chunks[i] - at);
            let mut rects = Vec::new();
            run_rects(&m.ty(c.parts[i].0).shape, o * chunks[i] + at, o * chunks[i] + at + n, &mut rects);
            pieces.extend(rects.into_iter().map(|rect| (i, rect)));
            pos += n;
        }
        pieces
    };
    // per part, the rectangles of its run in the whole `o`s
    let middle: Vec<Vec<Region>> = if whole {
        (0..c.parts.len())
            .map(|i| {
                let mut rects = Vec::new();
                run_rects(&m.ty(c.parts[i].0).shape, o0 * chunks[i], o1 * chunks[i], &mut rects);
                rects
            })
            .collect()
    } else {
        Vec::new()
    };
    let (head, tail) = (runs(head), runs(tail));
    let mut funcs: Vec<ShardProg> = Vec::new();
    let mut ops: Vec<String> = Vec::new();
    let mut slots = vec![Slot::Base];
    let mut defs: Vec<Def> = Vec::new();
    let mut data = LaunchData::default();
    let def = |defs: &mut Vec<Def>, inst: Inst, ty: Ty| {
        defs.push(Def { inst, ty });
        Id(defs.len() as u32 - 1)
    };
    // a view of `x` (of `x`'s own operand when `x` is a view: no chains of reshapes)
    let view = |defs: &mut Vec<Def>, x: Id, ty: Ty| {
        let x = match defs[x.index()].inst {
            Inst::View { x: y } => y,
            _ => x,
        };
        def(defs, Inst::View { x }, ty)
    };
    // part `i`'s program for `rect`, called
    let mut piece = |defs: &mut Vec<Def>, i: usize, rect: &Region| -> Result<Id, LowerError> {
        let own = c.parts[i].0;
        let (sp, op) = lower_value(m, seeded, &format!("{fqn}#part{i}"), own, rect)?;
        let func = match funcs.iter().position(|f| *f == sp.prog) {
            Some(f) => f,
            None => {
                // functions are named by their counters' strides: equal strides must mean
                // equal counters
                if funcs.iter().any(|f| f.counters.strides == sp.prog.counters.strides && f.counters != sp.prog.counters) {
                    return Err(unsupported("parts whose counters differ only in width".into()));
                }
                funcs.push(sp.prog.clone());
                ops.push(op);
                funcs.len() - 1
            }
        };
        let start: usize = slots.iter().map(|s| s.words()).sum();
        slots.push(Slot::Piece { func, words: sp.prog.words() });
        let mut tables = Vec::with_capacity(sp.data.tables.len());
        for t in &sp.data.tables {
            let index = slots.iter().filter(|s| **s == Slot::Bf16Table).count();
            slots.push(Slot::Bf16Table);
            data.tables.push(t.clone());
            tables.push(def(defs, Inst::Table { index }, Ty::table()));
        }
        let call = def(defs, Inst::Call { func, start, tables }, Ty::new(&sp.prog.shape, dt));
        data.pieces.push(Piece { global: m.ty(own).shape.clone(), region: rect.clone(), data: sp.data });
        Ok(call)
    };
    // `xs` concatenated along `dim` into `shape` (the one value itself when there is one)
    let concat = |defs: &mut Vec<Def>, xs: Vec<Id>, dim: usize, shape: &[u64]| match xs[..] {
        [one] => one,
        _ => def(defs, Inst::Concat { xs, dim }, Ty::new(shape, dt)),
    };
    let mut flat = Vec::new();
    for (i, rect) in &head {
        flat.push(piece(&mut defs, *i, rect)?);
    }
    if whole {
        let n = o1 - o0;
        let mut blocks = Vec::with_capacity(middle.len());
        for (i, rects) in middle.iter().enumerate() {
            let mut xs = Vec::with_capacity(rects.len());
            for rect in rects {
                let x = piece(&mut defs, i, rect)?;
                xs.push(if rects.len() == 1 { x } else { view(&mut defs, x, Ty::new(&[rect.numel()], dt)) });
            }
            let part = concat(&mut defs, xs, 0, &[n * chunks[i]]);
            blocks.push(view(&mut defs, part, Ty::new(&[n, chunks[i]], dt)));
        }
        flat.push(concat(&mut defs, blocks, 1, &[n, row]));
    }
    for (i, rect) in &tail {
        flat.push(piece(&mut defs, *i, rect)?);
    }
    if flat.is_empty() {
        // an empty region: an empty rectangle of the first part
        let own = &m.ty(c.parts[0].0).shape;
        let rect = Region { offset: vec![0; own.len()], shape: std::iter::once(0).chain(own[1..].iter().copied()).collect() };
        flat.push(piece(&mut defs, 0, &rect)?);
    }
    // the segments' values (of their own shapes), flattened and concatenated when several
    if flat.len() > 1 {
        for x in &mut flat {
            let n = defs[x.index()].ty.numel();
            *x = view(&mut defs, *x, Ty::new(&[n], dt));
        }
    }
    let cat = concat(&mut defs, flat, 0, &[region.numel()]);
    let result = view(&mut defs, cat, Ty::new(&region.shape, dt));
    let prog = ShardProg {
        rng: m.rng,
        counters: Counters::row_major(global),
        lanes: 1,
        compute: region.shape.clone(),
        shape: region.shape.clone(),
        dtype: dt,
        slots,
        defs,
        result,
        funcs,
    };
    verify(&prog).map_err(|err| LowerError::Verify { fqn: fqn.to_string(), err })?;
    let summary = format!("concat({}) {}{:?}", ops.join(", "), elem(dt), region.shape);
    Ok(ShardProgram { prog, data, summary })
}

/// Fast mode feeds `L` consecutive elements from one threefry block (`L = 64 / w` for width
/// `w`, 2 for bf16 draws: [`initc_rng::bf16_draw_bits`]); a shard program computes a
/// parameter in groups of `L` (one block, `L` results, one store of `L * w` bits) when every
/// random op in its program has the same `L` (its own width's: a bf16 parameter drawn in f32 and
/// converted packs 2 lanes of the f32 draw into one 32-bit store), the `L` results fit one
/// 64-bit word, and the last dimension of the array, of the shard and of the shard's offset are
/// multiples of `L` (so no group straddles shards). Returns `L`, or 1 for the element-wise form.
fn packed_lanes(m: &Module, ty: &initc_ir::Type, region: &Region, cone: &[Value]) -> u64 {
    let dt = ty.dtype;
    if m.rng != initc_ir::RngMode::Fast || ty.shape.is_empty() || dt == DType::Bool || dt == DType::Key || dt.size_bytes() > 4 {
        return 1;
    }
    let width = 8 * dt.size_bytes() as u32;
    let mut lanes = None;
    for &v in cone {
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
    let last = ty.shape.len() - 1;
    if !ty.shape[last].is_multiple_of(lanes) || !region.shape[last].is_multiple_of(lanes) || !region.offset[last].is_multiple_of(lanes) {
        return 1;
    }
    lanes
}

/// Whether the shard of `param` in `region` is computed as a flat vector: its elements are one
/// contiguous run of the parameter's row-major order (every dimension after the first one the
/// shard splits is whole, every one before it has extent 1), the parameter has at least two
/// dimensions and no node of its program reads per-dimension coordinates (`iota`).
fn computes_flat(global: &[u64], region: &Region, cone: &[Value], m: &Module) -> bool {
    if global.len() < 2 || region.numel() == 0 || cone.iter().any(|&v| matches!(m.node(v).op, Op::Iota { .. })) {
        return false;
    }
    match (0..global.len()).find(|&d| region.shape[d] != global[d]) {
        None => true,
        Some(first) => (first + 1..global.len()).all(|d| region.shape[d] == global[d]) && (0..first).all(|d| region.shape[d] == 1),
    }
}

/// One element-wise op of a [`table_chain`], applied to the value coming up the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    chain_of(m, &m.seed_dependent(), v)
}

/// [`table_chain`] with the module's [`Module::seed_dependent`] nodes.
fn chain_of(m: &Module, seeded: &[bool], v: Value) -> Option<(Value, Vec<ChainStep>)> {
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
        if !seen[x.index()] {
            seen[x.index()] = true;
            stack.extend(m.node(x).op.operands());
        }
    }
    (0..m.nodes.len()).filter(|&i| seen[i]).map(|i| Value(i as u32)).collect()
}

/// The state of one lowering: the program so far and, per initc node, its values (one per lane).
struct Lowering<'a> {
    m: &'a Module,
    fqn: &'a str,
    global: &'a [u64],
    /// The shape the program computes in: `local`, or with the last dim divided by `lanes`.
    compute: Vec<u64>,
    /// Elements per group (1: element-wise program).
    lanes: u64,
    fast: bool,
    seeded: &'a [bool],
    defs: Vec<Def>,
    slots: Vec<Slot>,
    data: LaunchData,
    /// Scalar slots, read once however many lanes use them.
    scalars: HashMap<(DType, HostValue), Id>,
    /// Offset slots per dim.
    offsets: HashMap<usize, Id>,
    /// The key operand per key node.
    keys: HashMap<Value, Id>,
    /// Per node, one value per lane.
    vals: HashMap<Value, Vec<Id>>,
    /// Op names, for the summary.
    ops: Vec<&'static str>,
    /// The draw of a [`table_chain`]: the program is one lookup in the table of the whole chain.
    absorbed: Option<Value>,
    /// Per table-lookup node, lane 0's looked-up entries.
    pairs: HashMap<Value, Id>,
}

impl Lowering<'_> {
    fn unsupported(&self, what: String) -> LowerError {
        LowerError::Unsupported(format!("parameter `{}`: {what}; shard programs compute element-wise parameter programs", self.fqn))
    }

    fn def(&mut self, inst: Inst, ty: Ty) -> Id {
        self.defs.push(Def { inst, ty });
        Id(self.defs.len() as u32 - 1)
    }

    fn get(&self, v: Value) -> Result<Vec<Id>, LowerError> {
        self.vals.get(&v).cloned().ok_or_else(|| self.unsupported(format!("{v} ({}) is used by an op that needs its array", self.m.ty(v))))
    }

    fn get1(&self, v: Value, lane: usize) -> Result<Id, LowerError> {
        Ok(self.get(v)?.swap_remove(lane))
    }

    fn is_param_shaped(&self, v: Value) -> bool {
        self.m.ty(v).shape == self.global
    }

    /// Adds a slot; returns its first word.
    fn slot(&mut self, s: Slot) -> usize {
        let start: usize = self.slots.iter().map(|s| s.words()).sum();
        self.slots.push(s);
        start
    }

    /// Whether random op `v` is a packed bf16 draw read from its table.
    fn looks_up(&self, v: Value) -> bool {
        let n = self.m.node(v);
        self.lanes > 1 && n.ty.dtype == DType::BF16 && matches!(n.op, Op::Uniform { .. } | Op::Normal { .. } | Op::TruncatedNormal { .. })
    }

    /// A scalar slot read as a scalar of `dt` (once per program, whatever the lane count).
    fn scalar(&mut self, dt: DType, hv: HostValue) -> Id {
        if let Some(&v) = self.scalars.get(&(dt, hv.clone())) {
            return v;
        }
        let start = self.slot(Slot::Scalar(dt));
        self.data.values.push(hv.clone());
        let v = self.def(Inst::Scalar { start }, Ty::scalar(dt));
        self.scalars.insert((dt, hv), v);
        v
    }

    /// The key operand of key node `k` (its [`Slot::Key`], computed on the host, `fold_in`s
    /// included, with the shard's base).
    fn key(&mut self, k: Value) -> Result<Id, LowerError> {
        if let Some(&v) = self.keys.get(&k) {
            return Ok(v);
        }
        if !self.m.ty(k).shape.is_empty() {
            return Err(self.unsupported(format!("random op on an array of keys ({})", self.m.ty(k))));
        }
        let start = self.slot(Slot::Key(self.data.keys.len()));
        self.data.keys.push(k);
        let v = self.def(Inst::Key { start }, Ty::key());
        self.keys.insert(k, v);
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

    fn compute_ty(&self, dt: DType) -> Ty {
        Ty::new(&self.compute, dt)
    }

    /// The pair table of the node `v` (a bf16 draw, or the end of a [`table_chain`]): an
    /// argument of its own, uploaded once per distinct table (no slice or build kernel per
    /// launch).
    fn bf16_table(&mut self, v: Value) -> Result<Id, LowerError> {
        let index = self.slots.iter().filter(|s| **s == Slot::Bf16Table).count();
        let (draw, chain) = chain_of(self.m, self.seeded, v).unwrap_or((v, Vec::new()));
        let draw = match self.m.node(draw).op {
            Op::Normal { .. } => TableDraw::Normal,
            Op::Uniform { min, max, .. } => TableDraw::Uniform { min, max },
            Op::TruncatedNormal { lower, upper, .. } => TableDraw::TruncatedNormal { lower, upper },
            ref op => return Err(LowerError::Internal(format!("a pair table of {v}, whose draw is a `{}`", op.mnemonic()))),
        };
        self.slot(Slot::Bf16Table);
        self.data.tables.push(TableDef { draw, chain });
        Ok(self.def(Inst::Table { index }, Ty::table()))
    }

    /// The shard's offset in dim `d` as a `u64` scalar (one slot per program).
    fn offset(&mut self, d: usize) -> Id {
        if let Some(&v) = self.offsets.get(&d) {
            return v;
        }
        let start = self.slot(Slot::Offset(d));
        let v = self.def(Inst::Offset { start }, Ty::scalar(DType::U64));
        self.offsets.insert(d, v);
        v
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
                self.def(Inst::Splat { x: s }, self.compute_ty(dt))
            } else if node.ty.shape.is_empty() {
                s
            } else if node.ty.numel() == Some(1) {
                self.def(Inst::Reshape { x: s }, Ty::new(&node.ty.shape, dt))
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
        let consts: Vec<Id> = match node.op {
            _ if table => vec![self.bf16_table(v)?],
            Op::Uniform { min, max, .. } => {
                let (lo, scale) = uniform_bits(dt, min.get(), max.get());
                vec![self.scalar(dt, HostValue::Bits(lo)), self.scalar(dt, HostValue::Bits(scale))]
            }
            Op::TruncatedNormal { lower, upper, .. } if !fast_truncation_is_vacuous(self.fast, dt, lower.get(), upper.get()) => {
                truncated_bits(dt, lower.get(), upper.get()).into_iter().map(|b| self.scalar(dt, HostValue::Bits(b))).collect()
            }
            Op::Iota { dim } => vec![self.offset(dim as usize)],
            _ => vec![],
        };
        let mut vals = Vec::with_capacity(lanes);
        for j in 0..lanes {
            let lane = (lanes > 1).then_some(Lane { lanes: self.lanes, lane: j as u64 });
            let val = self.lane_node(v, j, lane, key, &consts)?;
            vals.push(val);
        }
        self.vals.insert(v, vals);
        Ok(())
    }

    /// Lane `j` of node `v` (the whole node in an element-wise program).
    fn lane_node(&mut self, v: Value, j: usize, lane: Option<Lane>, key: Option<Id>, consts: &[Id]) -> Result<Id, LowerError> {
        let node = self.m.node(v);
        let dt = node.ty.dtype;
        let out = self.compute_ty(dt);
        let k = key.ok_or(LowerError::Internal(format!("random op {v} without a key")));
        let draw = |s: &mut Self, d: Draw, consts: &[Id]| -> Result<Id, LowerError> {
            Ok(s.def(Inst::Draw { draw: d, key: k.clone()?, consts: consts.to_vec(), lane }, out.clone()))
        };
        Ok(match node.op.clone() {
            _ if self.looks_up(v) || self.absorbed.is_some() => {
                // both elements of a group are one pair-table entry (the lanes' lookups are
                // identical, so XLA's CSE keeps one per block)
                let pair = self.def(Inst::TableLookup { key: k?, table: consts[0] }, self.compute_ty(DType::U32));
                if j == 0 {
                    self.pairs.insert(v, pair);
                }
                self.def(Inst::PairHalf { pair, lane: j as u64 }, out)
            }
            Op::Uniform { .. } => draw(self, Draw::Uniform, consts)?,
            Op::Normal { .. } => draw(self, Draw::Normal, &[])?,
            Op::TruncatedNormal { lower, upper, .. } if fast_truncation_is_vacuous(self.fast, dt, lower.get(), upper.get()) => {
                draw(self, Draw::Normal, &[])?
            }
            Op::TruncatedNormal { .. } => draw(self, Draw::TruncatedNormal, consts)?,
            Op::RandomBits { width, .. } => draw(self, Draw::RandomBits(width), &[])?,
            Op::Binary { op: BinaryOp::Mul, .. } if self.m.normal_times_constant(v, self.seeded).is_some() => {
                let (key, c) = self.m.normal_times_constant(v, self.seeded).ok_or(LowerError::Internal("normal * c".into()))?;
                let key = self.key(key)?;
                let e = self.def(Inst::Draw { draw: Draw::NormalErfInv, key, consts: Vec::new(), lane }, out.clone());
                let s = self.scalar(DType::F32, HostValue::NormalFactor(c));
                let s = self.def(Inst::Splat { x: s }, out.clone());
                self.def(Inst::Binary { op: BinaryOp::Mul, a: e, b: s }, out)
            }
            Op::Iota { dim } => self.def(Inst::Iota { dim: dim as usize, offset: consts[0], lane }, out),
            Op::Unary { op, x } => {
                let x = self.get1(x, j)?;
                self.def(Inst::Unary { op, x }, out)
            }
            Op::Binary { op, a, b } => {
                let (a, b) = (self.get1(a, j)?, self.get1(b, j)?);
                self.def(Inst::Binary { op, a, b }, out)
            }
            Op::Compare { dir, a, b } => {
                let (a, b) = (self.get1(a, j)?, self.get1(b, j)?);
                self.def(Inst::Compare { dir, a, b }, out)
            }
            Op::Select { pred, on_true, on_false } => {
                let (pred, on_true, on_false) = (self.get1(pred, j)?, self.get1(on_true, j)?, self.get1(on_false, j)?);
                self.def(Inst::Select { pred, on_true, on_false }, out)
            }
            Op::Convert { x } => {
                let x = self.get1(x, j)?;
                self.def(Inst::Convert { x }, out)
            }
            Op::Reshape { x } if self.m.ty(x).shape == self.global => self.get1(x, j)?,
            op => return Err(self.unsupported(format!("{v} = {} changes the layout of a non-scalar array", op.mnemonic()))),
        })
    }
}

#[cfg(test)]
mod concat_tests {
    use super::*;

    /// Every run `[a, b)` of a `[3,4,5]` array is covered, in order, by rectangles that are each
    /// one contiguous run.
    #[test]
    fn run_rects_cover_a_run_in_order() {
        let shape = [3u64, 4, 5];
        for a in 0..60 {
            for b in a..=60 {
                let mut rects = Vec::new();
                run_rects(&shape, a, b, &mut rects);
                let mut pos = a;
                for r in &rects {
                    let (start, len) = contiguous_run(&shape, r).unwrap_or_else(|| panic!("[{a},{b}): {r:?} is not a run"));
                    assert!(len > 0 && start == pos, "[{a},{b}): {rects:?}");
                    pos += len;
                }
                assert_eq!(pos, b, "[{a},{b}): {rects:?}");
                assert!(rects.len() <= 5, "[{a},{b}): {rects:?}");
            }
        }
    }

    #[test]
    fn a_column_slice_is_not_a_run() {
        assert_eq!(contiguous_run(&[4, 6], &Region { offset: vec![1, 0], shape: vec![2, 6] }), Some((6, 12)));
        assert_eq!(contiguous_run(&[4, 6], &Region { offset: vec![1, 2], shape: vec![1, 3] }), Some((8, 3)));
        assert_eq!(contiguous_run(&[4, 6], &Region { offset: vec![0, 0], shape: vec![4, 3] }), None);
    }
}
