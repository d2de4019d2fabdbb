//! Text format: exact round trip over every op, and parse/verify errors that name line, column,
//! node and parameter.

use initc_ir::{Module, parse};
use proptest::prelude::*;

const ALL_OPS: &str = r#"module "every \"op\"" seed=18446744073709551615
%0 = seed : key
%1 = fold_in %0, 0xdeadbeef : key
%2 = split %1, 3 : key[3]
%3 = slice %2, start=[1], limit=[2] : key[1]
%4 = reshape %3 : key
%5 = random_bits %4, 32 : u32[2,3]
%6 = random_bits %4, 8 : u8[2,3]
%7 = uniform %4, min=-0.0625, max=0.0625 : f32[2,3]
%8 = normal %4 : bf16[2,3]
%9 = truncated_normal %4, lower=-2.0, upper=2.0 : f32[2,3]
%10 = full 0.02 : f32[2,3]
%11 = mul %9, %10 : f32[2,3]
%12 = iota dim=1 : i32[2,3]
%13 = neg %12 : i32[2,3]
%14 = abs %13 : i32[2,3]
%15 = sqrt %10 : f32[2,3]
%16 = rsqrt %10 : f32[2,3]
%17 = exp %10 : f32[2,3]
%18 = log %10 : f32[2,3]
%19 = add %17, %18 : f32[2,3]
%20 = sub %19, %16 : f32[2,3]
%21 = div %20, %15 : f32[2,3]
%22 = max %21, %7 : f32[2,3]
%23 = min %22, %11 : f32[2,3]
%24 = pow %23, %10 : f32[2,3]
%25 = cmp lt %24, %10 : bool[2,3]
%26 = select %25, %24, %10 : f32[2,3]
%27 = convert %26 : f16[2,3]
%28 = full 1e-5 : f32[3]
%29 = broadcast %28, dims=[1] : f32[2,3]
%30 = transpose %29, perm=[1,0] : f32[3,2]
%31 = slice %30, start=[0,0], limit=[3,1] : f32[3,1]
%32 = concat %31, %31, %31, dim=1 : f32[3,3]
%33 = full inf : f32[]
%34 = full -inf : f64[]
param "a.weight" : f32[3,3] = %32, axes=[embed,mlp], init="custom"
param "b" : f16[2,3] = %27, axes=[], init="with \\ backslash"
param "bits" : u32[2,3] = %5, axes=[_,_], init="bits"
param "bytes" : u8[2,3] = %6, axes=[], init="bits8"
param "n" : bf16[2,3] = %8, axes=[], init="normal"
param "s" : f32[] = %33, axes=[], init="inf"
param "d" : f64[] = %34, axes=[], init="-inf"
param "i" : i32[2,3] = %14, axes=[], init="iota"
"#;

#[test]
fn every_op_round_trips_exactly() {
    let m = parse(ALL_OPS).expect("parses");
    assert_eq!(m.to_string(), ALL_OPS);
    assert_eq!(m.seed, u64::MAX);
    assert_eq!(m.name, "every \"op\"");
    let again: Module = parse(&m.to_string()).expect("reparses");
    assert_eq!(again, m);
}

fn err(text: &str) -> String {
    parse(text).expect_err("must fail").to_string()
}

#[test]
fn errors_name_line_column_node_and_param() {
    let h = "module \"m\" seed=0\n";
    assert_eq!(err(&format!("{h}%0 = seed : key\n%2 = seed : key\n")), "3:1: nodes must be numbered in order: expected %1, found %2");
    assert_eq!(err(&format!("{h}%0 = normal %1 : f32[2]\n")), "2:6: operand %1 is not defined before this node (SSA order)");
    assert_eq!(err(&format!("{h}%0 = seed : key\n%1 = frobnicate %0 : key\n")), "3:6: unknown op `frobnicate`");
    assert_eq!(
        err(&format!("{h}%0 = full 1.0 : f33[2]\n")),
        "2:17: unknown element type `f33` (one of f32, bf16, f16, f64, u8, u16, u32, u64, i32, bool, key)"
    );
    assert_eq!(err(&format!("{h}%0 = full 1.0 : f32[2]\n%1 = normal %0 : f32[2]\n")), "3:6: operand %0 has type f32[2], expected key");
    assert_eq!(
        err(&format!("{h}%0 = seed : key\n%1 = random_bits %0, 12 : u32[2]\n")),
        "3:6: attribute `width`: 12 is not one of 8, 16, 32, 64"
    );
    assert_eq!(err(&format!("{h}%0 = full 1.5 : i32[2]\n")), "2:6: attribute `value`: 1.5 is not representable in i32");
    assert_eq!(
        err(&format!("{h}%0 = full 1.0 : f32[4294967296,4294967296]\n")),
        "2:6: element count of f32[4294967296,4294967296] overflows u64"
    );
    assert_eq!(err(&format!("{h}%0 = full 1.0 : f32[2] extra\n")), "2:24: expected end of line, found `extra`");
    assert_eq!(
        err(&format!("{h}%0 = full 1.0 : f32[2]\nparam \"w\" : f32[3] = %0, axes=[], init=\"x\"\n")),
        "3:1: parameter `w`: declared f32[3] but %0 has type f32[2]"
    );
    assert_eq!(
        err(&format!(
            "{h}%0 = full 1.0 : f32[2]\nparam \"w\" : f32[2] = %0, axes=[], init=\"x\"\nparam \"w\" : f32[2] = %0, axes=[], init=\"x\"\n"
        )),
        "4:1: parameter `w` is defined twice"
    );
    assert_eq!(
        err(&format!("{h}%0 = full 1.0 : f32[2]\nparam \"w\" : f32[2] = %0, axes=[a,b], init=\"x\"\n")),
        "3:1: parameter `w`: 2 axis names for rank 1"
    );
    assert_eq!(err("%0 = seed : key\n"), "1:1: expected `module`, found `%0`");
    assert_eq!(err(&format!("{h}param \"w : f32[2]\n")), "2:7: unterminated string");
}

