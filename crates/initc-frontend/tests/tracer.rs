//! The tracer API as a frontend uses it: declare, initialize, overwrite (last write wins),
//! in-place re-init, custom traced expressions, and the key derivation.

use initc_frontend::{Init, TraceError, Tracer, fqn_fold_data};
use initc_ir::{BinaryOp, CmpDir, DType, Op, Type};

fn f32(shape: &[u64]) -> Type {
    Type::new(DType::F32, shape)
}

#[test]
fn last_write_wins_and_dead_values_are_compacted() {
    let mut t = Tracer::new("m");
    t.param("w", f32(&[4, 3]), &["out", "in"], &Init::torch_linear_weight()).unwrap();
    // `w.copy_(randn * 0.5)` after construction:
    let k = t.param_key("w").unwrap();
    let n = t.normal(k, &f32(&[4, 3])).unwrap();
    let x = t.mul_scalar(n, 0.5).unwrap();
    t.assign("w", x).unwrap();
    // `nn.init.zeros_(b)` twice, then `b.normal_()`: only the last survives.
    t.param("b", f32(&[4]), &[], &Init::ZEROS).unwrap();
    t.init_("b", &Init::Normal { mean: 0.0, std: 1.0 }).unwrap();
    let m = t.finish().unwrap();
    let text = m.to_string();
    assert!(!text.contains("uniform"), "the overwritten kaiming_uniform must be gone:\n{text}");
    assert!(!text.contains("full 0.0"), "the overwritten zeros must be gone:\n{text}");
    assert_eq!(m.params[0].init, "traced");
    assert_eq!(m.params[1].init, "normal(mean=0.0, std=1.0)");
    assert_eq!(m.params.iter().map(|p| p.fqn.as_str()).collect::<Vec<_>>(), ["w", "b"]);
}

#[test]
fn assign_converts_dtype_and_rejects_shape_mismatch() {
    let mut t = Tracer::new("m");
    t.param("w", Type::new(DType::BF16, [2, 2]), &[], &Init::ZEROS).unwrap();
    let x = t.full(&f32(&[2, 2]), 3.0).unwrap();
    t.assign("w", x).unwrap();
    let bad = t.full(&f32(&[2, 3]), 3.0).unwrap();
    assert_eq!(t.assign("w", bad), Err(TraceError::ShapeMismatch { fqn: "w".into(), expected: vec![2, 2], found: vec![2, 3] }));
    assert_eq!(t.assign("nope", x), Err(TraceError::UnknownParam { fqn: "nope".into() }));
    let m = t.finish().unwrap();
    assert!(matches!(m.node(m.params[0].value).op, Op::Convert { .. }));
}

#[test]
fn duplicate_and_bad_inits_are_errors_naming_the_parameter() {
    let mut t = Tracer::new("m");
    t.param("w", f32(&[2]), &[], &Init::ONES).unwrap();
    assert_eq!(t.param("w", f32(&[2]), &[], &Init::ONES), Err(TraceError::DuplicateParam { fqn: "w".into() }));
    let e = t.param("v", f32(&[2]), &[], &Init::XavierUniform { gain: 1.0 }).unwrap_err();
    assert_eq!(e.to_string(), "parameter `v`: fan in/out needs at least 2 dimensions, shape is [2]");
    let e = t.param("u", Type::new(DType::I32, [2]), &[], &Init::Normal { mean: 0.0, std: 1.0 }).unwrap_err();
    assert!(e.to_string().contains("needs a float dtype"), "{e}");
}

#[test]
fn keys_are_per_fqn_and_order_invariant() {
    let mut a = Tracer::new("a");
    a.param("x", f32(&[2]), &[], &Init::Normal { mean: 0.0, std: 1.0 }).unwrap();
    a.param("y", f32(&[2]), &[], &Init::Normal { mean: 0.0, std: 1.0 }).unwrap();
    let mut b = Tracer::new("b");
    b.param("y", f32(&[2]), &[], &Init::Normal { mean: 0.0, std: 1.0 }).unwrap();
    let (a, b) = (a.finish().unwrap(), b.finish().unwrap());
    let key_of = |m: &initc_ir::Module, fqn: &str| match m.node(m.param(fqn).unwrap().value).op {
        Op::Normal { key } => m.node(key).op.clone(),
        ref o => panic!("{o:?}"),
    };
    assert_eq!(key_of(&a, "y"), key_of(&b, "y"));
    assert_eq!(key_of(&a, "y"), Op::FoldIn { key: initc_ir::Value(0), data: fqn_fold_data("y") });
}

