//! The shard-program IR: what one parameter shard's program computes, between the initc IR and
//! its StableHLO text.
//!
//! A [`ShardProg`] is a small closed SSA: a list of [`Def`]s (an [`Inst`] and its result
//! [`Ty`]), each reading values defined before it, and the [`Slot`] layout of its static words.
//! It holds nothing that varies between the parameters (and shards) that share it: those are the
//! launch's [`LaunchData`] (host values, keys, table definitions), so two parameters can share an
//! executable exactly when their `ShardProg`s are equal, and deduplication hashes the structure.
//!
//! The pipeline, one step each:
//! - [`Lowerer::lower`] (`lower.rs`): initc module + parameter + region → [`ShardProgram`] (a `ShardProg`
//!   and the launch's data), verified by [`verify`] before it is returned;
//! - a concatenated parameter's row slice (torchtitan 0.3.0's `wqkv`) is one program whose
//!   [`ShardProg::funcs`] are its pieces' own programs (each part's rectangle, lowered as if the
//!   part were a parameter): [`Inst::Call`] with the piece's [`Slot::Piece`] words, then
//!   [`Inst::View`] / [`Inst::Concat`] to the region;
//! - [`Batched`] (`print.rs`): `k` launches of one program per execute, their static words in
//!   groups of `fuse` (a transform on the program, never on its text);
//! - [`ShardProg::print`] / [`Batched::print`] (`print.rs`): the only place StableHLO text is
//!   written.
//!
//! The program's own text form (`Display`, used by the filetests) is one line per definition:
//!
//! ```text
//! shard_program f32[4,8] counters=[8,1] lanes=1 compute=[4,8] rng=jax
//! slots base, key0
//! %0 = key words[2..5] : u32[5]
//! %1 = draw normal %0 : f32[4,8]
//! return %1
//! ```

mod lower;
mod print;
mod verify;

use std::fmt;

use initc_ir::{BinaryOp, CmpDir, DType, F64, RngMode, UnaryOp, Value};

pub use lower::{ChainStep, Concat, Lowerer, concat_parts, shard_program, table_chain};
pub use print::{Batched, batch_groups};
pub use verify::{VerifyError, verify};

/// Entries of a bf16 pair table ([`initc_rng::bf16_pair_table`]).
pub const PAIRS: u64 = initc_rng::BF16_PAIRS as u64;

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
    /// The `i`-th of the launch's keys ([`LaunchData::keys`]): its data `k0, k1` and its
    /// threefry key schedule word `k0 ^ k1 ^ 0x1BD11BDA` (three words, seed-dependent).
    Key(usize),
    /// A bf16 pair table ([`TableDef`]): not in the words but an argument of its own,
    /// `tensor<16384xui32>`, after the static words (the `i`-th table slot is `%arg{1 + i}`).
    Bf16Table,
    /// The static words of one piece of a concatenated parameter ([`Inst::Call`]): the words
    /// of [`ShardProg::funcs`]`[func]` (`words` of them), packed from the next of the launch's
    /// [`LaunchData::pieces`]. The piece's tables are the [`Slot::Bf16Table`]s after it.
    Piece { func: usize, words: usize },
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
            Slot::Piece { words, .. } => words,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slot::Base => f.write_str("base"),
            Slot::GroupBase(l) => write!(f, "group_base/{l}"),
            Slot::Offset(d) => write!(f, "offset{d}"),
            Slot::Scalar(d) => write!(f, "scalar {}", d.name()),
            Slot::Key(i) => write!(f, "key{i}"),
            Slot::Bf16Table => f.write_str("table"),
            Slot::Piece { func, words } => write!(f, "piece{func}/{words}"),
        }
    }
}

/// How the host computes the bits of a [`Slot::Scalar`] (seed-independent).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostValue {
    /// The value of seed-independent node `v`'s first element, in its dtype.
    Scalar(Value),
    /// `f32(sqrt2_f32 * c)` with `c` the f32 value of node `v` (XLA's fold of `normal * c`).
    NormalFactor(Value),
    /// Bits known when the program is lowered.
    Bits(u64),
}

/// The bf16 draw a pair table holds ([`initc_rng::bf16_pair_table`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TableDraw {
    Normal,
    Uniform { min: F64, max: F64 },
    TruncatedNormal { lower: F64, upper: F64 },
}

impl TableDraw {
    pub fn half_draw(self) -> initc_rng::HalfDraw {
        match self {
            TableDraw::Normal => initc_rng::HalfDraw::Normal,
            TableDraw::Uniform { min, max } => initc_rng::HalfDraw::Uniform { min: min.get(), max: max.get() },
            TableDraw::TruncatedNormal { lower, upper } => initc_rng::HalfDraw::TruncatedNormal { lower: lower.get(), upper: upper.get() },
        }
    }
}