#[test]
fn sharded_modules_round_trip_and_bad_shardings_name_the_parameter() {
    let h = "module \"m\" seed=0\n";
    let p = |sh: &str| format!("%0 = full 1.0 : f32[6,4]\nparam \"w\" : f32[6,4] = %0, axes=[], init=\"x\"{sh}\n");
    let ok = format!("{h}mesh [fsdp=2,tp=3] uneven=pad\n{}", p(", sharding=[{tp,fsdp},{}]"));
    let m = initc_ir::parse(&ok).unwrap();
    assert_eq!(m.to_string(), ok);
    assert_eq!(m.mesh.as_ref().unwrap().devices(), 6);
    let strict = format!("{h}mesh [fsdp=4]\n");
    assert_eq!(
        err(&format!("{strict}{}", p(", sharding=[{fsdp},{}]"))),
        "4:1: parameter `w`: sharding [{fsdp},{}]: dim 0 (size 6) is not divisible by fsdp = 4"
    );
    assert_eq!(
        err(&format!("{strict}{}", p(", sharding=[{},{tp}]"))),
        "4:1: parameter `w`: sharding [{},{tp}]: dim 1: `tp` is not an axis of mesh fsdp=4"
    );
    assert_eq!(
        err(&format!("{strict}{}", p(", sharding=[{fsdp},{fsdp}]"))),
        "4:1: parameter `w`: sharding [{fsdp},{fsdp}]: mesh axis `fsdp` is used twice"
    );
    assert_eq!(
        err(&format!("{strict}{}", p(", sharding=[{}]"))),
        "4:1: parameter `w`: sharding [{}]: 1 spec entries for a rank-2 parameter"
    );
    assert_eq!(err(&format!("{strict}{}", p(""))), "4:1: parameter `w` has no sharding but the module has mesh fsdp=4");
    assert_eq!(err(&format!("{h}{}", p(", sharding=[{},{}]"))), "3:1: parameter `w` has a sharding but the module has no mesh");
    assert_eq!(err(&format!("{h}mesh [fsdp=0]\n")), "2:1: mesh axis `fsdp` has size 0; sizes are positive integers");
    assert_eq!(err(&format!("{h}mesh [fsdp=2] uneven=round\n")), "2:22: expected `pad` or `error`, found `round`");
    assert_eq!(
        err(&format!("{h}%0 = full 1.0 : f32[2]\nmesh [fsdp=2]\n")),
        "3:1: expected one `mesh` line, right after the header, found `mesh`"
    );
}

#[test]
fn verifier_names_the_parameter_that_uses_a_bad_node() {
    use initc_ir::{DType, Op, Param, Type, Value, verify};
    let mut m = Module::new("m");
    let k = m.push_node(Op::Seed, Type::key());
    let n = m.push_node(Op::Normal { key: k }, Type::new(DType::U32, [4]));
    m.params.push(Param {
        fqn: "layers.0.w".into(),
        value: n,
        ty: Type::new(DType::U32, [4]),
        axes: vec![],
        init: "normal".into(),
        sharding: None,
    });
    let e = verify(&m).expect_err("u32 normal is invalid").to_string();
    assert_eq!(e, "%1 = normal (in parameter `layers.0.w`): result type u32[4] is invalid: expected an f32, bf16 or f16 tensor");
    assert_eq!(Value(1), n);
}

#[test]
fn compact_removes_overwritten_values_and_renumbers() {
    let text = "module \"m\" seed=0\n%0 = seed : key\n%1 = normal %0 : f32[2]\n%2 = full 1.0 : f32[2]\nparam \"w\" : f32[2] = %2, axes=[], init=\"ones\"\n";
    let mut m = parse(text).unwrap();
    assert_eq!(initc_ir::compact(&mut m), initc_ir::Changed::Yes);
    assert_eq!(m.to_string(), "module \"m\" seed=0\n%0 = full 1.0 : f32[2]\nparam \"w\" : f32[2] = %0, axes=[], init=\"ones\"\n");
    assert_eq!(initc_ir::compact(&mut m), initc_ir::Changed::No);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// The parser never panics: arbitrary text, and the every-op module with one mutated byte.
    #[test]
    fn parser_never_panics(s in "\\PC{0,200}") {
        let _ = parse(&s);
    }

    #[test]
    fn parser_survives_mutations(pos in 0usize..ALL_OPS.len(), byte in any::<u8>()) {
        let mut bytes = ALL_OPS.as_bytes().to_vec();
        bytes[pos] = byte;
        if let Ok(text) = String::from_utf8(bytes)
            && let Ok(m) = parse(&text) {
                // Anything that parses prints back to something that parses to the same module.
                prop_assert_eq!(parse(&m.to_string()).unwrap(), m);
            }
    }
}