#[test]
fn custom_expressions_cover_the_op_set() {
    // A padding-row-zeroed embedding, written as a frontend would trace it.
    let mut t = Tracer::new("m");
    let ty = f32(&[5, 3]);
    t.param("emb", ty.clone(), &["vocab", "embed"], &Init::Normal { mean: 0.0, std: 1.0 }).unwrap();
    let w = t.get("emb").unwrap();
    let rows = t.iota(&Type::new(DType::I32, [5, 3]), 0).unwrap();
    let pad = t.full(&Type::new(DType::I32, [5, 3]), 2.0).unwrap();
    let is_pad = t.compare(CmpDir::Eq, rows, pad).unwrap();
    let zeros = t.full(&ty, 0.0).unwrap();
    let w2 = t.select(is_pad, zeros, w).unwrap();
    t.assign("emb", w2).unwrap();
    let keys = t.split(t.root_key(), 2).unwrap();
    let k1 = t.key_at(keys, 1).unwrap();
    let u = t.uniform(k1, &f32(&[3, 5]), -1.0, 1.0).unwrap();
    let ut = t.transpose(u, &[1, 0]).unwrap();
    let s = t.slice(ut, &[0, 0], &[5, 2]).unwrap();
    let c = t.concat(&[s, s], 1).unwrap();
    let c = t.slice(c, &[0, 0], &[5, 3]).unwrap();
    let sum = t.binary(BinaryOp::Add, c, w2).unwrap();
    t.param("p", ty.clone(), &[], &Init::ZEROS).unwrap();
    t.assign("p", sum).unwrap();
    let m = t.finish().unwrap();
    initc_ir::verify(&m).unwrap();
    assert_eq!(initc_ir::parse(&m.to_string()).unwrap(), m);
}

#[test]
fn sixteen_bit_initializers_draw_in_f32_and_convert_once() {
    // Distribution contract: every random op and every piece of arithmetic of a bf16/f16
    // parameter's initializer is f32; the value is one `convert` of the f32 result. Constants
    // are filled in the dtype directly.
    let inits = [
        Init::Normal { mean: 1.0, std: 0.02 },
        Init::TruncNormal { mean: 0.0, std: 0.0625, a: -0.1875, b: 0.1875 },
        Init::Uniform { a: -0.5, b: 0.5 },
        Init::torch_linear_weight(),
        Init::lecun_normal(),
        Init::XavierNormal { gain: 1.0 },
    ];
    for dtype in [DType::BF16, DType::F16] {
        for init in &inits {
            let mut t = Tracer::new("m");
            t.param("w", Type::new(dtype, [64, 32]), &[], init).unwrap();
            t.param("c", Type::new(dtype, [32]), &[], &Init::Constant(0.1)).unwrap();
            let m = t.finish().unwrap();
            let w = m.node(m.params[0].value);
            assert!(matches!(w.op, Op::Convert { .. }) && w.ty.dtype == dtype, "{init:?} {dtype}: {:?}", w.op);
            let Op::Convert { x } = w.op else { unreachable!() };
            assert_eq!(m.node(x).ty.dtype, DType::F32, "{init:?}: converted from f32");
            for n in &m.nodes {
                if n.op.random_key().is_some() {
                    assert_eq!(n.ty.dtype, DType::F32, "{init:?} {dtype}: draws are f32, not JAX's 16-bit transforms");
                }
            }
            let c = m.node(m.params[1].value);
            assert!(matches!(c.op, Op::Full { .. }) && c.ty.dtype == dtype, "constants stay in the dtype");
        }
    }
}

#[test]
fn a_truncated_normal_with_vacuous_bounds_is_the_normal() {
    // torchtitan's trunc_normal_(std=0.02, a=-2, b=2) truncates at ±100σ: no f32 normal draw gets
    // there, and jax.random.truncated_normal would return -2.0 itself with probability 2^-23
    let draw = |init: Init| {
        let mut t = Tracer::new("m");
        t.param("w", f32(&[16, 16]), &[], &init).unwrap();
        let m = t.finish().unwrap();
        m.nodes.iter().find(|n| n.op.random_key().is_some()).unwrap().op.clone()
    };
    assert!(matches!(draw(Init::TruncNormal { mean: 0.0, std: 0.02, a: -2.0, b: 2.0 }), Op::Normal { .. }));
    assert!(matches!(draw(Init::TruncNormal { mean: 0.0, std: 1.0, a: -6.0, b: 6.0 }), Op::Normal { .. }));
    assert!(matches!(draw(Init::FlaxTruncatedNormal { stddev: 0.02, lower: -10.0, upper: 10.0 }), Op::Normal { .. }));
    // narrower bounds (torchtitan's output layer at ±3σ, one side within 6σ) stay truncated
    assert!(matches!(draw(Init::TruncNormal { mean: 0.0, std: 0.0625, a: -0.1875, b: 0.1875 }), Op::TruncatedNormal { .. }));
    assert!(matches!(draw(Init::TruncNormal { mean: 0.0, std: 1.0, a: -100.0, b: 5.9 }), Op::TruncatedNormal { .. }));
    assert!(matches!(draw(Init::lecun_normal()), Op::TruncatedNormal { .. }));
}
