//! The verifier: SSA order, operand and result types, shapes, attributes, and the parameter
//! table. Errors name the node (`%7`, its mnemonic) and the parameter that uses it.

use std::collections::HashSet;

use crate::limits;
use crate::module::{Module, Node};
use crate::op::{BinaryOp, Op, UnaryOp, Value};
use crate::types::{DType, Type};

/// What is wrong with one node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeError {
    #[error("operand {operand} is not defined before this node (SSA order)")]
    UndefinedOperand { operand: Value },
    #[error("operand {operand} has type {found}, expected {expected}")]
    OperandType { operand: Value, found: Type, expected: String },
    #[error("result type {found} is invalid: expected {expected}")]
    ResultType { found: Type, expected: String },
    #[error("element count of {ty} overflows u64")]
    Overflow { ty: Type },
    #[error("attribute `{attr}`: {reason}")]
    Attr { attr: &'static str, reason: String },
    #[error("rank {rank} is above the limit of {}", crate::limits::MAX_RANK)]
    Rank { rank: usize },
    #[error("operand chain of depth {depth} is above the limit of {}", crate::limits::MAX_DEPTH)]
    Depth { depth: usize },
    #[error("evaluating it visits more than {} nodes (operands counted once per path to them)", crate::limits::MAX_TREE)]
    Tree,
}

/// A verification failure in a module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("{node} = {mnemonic}{}: {error}", param.as_ref().map(|p| format!(" (in parameter `{p}`)")).unwrap_or_default())]
    Node { node: Value, mnemonic: &'static str, param: Option<String>, error: NodeError },
    #[error("parameter `{fqn}`: value {value} is not defined")]
    ParamUndefined { fqn: String, value: Value },
    #[error("parameter `{fqn}`: declared {declared} but {value} has type {actual}")]
    ParamType { fqn: String, value: Value, declared: Type, actual: Type },
    #[error("parameter `{fqn}`: {n_axes} axis names for rank {rank}")]
    ParamAxes { fqn: String, n_axes: usize, rank: usize },
    #[error("parameter `{fqn}`: axis name {axis:?} is not a word (a letter or `_`, then letters, digits or `_`)")]
    BadAxisName { fqn: String, axis: String },
    #[error("parameter `{fqn}` is defined twice")]
    DuplicateParam { fqn: String },
    #[error("parameter with an empty name (value {value})")]
    EmptyFqn { value: Value },
    #[error("parameter {fqn:?}: the name {reason}")]
    BadFqn { fqn: String, reason: String },
    #[error("module name {name:?} {reason}")]
    BadModuleName { name: String, reason: String },
    #[error("{count} parameters are above the limit of {}", crate::limits::MAX_PARAMS)]
    TooManyParams { count: usize },
    #[error("{total} elements over all parameters are above the limit of 2^50")]
    TooManyElements { total: u128 },
    #[error("parameter `{fqn}` has element type `key`; parameters are numeric tensors")]
    KeyParam { fqn: String },
    #[error("parameter `{fqn}`: sharding {sharding}: {error}")]
    Sharding { fqn: String, sharding: String, error: crate::sharding::ShardingError },
    #[error("parameter `{fqn}` has a sharding but the module has no mesh")]
    ShardingWithoutMesh { fqn: String },
    #[error("parameter `{fqn}` has no sharding but the module has mesh {mesh}")]
    MissingSharding { fqn: String, mesh: String },
}

