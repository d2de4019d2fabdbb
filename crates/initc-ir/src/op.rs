//! The closed set of operations. `Op` derives `Eq` + `Hash` so identical nodes can be
//! hash-consed; float attributes are stored as bit patterns ([`F64`]) for that reason.

use std::fmt;

/// An SSA value: the index of the node that defines it. Its `Display` is the text-IR spelling `%7`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub u32);

impl Value {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// An f64 attribute compared and hashed by its bit pattern. `Display` prints the shortest
/// decimal that parses back to the same bits (`0.02`, `-2.0`, `1e-5`, `inf`, `NaN`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct F64(u64);

impl F64 {
    pub fn new(v: f64) -> F64 {
        F64(v.to_bits())
    }
    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

impl From<f64> for F64 {
    fn from(v: f64) -> F64 {
        F64::new(v)
    }
}

impl fmt::Debug for F64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.get())
    }
}

impl fmt::Display for F64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.get())
    }
}

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($var:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($var),* }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),*];
            pub fn name(self) -> &'static str { match self { $($name::$var => $s),* } }
            pub fn from_name(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.name() == s)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.name()) }
        }
    };
}

named_enum!(
    /// Elementwise unary math.
    UnaryOp { Neg = "neg", Abs = "abs", Sqrt = "sqrt", Rsqrt = "rsqrt", Exp = "exp", Log = "log" }
);

named_enum!(
    /// Elementwise binary math; both operands have the result's type (no implicit broadcast).
    BinaryOp {
        Add = "add", Sub = "sub", Mul = "mul", Div = "div", Max = "max", Min = "min", Pow = "pow"
    }
);

named_enum!(
    /// Comparison direction of `cmp`.
    CmpDir { Eq = "eq", Ne = "ne", Lt = "lt", Le = "le", Gt = "gt", Ge = "ge" }
);

/// One operation. Where an op's result dtype/shape is not implied by its operands (random ops,
/// `full`, `iota`, `convert`, `broadcast`, `reshape`), it is the node's [`crate::Type`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `PRNGKey(seed)` of the runtime seed: `[seed >> 32, seed & 0xFFFFFFFF]`.
    Seed,
    /// `jax.random.fold_in(key, data)`.
    FoldIn {
        key: Value,
        data: u32,
    },
    /// `jax.random.split(key, count)`: a `key[count]`.
    Split {
        key: Value,
        count: u64,
    },
    /// `jax.random.bits(key, shape, uint<width>)`.
    RandomBits {
        key: Value,
        width: u8,
    },
    /// `jax.random.uniform(key, shape, dtype, min, max)`.
    Uniform {
        key: Value,
        min: F64,
        max: F64,
    },
    /// `jax.random.normal(key, shape, dtype)`.
    Normal {
        key: Value,
    },
    /// `jax.random.truncated_normal(key, lower, upper, shape, dtype)`; bounds in std units.
    TruncatedNormal {
        key: Value,
        lower: F64,
        upper: F64,
    },
    /// `jnp.full(shape, value, dtype)`.
    Full {
        value: F64,
    },
    /// `lax.broadcasted_iota(dtype, shape, dim)`.
    Iota {
        dim: u32,
    },
    Unary {
        op: UnaryOp,
        x: Value,
    },
    Binary {
        op: BinaryOp,
        a: Value,
        b: Value,
    },
    Compare {
        dir: CmpDir,
        a: Value,
        b: Value,
    },
    Select {
        pred: Value,
        on_true: Value,
        on_false: Value,
    },
    /// Element type conversion (same shape).
    Convert {
        x: Value,
    },
    /// `broadcast_in_dim`: operand dim `i` becomes result dim `dims[i]`.
    Broadcast {
        x: Value,
        dims: Vec<u32>,
    },
    /// Row-major reshape (same element count).
    Reshape {
        x: Value,
    },
    /// Result dim `i` is operand dim `perm[i]`.
    Transpose {
        x: Value,
        perm: Vec<u32>,
    },
    /// Unit-stride slice `[start, limit)` per dimension.
    Slice {
        x: Value,
        start: Vec<u64>,
        limit: Vec<u64>,
    },
    /// Concatenation along `dim`.
    Concat {
        xs: Vec<Value>,
        dim: u32,
    },
}

impl Op {
    /// The text-IR mnemonic.
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Op::Seed => "seed",
            Op::FoldIn { .. } => "fold_in",
            Op::Split { .. } => "split",
            Op::RandomBits { .. } => "random_bits",
            Op::Uniform { .. } => "uniform",
            Op::Normal { .. } => "normal",
            Op::TruncatedNormal { .. } => "truncated_normal",
            Op::Full { .. } => "full",
            Op::Iota { .. } => "iota",
            Op::Unary { op, .. } => op.name(),
            Op::Binary { op, .. } => op.name(),
            Op::Compare { .. } => "cmp",
            Op::Select { .. } => "select",
            Op::Convert { .. } => "convert",
            Op::Broadcast { .. } => "broadcast",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Slice { .. } => "slice",
            Op::Concat { .. } => "concat",
        }
    }

    /// The key a random draw (`random_bits`, `uniform`, `normal`, `truncated_normal`) reads.
    pub fn random_key(&self) -> Option<Value> {
        match self {
            Op::RandomBits { key, .. } | Op::Uniform { key, .. } | Op::Normal { key } | Op::TruncatedNormal { key, .. } => Some(*key),
            _ => None,
        }
    }

    /// Operand values, in order.
    pub fn operands(&self) -> Vec<Value> {
        match self {
            Op::Seed | Op::Full { .. } | Op::Iota { .. } => vec![],
            Op::FoldIn { key, .. }
            | Op::Split { key, .. }
            | Op::RandomBits { key, .. }
            | Op::Uniform { key, .. }
            | Op::Normal { key }
            | Op::TruncatedNormal { key, .. } => vec![*key],
            Op::Unary { x, .. }
            | Op::Convert { x }
            | Op::Broadcast { x, .. }
            | Op::Reshape { x }
            | Op::Transpose { x, .. }
            | Op::Slice { x, .. } => vec![*x],
            Op::Binary { a, b, .. } | Op::Compare { a, b, .. } => vec![*a, *b],
            Op::Select { pred, on_true, on_false } => vec![*pred, *on_true, *on_false],
            Op::Concat { xs, .. } => xs.clone(),
        }
    }

    /// Rewrites every operand through `f` (used by passes that renumber values).
    pub fn map_operands(&mut self, mut f: impl FnMut(Value) -> Value) {
        match self {
            Op::Seed | Op::Full { .. } | Op::Iota { .. } => {}
            Op::FoldIn { key, .. }
            | Op::Split { key, .. }
            | Op::RandomBits { key, .. }
            | Op::Uniform { key, .. }
            | Op::Normal { key }
            | Op::TruncatedNormal { key, .. } => *key = f(*key),
            Op::Unary { x, .. }
            | Op::Convert { x }
            | Op::Broadcast { x, .. }
            | Op::Reshape { x }
            | Op::Transpose { x, .. }
            | Op::Slice { x, .. } => *x = f(*x),
            Op::Binary { a, b, .. } | Op::Compare { a, b, .. } => {
                *a = f(*a);
                *b = f(*b);
            }
            Op::Select { pred, on_true, on_false } => {
                *pred = f(*pred);
                *on_true = f(*on_true);
                *on_false = f(*on_false);
            }
            Op::Concat { xs, .. } => xs.iter_mut().for_each(|x| *x = f(*x)),
        }
    }
}
