//! `initc verify`: the value contract, checked — every mesh gives the unsharded run's bits.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use initc_ir::{Mesh, Uneven};
use initc_shard::Builtin;

use crate::input::{CliError, load, parse_mesh, parse_rules, parse_uneven};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// model.toml (or an IR file).
    pub input: PathBuf,
    /// A mesh to check, `axis=size,...`; repeat for several. Default: the file's [mesh].
    #[arg(long, value_name = "AXES", value_parser = parse_mesh)]
    pub mesh: Vec<Mesh>,
    /// Built-in rule set (fsdp, tp, fsdp+tp), replacing [sharding] rules.
    #[arg(long, value_name = "SET", value_parser = parse_rules)]
    pub rules: Option<Builtin>,
    /// `error` (default) or `pad`: accept XLA-style padded shards.
    #[arg(long, value_name = "POLICY", value_parser = parse_uneven)]
    pub uneven: Option<Uneven>,
    /// Seed (u64), overriding the model's [rng] seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads (default: all cores).
    /// At most 8 per core.
    #[arg(long, value_parser = crate::input::parse_threads)]
    pub threads: Option<usize>,
    /// RNG mode, replacing [rng] mode (`jax` or `fast`).
    #[arg(long, value_name = "MODE", value_parser = crate::input::parse_rng)]
    pub rng: Option<initc_ir::RngMode>,
}

pub fn run(args: &VerifyArgs) -> Result<(), CliError> {
    let mut loaded = load(&args.input)?;
    if let Some(r) = args.rng {
        loaded.module.rng = r;
    }
    let mut reference = loaded.module.clone();
    initc_shard::unshard(&mut reference);
    let meshes: Vec<Option<&Mesh>> = if args.mesh.is_empty() { vec![None] } else { args.mesh.iter().map(Some).collect() };
    let mut sharded = Vec::new();
    for mesh in meshes {
        let m = loaded.sharded(mesh, args.rules, args.uneven)?;
        if m.mesh.is_none() {
            return Err(CliError::Plain(format!(
                "{} has no [mesh]: pass one or more --mesh (e.g. --mesh fsdp=8 --mesh fsdp=4,tp=2)",
                args.input.display()
            )));
        }
        sharded.push(m);
    }
    let seed = args.seed.unwrap_or(reference.seed);
    let total: u64 = reference.total_bytes() + sharded.iter().filter_map(initc_shard::Plan::new).map(|p| p.stored_bytes()).sum::<u64>();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads.unwrap_or(0)).build().map_err(|e| format!("thread pool: {e}"))?;
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let outcome = pool.install(|| initc_cpu::verify_shardings(&reference, &sharded, seed, &|n| bar.inc(n)));
    bar.finish_and_clear();
    let outcome = outcome.map_err(|e| CliError::Plain(e.to_string()))?;
    let hex = initc_cpu::hex;
    for o in &outcome.meshes {
        match &o.mismatch {
            None if o.digest == outcome.digest => {
                println!(
                    "mesh {} ({} devices): ok, {} parameters, {:.3} GB of shards, digest {}",
                    o.mesh,
                    o.devices,
                    reference.params.len(),
                    o.shard_bytes as f64 / 1e9,
                    hex(&o.digest)
                )
            }
            None => println!("mesh {} ({} devices): DIGEST DIFFERS {}", o.mesh, o.devices, hex(&o.digest)),
            Some(x) => {
                let who = x.device.map(|d| format!(" on device {d} (differs from its replica)")).unwrap_or_default();
                println!(
                    "mesh {} ({} devices): MISMATCH in `{}` at index {:?}{who}: expected {}, got {}",
                    o.mesh, o.devices, x.fqn, x.index, x.expected, x.found
                )
            }
        }
    }
    println!("digest {}", hex(&outcome.digest));
    if outcome.passed() { Ok(()) } else { Err(CliError::Plain("sharded values differ from the unsharded run (see above)".into())) }
}