/// Verifies the whole module.
pub fn verify(m: &Module) -> Result<(), VerifyError> {
    if let Some(reason) = limits::name_problem(&m.name) {
        return Err(VerifyError::BadModuleName { name: m.name.clone(), reason });
    }
    if m.params.len() > limits::MAX_PARAMS {
        return Err(VerifyError::TooManyParams { count: m.params.len() });
    }
    // Per node: its depth (1 + its deepest operand's) and its tree size (1 + its operands'),
    // in one sweep since operands come first.
    let mut depth = vec![0usize; m.nodes.len()];
    let mut tree = vec![0u64; m.nodes.len()];
    for (i, node) in m.nodes.iter().enumerate() {
        let checked = check_node(&m.nodes[..i], &node.op, &node.ty).and_then(|()| {
            let ops = node.op.operands();
            depth[i] = 1 + ops.iter().map(|v| depth[v.index()]).max().unwrap_or(0);
            tree[i] = ops.iter().fold(1u64, |t, v| t.saturating_add(tree[v.index()]));
            if depth[i] > limits::MAX_DEPTH {
                return Err(NodeError::Depth { depth: depth[i] });
            }
            if tree[i] > limits::MAX_TREE {
                return Err(NodeError::Tree);
            }
            Ok(())
        });
        if let Err(error) = checked {
            let node_v = Value(i as u32);
            return Err(VerifyError::Node { node: node_v, mnemonic: node.op.mnemonic(), param: owner_param(m, node_v), error });
        }
    }
    let mut seen = HashSet::new();
    for p in &m.params {
        if p.fqn.is_empty() {
            return Err(VerifyError::EmptyFqn { value: p.value });
        }
        if let Some(reason) = limits::name_problem(&p.fqn) {
            return Err(VerifyError::BadFqn { fqn: p.fqn.clone(), reason });
        }
        if !seen.insert(p.fqn.as_str()) {
            return Err(VerifyError::DuplicateParam { fqn: p.fqn.clone() });
        }
        let Some(node) = m.nodes.get(p.value.index()) else {
            return Err(VerifyError::ParamUndefined { fqn: p.fqn.clone(), value: p.value });
        };
        if node.ty != p.ty {
            return Err(VerifyError::ParamType { fqn: p.fqn.clone(), value: p.value, declared: p.ty.clone(), actual: node.ty.clone() });
        }
        if p.ty.dtype == DType::Key {
            return Err(VerifyError::KeyParam { fqn: p.fqn.clone() });
        }
        if !p.axes.is_empty() && p.axes.len() != p.ty.rank() {
            return Err(VerifyError::ParamAxes { fqn: p.fqn.clone(), n_axes: p.axes.len(), rank: p.ty.rank() });
        }
        if let Some(axis) = p.axes.iter().find(|a| !limits::is_axis_name(a)) {
            return Err(VerifyError::BadAxisName { fqn: p.fqn.clone(), axis: axis.clone() });
        }
        match (&m.mesh, &p.sharding) {
            (None, None) => {}
            (None, Some(_)) => return Err(VerifyError::ShardingWithoutMesh { fqn: p.fqn.clone() }),
            (Some(mesh), None) => return Err(VerifyError::MissingSharding { fqn: p.fqn.clone(), mesh: mesh.to_string() }),
            (Some(mesh), Some(s)) => {
                s.check(mesh, &p.ty).map_err(|error| VerifyError::Sharding { fqn: p.fqn.clone(), sharding: s.to_string(), error })?;
            }
        }
    }
    let total: u128 = m.params.iter().map(|p| p.ty.numel().unwrap_or(u64::MAX) as u128).sum();
    if total > limits::MAX_TOTAL_ELEMENTS as u128 {
        return Err(VerifyError::TooManyElements { total });
    }
    Ok(())
}

/// The first parameter (in model order) whose value depends on `v`.
pub fn owner_param(m: &Module, v: Value) -> Option<String> {
    for p in &m.params {
        let mut stack = vec![p.value];
        let mut seen = HashSet::new();
        while let Some(x) = stack.pop() {
            if x == v {
                return Some(p.fqn.clone());
            }
            if x.index() < m.nodes.len() && seen.insert(x) {
                stack.extend(m.nodes[x.index()].op.operands().into_iter().filter(|o| o.0 < x.0));
            }
        }
    }
    None
}

