//! A persistent cache of compiled executables, opt-in: with `INITC_COMPILE_CACHE=DIR`, each
//! compile first looks for `DIR/<key>.pjrt`, a `PJRT_Executable_Serialize` of the same program
//! compiled by the same plugin, and loads it (`PJRT_Executable_DeserializeAndLoad`) instead of
//! running XLA; a miss compiles and stores the serialization (written to a temporary file and
//! renamed, so a reader never sees half a file). The key is the SHA-256 of the program bytes,
//! the encoded compile options, and a salt naming the plugin (path, size, modification time),
//! its platform and platform version, and initc's version: a serialization is only valid for the
//! platform and library version that wrote it. The cache is best effort: an unreadable,
//! unwritable or rejected entry means a compile, never an error.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Client, CompileOptions, Executable, PjrtError};

/// The environment variable naming the cache directory.
pub const CACHE_ENV: &str = "INITC_COMPILE_CACHE";

/// Where compiled executables are kept, and what makes an entry valid.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: PathBuf,
    salt: String,
}

/// How a [`CompileCache::compile`] was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// Loaded from the cache.
    Hit,
    /// Compiled (and stored, if the directory was writable).
    Compiled,
}

impl CompileCache {
    /// The cache `INITC_COMPILE_CACHE` names for `client`'s plugin, if the variable is set.
    pub fn from_env(client: &Client) -> Option<CompileCache> {
        let dir = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty())?;
        Some(CompileCache::new(PathBuf::from(dir), client))
    }

    /// A cache in `dir` for executables of `client`'s plugin.
    pub fn new(dir: PathBuf, client: &Client) -> CompileCache {
        let path = client.plugin_path();
        let meta = std::fs::metadata(&path).ok();
        let (size, mtime) = meta.map_or((0, 0), |m| {
            (m.len(), m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos()))
        });
        let salt = format!(
            "initc {}|plugin {} {size} {mtime}|{} {}",
            env!("CARGO_PKG_VERSION"),
            path.display(),
            client.platform_name().unwrap_or_default(),
            client.platform_version().unwrap_or_default()
        );
        CompileCache::with_salt(dir, salt)
    }

    fn with_salt(dir: PathBuf, salt: String) -> CompileCache {
        CompileCache { dir, salt }
    }

    /// The entry's file name for `program` compiled with `options`.
    pub fn key(&self, program: &[u8], options: &CompileOptions) -> String {
        let mut h = Sha256::new();
        for part in [self.salt.as_bytes(), &options.encode(), program] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.pjrt"))
    }

    /// `client.compile(program, options)`, or the cached executable of an earlier one.
    pub fn compile(&self, client: &Client, program: &[u8], options: &CompileOptions) -> Result<(Executable, Served), PjrtError> {
        let key = self.key(program, options);
        let path = self.entry(&key);
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(exe) = client.deserialize(&bytes)
        {
            return Ok((exe, Served::Hit));
        }
        let exe = client.compile(program, options)?;
        if let Ok(bytes) = exe.serialize()
            && !bytes.is_empty()
        {
            let _ = write_atomically(&self.dir, &path, &bytes);
        }
        Ok((exe, Served::Compiled))
    }
}

/// Writes `bytes` to `path` through a temporary file in `dir` and a rename.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_depends_on_program_options_and_plugin() {
        let c = CompileCache::with_salt("/tmp".into(), "plugin a".into());
        let o = CompileOptions::default();
        let k = c.key(b"module {}", &o);
        assert_eq!(k.len(), 64);
        assert_eq!(k, c.key(b"module {}", &o), "deterministic");
        assert_ne!(k, c.key(b"module { }", &o), "program");
        assert_ne!(k, CompileCache::with_salt("/tmp".into(), "plugin b".into()).key(b"module {}", &o), "plugin");
        // length-prefixed parts: moving bytes between salt and program changes the key
        assert_ne!(
            CompileCache::with_salt("/tmp".into(), "ab".into()).key(b"c", &o),
            CompileCache::with_salt("/tmp".into(), "a".into()).key(b"bc", &o)
        );
    }

    #[test]
    fn entries_are_written_whole_and_leave_no_temporary() {
        let dir = std::env::temp_dir().join(format!("initc-cache-test-{}", std::process::id()));
        let path = dir.join("k.pjrt");
        write_atomically(&dir, &path, b"serialized").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"serialized");
        write_atomically(&dir, &path, b"again").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"again");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 1, "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
