//! Protobuf (de)serialization of an initc module (schema: `proto/initc.proto`).
//! Decoding re-verifies the module, so a foreign frontend's trace gets the same checks as text.

use initc_ir::{BinaryOp, CmpDir, DType, F64, Mesh, Module, Node, Op, Param, Sharding, Type, UnaryOp, Uneven, Value};
use prost::Message;

#[allow(clippy::all)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/initc.v1.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("not a valid initc protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("node %{node}: {what}")]
    Node { node: usize, what: String },
    #[error("parameter #{index}: {what}")]
    Param { index: usize, what: String },
    #[error("mesh: {0}")]
    Mesh(initc_ir::MeshError),
    #[error("{0}")]
    Verify(#[from] initc_ir::VerifyError),
    #[error("unknown rng mode `{0}` (jax or fast)")]
    RngMode(String),
}

/// Encodes a module as protobuf bytes.
pub fn encode(m: &Module) -> Vec<u8> {
    to_pb(m).encode_to_vec()
}

/// Decodes and verifies a module.
pub fn decode(bytes: &[u8]) -> Result<Module, ProtoError> {
    let pm = pb::Module::decode(bytes)?;
    let rng = match pm.rng.as_str() {
        "" => initc_ir::RngMode::Jax,
        s => initc_ir::RngMode::from_name(s).ok_or_else(|| ProtoError::RngMode(s.to_string()))?,
    };
    let mut m = Module { name: pm.name, seed: pm.seed, rng, ..Module::default() };
    for (i, n) in pm.nodes.into_iter().enumerate() {
        let err = |what: String| ProtoError::Node { node: i, what };
        let ty = from_type(n.r#type.as_ref()).map_err(err)?;
        let op = from_op(n.op.ok_or_else(|| err("missing op".into()))?).map_err(err)?;
        m.nodes.push(Node { op, ty });
    }
    for (index, p) in pm.params.into_iter().enumerate() {
        let ty = from_type(p.r#type.as_ref()).map_err(|what| ProtoError::Param { index, what })?;
        let sharding = p.sharding.map(|s| Sharding { dims: s.dims.into_iter().map(|d| d.axes).collect() });
        m.params.push(Param { fqn: p.fqn, value: Value(p.value), ty, axes: p.axes, init: p.init, sharding });
    }
    if let Some(mesh) = pm.mesh {
        let uneven = if mesh.uneven_pad { Uneven::Pad } else { Uneven::Error };
        m.mesh = Some(Mesh::new(mesh.axes.into_iter().map(|a| (a.name, a.size)), uneven).map_err(ProtoError::Mesh)?);
    }
    initc_ir::verify(&m)?;
    Ok(m)
}

fn to_type(t: &Type) -> pb::TensorType {
    pb::TensorType { dtype: t.dtype.name().into(), shape: t.shape.clone() }
}

fn from_type(t: Option<&pb::TensorType>) -> Result<Type, String> {
    let t = t.ok_or("missing type")?;
    let dtype = DType::from_name(&t.dtype).ok_or_else(|| format!("unknown dtype `{}`", t.dtype))?;
    Ok(Type::new(dtype, t.shape.clone()))
}

fn to_pb(m: &Module) -> pb::Module {
    pb::Module {
        name: m.name.clone(),
        seed: m.seed,
        rng: if m.rng == initc_ir::RngMode::Jax { String::new() } else { m.rng.name().to_string() },
        nodes: m.nodes.iter().map(|n| pb::Node { r#type: Some(to_type(&n.ty)), op: Some(to_op(&n.op)) }).collect(),
        params: m
            .params
            .iter()
            .map(|p| pb::Param {
                fqn: p.fqn.clone(),
                value: p.value.0,
                r#type: Some(to_type(&p.ty)),
                axes: p.axes.clone(),
                init: p.init.clone(),
                sharding: p
                    .sharding
                    .as_ref()
                    .map(|s| pb::Sharding { dims: s.dims.iter().map(|d| pb::DimSharding { axes: d.clone() }).collect() }),
            })
            .collect(),
        mesh: m.mesh.as_ref().map(|mesh| pb::Mesh {
            axes: mesh.axes.iter().map(|a| pb::MeshAxis { name: a.name.clone(), size: a.size }).collect(),
            uneven_pad: mesh.uneven == Uneven::Pad,
        }),
    }
}

fn to_op(op: &Op) -> pb::node::Op {
    use pb::node::Op as P;
    match op {
        Op::Seed => P::Seed(pb::Seed {}),
        Op::FoldIn { key, data } => P::FoldIn(pb::FoldIn { key: key.0, data: *data }),
        Op::Split { key, count } => P::Split(pb::Split { key: key.0, count: *count }),
        Op::RandomBits { key, width } => P::RandomBits(pb::RandomBits { key: key.0, width: *width as u32 }),
        Op::Uniform { key, min, max } => P::Uniform(pb::Uniform { key: key.0, min: min.get(), max: max.get() }),
        Op::Normal { key } => P::Normal(pb::Normal { key: key.0 }),
        Op::TruncatedNormal { key, lower, upper } => {
            P::TruncatedNormal(pb::TruncatedNormal { key: key.0, lower: lower.get(), upper: upper.get() })
        }
        Op::Full { value } => P::Full(pb::Full { value: value.get() }),
        Op::Iota { dim } => P::Iota(pb::Iota { dim: *dim }),
        Op::Unary { op, x } => P::Unary(pb::Unary { op: op.name().into(), x: x.0 }),
        Op::Binary { op, a, b } => P::Binary(pb::Binary { op: op.name().into(), a: a.0, b: b.0 }),
        Op::Compare { dir, a, b } => P::Compare(pb::Compare { dir: dir.name().into(), a: a.0, b: b.0 }),
        Op::Select { pred, on_true, on_false } => P::Select(pb::Select { pred: pred.0, on_true: on_true.0, on_false: on_false.0 }),
        Op::Convert { x } => P::Convert(pb::Convert { x: x.0 }),
        Op::Broadcast { x, dims } => P::Broadcast(pb::Broadcast { x: x.0, dims: dims.clone() }),
        Op::Reshape { x } => P::Reshape(pb::Reshape { x: x.0 }),
        Op::Transpose { x, perm } => P::Transpose(pb::Transpose { x: x.0, perm: perm.clone() }),
        Op::Slice { x, start, limit } => P::Slice(pb::Slice { x: x.0, start: start.clone(), limit: limit.clone() }),
        Op::Concat { xs, dim } => P::Concat(pb::Concat { xs: xs.iter().map(|v| v.0).collect(), dim: *dim }),
    }
}

fn from_op(op: pb::node::Op) -> Result<Op, String> {
    use pb::node::Op as P;
    let name = |kind: &str, s: &str| format!("unknown {kind} `{s}`");
    Ok(match op {
        P::Seed(_) => Op::Seed,
        P::FoldIn(o) => Op::FoldIn { key: Value(o.key), data: o.data },
        P::Split(o) => Op::Split { key: Value(o.key), count: o.count },
        P::RandomBits(o) => {
            Op::RandomBits { key: Value(o.key), width: u8::try_from(o.width).map_err(|_| format!("bit width {} out of range", o.width))? }
        }
        P::Uniform(o) => Op::Uniform { key: Value(o.key), min: F64::new(o.min), max: F64::new(o.max) },
        P::Normal(o) => Op::Normal { key: Value(o.key) },
        P::TruncatedNormal(o) => Op::TruncatedNormal { key: Value(o.key), lower: F64::new(o.lower), upper: F64::new(o.upper) },
        P::Full(o) => Op::Full { value: F64::new(o.value) },
        P::Iota(o) => Op::Iota { dim: o.dim },
        P::Unary(o) => Op::Unary { op: UnaryOp::from_name(&o.op).ok_or_else(|| name("unary op", &o.op))?, x: Value(o.x) },
        P::Binary(o) => {
            Op::Binary { op: BinaryOp::from_name(&o.op).ok_or_else(|| name("binary op", &o.op))?, a: Value(o.a), b: Value(o.b) }
        }
        P::Compare(o) => {
            Op::Compare { dir: CmpDir::from_name(&o.dir).ok_or_else(|| name("comparison", &o.dir))?, a: Value(o.a), b: Value(o.b) }
        }
        P::Select(o) => Op::Select { pred: Value(o.pred), on_true: Value(o.on_true), on_false: Value(o.on_false) },
        P::Convert(o) => Op::Convert { x: Value(o.x) },
        P::Broadcast(o) => Op::Broadcast { x: Value(o.x), dims: o.dims },
        P::Reshape(o) => Op::Reshape { x: Value(o.x) },
        P::Transpose(o) => Op::Transpose { x: Value(o.x), perm: o.perm },
        P::Slice(o) => Op::Slice { x: Value(o.x), start: o.start, limit: o.limit },
        P::Concat(o) => Op::Concat { xs: o.xs.into_iter().map(Value).collect(), dim: o.dim },
    })
}
