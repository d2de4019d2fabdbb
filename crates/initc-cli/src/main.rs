//! `initc`: compile model initialization programs. See `initc --help`.

mod accel;
mod devices;
mod input;
mod lower;
mod plan;
mod run;
mod trace;
mod verify;

use clap::{Parser, Subcommand};

const ABOUT: &str = "initc — compile model initialization programs so every device materializes only its own shard, \
with values that do not depend on the sharding.

Every element of every parameter is a pure function of (seed, parameter FQN, initializer, global index):
  root      = jax.random.PRNGKey(seed)
  param_key = jax.random.fold_in(root, int.from_bytes(sha256(fqn.encode()).digest()[:4], 'big'))
  value     = jax.random.<dist>(param_key, shape, dtype) then the initializer's affine";

const EXAMPLES: &str = "Examples:
  initc trace examples/llama3_8b.toml                 print the init program (text IR)
  initc trace examples/llama3_8b.toml --format json   list parameters, shapes, dtypes, initializers
  initc trace model.toml --format proto -o model.pb   protobuf IR for other tools
  initc trace model.pb                                read an IR back (text: any other extension)
  initc run examples/llama3_1b.toml --out ckpt/        write ckpt/model.safetensors + manifest.json
  initc run model.toml --out ckpt/ --seed 7 --max-shard-size 5GB   HF-style shards + index
  initc lower examples/llama3_8b.toml -o llama3_8b.mlir   StableHLO for XLA/PJRT (.mlirbc: bytecode)
  initc lower model.toml --mesh fsdp=4,tp=2 --rules fsdp+tp --partitioner gspmd   sharded, GSPMD annotations
  initc plan examples/llama3_405b.toml --mesh fsdp=32,tp=8 --rules fsdp+tp   bytes per device
  initc run examples/llama3_8b.toml --mesh fsdp=8 --rules fsdp --device 3 --out dev3/   one device's shards
  initc verify examples/llama3_1b.toml --rules fsdp+tp --mesh fsdp=8 --mesh fsdp=4,tp=2   same bits on every mesh
  initc devices                                        the PJRT plugin found and its devices
  initc run examples/llama3_8b.toml --backend pjrt --verify   on a GPU, checked against the CPU engine
  initc run model.toml --backend pjrt --mesh fsdp=4 --rules fsdp --out ckpt/   4 GPUs, ckpt/device-K
  initc run examples/llama3_405b.toml --backend pjrt --mesh fsdp=32,tp=8 --rules fsdp+tp --device 0   one of 256 devices' shards";

#[derive(Parser, Debug)]
#[command(name = "initc", version, about = ABOUT, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Trace a model.toml (or read an IR file) and print its init program.
    Trace(trace::TraceArgs),
    /// Materialize every parameter and write a safetensors checkpoint plus manifest.json
    /// (SHA-256 per parameter). Prints `digest <hex>`: SHA-256 over the per-parameter digests.
    Run(run::RunArgs),
    /// Emit the init program as StableHLO: `@main(%key: tensor<2xui32>)` (the key data of
    /// PRNGKey(seed)) returns every parameter at its global shape with its sharding.
    Lower(lower::LowerArgs),
    /// Show what each device of a mesh will hold: bytes per device (min/max/mean), the
    /// largest per-device shards, the replication factor.
    Plan(plan::PlanArgs),
    /// Materialize every device's shards for each --mesh, reassemble them and compare with
    /// the unsharded run bit for bit. Prints one line per mesh and `digest <hex>` (the same for
    /// every mesh, and the digest in `initc run`'s manifest.json). Exit 1 on any difference.
    Verify(verify::VerifyArgs),
    /// Show the PJRT plugin initc finds (path, API version, platform, attributes) and its
    /// devices with their memory.
    Devices(devices::DevicesArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Trace(a) => trace::run(a),
        Command::Run(a) => run::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Lower(a) => lower::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Devices(a) => devices::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            e.render();
            std::process::ExitCode::FAILURE
        }
    }
}
