//! XLA:CPU's f32 math, reproduced bit for bit (docs/RNG_SPEC.md §5–7): its `log` (Cephes, as
//! `GenerateVF32Log` emits it), its `log1p` (`xla/codegen/intrinsic/log1p.cc`), StableHLO's
//! `erfInv32` (Giles) and XLA:CPU's `erf`, with the fused multiply-adds LLVM forms there
//! (a single-use `fmul` feeding an `fadd` becomes one FMA). `f32::mul_add` is a correctly
//! rounded FMA on every target (a hardware instruction where the caller enables `fma`).

#[inline(always)]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

const LOG_P: [f32; 9] = [
    7.0376836292E-2 as f32,
    -1.1514610310E-1 as f32,
    1.1676998740E-1 as f32,
    -1.2420140846E-1 as f32,
    1.4249322787E-1 as f32,
    -1.6668057665E-1 as f32,
    2.0000714765E-1 as f32,
    -2.4999993993E-1 as f32,
    3.3333331174E-1 as f32,
];
const LOG_Q1: f32 = -2.12194440e-4_f64 as f32;
const LOG_Q2: f32 = 0.693359375;
const SQRTHF: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// XLA:CPU's f32 `log` (valid for the positive inputs the RNG produces; 0 → -inf).
#[inline(always)]
pub fn log(v: f32) -> f32 {
    let t = v.max(f32::from_bits(0x0080_0000));
    let tb = t.to_bits();
    let emm0 = (tb >> 23) as i32 - 127;
    let mut t = f32::from_bits((tb & 0x807F_FFFF) | 0x3F00_0000);
    let mut e = 1.0 + emm0 as f32;
    let mask = t < SQRTHF;
    let t1 = if mask { t } else { 0.0 };
    t -= 1.0;
    e -= if mask { 1.0 } else { 0.0 };
    t += t1;
    let x2 = t * t;
    let x3 = x2 * t;
    let p = &LOG_P;
    let (mut y, mut y1, mut y2) = (fma(t, p[0], p[1]), fma(t, p[3], p[4]), fma(t, p[6], p[7]));
    y = fma(y, t, p[2]);
    y1 = fma(y1, t, p[5]);
    y2 = fma(y2, t, p[8]);
    y = fma(y, x3, y1);
    y = fma(y, x3, y2);
    y = fma(y, x3, LOG_Q1 * e);
    t -= 0.5 * x2;
    t += y;
    let r = fma(LOG_Q2, e, t);
    if v == 0.0 {
        f32::NEG_INFINITY
    } else if v == f32::INFINITY {
        f32::INFINITY
    } else if !(v > 0.0) {
        f32::NAN
    } else {
        r
    }
}

const LOG1P_NUM: [f64; 7] = [
    4.5270000862445199635215E-5,
    4.9854102823193375972212E-1,
    6.5787325942061044846969E0,
    2.9911919328553073277375E1,
    6.0949667980987787057556E1,
    5.7112963590585538103336E1,
    2.0039553499201281259648E1,
];
const LOG1P_DEN: [f64; 7] = [
    1.0,
    1.5062909083469192043167E1,
    8.3047565967967209469434E1,
    2.2176239823732856465394E2,
    3.0909872225312059774938E2,
    2.1642788614495947685003E2,
    6.0118660497603843919306E1,
];

/// XLA:CPU's f32 `log1p`: a Cephes rational for |x| < √2−1, else `log(1 + x)`.
#[inline(always)]
pub fn log1p(x: f32) -> f32 {
    let large = log(x + 1.0);
    let (mut num, mut den) = (0.0f32, 0.0f32);
    for i in 0..7 {
        num = fma(num, x, LOG1P_NUM[i] as f32);
        den = fma(den, x, LOG1P_DEN[i] as f32);
    }
    let x2 = x * x;
    let small = x + fma(-0.5, x2, (x * x2) * (num / den));
    if x.abs() < 0.41421356237309504880_f64 as f32 { small } else { large }
}

const ERFINV_A: [f32; 9] = [
    2.81022636e-08 as f32,
    3.43273939e-07 as f32,
    -3.5233877e-06 as f32,
    -4.39150654e-06 as f32,
    0.00021858087 as f32,
    -0.00125372503 as f32,
    -0.00417768164 as f32,
    0.246640727 as f32,
    1.50140941 as f32,
];
const ERFINV_B: [f32; 9] = [
    -0.000200214257 as f32,
    0.000100950558 as f32,
    0.00134934322 as f32,
    -0.00367342844 as f32,
    0.00573950773 as f32,
    -0.0076224613 as f32,
    0.00943887047 as f32,
    1.00167406 as f32,
    2.83297682 as f32,
];

/// StableHLO's `erfInv32` as XLA:CPU evaluates it.
#[inline(always)]
pub fn erf_inv(x: f32) -> f32 {
    let w = -log1p(x * -x);
    let lt = w < 5.0;
    let wp = if lt { w - 2.5 } else { w.sqrt() - 3.0 };
    let mut p = if lt { ERFINV_A[0] } else { ERFINV_B[0] };
    for i in 1..9 {
        p = fma(p, wp, if lt { ERFINV_A[i] } else { ERFINV_B[i] });
    }
    if x.abs() == 1.0 { x * f32::INFINITY } else { p * x }
}

/// XLA:CPU's HLO `erf` for f32 (Eigen's rational interpolant with explicit FMAs).
pub fn erf(x: f32) -> f32 {
    let a = [
        1.128379143519084_f64 as f32,
        0.18520832239976145_f64 as f32,
        0.050955695062380861_f64 as f32,
        0.0034082910107109506_f64 as f32,
        0.00022905065861350646_f64 as f32,
    ];
    let b = [
        1.0f32,
        0.49746925110067538_f64 as f32,
        0.11098505178285362_f64 as f32,
        0.014070470171167667_f64 as f32,
        0.0010179625278914885_f64 as f32,
        0.000023547966471313185_f64 as f32,
        -1.1791602954361697e-7_f64 as f32,
    ];
    let x2 = x * x;
    let mut p = fma(x2, a[4], a[3]);
    p = fma(x2, p, a[2]);
    p = fma(x2, p, a[1]);
    p = fma(x2, p, a[0]);
    p *= x;
    let mut q = fma(x2, b[6], b[5]);
    for c in [b[4], b[3], b[2], b[1], b[0]] {
        q = fma(x2, q, c);
    }
    if x.abs() >= 3.832506856900711_f64 as f32 { 1f32.copysign(x) } else { p / q }
}
