//! Streams a module's parameters into safetensors files (one, or HF-style shards with an
//! index), plus `manifest.json` with each parameter's SHA-256. Files are written under
//! temporary names and renamed only when all are complete, manifest last: an interrupted run
//! leaves nothing that looks like a finished checkpoint.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use initc_ir::{Module, Param};
use sha2::{Digest, Sha256};

use crate::eval::Evaluator;
use crate::region::{materialize, Region};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("output directory {}: {reason}", path.display())]
    Dir { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}

/// What was written, per parameter in model order.
#[derive(Debug, Clone)]
pub struct WrittenParam {
    pub fqn: String,
    pub file: String,
    pub sha256: [u8; 32],
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Written {
    pub params: Vec<WrittenParam>,
    pub files: Vec<String>,
    /// SHA-256 over the concatenated per-parameter digests (raw bytes, model order).
    pub digest: [u8; 32],
    pub total_bytes: u64,
}

pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn param_bytes(p: &Param) -> u64 {
    p.ty.numel().unwrap_or(0) * p.ty.dtype.size_bytes()
}

/// Groups parameters (in order) into files of at most `max` bytes (a larger tensor gets its own).
fn plan_files(params: &[Param], max: Option<u64>) -> Vec<Vec<usize>> {
    let Some(max) = max else { return vec![(0..params.len()).collect()] };
    let mut files: Vec<Vec<usize>> = vec![];
    let mut size = 0;
    for (i, p) in params.iter().enumerate() {
        let b = param_bytes(p);
        if files.is_empty() || (size + b > max && size > 0) {
            files.push(vec![]);
            size = 0;
        }
        if let Some(f) = files.last_mut() {
            f.push(i);
        }
        size += b;
    }
    files
}

fn header(m: &Module, seed: u64, members: &[usize]) -> Vec<u8> {
    let mut h = format!("{{\"__metadata__\":{{\"format\":\"pt\",\"producer\":\"initc\",\"seed\":\"{seed}\"}}");
    let mut off = 0u64;
    for &i in members {
        let p = &m.params[i];
        let b = param_bytes(p);
        let shape: Vec<String> = p.ty.shape.iter().map(u64::to_string).collect();
        h += &format!(",{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{off},{}]}}", serde_json::Value::from(p.fqn.as_str()), p.ty.dtype.safetensors_name(), shape.join(","), off + b);
        off += b;
    }
    h.push('}');
    while h.len() % 8 != 0 {
        h.push(' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out
}

/// Writes the checkpoint of `m` for `seed` into `dir`. `progress(bytes)` is called as data is
/// written.
pub fn write_checkpoint(m: &Module, seed: u64, dir: &Path, max_shard_bytes: Option<u64>, progress: &(dyn Fn(u64) + Sync)) -> Result<Written, CheckpointError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if !dir.is_dir() {
        return Err(CheckpointError::Dir { path: dir.into(), reason: "is not a directory".into() });
    }
    let ev = Evaluator::new(m, seed);
    let groups = plan_files(&m.params, max_shard_bytes);
    let n = groups.len();
    let names: Vec<String> = if n == 1 { vec!["model.safetensors".into()] } else { (1..=n).map(|k| format!("model-{k:05}-of-{n:05}.safetensors")).collect() };
    let mut written: Vec<Option<WrittenParam>> = vec![None; m.params.len()];
    let mut temps = Vec::new();
    for (members, name) in groups.iter().zip(&names) {
        let path = dir.join(name);
        let tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".partial").tempfile_in(dir).map_err(io(&path))?;
        let mut w = BufWriter::with_capacity(1 << 22, tmp.as_file());
        w.write_all(&header(m, seed, members)).map_err(io(&path))?;
        for &i in members {
            let p = &m.params[i];
            let mut h = Sha256::new();
            materialize(&ev, p.value, &p.ty.shape, &Region::full(&p.ty.shape), |b: &[u8]| {
                h.update(b);
                progress(b.len() as u64);
                w.write_all(b)
            })
            .map_err(io(&path))?;
            written[i] = Some(WrittenParam { fqn: p.fqn.clone(), file: name.clone(), sha256: h.finalize().into(), bytes: param_bytes(p) });
        }
        w.flush().map_err(io(&path))?;
        drop(w);
        tmp.as_file().sync_all().map_err(io(&path))?;
        readable(tmp.as_file()).map_err(io(&path))?;
        temps.push((tmp, path));
    }
    let params: Vec<WrittenParam> = written.into_iter().flatten().collect();
    let mut all = Sha256::new();
    for p in &params {
        all.update(p.sha256);
    }
    let out = Written { digest: all.finalize().into(), total_bytes: params.iter().map(|p| p.bytes).sum(), params, files: names.clone() };
    for (tmp, path) in temps {
        tmp.persist(&path).map_err(|e| CheckpointError::Io { path: path.clone(), source: e.error })?;
    }
    if n > 1 {
        let map: serde_json::Map<String, serde_json::Value> = out.params.iter().map(|p| (p.fqn.clone(), p.file.clone().into())).collect();
        let index = serde_json::json!({"metadata": {"total_size": out.total_bytes}, "weight_map": map});
        write_atomic(&dir.join("model.safetensors.index.json"), &pretty(&index))?;
    }
    write_atomic(&dir.join("manifest.json"), &pretty(&manifest_json(m, seed, &out)))?;
    Ok(out)
}

fn pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s.into_bytes()
}

/// `manifest.json`: shapes, dtypes, SHA-256 of each parameter's raw little-endian bytes, and the
/// digest over them (the value `initc verify` prints for every mesh).
pub fn manifest_json(m: &Module, seed: u64, w: &Written) -> serde_json::Value {
    let params: Vec<serde_json::Value> = m
        .params
        .iter()
        .zip(&w.params)
        .map(|(p, wp)| serde_json::json!({"fqn": p.fqn, "shape": p.ty.shape, "dtype": p.ty.dtype.name(), "init": p.init, "file": wp.file, "bytes": wp.bytes, "sha256": hex(&wp.sha256)}))
        .collect();
    serde_json::json!({"name": m.name, "seed": seed, "files": w.files, "total_bytes": w.total_bytes, "digest": hex(&w.digest), "params": params})
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(path))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    readable(tmp.as_file()).map_err(io(path))?;
    tmp.persist(path).map_err(|e| CheckpointError::Io { path: path.into(), source: e.error })?;
    Ok(())
}


/// Temp files are created 0600; a finished checkpoint is an ordinary 0644 file.
fn readable(f: &std::fs::File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = f;
    Ok(())
}
