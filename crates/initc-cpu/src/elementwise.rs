//! Elementwise math on [`Buf`]s with XLA semantics: f32/f64 natively, bf16/f16 computed in f32
//! and rounded after every op, integers wrapping (division by zero gives all ones, as XLA).
//! `sqrt`, `div`, `mul`, `add`, `sub`, `max`, `min`, `neg`, `abs` are exact; `log` is
//! XLA:CPU's own; `exp`, `pow` use libm and may differ from XLA:CPU by an ulp.

use initc_ir::{BinaryOp, CmpDir, DType, UnaryOp};
use initc_rng::{Half, xla_cpu};

use crate::buf::{Buf, half_of};

fn f32_unary(op: UnaryOp, x: f32) -> f32 {
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => xla_cpu::log(x),
    }
}

fn f64_unary(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
    }
}

/// XLA's max/min propagate NaN.
macro_rules! float_binary {
    ($name:ident, $t:ty) => {
        fn $name(op: BinaryOp, a: $t, b: $t) -> $t {
            match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                BinaryOp::Div => a / b,
                BinaryOp::Max => {
                    if a.is_nan() || b.is_nan() {
                        <$t>::NAN
                    } else {
                        a.max(b)
                    }
                }
                BinaryOp::Min => {
                    if a.is_nan() || b.is_nan() {
                        <$t>::NAN
                    } else {
                        a.min(b)
                    }
                }
                BinaryOp::Pow => a.powf(b),
            }
        }
    };
}
float_binary!(f32_binary, f32);

/// The f32 binary op as a plain function (for scalar-operand fast paths).
pub fn f32_binary_fn(op: BinaryOp) -> impl Fn(f32, f32) -> f32 {
    move |a, b| f32_binary(op, a, b)
}
float_binary!(f64_binary, f64);

macro_rules! int_binary {
    ($name:ident, $t:ty) => {
        fn $name(op: BinaryOp, a: $t, b: $t) -> $t {
            match op {
                BinaryOp::Add => a.wrapping_add(b),
                BinaryOp::Sub => a.wrapping_sub(b),
                BinaryOp::Mul => a.wrapping_mul(b),
                BinaryOp::Div => {
                    if b == 0 {
                        !0
                    } else {
                        a.wrapping_div(b)
                    }
                }
                BinaryOp::Max => a.max(b),
                BinaryOp::Min => a.min(b),
                BinaryOp::Pow => a, // rejected by the verifier (pow is float-only)
            }
        }
    };
}
int_binary!(u8_binary, u8);
int_binary!(u16_binary, u16);
int_binary!(u32_binary, u32);
int_binary!(u64_binary, u64);
int_binary!(i32_binary, i32);

fn half_map(h: Half, v: &[u16], f: impl Fn(f32) -> f32) -> Vec<u16> {
    v.iter().map(|&x| h.from_f32(f(h.to_f32(x)))).collect()
}

pub fn unary(op: UnaryOp, x: Buf) -> Buf {
    match x {
        Buf::F32(v) => Buf::F32(v.into_iter().map(|a| f32_unary(op, a)).collect()),
        Buf::F64(v) => Buf::F64(v.into_iter().map(|a| f64_unary(op, a)).collect()),
        Buf::Half(h, v) => Buf::Half(h, half_map(h, &v, |a| f32_unary(op, a))),
        Buf::I32(v) => Buf::I32(v.into_iter().map(|a| if op == UnaryOp::Neg { a.wrapping_neg() } else { a.wrapping_abs() }).collect()),
        Buf::U8(v) => Buf::U8(v.into_iter().map(|a| if op == UnaryOp::Neg { a.wrapping_neg() } else { a }).collect()),
        Buf::U16(v) => Buf::U16(v.into_iter().map(|a| if op == UnaryOp::Neg { a.wrapping_neg() } else { a }).collect()),
        Buf::U32(v) => Buf::U32(v.into_iter().map(|a| if op == UnaryOp::Neg { a.wrapping_neg() } else { a }).collect()),
        Buf::U64(v) => Buf::U64(v.into_iter().map(|a| if op == UnaryOp::Neg { a.wrapping_neg() } else { a }).collect()),
        other => other, // bool/key: rejected by the verifier
    }
}

fn zip<T: Copy, U>(a: &[T], b: &[T], f: impl Fn(T, T) -> U) -> Vec<U> {
    a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
}

pub fn binary(op: BinaryOp, a: Buf, b: Buf) -> Buf {
    match (a, b) {
        (Buf::F32(a), Buf::F32(b)) => Buf::F32(zip(&a, &b, |x, y| f32_binary(op, x, y))),
        (Buf::F64(a), Buf::F64(b)) => Buf::F64(zip(&a, &b, |x, y| f64_binary(op, x, y))),
        (Buf::Half(h, a), Buf::Half(_, b)) => Buf::Half(h, zip(&a, &b, |x, y| h.from_f32(f32_binary(op, h.to_f32(x), h.to_f32(y))))),
        (Buf::U8(a), Buf::U8(b)) => Buf::U8(zip(&a, &b, |x, y| u8_binary(op, x, y))),
        (Buf::U16(a), Buf::U16(b)) => Buf::U16(zip(&a, &b, |x, y| u16_binary(op, x, y))),
        (Buf::U32(a), Buf::U32(b)) => Buf::U32(zip(&a, &b, |x, y| u32_binary(op, x, y))),
        (Buf::U64(a), Buf::U64(b)) => Buf::U64(zip(&a, &b, |x, y| u64_binary(op, x, y))),
        (Buf::I32(a), Buf::I32(b)) => Buf::I32(zip(&a, &b, |x, y| i32_binary(op, x, y))),
        (a, _) => a,
    }
}