/// Checks one node `op : ty` given the nodes defined before it.
pub fn check_node(before: &[Node], op: &Op, ty: &Type) -> Result<(), NodeError> {
    if ty.rank() > limits::MAX_RANK {
        return Err(NodeError::Rank { rank: ty.rank() });
    }
    if ty.numel().is_none() {
        return Err(NodeError::Overflow { ty: ty.clone() });
    }
    let operand =
        |v: Value| -> Result<&Type, NodeError> { before.get(v.index()).map(|n| &n.ty).ok_or(NodeError::UndefinedOperand { operand: v }) };
    for v in op.operands() {
        operand(v)?;
    }
    match op {
        Op::Seed => expect_result(ty, ty == &Type::key(), "key"),
        Op::FoldIn { key, .. } => {
            expect_key(*key, operand(*key)?)?;
            expect_result(ty, ty == &Type::key(), "key")
        }
        Op::Split { key, count } => {
            expect_key(*key, operand(*key)?)?;
            if *count == 0 {
                return attr("count", "must be at least 1");
            }
            expect_result(ty, ty == &Type::new(DType::Key, [*count]), &format!("key[{count}]"))
        }
        Op::RandomBits { key, width } => {
            expect_key(*key, operand(*key)?)?;
            let want = match width {
                8 => DType::U8,
                16 => DType::U16,
                32 => DType::U32,
                64 => DType::U64,
                _ => return attr("width", format!("{width} is not one of 8, 16, 32, 64")),
            };
            expect_result(ty, ty.dtype == want, want.name())
        }
        Op::Uniform { key, min, max } => {
            expect_key(*key, operand(*key)?)?;
            expect_result(ty, ty.dtype.is_float(), "a float tensor")?;
            if !(min.get().is_finite() && max.get().is_finite() && min.get() < max.get()) {
                return attr("min/max", format!("need finite min < max, got {min}, {max}"));
            }
            Ok(())
        }
        Op::Normal { key } => {
            expect_key(*key, operand(*key)?)?;
            expect_result(ty, is_half_or_f32(ty.dtype), "an f32, bf16 or f16 tensor")
        }
        Op::TruncatedNormal { key, lower, upper } => {
            expect_key(*key, operand(*key)?)?;
            expect_result(ty, is_half_or_f32(ty.dtype), "an f32, bf16 or f16 tensor")?;
            if lower.get().is_nan() || upper.get().is_nan() || lower.get() >= upper.get() {
                return attr("lower/upper", format!("need lower < upper, got {lower}, {upper}"));
            }
            Ok(())
        }
        Op::Full { value } => check_full(ty, value.get()),
        Op::Iota { dim } => {
            expect_result(ty, ty.dtype.is_numeric(), "a numeric tensor")?;
            if *dim as usize >= ty.rank() {
                return attr("dim", format!("{dim} is out of range for rank {}", ty.rank()));
            }
            Ok(())
        }
        Op::Unary { op, x } => {
            let t = operand(*x)?;
            expect_same(*x, t, ty)?;
            let float_only = !matches!(op, UnaryOp::Neg | UnaryOp::Abs);
            let ok = if float_only { ty.dtype.is_float() } else { ty.dtype.is_numeric() };
            expect_result(ty, ok, if float_only { "a float tensor" } else { "a numeric tensor" })
        }
        Op::Binary { op, a, b } => {
            expect_same(*a, operand(*a)?, ty)?;
            expect_same(*b, operand(*b)?, ty)?;
            let ok = if *op == BinaryOp::Pow { ty.dtype.is_float() } else { ty.dtype.is_numeric() };
            expect_result(ty, ok, "a numeric tensor (pow: float)")
        }
        Op::Compare { a, b, .. } => {
            let ta = operand(*a)?;
            expect_same(*b, operand(*b)?, ta)?;
            if ta.dtype == DType::Key {
                return Err(operand_err(*a, ta, "a numeric or bool tensor"));
            }
            expect_result(ty, *ty == ta.with_dtype(DType::Bool), &ta.with_dtype(DType::Bool).to_string())
        }
        Op::Select { pred, on_true, on_false } => {
            let tp = operand(*pred)?;
            if *tp != ty.with_dtype(DType::Bool) {
                return Err(operand_err(*pred, tp, &ty.with_dtype(DType::Bool).to_string()));
            }
            expect_same(*on_true, operand(*on_true)?, ty)?;
            expect_same(*on_false, operand(*on_false)?, ty)
        }
        Op::Convert { x } => {
            let t = operand(*x)?;
            if t.dtype == DType::Key {
                return Err(operand_err(*x, t, "a non-key tensor"));
            }
            expect_result(ty, ty.shape == t.shape && ty.dtype != DType::Key, &format!("a non-key tensor of shape {:?}", t.shape))
        }
        Op::Broadcast { x, dims } => check_broadcast(*x, operand(*x)?, dims, ty),
        Op::Reshape { x } => {
            let t = operand(*x)?;
            let ok = t.dtype == ty.dtype && t.numel() == ty.numel();
            expect_result(ty, ok, &format!("{} with {} elements", t.dtype, t.numel().unwrap_or(0)))
        }
        Op::Transpose { x, perm } => {
            let t = operand(*x)?;
            if !is_permutation(perm, t.rank()) {
                return attr("perm", format!("{perm:?} is not a permutation of 0..{}", t.rank()));
            }
            let want = Type::new(t.dtype, perm.iter().map(|&p| t.shape[p as usize]).collect::<Vec<_>>());
            expect_result(ty, *ty == want, &want.to_string())
        }
        Op::Slice { x, start, limit } => check_slice(operand(*x)?, start, limit, ty),
        Op::Concat { xs, dim } => {
            let types = xs.iter().map(|&v| operand(v)).collect::<Result<Vec<_>, _>>()?;
            check_concat(xs, &types, *dim, ty)
        }
    }
}

fn is_half_or_f32(d: DType) -> bool {
    matches!(d, DType::F32 | DType::BF16 | DType::F16)
}

