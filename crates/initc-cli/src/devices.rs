//! `initc devices`: what PJRT plugin initc finds and what it offers.

use std::path::PathBuf;

use clap::Args;
use initc_pjrt::{Client, Plugin};

use crate::input::CliError;

#[derive(Args, Debug, Clone, Default)]
pub struct PluginArgs {
    /// PJRT plugin (.so): a path; a bare file name means ./NAME (the library search path is never
    /// used). Default: $INITC_PJRT_PLUGIN (the same), then JAX's plugins in the site-packages of
    /// $VIRTUAL_ENV and of the python3 on PATH (jax_plugins/xla_cuda*/xla_cuda_plugin.so,
    /// libtpu/libtpu.so); never ./.venv. Only with --backend pjrt.
    #[arg(long, value_name = "PATH")]
    pub plugin: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DevicesArgs {
    #[command(flatten)]
    pub plugin: PluginArgs,
}

/// Finds, loads and opens the plugin; says where it looked when there is none.
pub fn open(args: &PluginArgs) -> Result<Client, CliError> {
    let found = initc_pjrt::discover(args.plugin.as_deref());
    let Some((path, _)) = &found.found else { return Err(CliError::Plain(found.not_found_message())) };
    let plugin = Plugin::load(path).map_err(|e| CliError::Plain(e.to_string()))?;
    Client::new(plugin).map_err(|e| CliError::Plain(format!("creating a PJRT client on {}: {e}", path.display())))
}

pub fn run(args: &DevicesArgs) -> Result<(), CliError> {
    let found = initc_pjrt::discover(args.plugin.plugin.as_deref());
    let client = open(&args.plugin)?;
    let err = |e: initc_pjrt::PjrtError| CliError::Plain(e.to_string());
    if let Some((path, src)) = &found.found {
        println!("plugin     {} ({src:?})", path.display());
    }
    let (major, minor) = client.plugin_version();
    println!("pjrt api   {major}.{minor} (initc binding: 0.{}, accepts 0.{}+)", initc_pjrt::HEADER_MINOR, initc_pjrt::SUPPORTED_MINOR_MIN);
    println!("platform   {} {}", client.platform_name().map_err(err)?, client.platform_version().map_err(err)?);
    for (k, v) in client.plugin_attributes().map_err(err)? {
        println!("attribute  {k} = {v}");
    }
    for d in client.devices() {
        let mem = client.memory_stats(d).ok();
        let limit = mem.and_then(|m| m.bytes_limit).map_or("?".to_string(), |b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64));
        let used = mem.map_or("?".to_string(), |m| format!("{:.1} MiB", m.bytes_in_use as f64 / (1u64 << 20) as f64));
        println!("device {:<3} {} (local id {}), memory limit {limit}, in use {used}", d.id, d.kind, d.local_hardware_id);
    }
    Ok(())
}
