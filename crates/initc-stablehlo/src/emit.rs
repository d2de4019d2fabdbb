//! Lowers an initc module to StableHLO text: `@main(%key: tensor<2xui32>)` returning every
//! parameter at its global shape, annotated with its sharding, with each IR node lowered the
//! way JAX lowers the corresponding `jax.random`/`lax` call.

use std::collections::HashMap;
use std::fmt::Write;

use initc_ir::{BinaryOp, CmpDir, DType, Module, Op, Type, UnaryOp, Value};

use crate::rng::{Funcs, fast_truncation_is_vacuous, float_literal, truncated_consts, uniform_consts};
use crate::shardings::{arg_attr, module_prelude, result_attr};
use crate::text::{Body, Val, elem, i64_array, quote, tensor};
use crate::{LowerError, Options};

/// The MLIR type of an IR type: keys are `tensor<...x2xui32>` (their key data).
pub(crate) fn mlir_type(t: &Type) -> String {
    if t.dtype == DType::Key {
        let mut s = t.shape.clone();
        s.push(2);
        return tensor(&s, "ui32");
    }
    tensor(&t.shape, elem(t.dtype))
}

/// For each node, the first parameter (model order) whose value uses it: its MLIR location.
fn owners(m: &Module) -> Vec<Option<usize>> {
    let mut owner = vec![None; m.nodes.len()];
    for (pi, p) in m.params.iter().enumerate() {
        let mut stack = vec![p.value];
        while let Some(v) = stack.pop() {
            if owner[v.index()].is_some() {
                continue;
            }
            owner[v.index()] = Some(pi);
            stack.extend(m.node(v).op.operands());
        }
    }
    owner
}

pub(crate) fn unary_name(op: UnaryOp) -> &'static str {
    match op {
        UnaryOp::Neg => "stablehlo.negate",
        UnaryOp::Abs => "stablehlo.abs",
        UnaryOp::Sqrt => "stablehlo.sqrt",
        UnaryOp::Rsqrt => "stablehlo.rsqrt",
        UnaryOp::Exp => "stablehlo.exponential",
        UnaryOp::Log => "stablehlo.log",
    }
}

pub(crate) fn binary_name(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "stablehlo.add",
        BinaryOp::Sub => "stablehlo.subtract",
        BinaryOp::Mul => "stablehlo.multiply",
        BinaryOp::Div => "stablehlo.divide",
        BinaryOp::Max => "stablehlo.maximum",
        BinaryOp::Min => "stablehlo.minimum",
        BinaryOp::Pow => "stablehlo.power",
    }
}

pub(crate) fn compare_attr(dir: CmpDir) -> String {
    format!("comparison_direction = #stablehlo<comparison_direction {}>", dir.name().to_uppercase())
}

/// The `stablehlo.constant` literal of a `full` value in `dt`.
pub(crate) fn full_literal(dt: DType, value: f64) -> String {
    match dt {
        DType::F32 | DType::BF16 | DType::F16 | DType::F64 => float_literal(dt, value),
        DType::Bool => (if value != 0.0 { "true" } else { "false" }).to_string(),
        _ => format!("{}", value as i128),
    }
}

pub(crate) fn emit(m: &Module, opts: &Options) -> Result<String, LowerError> {
    let mut funcs = Funcs::global(m.rng);
    let mut b = Body::new("main");
    let owner = owners(m);
    let key_ty = tensor(&[2], "ui32");
    let mut vals: HashMap<Value, Val> = HashMap::new();
    for (i, node) in m.nodes.iter().enumerate() {
        let Some(pi) = owner[i] else { continue };
        b.loc = Some(m.params[pi].fqn.clone());
        let get = |v: &Value| vals.get(v).cloned().ok_or(LowerError::Internal(format!("operand {v} not lowered")));
        let v = lower_node(&mut b, &mut funcs, node.op.clone(), &node.ty, &get, &key_ty)?;
        vals.insert(Value(i as u32), v);
    }
    b.loc = Some("main".into());
    let results: Vec<Val> = m
        .params
        .iter()
        .map(|p| vals.get(&p.value).cloned().ok_or(LowerError::Internal(format!("parameter `{}` not lowered", p.fqn))))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&Val> = results.iter().collect();
    b.ret(&refs);

    let mut out = String::new();
    let (mod_attrs, prelude) = module_prelude(m, opts);
    let _ = writeln!(out, "module @{} attributes {{{mod_attrs}}} {{", symbol(&m.name));
    out.push_str(&prelude);
    let res: Vec<String> = m.params.iter().map(|p| format!("{}{}", mlir_type(&p.ty), result_attr(m, p, opts))).collect();
    let _ = writeln!(out, "  func.func public @main(%arg0: {key_ty}{} loc(\"key\")) -> ({}) {{", arg_attr(m, opts), res.join(", "));
    for l in &b.lines {
        let _ = writeln!(out, "    {l}");
    }
    out.push_str("  } loc(\"main\")\n");
    for f in &funcs.text {
        out.push_str(f);
    }
    let _ = writeln!(out, "}} loc({})", quote(&m.name));
    Ok(out)
}

/// A module name usable as a symbol (`@llama3_8b`).
fn symbol(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') { s } else { format!("m_{s}") }
}

