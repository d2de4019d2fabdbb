//! Finding a PJRT plugin: an explicit path, then `INITC_PJRT_PLUGIN`, then the plugins JAX
//! installs into Python site-packages (`jax_plugins/xla_cuda*/xla_cuda_plugin.so`,
//! `libtpu/libtpu.so`). Nothing is looked up relative to the current directory unless the user
//! names it: loading a library runs its code, and a checkout may be untrusted.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable naming a plugin.
pub const ENV_VAR: &str = "INITC_PJRT_PLUGIN";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginSource {
    /// `--plugin PATH`.
    Flag,
    /// `INITC_PJRT_PLUGIN`.
    Env,
    /// Found in a Python site-packages directory.
    SitePackages(PathBuf),
}

/// The outcome of a search: the plugin found (if any) and every place looked at, in order.
#[derive(Clone, Debug)]
pub struct Discovery {
    pub found: Option<(PathBuf, PluginSource)>,
    pub looked: Vec<String>,
}

impl Discovery {
    /// A message for the user when nothing was found: where initc looked and how to install a
    /// plugin.
    pub fn not_found_message(&self) -> String {
        let mut s = String::from("no PJRT plugin found. Looked at:\n");
        for l in &self.looked {
            s.push_str("  - ");
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("Install one (a GPU plugin: `pip install \"jax[cuda13]\"`, which brings jax_plugins/xla_cuda13/xla_cuda_plugin.so; a TPU plugin: `pip install libtpu`), or name it with --plugin PATH or INITC_PJRT_PLUGIN=PATH.");
        s
    }
}

/// Searches in order: `flag`, `INITC_PJRT_PLUGIN`, site-packages. An explicit path (flag or
/// variable) is taken as given even if it does not exist, so loading it reports the error; a
/// bare file name means `./name` ([`crate::plugin::explicit_path`]), never the loader's search path.
pub fn discover(flag: Option<&Path>) -> Discovery {
    let env = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()).map(PathBuf::from);
    discover_in(flag, env.as_deref(), &site_packages())
}

fn discover_in(flag: Option<&Path>, env: Option<&Path>, sites: &[PathBuf]) -> Discovery {
    let mut looked = Vec::new();
    if let Some(p) = flag {
        return Discovery { found: Some((crate::plugin::explicit_path(p), PluginSource::Flag)), looked };
    }
    looked.push("--plugin (not given)".to_string());
    if let Some(p) = env {
        return Discovery { found: Some((crate::plugin::explicit_path(p), PluginSource::Env)), looked };
    }
    looked.push(format!("{ENV_VAR} (not set)"));
    for site in sites {
        looked.push(format!("{}/jax_plugins/xla_cuda*/xla_cuda_plugin.so, {}/libtpu/libtpu.so", site.display(), site.display()));
        if let Some(p) = plugin_in(site) {
            return Discovery { found: Some((p, PluginSource::SitePackages(site.clone()))), looked };
        }
    }
    if sites.is_empty() {
        looked.push("Python site-packages (none found: no python3 on PATH, no virtualenv)".into());
    }
    if let Some(p) = venv_sites(Path::new("./.venv")).iter().find_map(|s| plugin_in(s)) {
        // Named, not loaded: a library in the current directory runs its code when loaded.
        looked.push(format!("./.venv is not searched (a checkout may be untrusted), but holds {}: pass --plugin {} or activate the virtualenv (VIRTUAL_ENV)", p.display(), p.display()));
    }
    Discovery { found: None, looked }
}

/// `ROOT/lib/python3*/site-packages` of a virtualenv.
fn venv_sites(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
        .collect()
}

/// The newest CUDA plugin in `site` (xla_cuda13 before xla_cuda12), else libtpu.
fn plugin_in(site: &Path) -> Option<PathBuf> {
    let mut cuda: Vec<PathBuf> = std::fs::read_dir(site.join("jax_plugins"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("xla_cuda"))
        .map(|e| e.path().join("xla_cuda_plugin.so"))
        .filter(|p| p.is_file())
        .collect();
    cuda.sort();
    if let Some(p) = cuda.pop() {
        return Some(p);
    }
    let tpu = site.join("libtpu").join("libtpu.so");
    tpu.is_file().then_some(tpu)
}

/// Site-packages directories: the active virtualenv's (`VIRTUAL_ENV`, an absolute path), and
/// those the `python3` on PATH reports, asked in isolated mode (`-I`: neither the current
/// directory nor `PYTHON*` variables on its path) from `/` (deduplicated, absolute, existing).
/// A `./.venv` is not searched: `initc devices` in an untrusted checkout would run its code.
fn site_packages() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(v) = std::env::var_os("VIRTUAL_ENV").map(PathBuf::from).filter(|v| v.is_absolute()) {
        dirs.extend(venv_sites(&v));
    }
    let ask = "import site; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))";
    if let Ok(out) = Command::new("python3").args(["-I", "-c", ask]).current_dir("/").output()
        && out.status.success()
    {
        dirs.extend(String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(PathBuf::from));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| d.is_absolute() && d.is_dir() && seen.insert(d.canonicalize().unwrap_or(d.clone())));
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_variable() {
        let d = discover_in(Some(Path::new("/a.so")), Some(Path::new("/b.so")), &[]);
        assert_eq!(d.found, Some((PathBuf::from("/a.so"), PluginSource::Flag)));
        let d = discover_in(None, Some(Path::new("/b.so")), &[]);
        assert_eq!(d.found, Some((PathBuf::from("/b.so"), PluginSource::Env)));
        // A bare name is a file in the current directory, not a library search.
        let d = discover_in(Some(Path::new("libz.so.1")), None, &[]);
        assert_eq!(d.found, Some((PathBuf::from("./libz.so.1"), PluginSource::Flag)));
        let d = discover_in(None, Some(Path::new("p.so")), &[]);
        assert_eq!(d.found, Some((PathBuf::from("./p.so"), PluginSource::Env)));
    }

    #[test]
    fn site_packages_prefers_the_newest_cuda_plugin_then_libtpu() {
        let t = tempfile::tempdir().unwrap();
        let site = t.path().to_path_buf();
        let d = discover_in(None, None, std::slice::from_ref(&site));
        assert!(d.found.is_none());
        let msg = d.not_found_message();
        assert!(
            msg.contains("--plugin") && msg.contains(ENV_VAR) && msg.contains(&site.display().to_string()) && msg.contains("pip install"),
            "{msg}"
        );

        std::fs::create_dir_all(site.join("libtpu")).unwrap();
        std::fs::write(site.join("libtpu/libtpu.so"), b"").unwrap();
        assert_eq!(discover_in(None, None, std::slice::from_ref(&site)).found.unwrap().0, site.join("libtpu/libtpu.so"));
        for v in ["xla_cuda12", "xla_cuda13"] {
            std::fs::create_dir_all(site.join("jax_plugins").join(v)).unwrap();
            std::fs::write(site.join("jax_plugins").join(v).join("xla_cuda_plugin.so"), b"").unwrap();
        }
        let (p, src) = discover_in(None, None, std::slice::from_ref(&site)).found.unwrap();
        assert_eq!(p, site.join("jax_plugins/xla_cuda13/xla_cuda_plugin.so"));
        assert_eq!(src, PluginSource::SitePackages(site));
    }
}
