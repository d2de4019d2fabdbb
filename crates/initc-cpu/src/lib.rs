//! The CPU engine: initc's default backend and reference semantics, bit-exact with XLA:CPU.
//!
//! API boundary: [`Evaluator`] computes any node at any set of flat indices; [`materialize`]
//! streams any rectangular [`Region`] of a parameter (what a device shard is) with bounded
//! memory and rayon parallelism; [`write_checkpoint`] writes safetensors + manifest (whole
//! model or one device's shards) and publishes it in one step ([`publish::Staged`]); [`verify_shardings`] checks sharding-invariance.
//! Inputs must be verified modules ([`initc_ir::verify`]). Nothing here prints.

mod buf;
mod checkpoint;
mod elementwise;
mod eval;
pub mod fault;
pub mod publish;
mod region;
mod verify;

pub use buf::Buf;
pub use checkpoint::{
    CheckpointError, DeviceSet, Fill, WriteOptions, Written, WrittenParam, checkpoint_contents, device_set_contents, hex, manifest_json,
    write_checkpoint, write_checkpoint_from,
};
pub use elementwise::{binary, unary};
pub use eval::{Evaluator, Idx, strides};
pub use region::{CHUNK, Region, materialize};
pub use verify::{MeshOutcome, Mismatch, VerifyError, VerifyOutcome, verify_shardings};
