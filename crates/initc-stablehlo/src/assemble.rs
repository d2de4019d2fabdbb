//! Assembly programs: a parameter whose program is a row-major reshape of a concatenation
//! (torchtitan 0.3.0's fused `wqkv`: q, k and v drawn apart, viewed per KV group and
//! concatenated) is not element-wise in its own index space, so shard programs cannot compute
//! it. The device runtime makes each concatenated part as a parameter of its own and runs this
//! program on their buffers: reshape each part to its concatenated view, concatenate, reshape
//! to the parameter's shape and slice out the requested region. One device pass over the
//! parameter's bytes; XLA fuses it into one copy kernel.

use std::fmt::Write;

use initc_ir::DType;

use crate::text::{Body, args, elem, i64_array, tensor};

/// The parts of an assembled parameter, as the concatenation sees them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Assembly {
    pub dtype: DType,
    /// Each part's own shape (what its buffer holds) and its shape as concatenated.
    pub parts: Vec<(Vec<u64>, Vec<u64>)>,
    /// The concatenation's dimension and result shape.
    pub dim: u32,
    pub concat: Vec<u64>,
    /// The parameter's shape (a row-major reshape of `concat`).
    pub shape: Vec<u64>,
}

/// The StableHLO text of the assembly program for the region `offset`/`local` of the parameter:
/// `@main(part buffers...) -> region`.
pub fn assembly_program(a: &Assembly, offset: &[u64], local: &[u64]) -> String {
    let e = elem(a.dtype);
    let arg_tys: Vec<String> = a.parts.iter().map(|(s, _)| tensor(s, e)).collect();
    let inputs = args(&arg_tys);
    let mut b = Body::new("assemble");
    b.loc = None;
    let views: Vec<_> = inputs
        .iter()
        .zip(&a.parts)
        .map(|(x, (own, view))| if own == view { x.clone() } else { b.op("stablehlo.reshape", &[x], "", &tensor(view, e)) })
        .collect();
    let refs: Vec<&_> = views.iter().collect();
    let cat = b.op("stablehlo.concatenate", &refs, &format!("dimension = {} : i64", a.dim), &tensor(&a.concat, e));
    let full = if a.concat == a.shape { cat } else { b.op("stablehlo.reshape", &[&cat], "", &tensor(&a.shape, e)) };
    let out = if local == a.shape.as_slice() {
        full
    } else {
        let attrs = format!(
            "start_indices = {}, limit_indices = {}, strides = {}",
            i64_array(offset.iter().copied()),
            i64_array(offset.iter().zip(local).map(|(o, n)| o + n)),
            i64_array(local.iter().map(|_| 1)),
        );
        b.op("stablehlo.slice", &[&full], &attrs, &tensor(local, e))
    };
    b.ret(&[&out]);
    let mut s = String::from("module @assemble attributes {mhlo.num_partitions = 1 : i32, mhlo.num_replicas = 1 : i32} {\n");
    let a_list: Vec<String> = inputs.iter().map(|v| format!("{}: {}", v.name, v.ty)).collect();
    let _ = writeln!(s, "  func.func public @main({}) -> ({}) {{", a_list.join(", "), out.ty);
    for l in &b.lines {
        let _ = writeln!(s, "    {l}");
    }
    s.push_str("  }\n}\n");
    s
}

#[cfg(all(test, feature = "mlir"))]
mod tests {
    use super::*;

    #[test]
    fn an_assembly_program_is_valid_stablehlo() {
        let a = Assembly {
            dtype: DType::BF16,
            parts: vec![(vec![8, 4], vec![2, 2, 2, 4]), (vec![4, 4], vec![2, 1, 2, 4]), (vec![4, 4], vec![2, 1, 2, 4])],
            dim: 1,
            concat: vec![2, 4, 2, 4],
            shape: vec![16, 4],
        };
        let whole = assembly_program(&a, &[0, 0], &[16, 4]);
        crate::check_text(&whole).unwrap_or_else(|e| panic!("{e}\n{whole}"));
        assert!(!whole.contains("slice"));
        let part = assembly_program(&a, &[4, 0], &[8, 4]);
        crate::check_text(&part).unwrap_or_else(|e| panic!("{e}\n{part}"));
        assert!(part.contains("limit_indices = array<i64: 12, 4>"), "{part}");
    }
}
