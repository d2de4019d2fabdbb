//! The StableHLO emitter: a verified initc module (with or without shardings) → a StableHLO
//! module, as text or MLIR bytecode.
//!
//! API boundary: [`lower`] → [`Lowered`]. `@main(%key: tensor<2xui32>)` takes the key data of
//! `jax.random.PRNGKey(seed)` (`[hi32, lo32]`) and returns one result per parameter in model
//! order at its global shape, annotated with its sharding (Shardy by default, GSPMD on
//! request), so one compiled executable serves every seed and each device computes only its
//! shard. Random ops are lowered as JAX lowers them (docs/RNG_SPEC.md §8), so XLA makes the same
//! rewrites it makes for `jax.jit` and the bits equal JAX's.
//!
//! The text is assembled here and parsed, verified and printed by MLIR through melior
//! (`mlir.rs`); melior has no StableHLO dialect, so its ops stay in generic form.
//!
//! Second boundary: [`sp`], the shard-program IR. [`Lowerer::lower`] (or [`shard_program`]) →
//! [`ShardProgram`]: a verified [`ShardProg`] (what runs on one device for one parameter shard,
//! equal for parameters that share an executable) and its [`LaunchData`] (the values behind its
//! static-word slots); [`ShardProg::print`] and [`Batched::print`] are its only text.

mod assemble;
mod emit;
#[cfg(feature = "mlir")]
mod mlir;
mod rng;
mod shardings;
pub mod sp;
mod text;

pub use assemble::{Assembly, assembly_program};
pub use shardings::gspmd;
pub use sp::{
    Batched, ChainStep, Concat, HostValue, LaunchData, Lowerer, Piece, ShardProg, ShardProgram, Slot, TableDef, TableDraw, batch_groups,
    concat_parts, shard_program, table_chain,
};

/// Which partitioner's annotations to emit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Partitioner {
    /// `sdy.mesh` + `#sdy.sharding` (XLA's default partitioner).
    #[default]
    Shardy,
    /// `mhlo.sharding` strings (the GSPMD partitioner).
    Gspmd,
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub partitioner: Partitioner,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LowerError {
    #[error("MLIR rejected the emitted module: {0}")]
    Mlir(String),
    #[error(
        "parameter `{fqn}`: dim {dim} (size {size}) is split into {parts} padded pieces, which Shardy cannot express: XLA's Shardy partitioner splits it over a sub-axis instead of padding (measured with jaxlib 0.10.2), so devices would disagree with initc's geometry"
    )]
    UnevenShardy { fqn: String, dim: usize, size: u64, parts: u64 },
    #[error("not supported by the StableHLO emitter yet: {0}")]
    Unsupported(String),
    #[error("parameter `{fqn}`: the lowered shard program is malformed: {err}")]
    Verify { fqn: String, err: sp::VerifyError },
    #[error("internal emitter error: {0}")]
    Internal(String),
}

impl LowerError {
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            LowerError::UnevenShardy { .. } => Some(
                "emit GSPMD annotations (--partitioner gspmd), which XLA pads as initc does, or choose axis sizes that divide the dimension",
            ),
            _ => None,
        }
    }
}

#[cfg(feature = "mlir")]
/// Parses and verifies MLIR text (e.g. a [`ShardProgram`]'s) with MLIR.
pub fn check_text(text: &str) -> Result<(), LowerError> {
    mlir::print(text).map(|_| ())
}

/// An emitted module.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// The module as assembled (before MLIR re-prints it).
    raw: String,
}

impl Lowered {
    #[cfg(feature = "mlir")]
    /// MLIR's printing, with `loc(...)` carrying parameter FQNs.
    pub fn text(&self) -> Result<String, LowerError> {
        mlir::print(&self.raw)
    }

    #[cfg(feature = "mlir")]
    /// MLIR bytecode (`.mlirbc`).
    pub fn bytecode(&self) -> Result<Vec<u8>, LowerError> {
        mlir::bytecode(&self.raw)
    }

    /// The assembled text, unverified (for debugging the emitter).
    pub fn raw(&self) -> &str {
        &self.raw
    }
}

/// Lowers a verified module.
pub fn lower(m: &initc_ir::Module, opts: &Options) -> Result<Lowered, LowerError> {
    if let (Some(mesh), Partitioner::Shardy) = (&m.mesh, opts.partitioner) {
        // The verifier's own divisibility check, as if padding were not allowed.
        let strict = initc_ir::Mesh { uneven: initc_ir::Uneven::Error, ..mesh.clone() };
        for p in &m.params {
            let Some(s) = &p.sharding else { continue };
            if let Err(initc_ir::ShardingError::Indivisible { dim, size, parts, .. }) = s.check(&strict, &p.ty) {
                return Err(LowerError::UnevenShardy { fqn: p.fqn.clone(), dim, size, parts });
            }
        }
    }
    Ok(Lowered { raw: emit::emit(m, opts)? })
}