fn attr<T>(attr: &'static str, reason: impl Into<String>) -> Result<T, NodeError> {
    Err(NodeError::Attr { attr, reason: reason.into() })
}

fn operand_err(operand: Value, found: &Type, expected: &str) -> NodeError {
    NodeError::OperandType { operand, found: found.clone(), expected: expected.to_string() }
}

fn expect_key(v: Value, t: &Type) -> Result<(), NodeError> {
    if *t == Type::key() { Ok(()) } else { Err(operand_err(v, t, "key")) }
}

fn expect_same(v: Value, t: &Type, want: &Type) -> Result<(), NodeError> {
    if t == want { Ok(()) } else { Err(operand_err(v, t, &want.to_string())) }
}

fn expect_result(ty: &Type, ok: bool, expected: &str) -> Result<(), NodeError> {
    if ok { Ok(()) } else { Err(NodeError::ResultType { found: ty.clone(), expected: expected.to_string() }) }
}

fn check_full(ty: &Type, v: f64) -> Result<(), NodeError> {
    let (lo, hi) = match ty.dtype {
        DType::Key => return expect_result(ty, false, "a non-key tensor"),
        DType::F32 | DType::BF16 | DType::F16 | DType::F64 => return Ok(()),
        DType::Bool => (0.0, 1.0),
        DType::U8 => (0.0, u8::MAX as f64),
        DType::U16 => (0.0, u16::MAX as f64),
        DType::U32 => (0.0, u32::MAX as f64),
        DType::U64 => (0.0, 2f64.powi(53)),
        DType::I32 => (i32::MIN as f64, i32::MAX as f64),
    };
    if v.fract() != 0.0 || v < lo || v > hi {
        return attr("value", format!("{v:?} is not representable in {}", ty.dtype));
    }
    Ok(())
}

fn check_broadcast(x: Value, t: &Type, dims: &[u32], ty: &Type) -> Result<(), NodeError> {
    if t.dtype != ty.dtype {
        return Err(NodeError::ResultType { found: ty.clone(), expected: format!("element type {}", t.dtype) });
    }
    if dims.len() != t.rank() {
        return attr("dims", format!("{} entries for an operand of rank {}", dims.len(), t.rank()));
    }
    for (i, &d) in dims.iter().enumerate() {
        if d as usize >= ty.rank() || (i > 0 && d <= dims[i - 1]) {
            return attr("dims", format!("{dims:?} must be increasing and below the result rank {}", ty.rank()));
        }
        let (src, dst) = (t.shape[i], ty.shape[d as usize]);
        if src != 1 && src != dst {
            return Err(operand_err(x, t, &format!("dim {i} of size 1 or {dst}")));
        }
    }
    Ok(())
}

fn is_permutation(perm: &[u32], rank: usize) -> bool {
    let mut seen = vec![false; rank];
    perm.len() == rank && perm.iter().all(|&p| (p as usize) < rank && !std::mem::replace(&mut seen[p as usize], true))
}

fn check_slice(t: &Type, start: &[u64], limit: &[u64], ty: &Type) -> Result<(), NodeError> {
    if start.len() != t.rank() || limit.len() != t.rank() {
        return attr("start/limit", format!("need {} entries each", t.rank()));
    }
    for i in 0..t.rank() {
        if start[i] > limit[i] || limit[i] > t.shape[i] {
            return attr("start/limit", format!("dim {i}: [{}, {}) is not within 0..{}", start[i], limit[i], t.shape[i]));
        }
    }
    let want = Type::new(t.dtype, (0..t.rank()).map(|i| limit[i] - start[i]).collect::<Vec<_>>());
    expect_result(ty, *ty == want, &want.to_string())
}

fn check_concat(xs: &[Value], types: &[&Type], dim: u32, ty: &Type) -> Result<(), NodeError> {
    let Some(first) = types.first() else {
        return attr("operands", "concat needs at least one operand");
    };
    let d = dim as usize;
    if d >= first.rank() {
        return attr("dim", format!("{dim} is out of range for rank {}", first.rank()));
    }
    let mut total = 0u64;
    for (&v, t) in xs.iter().zip(types) {
        let same_rest = t.rank() == first.rank() && t.dtype == first.dtype && (0..t.rank()).all(|i| i == d || t.shape[i] == first.shape[i]);
        if !same_rest {
            return Err(operand_err(v, t, &format!("the type of {} except in dim {dim}", xs[0])));
        }
        total = total.saturating_add(t.shape[d]);
    }
    let mut want = (*first).clone();
    want.shape[d] = total;
    expect_result(ty, *ty == want, &want.to_string())
}
