//! `initc trace`: print a model's init program as text IR, JSON manifest, or protobuf.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use initc_ir::Module;

use crate::input::{CliError, ShardArgs, load_sharded, write_output};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The text IR (round-trips through `initc trace FILE.txt`).
    Text,
    /// A JSON manifest: every parameter's FQN, shape, dtype and initializer, plus totals.
    Json,
    /// The IR as protobuf (schema proto/initc.proto), readable by `initc trace FILE.pb`.
    Proto,
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// model.toml to trace, or an IR file to read back (`.pb` protobuf, anything else text).
    pub input: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write to FILE (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Override the seed recorded in the module (u64; the toml's [rng] seed otherwise).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub shard: ShardArgs,
}

pub fn run(args: &TraceArgs) -> Result<(), CliError> {
    let mut m = load_sharded(&args.input, &args.shard)?;
    if let Some(s) = args.seed {
        m.seed = s;
    }
    let bytes = match args.format {
        Format::Text => m.to_string().into_bytes(),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&manifest_json(&m)).map_err(|e| e.to_string())?;
            s.push('\n');
            s.into_bytes()
        }
        Format::Proto => initc_proto::encode(&m),
    };
    write_output(args.output.as_deref(), &bytes)
}

/// `{"params":[{"fqn","shape","dtype","axes","init"}...],"num_tensors","total_params","total_bytes"}`;
/// `total_params` counts elements.
pub fn manifest_json(m: &Module) -> serde_json::Value {
    let params: Vec<serde_json::Value> = m
        .params
        .iter()
        .map(|p| {
            let mut v = serde_json::json!({"fqn": p.fqn, "shape": p.ty.shape, "dtype": p.ty.dtype.name(), "axes": p.axes, "init": p.init});
            if let Some(s) = &p.sharding {
                v["sharding"] = s.dims.clone().into();
            }
            v
        })
        .collect();
    let mut v = serde_json::json!({
        "name": m.name,
        "seed": m.seed,
        "params": params,
        "num_tensors": m.params.len(),
        "total_params": m.total_elements(),
        "total_bytes": m.total_bytes(),
    });
    if let Some(mesh) = &m.mesh {
        v["mesh"] = mesh.axes.iter().map(|a| serde_json::json!({"name": a.name, "size": a.size})).collect::<Vec<_>>().into();
        v["uneven"] = mesh.uneven.name().into();
    }
    v
}
