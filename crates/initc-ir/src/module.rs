//! The module: a flat arena of nodes in topological order plus the parameter table.

use crate::op::{Op, Value};
use crate::sharding::{Mesh, Sharding};
use crate::types::Type;

/// One SSA definition. Its value is its index in [`Module::nodes`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    pub op: Op,
    pub ty: Type,
}

/// A model parameter: an output of the init program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Fully qualified name (`layers.0.attention.wq.weight`); the tensor name in checkpoints.
    pub fqn: String,
    /// The node holding the parameter's value (last write wins during tracing).
    pub value: Value,
    /// Dtype and global shape; must equal the value's type.
    pub ty: Type,
    /// Logical axis name per dimension (`vocab`, `embed`, ...), or empty when unnamed.
    pub axes: Vec<String>,
    /// Human-readable initializer, e.g. `trunc_normal(mean=0, std=0.02, a=-2, b=2)`.
    pub init: String,
    /// How the parameter is split over [`Module::mesh`]; `Some` exactly when the module has a mesh.
    pub sharding: Option<Sharding>,
}

/// How random ops turn counters into bits (README "RNG modes").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RngMode {
    /// `jax.random` bit for bit: one threefry2x32 per element, `bits = y0 ^ y1` (docs/RNG_SPEC.md).
    #[default]
    Jax,
    /// initc's packed stream: one threefry2x32 of group counter `g = i / L` feeds `L = 64 / w`
    /// consecutive elements of width `w` (the 64 bits `y0 | y1 << 32`, lane `i % L` from the
    /// low end); f32 `normal` is Box-Muller on each group's two words. Still a pure function of
    /// (key, global flat index), so sharding-invariant, but not `jax.random`'s values.
    Fast,
}

impl RngMode {
    pub fn name(self) -> &'static str {
        match self {
            RngMode::Jax => "jax",
            RngMode::Fast => "fast",
        }
    }

    pub fn from_name(s: &str) -> Option<RngMode> {
        [RngMode::Jax, RngMode::Fast].into_iter().find(|m| m.name() == s)
    }
}

/// An init program. Invariant (checked by [`crate::verify`]): every operand refers to an
/// earlier node, so `nodes` is in topological order and one forward sweep evaluates it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    /// Default seed (a runtime input; `--seed` overrides it).
    pub seed: u64,
    /// The counter-to-bits scheme of every random op.
    pub rng: RngMode,
    pub nodes: Vec<Node>,
    pub params: Vec<Param>,
    /// The device mesh the shardings refer to; `None` for an unsharded program.
    pub mesh: Option<Mesh>,
}

impl Module {
    pub fn new(name: impl Into<String>) -> Module {
        Module { name: name.into(), ..Module::default() }
    }

    pub fn node(&self, v: Value) -> &Node {
        &self.nodes[v.index()]
    }

    pub fn ty(&self, v: Value) -> &Type {
        &self.nodes[v.index()].ty
    }

    /// Appends a node without checking it (the parser and passes use this after checking).
    pub fn push_node(&mut self, op: Op, ty: Type) -> Value {
        let v = Value(self.nodes.len() as u32);
        self.nodes.push(Node { op, ty });
        v
    }

    pub fn param(&self, fqn: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.fqn == fqn)
    }

    /// Total element count over all parameters (saturating; verified modules cannot overflow
    /// per parameter).
    pub fn total_elements(&self) -> u64 {
        self.params.iter().map(|p| p.ty.numel().unwrap_or(u64::MAX)).fold(0, u64::saturating_add)
    }

    /// Total bytes over all parameters in their dtypes.
    pub fn total_bytes(&self) -> u64 {
        self.params.iter().map(|p| p.ty.numel().unwrap_or(u64::MAX).saturating_mul(p.ty.dtype.size_bytes())).fold(0, u64::saturating_add)
    }

    /// Whether each node depends on the seed (the others are compile-time constants to XLA).
    pub fn seed_dependent(&self) -> Vec<bool> {
        let mut s = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            s[i] = matches!(n.op, Op::Seed) || n.op.operands().iter().any(|v| s[v.index()]);
        }
        s
    }

    /// `mul(normal, c)` in f32 with `c` a seed-independent f32 splat (`seeded` from
    /// [`Module::seed_dependent`]): returns the normal's key and `c`. XLA (under jit) rewrites
    /// it into `erf_inv(u) * f32(sqrt2 * c)`, which changes bits, so every backend must spell it
    /// the same way.
    pub fn normal_times_constant(&self, mul: Value, seeded: &[bool]) -> Option<(Value, Value)> {
        if self.rng != RngMode::Jax {
            return None; // the rewrite is XLA's fold of JAX's erf_inv form
        }
        let Op::Binary { op: crate::BinaryOp::Mul, a, b } = self.node(mul).op else { return None };
        [(a, b), (b, a)].into_iter().find_map(|(n, c)| match self.node(n).op {
            Op::Normal { key }
                if self.ty(n).dtype == crate::DType::F32
                    && self.ty(c).dtype == crate::DType::F32
                    && self.is_splat(c)
                    && !seeded[c.index()] =>
            {
                Some((key, c))
            }
            _ => None,
        })
    }

    /// Whether `v` is one scalar broadcast: a `full`, or a `broadcast` of a one-element array.
    pub fn is_splat(&self, v: Value) -> bool {
        match self.node(v).op {
            Op::Full { .. } => true,
            Op::Broadcast { x, .. } => self.ty(x).numel() == Some(1),
            _ => false,
        }
    }
}