/// What a [`Slot::Bf16Table`] argument holds: the pair table of `draw` with `chain` (a
/// [`table_chain`], possibly empty) applied to both values of each entry. The chain's constants
/// are seed-independent nodes the host evaluates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableDef {
    pub draw: TableDraw,
    pub chain: Vec<ChainStep>,
}

/// What varies between the launches of one [`ShardProg`]: the values behind its slots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LaunchData {
    /// Host values of the [`Slot::Scalar`]s, in slot order.
    pub values: Vec<HostValue>,
    /// The key nodes of the [`Slot::Key`]s, in key order (the host evaluates them per seed).
    pub keys: Vec<Value>,
    /// The tables of the [`Slot::Bf16Table`]s, in slot order (a concatenated parameter's:
    /// its pieces' tables, in piece order).
    pub tables: Vec<TableDef>,
    /// The launches of the [`Slot::Piece`]s, in slot order.
    pub pieces: Vec<Piece>,
}

/// One piece of a concatenated parameter's launch: a rectangle of one concatenated part,
/// computed like a parameter of its own (its counters are its flat indices in the part).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The part's own shape (a [`Slot::Base`] is the flat index of `region`'s first element in
    /// it).
    pub global: Vec<u64>,
    pub region: initc_shard::Region,
    pub data: LaunchData,
}

/// A value of a shard program: the index of the definition that computes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub u32);

impl Id {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// A value's type: a tensor of `dtype` (keys are `u32[5]`, tables `u32[16384]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ty {
    pub shape: Vec<u64>,
    pub dtype: DType,
}

impl Ty {
    pub fn new(shape: &[u64], dtype: DType) -> Ty {
        Ty { shape: shape.to_vec(), dtype }
    }

    pub fn scalar(dtype: DType) -> Ty {
        Ty { shape: Vec::new(), dtype }
    }

    /// The shard-mode key operand of the random functions: `[k0, k1, base_hi, base_lo, k2]`.
    pub fn key() -> Ty {
        Ty { shape: vec![5], dtype: DType::U32 }
    }

    pub fn table() -> Ty {
        Ty { shape: vec![PAIRS], dtype: DType::U32 }
    }

    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.shape.iter().map(u64::to_string).collect();
        write!(f, "{}[{}]", self.dtype.name(), dims.join(","))
    }
}

/// Lane `lane` of `lanes` (fast mode's packed programs: `lanes` elements per threefry block).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lane {
    pub lanes: u64,
    pub lane: u64,
}

/// A random draw (one private function of `rng.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Draw {
    /// Constants: `lo`, `scale`.
    Uniform,
    Normal,
    /// Constants: `a`, `scale`, clamp lo, clamp hi.
    TruncatedNormal,
    /// A normal draw before its `sqrt2` factor (`normal * c` as XLA rewrites it).
    NormalErfInv,
    /// Random bits of this width.
    RandomBits(u8),
}

impl Draw {
    /// How many scalar constants the draw takes.
    pub fn consts(self) -> usize {
        match self {
            Draw::Uniform => 2,
            Draw::TruncatedNormal => 4,
            Draw::Normal | Draw::NormalErfInv | Draw::RandomBits(_) => 0,
        }
    }

    fn name(self) -> String {
        match self {
            Draw::Uniform => "uniform".into(),
            Draw::Normal => "normal".into(),
            Draw::TruncatedNormal => "truncated_normal".into(),
            Draw::NormalErfInv => "normal_erf_inv".into(),
            Draw::RandomBits(w) => format!("random_bits{w}"),
        }
    }
}