/// `a * b + c` fused, as XLA:CPU's LLVM backend contracts a single-use f32 multiply into an add.
pub fn fma_f32(a: Buf, b: Buf, c: Buf) -> Buf {
    match (a, b, c) {
        (Buf::F32(a), Buf::F32(b), Buf::F32(c)) => Buf::F32(a.iter().zip(&b).zip(&c).map(|((&x, &y), &z)| x.mul_add(y, z)).collect()),
        (a, _, _) => a,
    }
}

fn cmp<T: PartialOrd>(dir: CmpDir, a: T, b: T) -> bool {
    match dir {
        CmpDir::Eq => a == b,
        CmpDir::Ne => a != b,
        CmpDir::Lt => a < b,
        CmpDir::Le => a <= b,
        CmpDir::Gt => a > b,
        CmpDir::Ge => a >= b,
    }
}

pub fn compare(dir: CmpDir, a: Buf, b: Buf) -> Buf {
    Buf::Bool(match (a, b) {
        (Buf::F32(a), Buf::F32(b)) => zip(&a, &b, |x, y| cmp(dir, x, y)),
        (Buf::F64(a), Buf::F64(b)) => zip(&a, &b, |x, y| cmp(dir, x, y)),
        (Buf::Half(h, a), Buf::Half(_, b)) => zip(&a, &b, |x, y| cmp(dir, h.to_f32(x), h.to_f32(y))),
        (Buf::U8(a), Buf::U8(b)) => zip(&a, &b, |x, y| cmp(dir, x, y)),
        (Buf::U16(a), Buf::U16(b)) => zip(&a, &b, |x, y| cmp(dir, x, y)),
        (Buf::U32(a), Buf::U32(b)) => zip(&a, &b, |x, y| cmp(dir, x, y)),
        (Buf::U64(a), Buf::U64(b)) => zip(&a, &b, |x, y| cmp(dir, x, y)),
        (Buf::I32(a), Buf::I32(b)) => zip(&a, &b, |x, y| cmp(dir, x, y)),
        (Buf::Bool(a), Buf::Bool(b)) => zip(&a, &b, |x, y| cmp(dir, x, y)),
        _ => Vec::new(),
    })
}

pub fn select(pred: &[bool], mut t: Buf, f: Buf) -> Buf {
    let pos: Vec<usize> = pred.iter().enumerate().filter(|&(_, p)| !*p).map(|(i, _)| i).collect();
    let falses = f.gather(&pos);
    t.scatter(&pos, &falses);
    t
}

/// Every element as f64 (exact for all types but u64 above 2^53), for conversions.
fn to_f64s(x: &Buf) -> Vec<f64> {
    match x {
        Buf::F32(v) => v.iter().map(|&a| f64::from(a)).collect(),
        Buf::F64(v) => v.clone(),
        Buf::Half(h, v) => v.iter().map(|&a| f64::from(h.to_f32(a))).collect(),
        Buf::U8(v) => v.iter().map(|&a| f64::from(a)).collect(),
        Buf::U16(v) => v.iter().map(|&a| f64::from(a)).collect(),
        Buf::U32(v) => v.iter().map(|&a| f64::from(a)).collect(),
        Buf::U64(v) => v.iter().map(|&a| a as f64).collect(),
        Buf::I32(v) => v.iter().map(|&a| f64::from(a)).collect(),
        Buf::Bool(v) => v.iter().map(|&a| f64::from(u8::from(a))).collect(),
        Buf::Key(v) => vec![0.0; v.len()],
    }
}

/// Element type conversion (float→int saturates, NaN→0; →bool is `!= 0`).
pub fn convert(x: Buf, to: DType) -> Buf {
    match (&x, to) {
        (Buf::F32(v), DType::BF16 | DType::F16) => {
            let h = half_of(to).unwrap_or(Half::BF16);
            return Buf::Half(h, v.iter().map(|&a| h.from_f32(a)).collect());
        }
        (Buf::Half(h, v), DType::F32) => return Buf::F32(v.iter().map(|&a| h.to_f32(a)).collect()),
        (Buf::U64(v), DType::U64) => return Buf::U64(v.clone()),
        _ => {}
    }
    let xs = to_f64s(&x);
    match to {
        DType::F32 => Buf::F32(xs.iter().map(|&a| a as f32).collect()),
        DType::F64 => Buf::F64(xs),
        DType::BF16 | DType::F16 => {
            let h = half_of(to).unwrap_or(Half::BF16);
            Buf::Half(h, xs.iter().map(|&a| h.from_f64(a)).collect())
        }
        DType::U8 => Buf::U8(xs.iter().map(|&a| a as u8).collect()),
        DType::U16 => Buf::U16(xs.iter().map(|&a| a as u16).collect()),
        DType::U32 => Buf::U32(xs.iter().map(|&a| a as u32).collect()),
        DType::U64 => Buf::U64(xs.iter().map(|&a| a as u64).collect()),
        DType::I32 => Buf::I32(xs.iter().map(|&a| a as i32).collect()),
        DType::Bool => Buf::Bool(xs.iter().map(|&a| a != 0.0).collect()),
        DType::Key => x,
    }
}
