//! Element types and tensor types. A `Type` is what every SSA value carries.

use std::fmt;

/// Element type of a tensor. `Key` is a threefry2x32 key (two u32 words); a key tensor of
/// shape `[n]` is what `split` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    BF16,
    F16,
    F64,
    U8,
    U16,
    U32,
    U64,
    I32,
    Bool,
    Key,
}

impl DType {
    pub const ALL: [DType; 11] = [
        DType::F32,
        DType::BF16,
        DType::F16,
        DType::F64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::I32,
        DType::Bool,
        DType::Key,
    ];

    /// The text-IR and manifest spelling (`f32`, `bf16`, ...), also used in model.toml.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::F64 => "f64",
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::I32 => "i32",
            DType::Bool => "bool",
            DType::Key => "key",
        }
    }

    /// safetensors dtype spelling.
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::BF16 => "BF16",
            DType::F16 => "F16",
            DType::F64 => "F64",
            DType::U8 => "U8",
            DType::U16 => "U16",
            DType::U32 => "U32",
            DType::U64 => "U64",
            DType::I32 => "I32",
            DType::Bool => "BOOL",
            DType::Key => "U32",
        }
    }

    pub fn from_name(s: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == s)
    }

    /// Bytes per element in a checkpoint (a key is two u32 words).
    pub fn size_bytes(self) -> u64 {
        match self {
            DType::U8 | DType::Bool => 1,
            DType::BF16 | DType::F16 | DType::U16 => 2,
            DType::F32 | DType::U32 | DType::I32 => 4,
            DType::F64 | DType::U64 | DType::Key => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::BF16 | DType::F16 | DType::F64)
    }

    pub fn is_int(self) -> bool {
        matches!(self, DType::U8 | DType::U16 | DType::U32 | DType::U64 | DType::I32)
    }

    /// Types arithmetic is defined on.
    pub fn is_numeric(self) -> bool {
        self.is_float() || self.is_int()
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor type: element type and static shape (row-major). Scalars have an empty shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Type {
    pub dtype: DType,
    pub shape: Vec<u64>,
}

impl Type {
    pub fn new(dtype: DType, shape: impl Into<Vec<u64>>) -> Type {
        Type { dtype, shape: shape.into() }
    }

    /// A single key (scalar key tensor).
    pub fn key() -> Type {
        Type { dtype: DType::Key, shape: Vec::new() }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements, or `None` on u64 overflow.
    pub fn numel(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    pub fn with_dtype(&self, dtype: DType) -> Type {
        Type { dtype, shape: self.shape.clone() }
    }
}

impl fmt::Display for Type {
    /// `f32[4096,4096]`, `f32[]` for a scalar, `key` for a single key, `key[3]` for a key array.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dtype == DType::Key && self.shape.is_empty() {
            return f.write_str("key");
        }
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}
