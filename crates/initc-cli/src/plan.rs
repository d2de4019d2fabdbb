//! `initc plan`: what each device will hold, before anything runs.

use std::fmt::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use initc_ir::Module;
use initc_shard::Plan;

use crate::input::{CliError, ShardArgs, load_sharded, write_output};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// A table for people.
    Text,
    /// Every device and every parameter's share, for tools.
    Json,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// model.toml (or an IR file with a mesh).
    pub input: PathBuf,
    #[command(flatten)]
    pub shard: ShardArgs,
    /// How many of the largest per-device parameter shards to list.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// One row per device instead of grouping consecutive devices with equal loads.
    #[arg(long)]
    pub all_devices: bool,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Write to FILE (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: &PlanArgs) -> Result<(), CliError> {
    let m = load_sharded(&args.input, &args.shard)?;
    let Some(plan) = Plan::new(&m) else {
        return Err(CliError::Plain(format!(
            "{} has no mesh: add a [mesh] table or pass --mesh (e.g. --mesh fsdp=8,tp=2 --rules fsdp+tp)",
            args.input.display()
        )));
    };
    let out = match args.format {
        PlanFormat::Text => text(&m, &plan, args),
        PlanFormat::Json => {
            let mut s = serde_json::to_string_pretty(&json(&m, &plan)).map_err(|e| e.to_string())?;
            s.push('\n');
            s
        }
    };
    write_output(args.output.as_deref(), out.as_bytes())
}

/// `1.476 GiB` / `12.0 MiB` / `512 B`.
pub fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{v:.0} B") } else { format!("{v:.3} {}", UNITS[u]) }
}

fn text(m: &Module, plan: &Plan, args: &PlanArgs) -> String {
    let mesh = m.mesh.as_ref().map(|x| x.to_string()).unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(s, "model {}: {} tensors, {} ({} bytes)", m.name, m.params.len(), human(plan.total_bytes as f64), plan.total_bytes);
    let _ = writeln!(s, "mesh {mesh}: {} devices", plan.devices.len());
    let _ = writeln!(
        s,
        "per device: min {}, max {}, mean {}",
        human(plan.min_bytes() as f64),
        human(plan.max_bytes() as f64),
        human(plan.mean_bytes())
    );
    let allocated = plan.devices.iter().map(|d| d.allocated).max().unwrap_or(0);
    if allocated != plan.max_bytes() {
        let _ = writeln!(s, "allocated with padding: max {}", human(allocated as f64));
    }
    let replicated = plan.params.iter().filter(|p| p.replication == plan.devices.len() as u64 && plan.devices.len() > 1).count();
    let _ = writeln!(
        s,
        "replication factor {:.3} (bytes over all devices / parameter bytes); {replicated} tensor(s) fully replicated",
        plan.replication_factor()
    );
    let _ = writeln!(s, "\n{:<16} {:<24} {:>14} {:>16}", "devices", "coords", "bytes", "exact bytes");
    let mut i = 0;
    while i < plan.devices.len() {
        let d = &plan.devices[i];
        let mut j = i + 1;
        while !args.all_devices && j < plan.devices.len() && plan.devices[j].bytes == d.bytes {
            j += 1;
        }
        let (range, coords) = if j - i == 1 {
            (d.device.to_string(), format!("({})", d.coords.iter().map(u64::to_string).collect::<Vec<_>>().join(",")))
        } else {
            (format!("{}..{}", d.device, plan.devices[j - 1].device), format!("{} devices", j - i))
        };
        let _ = writeln!(s, "{range:<16} {coords:<24} {:>14} {:>16}", human(d.bytes as f64), d.bytes);
        i = j;
    }
    let _ = writeln!(s, "\nlargest per-device shards:");
    let _ = writeln!(s, "{:<44} {:<18} {:<22} {:<16} {:>12} {:>5}", "parameter", "global", "sharding", "local", "bytes", "repl");
    for share in plan.largest(args.top) {
        let p = &m.params[share.index];
        let sh = p.sharding.as_ref().map(|x| x.to_string()).unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<44} {:<18} {:<22} {:<16} {:>12} {:>5}",
            p.fqn,
            dims(&p.ty.shape),
            sh,
            dims(&share.local_shape),
            human(share.local_bytes as f64),
            share.replication
        );
    }
    s
}

fn dims(d: &[u64]) -> String {
    format!("[{}]", d.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
}

fn json(m: &Module, plan: &Plan) -> serde_json::Value {
    let devices: Vec<serde_json::Value> = plan
        .devices
        .iter()
        .map(|d| serde_json::json!({"device": d.device, "coords": d.coords, "bytes": d.bytes, "allocated": d.allocated}))
        .collect();
    let params: Vec<serde_json::Value> = plan
        .params
        .iter()
        .map(|share| {
            let p = &m.params[share.index];
            serde_json::json!({"fqn": p.fqn, "shape": p.ty.shape, "dtype": p.ty.dtype.name(), "sharding": p.sharding.as_ref().map(|s| s.dims.clone()), "local_shape": share.local_shape, "local_bytes": share.local_bytes, "replication": share.replication})
        })
        .collect();
    serde_json::json!({
        "name": m.name,
        "mesh": m.mesh.as_ref().map(|x| x.to_string()),
        "total_bytes": plan.total_bytes,
        "min_bytes": plan.min_bytes(),
        "max_bytes": plan.max_bytes(),
        "mean_bytes": plan.mean_bytes(),
        "replication_factor": plan.replication_factor(),
        "devices": devices,
        "params": params,
    })
}
