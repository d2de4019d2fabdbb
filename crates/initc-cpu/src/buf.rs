//! Typed element buffers the evaluator passes between nodes.

use initc_ir::DType;
use initc_rng::{Half, Key};

/// Values of one node at a set of indices.
#[derive(Debug, Clone, PartialEq)]
pub enum Buf {
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// bf16 or f16 bit patterns.
    Half(Half, Vec<u16>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
    Key(Vec<Key>),
}

pub fn half_of(d: DType) -> Option<Half> {
    match d {
        DType::BF16 => Some(Half::BF16),
        DType::F16 => Some(Half::F16),
        _ => None,
    }
}

impl Buf {
    pub fn len(&self) -> usize {
        match self {
            Buf::F32(v) => v.len(),
            Buf::F64(v) => v.len(),
            Buf::Half(_, v) | Buf::U16(v) => v.len(),
            Buf::U8(v) => v.len(),
            Buf::U32(v) => v.len(),
            Buf::U64(v) => v.len(),
            Buf::I32(v) => v.len(),
            Buf::Bool(v) => v.len(),
            Buf::Key(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A buffer of `n` copies of `value` cast to `dtype` (as `jnp.full` casts a Python float).
    pub fn full(dtype: DType, value: f64, n: usize) -> Buf {
        match dtype {
            DType::F32 => Buf::F32(vec![value as f32; n]),
            DType::F64 => Buf::F64(vec![value; n]),
            DType::BF16 | DType::F16 => {
                let h = half_of(dtype).unwrap_or(Half::BF16);
                Buf::Half(h, vec![h.from_f64(value); n])
            }
            DType::U8 => Buf::U8(vec![value as u8; n]),
            DType::U16 => Buf::U16(vec![value as u16; n]),
            DType::U32 => Buf::U32(vec![value as u32; n]),
            DType::U64 => Buf::U64(vec![value as u64; n]),
            DType::I32 => Buf::I32(vec![value as i32; n]),
            DType::Bool => Buf::Bool(vec![value != 0.0; n]),
            DType::Key => Buf::Key(vec![[0, 0]; n]),
        }
    }

    /// Elements `pos` of self, in that order.
    pub fn gather(&self, pos: &[usize]) -> Buf {
        fn g<T: Copy>(v: &[T], pos: &[usize]) -> Vec<T> {
            pos.iter().map(|&p| v[p]).collect()
        }
        match self {
            Buf::F32(v) => Buf::F32(g(v, pos)),
            Buf::F64(v) => Buf::F64(g(v, pos)),
            Buf::Half(h, v) => Buf::Half(*h, g(v, pos)),
            Buf::U8(v) => Buf::U8(g(v, pos)),
            Buf::U16(v) => Buf::U16(g(v, pos)),
            Buf::U32(v) => Buf::U32(g(v, pos)),
            Buf::U64(v) => Buf::U64(g(v, pos)),
            Buf::I32(v) => Buf::I32(g(v, pos)),
            Buf::Bool(v) => Buf::Bool(g(v, pos)),
            Buf::Key(v) => Buf::Key(g(v, pos)),
        }
    }

    /// Writes `src[j]` to `self[pos[j]]` (`self` and `src` have the same variant).
    pub fn scatter(&mut self, pos: &[usize], src: &Buf) {
        fn s<T: Copy>(dst: &mut [T], pos: &[usize], src: &[T]) {
            for (j, &p) in pos.iter().enumerate() {
                dst[p] = src[j];
            }
        }
        match (self, src) {
            (Buf::F32(d), Buf::F32(x)) => s(d, pos, x),
            (Buf::F64(d), Buf::F64(x)) => s(d, pos, x),
            (Buf::Half(_, d), Buf::Half(_, x)) | (Buf::U16(d), Buf::U16(x)) => s(d, pos, x),
            (Buf::U8(d), Buf::U8(x)) => s(d, pos, x),
            (Buf::U32(d), Buf::U32(x)) => s(d, pos, x),
            (Buf::U64(d), Buf::U64(x)) => s(d, pos, x),
            (Buf::I32(d), Buf::I32(x)) => s(d, pos, x),
            (Buf::Bool(d), Buf::Bool(x)) => s(d, pos, x),
            (Buf::Key(d), Buf::Key(x)) => s(d, pos, x),
            _ => {}
        }
    }

    /// Appends the little-endian bytes of the elements (a key is two u32 words).
    pub fn append_le_bytes(&self, out: &mut Vec<u8>) {
        #[cfg(target_endian = "little")]
        {
            fn raw<T: Copy>(v: &[T]) -> &[u8] {
                // SAFETY: plain-old-data numbers; any initialized memory is valid as bytes.
                unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
            }
            let bytes = match self {
                Buf::F32(v) => Some(raw(v)),
                Buf::F64(v) => Some(raw(v)),
                Buf::Half(_, v) | Buf::U16(v) => Some(raw(v)),
                Buf::U32(v) => Some(raw(v)),
                Buf::U64(v) => Some(raw(v)),
                Buf::I32(v) => Some(raw(v)),
                _ => None,
            };
            if let Some(b) = bytes {
                out.extend_from_slice(b);
                return;
            }
        }
        macro_rules! le {
            ($v:expr) => {
                for x in $v {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            };
        }
        match self {
            Buf::F32(v) => le!(v),
            Buf::F64(v) => le!(v),
            Buf::Half(_, v) | Buf::U16(v) => le!(v),
            Buf::U8(v) => out.extend_from_slice(v),
            Buf::U32(v) => le!(v),
            Buf::U64(v) => le!(v),
            Buf::I32(v) => le!(v),
            Buf::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
            Buf::Key(v) => {
                for k in v {
                    le!(k);
                }
            }
        }
    }
}
