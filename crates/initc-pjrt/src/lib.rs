//! initc's binding of the PJRT C API: load a plugin (`GetPjrtApi`), create a client, compile
//! StableHLO, upload small host arrays, execute, read buffers back, query device memory.
//!
//! API boundary: [`Plugin::load`] → [`Client`] → [`Executable`] / [`Buffer`]. Every call goes
//! through the plugin's function table with argument structs sized to API 0.117 (`sys`);
//! every failure is a [`PjrtError`] carrying PJRT's error code and message, or a load/version
//! error naming the plugin. Handles free themselves on drop and keep what they need alive
//! (`Arc`), so a buffer may outlive the `Client` value it came from.
//! Plugins are found by [`discover`]. Compile options are XLA's `CompileOptionsProto`
//! ([`CompileOptions`]), serialized with prost from `proto/xla_compile_options.proto`.

mod cache;
mod client;
mod create;
mod discover;
mod error;
mod options;
mod plugin;
mod sys;

pub use cache::{CACHE_ENV, CompileCache, Served};
pub use client::{Buffer, Client, Device, ElementType, Executable, ExternalRef, MemoryStats, Upload};
pub use create::ClientOptions;
pub use discover::{Discovery, ENV_VAR, PluginSource, discover};
pub use error::{ErrorCode, PjrtError};
pub use options::CompileOptions;
pub use plugin::{HEADER_MINOR, Plugin, SUPPORTED_MAJOR, SUPPORTED_MINOR_MIN};
