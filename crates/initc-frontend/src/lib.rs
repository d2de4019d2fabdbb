//! initc's frontends: the [`Tracer`] API that JAX/torchax-like frontends call while they run a
//! model constructor, the initializer library ([`Init`]), and model.toml ([`trace_toml`]).
//!
//! API boundary: everything here produces a verified [`initc_ir::Module`]. Errors are values
//! ([`TraceError`], [`ConfigError`] with file spans); nothing here prints or exits.
//!
//! Key derivation (the value contract): a parameter's key is
//! `fold_in(PRNGKey(seed), u32_be(SHA-256(fqn)[0..4]))` ([`fqn_fold_data`]), so its values do
//! not depend on other parameters, their order, or the sharding.

mod ctx;
mod error;
mod init;
mod initspec;
mod key;
mod model;
mod modules;
mod pattern;
mod presets;
mod schema;
mod sharding;
mod tracer;

pub use error::{ConfigError, ConfigErrorKind};
pub use init::{Distribution, FanMode, Init, Nonlinearity, flax_fans, torch_fans};
pub use initspec::kind_names as init_kinds;
pub use key::fqn_fold_data;
pub use model::{Traced, trace_toml};
pub use modules::MODULE_TYPES;
pub use pattern::{expand_ranges, glob_match};
pub use presets::{PRESETS, llama3_ffn_dim};
pub use sharding::{ShardFailure, ShardSpec, builtin, hint as shard_hint};
pub use tracer::{Tensor, TraceError, Tracer};