/// One instruction. Static-word reads name the first word of their slot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Inst {
    /// The key of the [`Slot::Key`] at `start` with the shard's counter base: `u32[5]`.
    Key {
        start: usize,
    },
    /// The [`Slot::Scalar`] at `start`, a scalar of its dtype.
    Scalar {
        start: usize,
    },
    /// The [`Slot::Offset`] at `start`, a `u64` scalar.
    Offset {
        start: usize,
    },
    /// The `index`-th table argument.
    Table {
        index: usize,
    },
    /// A scalar broadcast to the result type.
    Splat {
        x: Id,
    },
    /// A one-element value reshaped to the result type.
    Reshape {
        x: Id,
    },
    /// A random draw over the result's shape: lane `lane` of each group's block in a packed
    /// program.
    Draw {
        draw: Draw,
        key: Id,
        consts: Vec<Id>,
        lane: Option<Lane>,
    },
    /// Each group's entry of a pair table at the 14 bits `y0 & 0x3FFF` of its block (`u32`: the
    /// group's two bf16 values, element 0 in the low half).
    TableLookup {
        key: Id,
        table: Id,
    },
    /// Half `lane` (0: low) of looked-up pair entries, as bf16.
    PairHalf {
        pair: Id,
        lane: u64,
    },
    /// Each element's global coordinate in `dim` (`offset` is the shard's), converted.
    Iota {
        dim: usize,
        offset: Id,
        lane: Option<Lane>,
    },
    Unary {
        op: UnaryOp,
        x: Id,
    },
    Binary {
        op: BinaryOp,
        a: Id,
        b: Id,
    },
    Compare {
        dir: CmpDir,
        a: Id,
        b: Id,
    },
    Select {
        pred: Id,
        on_true: Id,
        on_false: Id,
    },
    Convert {
        x: Id,
    },
    /// The lanes interleaved into the local shape (lane `j` of group `g` is element `g * L + j`).
    Pack {
        lanes: Vec<Id>,
    },
    /// Looked-up pair entries split into their two bf16 values, in the local shape.
    Unpair {
        pair: Id,
    },
    /// A value of the compute shape reshaped to the local shape (flat programs).
    ToLocal {
        x: Id,
    },
    /// [`ShardProg::funcs`]`[func]` called with the words of the [`Slot::Piece`] at `start` and
    /// its table arguments: one piece of a concatenated parameter, in the piece's shape.
    Call {
        func: usize,
        start: usize,
        tables: Vec<Id>,
    },
    /// A row-major reshape of `x` to the result type (same element count and dtype).
    View {
        x: Id,
    },
    /// Values of one rank concatenated, in order, along `dim` (their other extents equal).
    Concat {
        xs: Vec<Id>,
        dim: usize,
    },
}

impl Inst {
    pub fn operands(&self) -> Vec<Id> {
        match self {
            Inst::Key { .. } | Inst::Scalar { .. } | Inst::Offset { .. } | Inst::Table { .. } => Vec::new(),
            Inst::Splat { x } | Inst::Reshape { x } | Inst::Unary { x, .. } | Inst::Convert { x } | Inst::ToLocal { x } => vec![*x],
            Inst::Draw { key, consts, .. } => std::iter::once(*key).chain(consts.iter().copied()).collect(),
            Inst::TableLookup { key, table } => vec![*key, *table],
            Inst::PairHalf { pair, .. } | Inst::Unpair { pair } => vec![*pair],
            Inst::Iota { offset, .. } => vec![*offset],
            Inst::Binary { a, b, .. } | Inst::Compare { a, b, .. } => vec![*a, *b],
            Inst::Select { pred, on_true, on_false } => vec![*pred, *on_true, *on_false],
            Inst::Pack { lanes } => lanes.clone(),
            Inst::Call { tables, .. } => tables.clone(),
            Inst::View { x } => vec![*x],
            Inst::Concat { xs, .. } => xs.clone(),
        }
    }
}

/// A definition: an instruction and its result type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Def {
    pub inst: Inst,
    pub ty: Ty,
}

/// An element's random counter: `base + Σ coordinate_d · strides[d]` (its row-major flat index
/// in the global array, or its group's in a packed program), computed in u64 when `wide` (the
/// array has more than 2^32 elements or groups), else in u32.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Counters {
    pub strides: Vec<u64>,
    pub wide: bool,
}

impl Counters {
    /// The counters of an array of shape `global`.
    pub fn row_major(global: &[u64]) -> Counters {
        let mut strides = vec![1u64; global.len()];
        for d in (0..global.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * global[d + 1];
        }
        Counters { strides, wide: global.iter().product::<u64>() > 1 << 32 }
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: Vec<String> = self.strides.iter().map(u64::to_string).collect();
        write!(f, "[{}]{}", s.join(","), if self.wide { " u64" } else { "" })
    }
}

/// One shard program: everything its StableHLO text is printed from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShardProg {
    pub rng: RngMode,
    /// Random counters over the compute shape: those of the parameter's global shape, grouped
    /// by `lanes` in its last dim (or flattened, for flat programs).
    pub counters: Counters,
    /// Elements per group (1: an element-wise program).
    pub lanes: u64,
    /// The shape the program computes in: the local shape, grouped or flattened like `counters`.
    pub compute: Vec<u64>,
    /// The result: the shard's local shape and the parameter's dtype.
    pub shape: Vec<u64>,
    pub dtype: DType,
    pub slots: Vec<Slot>,
    pub defs: Vec<Def>,
    pub result: Id,
    /// The distinct programs of a concatenated parameter's pieces ([`Inst::Call`]; empty for
    /// every other parameter), printed as private functions `@piece{i}`.
    pub funcs: Vec<ShardProg>,
}

impl ShardProg {
    /// Words of the static-word argument.
    pub fn words(&self) -> usize {
        self.slots.iter().map(|s| s.words()).sum()
    }

    /// Table arguments after the static words.
    pub fn tables(&self) -> usize {
        self.slots.iter().filter(|s| **s == Slot::Bf16Table).count()
    }

