//! `initc lower`: emit the init program as StableHLO (text or MLIR bytecode).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use initc_stablehlo::{Options, Partitioner};

use crate::input::{load_sharded, write_output, CliError, ShardArgs};

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
}

pub fn run(args: &LowerArgs) -> Result<(), CliError> {
    let m = load_sharded(&args.input, &args.shard)?;
    let partitioner = match args.partitioner {
        PartitionerArg::Shardy => Partitioner::Shardy,
        PartitionerArg::Gspmd => Partitioner::Gspmd,
    };
    let lowered = initc_stablehlo::lower(&m, &Options { partitioner }).map_err(|e| CliError::Plain(format!("{e}{}", e.hint().map(|h| format!("\n  hint: {h}")).unwrap_or_default())))?;
    let bytecode = args.bytecode || args.output.as_ref().is_some_and(|p| p.extension().is_some_and(|e| e == "mlirbc"));
    let bytes = if bytecode { lowered.bytecode() } else { lowered.text().map(String::into_bytes) }.map_err(|e| CliError::Plain(e.to_string()))?;
    write_output(args.output.as_deref(), &bytes)
}