fn lower_node(
    b: &mut Body,
    f: &mut Funcs,
    op: Op,
    ty: &Type,
    get: &dyn Fn(&Value) -> Result<Val, LowerError>,
    key_ty: &str,
) -> Result<Val, LowerError> {
    let out = mlir_type(ty);
    let shape = ty.shape.as_slice();
    let dt = ty.dtype;
    Ok(match op {
        Op::Seed => Val { name: "%arg0".into(), ty: key_ty.to_string() },
        Op::FoldIn { key, data } => {
            let d = b.constant(&data.to_string(), &tensor(&[], "ui32"));
            let fi = f.fold_in();
            b.call(&fi, &[&get(&key)?, &d], &[key_ty.to_string()]).remove(0)
        }
        Op::Split { key, count } => {
            let t = tensor(&[count], "ui32");
            let bits = f.bits(&[count]);
            let y = b.call(&bits, &[&get(&key)?], &[t.clone(), t]);
            let col = tensor(&[count, 1], "ui32");
            let y0 = b.op("stablehlo.reshape", &[&y[0]], "", &col);
            let y1 = b.op("stablehlo.reshape", &[&y[1]], "", &col);
            b.op("stablehlo.concatenate", &[&y0, &y1], "dimension = 1 : i64", &out)
        }
        Op::TruncatedNormal { key, lower, upper } if fast_truncation_is_vacuous(f.fast(), dt, lower.get(), upper.get()) => {
            let n = f.normal(dt, shape, None);
            b.call(&n, &[&get(&key)?], &[out]).remove(0)
        }
        Op::RandomBits { key, width } => f.random_bits(b, &get(&key)?, width, shape, &out, None),
        Op::Uniform { key, min, max } => {
            let (lo, scale) = uniform_consts(dt, min.get(), max.get());
            let s = tensor(&[], elem(dt));
            let (lo, scale) = (b.constant(&lo, &s), b.constant(&scale, &s));
            let u = f.uniform(dt, shape, None);
            b.call(&u, &[&get(&key)?, &lo, &scale], &[out]).remove(0)
        }
        Op::Normal { key } => {
            let n = f.normal(dt, shape, None);
            b.call(&n, &[&get(&key)?], &[out]).remove(0)
        }
        Op::TruncatedNormal { key, lower, upper } => {
            let s = tensor(&[], elem(dt));
            let c = truncated_consts(dt, lower.get(), upper.get()).map(|l| b.constant(&l, &s));
            let t = f.truncated_normal(dt, shape, None);
            b.call(&t, &[&get(&key)?, &c[0], &c[1], &c[2], &c[3]], &[out]).remove(0)
        }
        Op::Full { value } => b.constant(&full_literal(dt, value.get()), &out),
        Op::Iota { dim } => b.op("stablehlo.iota", &[], &format!("iota_dimension = {dim} : i64"), &out),
        Op::Unary { op, x } => b.op(unary_name(op), &[&get(&x)?], "", &out),
        Op::Binary { op, a, b: rhs } => b.op(binary_name(op), &[&get(&a)?, &get(&rhs)?], "", &out),
        Op::Compare { dir, a, b: rhs } => b.op("stablehlo.compare", &[&get(&a)?, &get(&rhs)?], &compare_attr(dir), &out),
        Op::Select { .. } if dt == DType::Key => return Err(LowerError::Unsupported("`select` between keys".into())),
        Op::Select { pred, on_true, on_false } => b.op("stablehlo.select", &[&get(&pred)?, &get(&on_true)?, &get(&on_false)?], "", &out),
        Op::Convert { x } => b.op("stablehlo.convert", &[&get(&x)?], "", &out),
        Op::Reshape { x } => b.op("stablehlo.reshape", &[&get(&x)?], "", &out),
        Op::Broadcast { x, dims } => {
            let mut d: Vec<u64> = dims.iter().map(|&d| d.into()).collect();
            if dt == DType::Key {
                d.push(shape.len() as u64);
            }
            b.op("stablehlo.broadcast_in_dim", &[&get(&x)?], &format!("broadcast_dimensions = {}", i64_array(d)), &out)
        }
        Op::Transpose { x, perm } => {
            let mut p: Vec<u64> = perm.iter().map(|&d| d.into()).collect();
            if dt == DType::Key {
                p.push(shape.len() as u64);
            }
            b.op("stablehlo.transpose", &[&get(&x)?], &format!("permutation = {}", i64_array(p)), &out)
        }
        Op::Slice { x, mut start, mut limit } => {
            if dt == DType::Key {
                start.push(0);
                limit.push(2);
            }
            let strides = vec![1u64; start.len()];
            let attr =
                format!("start_indices = {}, limit_indices = {}, strides = {}", i64_array(start), i64_array(limit), i64_array(strides));
            b.op("stablehlo.slice", &[&get(&x)?], &attr, &out)
        }
        Op::Concat { xs, dim } => {
            let v: Vec<Val> = xs.iter().map(get).collect::<Result<_, _>>()?;
            let refs: Vec<&Val> = v.iter().collect();
            b.op("stablehlo.concatenate", &refs, &format!("dimension = {dim} : i64"), &out)
        }
    })
}
