//! `initc lower`: emit the init program as StableHLO (text or MLIR bytecode).

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use initc_device::Schedule;
use initc_stablehlo::{Options, Partitioner};

use crate::input::{CliError, ShardArgs, load_sharded, mesh_devices, write_output};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum PartitionerArg {
    /// `sdy.mesh` + `#sdy.sharding` result annotations (XLA's default).
    Shardy,
    /// `mhlo.sharding` strings.
    Gspmd,
}

#[derive(Args, Debug)]
pub struct LowerArgs {
    /// model.toml (or an IR file).
    pub input: PathBuf,
    /// Write to FILE (atomically) instead of stdout; a `.mlirbc` name implies --bytecode.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub shard: ShardArgs,
    /// Sharding annotations to emit.
    #[arg(long, value_enum, default_value_t = PartitionerArg::Shardy)]
    pub partitioner: PartitionerArg,
    /// Write MLIR bytecode instead of text.
    #[arg(long)]
    pub bytecode: bool,
    /// Instead of the SPMD module, write into directory DIR what `run --backend pjrt` executes:
    /// the shard programs (`programs/E.mlir`, batched ones included, with their shard-program IR in
    /// `programs/E.sp`), every execute's argument
    /// words (`statics/`, `tables/`, little-endian u32) and `manifest.json`, which lists per
    /// mesh device its executes and the shards they return. For oracles that run them on
    /// another backend (tools/oracle/test_shard_programs.py).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["output", "bytecode"])]
    pub shard_programs: Option<PathBuf>,
    /// With --shard-programs: only mesh device K (default: every device of the mesh).
    #[arg(long, value_name = "K", requires = "shard_programs")]
    pub device: Option<u64>,
    /// With --shard-programs: the seed the static words hold keys for (default: the model's).
    #[arg(long, requires = "shard_programs")]
    pub seed: Option<u64>,
    /// With --shard-programs: at most this many launches per execute (as `run --batch`).
    #[arg(long, value_name = "N", requires = "shard_programs", value_parser = clap::value_parser!(u64).range(1..=initc_device::MAX_BATCH as u64))]
    pub batch: Option<u64>,
}

pub fn run(args: &LowerArgs) -> Result<(), CliError> {
    let m = load_sharded(&args.input, &args.shard)?;
    if let Some(dir) = &args.shard_programs {
        return shard_programs(&m, args, dir);
    }
    let partitioner = match args.partitioner {
        PartitionerArg::Shardy => Partitioner::Shardy,
        PartitionerArg::Gspmd => Partitioner::Gspmd,
    };
    let lowered = initc_stablehlo::lower(&m, &Options { partitioner }).map_err(|e| CliError::hinted(&e, e.hint()))?;
    let bytecode = args.bytecode || args.output.as_ref().is_some_and(|p| p.extension().is_some_and(|e| e == "mlirbc"));
    let bytes =
        if bytecode { lowered.bytecode() } else { lowered.text().map(String::into_bytes) }.map_err(|e| CliError::Plain(e.to_string()))?;
    write_output(args.output.as_deref(), &bytes)
}

/// `lower --shard-programs DIR`: the programs and argument words of every execute, written to a
/// staging directory next to DIR that replaces it in one step (`initc_cpu::publish`).
fn shard_programs(m: &initc_ir::Module, args: &LowerArgs, dir: &Path) -> Result<(), CliError> {
    let plain = |e: &dyn std::fmt::Display| CliError::Plain(e.to_string());
    let io = |what: &Path, e: std::io::Error| CliError::Plain(format!("cannot write {}: {e}", what.display()));
    let schedule = Schedule::new(m, &mesh_devices(args.device, m), args.batch.map(|b| b as usize)).map_err(|e| plain(&e))?;
    let seed = args.seed.unwrap_or(m.seed);
    let ev = initc_cpu::Evaluator::new(m, seed);
    let staged = initc_cpu::publish::Staged::begin(dir, shard_programs_contents).map_err(|e| plain(&e))?;
    let write = |rel: String, bytes: &[u8]| -> Result<String, CliError> {
        let path = staged.path().join(&rel);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| io(d, e))?;
        }
        let f = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
        std::io::Write::write_all(&mut &f, bytes).and_then(|()| f.sync_all()).map_err(|e| io(&path, e))?;
        Ok(rel)
    };
    let mut programs = Vec::with_capacity(schedule.executables.len());
    for e in 0..schedule.executables.len() {
        programs.push(write(format!("programs/{e}.mlir"), schedule.executable_text(e).as_bytes())?);
        write(format!("programs/{e}.sp"), schedule.executable_ir(e).as_bytes())?;
    }
    let mut out_devices = Vec::new();
    for (i, dl) in schedule.plan.devices.iter().enumerate() {
        let d = dl.mesh_device;
        let args = schedule.tables(&ev, i);
        let tables = args
            .specs
            .iter()
            .enumerate()
            .map(|(t, spec)| write(format!("tables/{d}-{t}.bin"), &le_bytes(&spec.build().map_err(|e| plain(&e))?)))
            .collect::<Result<Vec<_>, _>>()?;
        let statics = schedule.statics(m, &ev, i).map_err(|e| plain(&e))?;
        let mut out_batches = Vec::new();
        for (b, (batch, words)) in schedule.batches[i].iter().zip(&statics).enumerate() {
            let statics = words
                .iter()
                .enumerate()
                .map(|(g, w)| write(format!("statics/{d}-{b}-{g}.bin"), &le_bytes(w)))
                .collect::<Result<Vec<_>, _>>()?;
            let launches: Vec<_> = batch.launches.iter().map(|&k| {
                let l = &dl.launches[k];
                let p = &m.params[l.param];
                serde_json::json!({"fqn": p.fqn, "offset": l.region.offset, "shape": l.region.shape, "dtype": p.ty.dtype.name(), "tables": args.uses[k].iter().map(|&t| &tables[t]).collect::<Vec<_>>()})
            }).collect();
            out_batches.push(serde_json::json!({"program": programs[batch.executable], "statics": statics, "launches": launches}));
        }
        out_devices.push(serde_json::json!({"mesh_device": d, "batches": out_batches}));
    }
    let manifest = serde_json::json!({"seed": seed, "fuse": schedule.fuse, "devices": out_devices});
    write("manifest.json".into(), serde_json::to_string_pretty(&manifest).map_err(|e| plain(&e))?.as_bytes())?;
    staged.commit().map_err(|e| plain(&e))?;
    eprintln!(
        "wrote {} programs and {} executes for {} device(s) to {}",
        programs.len(),
        schedule.batches.iter().map(Vec::len).sum::<usize>(),
        schedule.plan.devices.len(),
        dir.display()
    );
    Ok(())
}

/// An existing `--shard-programs` directory may be replaced only if it is one (has a
/// manifest.json) or is empty.
fn shard_programs_contents(dir: &Path) -> Result<(), String> {
    let empty = std::fs::read_dir(dir).map_err(|e| e.to_string())?.next().is_none();
    if empty || dir.join("manifest.json").is_file() {
        return Ok(());
    }
    Err("exists and is not a --shard-programs export (no manifest.json); give a new directory".into())
}

/// Words as the little-endian bytes of a `u32` buffer (what PJRT uploads).
fn le_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