    /// The slot starting at word `start`.
    pub fn slot_at(&self, start: usize) -> Option<Slot> {
        let mut w = 0;
        for &s in &self.slots {
            if w == start && s.words() > 0 {
                return Some(s);
            }
            w += s.words();
        }
        None
    }

    pub fn ty(&self, v: Id) -> &Ty {
        &self.defs[v.index()].ty
    }

    /// Whether the program or one of its pieces' has a slot `f` accepts.
    pub fn any_slot(&self, f: impl Fn(Slot) -> bool + Copy) -> bool {
        self.slots.iter().any(|&s| f(s)) || self.funcs.iter().any(|p| p.any_slot(f))
    }
}

impl fmt::Display for ShardProg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |xs: &[u64]| xs.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        writeln!(
            f,
            "shard_program {} counters={} lanes={} compute=[{}] rng={}",
            Ty::new(&self.shape, self.dtype),
            self.counters,
            self.lanes,
            list(&self.compute),
            self.rng.name()
        )?;
        let slots: Vec<String> = self.slots.iter().map(Slot::to_string).collect();
        writeln!(f, "slots {}", slots.join(", "))?;
        for (i, d) in self.defs.iter().enumerate() {
            write!(f, "{} = ", Id(i as u32))?;
            let ids = |xs: &[Id]| xs.iter().map(Id::to_string).collect::<Vec<_>>().join(", ");
            let lane = |l: &Option<Lane>| l.map(|l| format!(" lane={}/{}", l.lane, l.lanes)).unwrap_or_default();
            match &d.inst {
                Inst::Key { start } => write!(f, "key words[{}..{}]", start, start + 3)?,
                Inst::Scalar { start } => write!(f, "scalar words[{start}]")?,
                Inst::Offset { start } => write!(f, "offset words[{}..{}]", start, start + 2)?,
                Inst::Table { index } => write!(f, "table {index}")?,
                Inst::Splat { x } => write!(f, "splat {x}")?,
                Inst::Reshape { x } => write!(f, "reshape {x}")?,
                Inst::Draw { draw, key, consts, lane: l } => {
                    write!(f, "draw {} {key}", draw.name())?;
                    if !consts.is_empty() {
                        write!(f, ", {}", ids(consts))?;
                    }
                    write!(f, "{}", lane(l))?;
                }
                Inst::TableLookup { key, table } => write!(f, "table_lookup {key}, {table}")?,
                Inst::PairHalf { pair, lane } => write!(f, "pair_half {pair}, {lane}")?,
                Inst::Iota { dim, offset, lane: l } => write!(f, "iota dim={dim} {offset}{}", lane(l))?,
                Inst::Unary { op, x } => write!(f, "{op} {x}")?,
                Inst::Binary { op, a, b } => write!(f, "{op} {a}, {b}")?,
                Inst::Compare { dir, a, b } => write!(f, "compare {dir} {a}, {b}")?,
                Inst::Select { pred, on_true, on_false } => write!(f, "select {pred}, {on_true}, {on_false}")?,
                Inst::Convert { x } => write!(f, "convert {x}")?,
                Inst::Pack { lanes } => write!(f, "pack {}", ids(lanes))?,
                Inst::Unpair { pair } => write!(f, "unpair {pair}")?,
                Inst::ToLocal { x } => write!(f, "to_local {x}")?,
                Inst::Call { func, start, tables } => {
                    write!(f, "call piece{func} words[{}..{}]", start, start + self.funcs.get(*func).map_or(0, ShardProg::words))?;
                    if !tables.is_empty() {
                        write!(f, ", {}", ids(tables))?;
                    }
                }
                Inst::View { x } => write!(f, "view {x}")?,
                Inst::Concat { xs, dim: 0 } => write!(f, "concat {}", ids(xs))?,
                Inst::Concat { xs, dim } => write!(f, "concat {}, dim={dim}", ids(xs))?,
            }
            writeln!(f, " : {}", d.ty)?;
        }
        writeln!(f, "return {}", self.result)?;
        for (i, p) in self.funcs.iter().enumerate() {
            writeln!(f, "piece{i}:")?;
            for line in p.to_string().lines() {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}

/// A parameter shard's program and the data of its launch.
#[derive(Clone, Debug)]
pub struct ShardProgram {
    pub prog: ShardProg,
    pub data: LaunchData,
    /// e.g. `truncated_normal·mul f32[1024,4096]`.
    pub summary: String,
}

impl ShardProgram {
    /// The program's StableHLO text (generic form).
    pub fn text(&self) -> String {
        self.prog.print()
    }

    pub fn slots(&self) -> &[Slot] {
        &self.prog.slots
    }

    pub fn words(&self) -> usize {
        self.prog.words()
    }
}
