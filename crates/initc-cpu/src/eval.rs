//! The evaluator: the values of any node at any set of its flat (row-major) indices.
//! Elementwise ops pass index sets through; shape ops map them to operand indices; random ops
//! hash each index (so a shard never computes more than its own elements).

use initc_ir::{DType, Module, Op, Type, Value};
use initc_rng::{self as rng, Indices, Key, TruncBounds};

use crate::buf::{Buf, half_of};
use crate::elementwise as ew;

/// A set of flat indices into a node's shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Idx {
    Run { start: u64, len: usize },
    List(Vec<u64>),
}

impl Idx {
    pub fn len(&self) -> usize {
        match self {
            Idx::Run { len, .. } => *len,
            Idx::List(l) => l.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn as_rng(&self) -> Indices<'_> {
        match self {
            Idx::Run { start, len } => Indices::Run { start: *start, len: *len },
            Idx::List(l) => Indices::List(l),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = u64> + '_> {
        match self {
            Idx::Run { start, len } => Box::new(*start..*start + *len as u64),
            Idx::List(l) => Box::new(l.iter().copied()),
        }
    }

    /// Maps every index through `f` into a list.
    fn map(&self, f: impl Fn(u64) -> u64) -> Idx {
        Idx::List(self.iter().map(f).collect())
    }
}

/// Row-major strides of a shape.
pub fn strides(shape: &[u64]) -> Vec<u64> {
    let mut s = vec![1u64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Evaluates nodes of one module for one seed. Cheap to create; shareable across threads.
pub struct Evaluator<'m> {
    m: &'m Module,
    seed: u64,
    root: Key,
    uses: Vec<u32>,
    /// Whether a node depends on the seed (otherwise it is a compile-time constant to XLA).
    seeded: Vec<bool>,
}

impl<'m> Evaluator<'m> {
    pub fn new(m: &'m Module, seed: u64) -> Evaluator<'m> {
        let mut uses = vec![0u32; m.nodes.len()];
        for n in &m.nodes {
            for v in n.op.operands() {
                uses[v.index()] += 1;
            }
        }
        for p in &m.params {
            uses[p.value.index()] += 1;
        }
        Evaluator { m, seed, root: rng::prng_key(seed), uses, seeded: m.seed_dependent() }
    }

    /// The value of a seed-independent f32 node that is one scalar broadcast (a constant to XLA).
    fn const_f32(&self, v: Value) -> Option<f32> {
        let n = self.m.node(v);
        if self.seeded[v.index()] || n.ty.dtype != DType::F32 || !self.m.is_splat(v) {
            return None;
        }
        let scalar = match &n.op {
            Op::Full { value } => return Some(value.get() as f32),
            Op::Broadcast { x, .. } => *x,
            _ => return None,
        };
        match self.eval(scalar, &Idx::Run { start: 0, len: 1 }) {
            Buf::F32(x) => x.first().copied(),
            _ => None,
        }
    }

    /// `mul(normal, c)` in f32 with a constant `c`: XLA (under jit) rewrites
    /// `(sqrt2 * erf_inv(u)) * c` into `erf_inv(u) * f32(sqrt2 * c)`. Returns the normal's key
    /// and the folded factor.
    fn reassociated_normal(&self, mul: Value) -> Option<(Value, f32)> {
        let (key, c) = self.m.normal_times_constant(mul, &self.seeded)?;
        Some((key, rng::SQRT2_F32 * self.const_f32(c)?))
    }

    fn erf_inv_of_normal(&self, key: Value, idx: &Idx) -> Vec<f32> {
        let mut e = vec![0f32; idx.len()];
        rng::normal_erf_inv_f32(self.key(key), idx.as_rng(), &mut e);
        e
    }

    /// The module's counter-to-bits scheme.
    fn mode(&self) -> rng::Mode {
        match self.m.rng {
            initc_ir::RngMode::Jax => rng::Mode::Jax,
            initc_ir::RngMode::Fast => rng::Mode::Fast,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn module(&self) -> &'m Module {
        self.m
    }

    /// The key data of key node `v` (a scalar key).
    pub fn key(&self, v: Value) -> Key {
        match self.eval(v, &Idx::Run { start: 0, len: 1 }) {
            Buf::Key(k) => k.first().copied().unwrap_or_default(),
            _ => [0, 0],
        }
    }

    /// The values of node `v` at flat indices `idx` (the module must be verified).
    pub fn eval(&self, v: Value, idx: &Idx) -> Buf {
        let node = self.m.node(v);
        let ty = &node.ty;
        let n = idx.len();
        match &node.op {
            Op::Seed => Buf::Key(vec![self.root; n]),
            Op::FoldIn { key, data } => Buf::Key(vec![rng::fold_in(self.key(*key), *data); n]),
            Op::Split { key, .. } => {
                let k = self.key(*key);
                Buf::Key(idx.iter().map(|i| rng::split_at(k, i)).collect())
            }
            Op::RandomBits { key, width } => self.random_bits(self.key(*key), *width, idx),
            Op::Uniform { key, min, max } => self.uniform(self.key(*key), ty, min.get(), max.get(), idx),
            Op::Normal { key } => self.normal(self.key(*key), ty, idx),
            Op::TruncatedNormal { key, lower, upper } => self.truncated_normal(self.key(*key), ty, lower.get(), upper.get(), idx),
            Op::Full { value } => Buf::full(ty.dtype, value.get(), n),
            Op::Iota { dim } => {
                let (st, size) = (strides(&ty.shape)[*dim as usize], ty.shape[*dim as usize]);
                ew::convert(Buf::U64(idx.iter().map(|i| (i / st) % size).collect()), ty.dtype)
            }
            Op::Unary { op, x } => ew::unary(*op, self.eval(*x, idx)),
            Op::Binary { op, a, b } => self.binary(v, *op, *a, *b, idx),
            Op::Compare { dir, a, b } => ew::compare(*dir, self.eval(*a, idx), self.eval(*b, idx)),
            Op::Select { pred, on_true, on_false } => match self.eval(*pred, idx) {
                Buf::Bool(p) => ew::select(&p, self.eval(*on_true, idx), self.eval(*on_false, idx)),
                _ => self.eval(*on_true, idx),
            },
            Op::Convert { x } => ew::convert(self.eval(*x, idx), ty.dtype),
            Op::Reshape { x } => self.eval(*x, idx),
            Op::Broadcast { x, dims } => {
                let xs = &self.m.ty(*x).shape;
                let (rs, xst) = (strides(&ty.shape), strides(xs));
                self.eval(
                    *x,
                    &idx.map(|i| {
                        dims.iter()
                            .enumerate()
                            .map(|(k, &d)| if xs[k] == 1 { 0 } else { (i / rs[d as usize]) % ty.shape[d as usize] * xst[k] })
                            .sum()
                    }),
                )
            }
            Op::Transpose { x, perm } => {
                let xst = strides(&self.m.ty(*x).shape);
                let rs = strides(&ty.shape);
                self.eval(*x, &idx.map(|i| perm.iter().enumerate().map(|(k, &p)| (i / rs[k]) % ty.shape[k] * xst[p as usize]).sum()))
            }
            Op::Slice { x, start, .. } => {
                let xst = strides(&self.m.ty(*x).shape);
                let rs = strides(&ty.shape);
                self.eval(*x, &idx.map(|i| (0..ty.rank()).map(|k| ((i / rs[k]) % ty.shape[k] + start[k]) * xst[k]).sum()))
            }
            Op::Concat { xs, dim } => self.concat(xs, *dim as usize, ty, idx),
        }
    }

    /// Binary ops, with the two rewrites XLA:CPU applies that change f32 bits: constant
    /// reassociation into `normal` (see [`Self::reassociated_normal`]) and contraction of a
    /// single-use multiply feeding an add into one FMA.
    fn binary(&self, v: Value, op: initc_ir::BinaryOp, a: Value, b: Value, idx: &Idx) -> Buf {
        use initc_ir::BinaryOp::{Add, Mul};
        if op == Mul
            && let Some((key, c)) = self.reassociated_normal(v)
        {
            return Buf::F32(self.erf_inv_of_normal(key, idx).into_iter().map(|e| e * c).collect());
        }
        if op == Add && self.m.ty(a).dtype == DType::F32 {
            for (m, other) in [(a, b), (b, a)] {
                if self.uses[m.index()] != 1 {
                    continue;
                }
                if let Some((key, c)) = self.reassociated_normal(m) {
                    let Buf::F32(o) = self.eval(other, idx) else { break };
                    return Buf::F32(self.erf_inv_of_normal(key, idx).into_iter().zip(o).map(|(e, o)| e.mul_add(c, o)).collect());
                }
                if let Op::Binary { op: Mul, a: x, b: y } = self.m.node(m).op {
                    return ew::fma_f32(self.eval(x, idx), self.eval(y, idx), self.eval(other, idx));
                }
            }
        }
        // A constant f32 operand is applied as a scalar instead of a materialized buffer.
        if self.m.ty(a).dtype == DType::F32
            && let Some(c) = self.const_f32(b)
            && let Buf::F32(mut x) = self.eval(a, idx)
        {
            let f = ew::f32_binary_fn(op);
            x.iter_mut().for_each(|v| *v = f(*v, c));
            return Buf::F32(x);
        }
        ew::binary(op, self.eval(a, idx), self.eval(b, idx))
    }

    fn random_bits(&self, key: Key, width: u8, idx: &Idx) -> Buf {
        if width == 64 {
            let mut out = vec![0u64; idx.len()];
            rng::bits64(key, idx.as_rng(), &mut out);
            return Buf::U64(out);
        }
        let mut out = vec![0u32; idx.len()];
        rng::bits32(self.mode(), u32::from(width), key, idx.as_rng(), &mut out);
        match width {
            8 => Buf::U8(out.into_iter().map(|x| x as u8).collect()),
            16 => Buf::U16(out.into_iter().map(|x| x as u16).collect()),
            _ => Buf::U32(out),
        }
    }

    fn uniform(&self, key: Key, ty: &Type, min: f64, max: f64, idx: &Idx) -> Buf {
        let n = idx.len();
        match ty.dtype {
            DType::F64 => {
                let mut out = vec![0f64; n];
                rng::uniform_f64(key, idx.as_rng(), min, max, &mut out);
                Buf::F64(out)
            }
            DType::BF16 | DType::F16 => {
                let h = half_of(ty.dtype).unwrap_or(rng::Half::BF16);
                let mut out = vec![0u16; n];
                rng::uniform_half_bits(self.mode(), h, key, idx.as_rng(), min, max, &mut out);
                Buf::Half(h, out)
            }
            _ => {
                let mut out = vec![0f32; n];
                rng::uniform_f32(self.mode(), key, idx.as_rng(), min, max, &mut out);
                Buf::F32(out)
            }
        }
    }

    fn normal(&self, key: Key, ty: &Type, idx: &Idx) -> Buf {
        match half_of(ty.dtype) {
            Some(h) => {
                let mut out = vec![0u16; idx.len()];
                rng::normal_half_bits(self.mode(), h, key, idx.as_rng(), &mut out);
                Buf::Half(h, out)
            }
            None => {
                let mut out = vec![0f32; idx.len()];
                rng::normal_f32(self.mode(), key, idx.as_rng(), &mut out);
                Buf::F32(out)
            }
        }
    }

    fn truncated_normal(&self, key: Key, ty: &Type, lower: f64, upper: f64, idx: &Idx) -> Buf {
        match half_of(ty.dtype) {
            Some(h) => {
                let mut out = vec![0u16; idx.len()];
                rng::truncated_normal_half_bits(self.mode(), h, key, idx.as_rng(), lower, upper, &mut out);
                Buf::Half(h, out)
            }
            None => {
                let mut out = vec![0f32; idx.len()];
                rng::truncated_normal_f32(self.mode(), key, idx.as_rng(), &TruncBounds::new(lower, upper), &mut out);
                Buf::F32(out)
            }
        }
    }

    fn concat(&self, xs: &[Value], dim: usize, ty: &Type, idx: &Idx) -> Buf {
        let rs = strides(&ty.shape);
        let mut out = Buf::full(ty.dtype, 0.0, idx.len());
        let mut offset = 0u64;
        for &x in xs {
            let xt = self.m.ty(x);
            let xst = strides(&xt.shape);
            let (mut pos, mut src) = (Vec::new(), Vec::new());
            for (j, i) in idx.iter().enumerate() {
                let c = (i / rs[dim]) % ty.shape[dim];
                if (offset..offset + xt.shape[dim]).contains(&c) {
                    pos.push(j);
                    src.push(
                        (0..ty.rank())
                            .map(|k| {
                                let r = (i / rs[k]) % ty.shape[k];
                                (if k == dim { r - offset } else { r }) * xst[k]
                            })
                            .sum(),
                    );
                }
            }
            if !pos.is_empty() {
                let vals = self.eval(x, &Idx::List(src));
                out.scatter(&pos, &vals);
            }
            offset += xt.shape[dim];
        }
        out
    }
}
