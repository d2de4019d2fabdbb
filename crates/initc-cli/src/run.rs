//! `initc run`: materialize a model and write a checkpoint (CPU engine, the default backend).

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::input::{CliError, ShardArgs, load_sharded};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The embedded CPU engine (bit-exact with JAX on XLA:CPU).
    Cpu,
    /// Accelerators through a PJRT plugin (see `initc devices`): each device computes only its
    /// own shards, which stay on it unless --out, --verify or --digests copies them back.
    Pjrt,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// model.toml (or an IR file: `.pb` protobuf, anything else text).
    pub input: PathBuf,
    /// Output directory: model.safetensors (or shards + index) and manifest.json. Required
    /// for the CPU backend; with --backend pjrt, several devices write DIR/device-K.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seed (u64), overriding the model's [rng] seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Split the checkpoint into HF-style shards of at most this size (e.g. 5GB, 500MiB, 1000000).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_shard_size: Option<u64>,
    /// Worker threads (default: all cores); with --backend pjrt, host threads enqueueing
    /// launches per device (default 2; they live for all --repeat runs).
    /// At most 8 per core.
    #[arg(long, value_parser = crate::input::parse_threads)]
    pub threads: Option<usize>,
    /// With --backend pjrt: at most this many launches of one shard program per PJRT execute
    /// (default: 4 for fast-mode bf16 table programs, 2 for other random programs, 64 for
    /// fills such as a norm's ones: a cold start is compile-bound). Each execute costs the
    /// host ~20-150 µs, which on several GPUs of one host can leave them waiting; each extra
    /// launch per execute costs compile time. Every 4 launches of a batch run as one kernel.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=initc_device::MAX_BATCH as u64))]
    pub batch: Option<u64>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
    /// Write only device K's shards (needs a mesh); each tensor's global offset goes into the
    /// safetensors metadata (`initc.shard.<fqn>`) and manifest.json.
    #[arg(long, value_name = "K")]
    pub device: Option<u64>,
    #[command(flatten)]
    pub shard: ShardArgs,
    #[command(flatten)]
    pub plugin: crate::devices::PluginArgs,
    /// (pjrt) Copy the shards back and compare them with the CPU engine: integers and 16-bit
    /// floats bit for bit, f32 within 4 ULP at the element's or the parameter's scale
    /// (XLA:GPU and XLA:CPU differ in FMA contraction and log1p, docs/RNG_SPEC.md §7). Exit 1 if not.
    #[arg(long)]
    pub verify: bool,
    /// (pjrt) Materialize this many times (freeing the previous result first) and report each
    /// time and the best.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: u32,
    /// (pjrt) Also compute the SHA-256 of every shard (copied back to the host) into --report.
    #[arg(long)]
    pub digests: bool,
    /// (pjrt) Write timings, memory, verification and digests as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// `5GB` = 5e9 bytes, `500MiB` = 500·2^20, a bare number is bytes; 1 to 2^64-1 bytes (an
/// integer is taken exactly, so `18446744073709551615` is the largest).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        u => return Err(format!("unknown size unit `{u}` (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")),
    };
    let not_a_size = || format!("`{s}` is not a size such as 5GB, 500MiB or 1000000");
    let bytes: f64 = if num.bytes().all(|c| c.is_ascii_digit()) && !num.is_empty() {
        // Exact for integers: u64::MAX does not survive a trip through f64.
        let n: u128 = num.parse().map_err(|_| format!("`{s}` is above 2^64-1 bytes"))?;
        match n.checked_mul(mult as u128).map(u64::try_from) {
            Some(Ok(0)) => return Err(format!("`{s}`: a shard size is at least 1 byte")),
            Some(Ok(b)) => return Ok(b),
            _ => return Err(format!("`{s}` is above 2^64-1 bytes")),
        }
    } else {
        num.parse::<f64>().map_err(|_| not_a_size())? * mult as f64
    };
    if bytes.is_nan() || bytes < 1.0 {
        return Err(format!("`{s}`: a shard size is at least 1 byte"));
    }
    if bytes >= 18446744073709551616.0 {
        return Err(format!("`{s}` is above 2^64-1 bytes"));
    }
    Ok(bytes as u64)
}

pub fn run(args: &RunArgs) -> Result<(), CliError> {
    let m = load_sharded(&args.input, &args.shard)?;
    let seed = args.seed.unwrap_or(m.seed);
    if let (Some(d), Some(mesh)) = (args.device, &m.mesh)
        && d >= mesh.devices()
    {
        return Err(CliError::Plain(format!("--device {d}: mesh {mesh} has devices 0..{}", mesh.devices())));
    }
    if args.backend == Backend::Pjrt {
        if args.device.is_some() && m.mesh.is_none() {
            return Err(CliError::Plain("--device needs a mesh: add [mesh] to the model.toml or pass --mesh (e.g. --mesh fsdp=8)".into()));
        }
        return crate::accel::run(args, &m, seed);
    }
    if let Some(p) = &args.plugin.plugin {
        return Err(CliError::Plain(format!("--plugin {} needs --backend pjrt (the CPU backend loads no plugin)", p.display())));
    }
    if args.verify || args.digests || args.report.is_some() || args.repeat > 1 {
        return Err(CliError::Plain("--verify, --digests, --report and --repeat belong to --backend pjrt (the CPU engine is the reference; `initc verify` checks shardings)".into()));
    }
    let Some(out) = &args.out else {
        return Err(CliError::Plain("--out DIR is required with the CPU backend".into()));
    };
    let opts = initc_cpu::WriteOptions { max_shard_bytes: args.max_shard_size, device: args.device };
    let total = match (args.device, &m.mesh) {
        (Some(_), None) => {
            return Err(CliError::Plain("--device needs a mesh: add [mesh] to the model.toml or pass --mesh (e.g. --mesh fsdp=8)".into()));
        }
        (Some(d), Some(mesh)) if d >= mesh.devices() => {
            return Err(CliError::Plain(format!("--device {d}: mesh {mesh} has devices 0..{}", mesh.devices())));
        }
        (Some(d), Some(_)) => initc_shard::Plan::new(&m).map_or(0, |p| p.devices[d as usize].bytes),
        (None, _) => m.total_bytes(),
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads.unwrap_or(0)).build().map_err(|e| format!("thread pool: {e}"))?;
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let written = pool.install(|| initc_cpu::write_checkpoint(&m, seed, out, &opts, &|n| bar.inc(n)));
    bar.finish_and_clear();
    let written = written.map_err(|e| CliError::Plain(format!("writing the checkpoint failed: {e}")))?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} parameters, {:.3} GB in {} file(s) to {} in {:.2} s ({:.2} GB/s, {} threads)",
        m.params.len(),
        written.total_bytes as f64 / 1e9,
        written.files.len(),
        out.display(),
        secs,
        written.total_bytes as f64 / 1e9 / secs,
        pool.current_num_threads(),
    );
    match args.device {
        None => println!("digest {}", initc_cpu::hex(&written.digest)),
        Some(d) => println!("shard_digest {} device {d}", initc_cpu::hex(&written.digest)),
    }
    Ok(())
}
