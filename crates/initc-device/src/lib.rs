//! Materializing an initc module on accelerators through PJRT.
//!
//! API boundary: [`Materializer::new`] (plan + compile for some mesh devices on a
//! [`initc_pjrt::Client`]) → [`Materializer::run`] (one seed → [`Materialized`]: each device's
//! [`Shard`]s as PJRT buffers on that device, with FQN, global offset and local shape, for a
//! frontend to adopt without a host round trip) → [`verify`] against the CPU engine.
//!
//! Design: instead of one SPMD program for the whole model (whose XLA compile time grows with
//! the number of layers: about 0.85 s per Llama-8B layer on XLA:CPU, see the compile-cost curve
//! in the README), every parameter shard runs a small single-device program
//! ([`initc_stablehlo::shard_program`], printed from its [`initc_stablehlo::ShardProg`]) that takes the shard's counter offsets, keys and
//! scalars as a runtime word vector. Identical layers share executables, mesh devices are
//! planned independently (init needs no communication, so no collective can appear), and one
//! device of a 256-device mesh can be materialized alone.

mod fused;
mod pack;
mod plan;
mod runtime;
mod schedule;
mod verify;

pub use fused::{Fused, RegionRun, concatenated, materialize_regions, split_fused};
pub use pack::{ChainOp, TableSpec, pack_static, table_specs};
pub use plan::{Batch, DeviceLaunches, DevicePlan, FUSE, Launch, Program, region_of};
pub use runtime::{DEFAULT_THREADS, DeviceShards, ExecuteSpan, MAX_BATCH, Materialized, Materializer, Shard, assign, element_type};
pub use schedule::{Schedule, TableArgs};
pub use verify::{F32_SCALE_TOLERANCE, F32_ULPS, ShardCheck, compare_bytes, to_host, verify};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Pjrt(#[from] initc_pjrt::PjrtError),
    #[error(transparent)]
    Lower(#[from] initc_stablehlo::LowerError),
    #[error("compiling shard program `{program}`: {source}")]
    Compile { program: String, source: initc_pjrt::PjrtError },
    #[error("mesh {mesh} needs {needed} devices but the plugin has {available}")]
    TooFewDevices { needed: u64, available: usize, mesh: String },
    #[error("mesh device {device} does not exist (the mesh has {devices})")]
    NoSuchMeshDevice { device: u64, devices: u64 },
    #[error("parameter `{fqn}` {global:?}: the region at offset {offset:?} of shape {shape:?} is not inside it")]
    BadRegion { fqn: String, offset: Vec<u64>, shape: Vec<u64>, global: Vec<u64> },
    #[error("PJRT device index {index} does not exist (the plugin has {available})")]
    NoSuchDevice { index: usize, available: usize },
    #[error("parameter `{fqn}`: its launch has no {what} for its program's slots")]
    LaunchData { fqn: String, what: String },
    #[error("the table of a {draw:?} draw: its chain of bf16 ops did not compute bf16 values")]
    TableChain { draw: initc_stablehlo::TableDraw },
    #[error("internal error: {0}")]
    Internal(String),
}

impl DeviceError {
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            DeviceError::TooFewDevices { .. } => {
                Some("use a smaller mesh, or `--device K` to materialize one mesh device's shards on one accelerator")
            }
            _ => None,
        }
    }
}
