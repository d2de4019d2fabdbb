//! Streams a module's parameters into safetensors files (one, or HF-style shards with an
//! index), plus `manifest.json` with each parameter's SHA-256. The files are written into a
//! staging directory that replaces the output directory in one step ([`crate::publish`]): a
//! reader finds the old checkpoint or the new one, whole, whenever the run stops.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use initc_ir::{Module, Param};
use sha2::{Digest, Sha256};

use crate::eval::Evaluator;
use crate::fault::{self, Faulty};
use crate::publish::{PublishError, Staged};
use crate::region::{Region, materialize};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(
        "{file}: the safetensors header of {tensors} tensors would be {bytes} bytes, above the {MAX_HEADER_BYTES} readers accept (Python safetensors: \"header too large\"); split the checkpoint with --max-shard-size"
    )]
    HeaderTooLarge { file: String, tensors: usize, bytes: u64 },
    #[error("a device's shards need a sharded module (give a mesh: [mesh] or --mesh)")]
    NoMesh,
    #[error("device {device} does not exist: mesh {mesh} has devices 0..{devices}")]
    Device { device: u64, devices: u64, mesh: String },
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
    /// The region written: global offset and local shape (the whole tensor unless a device's).
    pub offset: Vec<u64>,
    pub shape: Vec<u64>,
}

#[derive(Debug, Clone)]
pub struct Written {
    pub params: Vec<WrittenParam>,
    pub files: Vec<String>,
    /// SHA-256 over the concatenated per-tensor digests (raw bytes, model order): the model
    /// digest for a whole checkpoint, the shard digest for one device's.
    pub digest: [u8; 32],
    pub total_bytes: u64,
    pub device: Option<u64>,
}

pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// What to write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Split into HF-style files of at most this many bytes (a larger tensor gets its own).
    pub max_shard_bytes: Option<u64>,
    /// Write only this device's shards of a sharded module (each tensor's global offset goes
    /// into the safetensors metadata and the manifest).
    pub device: Option<u64>,
}

/// One tensor of the checkpoint: a parameter's region (all of it, or one device's shard).
struct Item<'m> {
    param: &'m Param,
    region: Region,
}

impl Item<'_> {
    fn bytes(&self) -> u64 {
        self.region.numel() * self.param.ty.dtype.size_bytes()
    }
}

fn items<'m>(m: &'m Module, device: Option<u64>) -> Result<Vec<Item<'m>>, CheckpointError> {
    let Some(device) = device else {
        return Ok(m.params.iter().map(|p| Item { param: p, region: Region::full(&p.ty.shape) }).collect());
    };
    let Some(mesh) = &m.mesh else { return Err(CheckpointError::NoMesh) };
    if device >= mesh.devices() {
        return Err(CheckpointError::Device { device, devices: mesh.devices(), mesh: mesh.to_string() });
    }
    Ok(m.params
        .iter()
        .map(|p| {
            let s = p.sharding.clone().unwrap_or_else(|| initc_ir::Sharding::replicated(p.ty.rank()));
            Item { param: p, region: initc_shard::device_region(mesh, &s, &p.ty.shape, device) }
        })
        .collect())
}

/// Groups items (in order) into files of at most `max` bytes (a larger tensor gets its own).
fn plan_files(items: &[Item], max: Option<u64>) -> Vec<Vec<usize>> {
    let Some(max) = max else { return vec![(0..items.len()).collect()] };
    let mut files: Vec<Vec<usize>> = vec![];
    let mut size = 0;
    for (i, it) in items.iter().enumerate() {
        let b = it.bytes();
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

fn list(xs: &[u64]) -> String {
    xs.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// The largest safetensors header readers accept (the `safetensors` crate's and Python
/// package's `MAX_HEADER_SIZE`).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

fn header(m: &Module, seed: u64, device: Option<u64>, items: &[Item], members: &[usize], file: &str) -> Result<Vec<u8>, CheckpointError> {
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), "pt".into());
    meta.insert("producer".into(), "initc".into());
    meta.insert("seed".into(), seed.to_string().into());
    if let (Some(d), Some(mesh)) = (device, &m.mesh) {
        meta.insert("initc.mesh".into(), mesh.to_string().into());
        meta.insert("initc.device".into(), d.to_string().into());
        meta.insert("initc.coords".into(), list(&mesh.coords(d)).into());
        for &i in members {
            let it = &items[i];
            let v = format!("offset=[{}] global_shape=[{}]", list(&it.region.offset), list(&it.param.ty.shape));
            meta.insert(format!("initc.shard.{}", it.param.fqn), v.into());
        }
    }
    let mut h = format!("{{\"__metadata__\":{}", serde_json::Value::Object(meta));
    let mut off = 0u64;
    for &i in members {
        let it = &items[i];
        let b = it.bytes();
        h += &format!(
            ",{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{off},{}]}}",
            serde_json::Value::from(it.param.fqn.as_str()),
            it.param.ty.dtype.safetensors_name(),
            list(&it.region.shape),
            off + b
        );
        off += b;
    }
    h.push('}');
    while h.len() % 8 != 0 {
        h.push(' ');
    }
    if h.len() as u64 > MAX_HEADER_BYTES {
        return Err(CheckpointError::HeaderTooLarge { file: file.into(), tensors: members.len(), bytes: h.len() as u64 });
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    Ok(out)
}

/// Writes the checkpoint of `m` for `seed` into `dir` (the whole model, or one device's
/// shards). `progress(bytes)` is called as data is written.
pub fn write_checkpoint(
    m: &Module,
    seed: u64,
    dir: &Path,
    opts: &WriteOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Written, CheckpointError> {
    let ev = Evaluator::new(m, seed);
    write_checkpoint_from(
        m,
        seed,
        dir,
        opts,
        progress,
        &|p: &Param, region: &Region, sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>| {
            materialize(&ev, p.value, &p.ty.shape, region, sink)
        },
    )
}

/// Where a checkpoint's bytes come from: `fill(param, region, sink)` passes the region's
/// row-major little-endian bytes to `sink`, in order (in pieces of any size).
pub type Fill<'a> = dyn Fn(&Param, &Region, &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> + 'a;

/// [`write_checkpoint`] with the data from `fill` (e.g. buffers copied back from a device)
/// instead of the CPU engine. The checkpoint is written into a staging directory beside `dir`
/// and replaces `dir` in one step ([`Staged`]); one file is open at a time.
pub fn write_checkpoint_from(
    m: &Module,
    seed: u64,
    dir: &Path,
    opts: &WriteOptions,
    progress: &(dyn Fn(u64) + Sync),
    fill: &Fill,
) -> Result<Written, CheckpointError> {
    items(m, opts.device)?; // a bad device fails before anything is locked or created
    let staged = Staged::begin(dir, checkpoint_contents)?;
    let out = write_files(m, seed, staged.path(), dir, opts, progress, fill)?;
    staged.commit()?;
    Ok(out)
}

/// The checkpoint's files, written into the empty directory `into` (`shown` is the directory
/// errors name: where they will be published).
fn write_files(
    m: &Module,
    seed: u64,
    into: &Path,
    shown_dir: &Path,
    opts: &WriteOptions,
    progress: &(dyn Fn(u64) + Sync),
    fill: &Fill,
) -> Result<Written, CheckpointError> {
    let items = items(m, opts.device)?;
    let groups = plan_files(&items, opts.max_shard_bytes);
    let n = groups.len();
    let names: Vec<String> =
        if n == 1 { vec!["model.safetensors".into()] } else { (1..=n).map(|k| format!("model-{k:05}-of-{n:05}.safetensors")).collect() };
    let mut written: Vec<Option<WrittenParam>> = vec![None; items.len()];
    for (members, name) in groups.iter().zip(&names) {
        let path = into.join(name);
        let shown = shown_dir.join(name);
        let header = header(m, seed, opts.device, &items, members, name)?;
        let file = create(&path).map_err(io(&shown))?;
        let mut w = BufWriter::with_capacity(1 << 22, Faulty(&file));
        w.write_all(&header).map_err(io(&shown))?;
        for &i in members {
            let it = &items[i];
            let mut h = Sha256::new();
            fill(it.param, &it.region, &mut |b: &[u8]| {
                h.update(b);
                progress(b.len() as u64);
                w.write_all(b)
            })
            .map_err(io(&shown))?;
            written[i] = Some(WrittenParam {
                fqn: it.param.fqn.clone(),
                file: name.clone(),
                sha256: h.finalize().into(),
                bytes: it.bytes(),
                offset: it.region.offset.clone(),
                shape: it.region.shape.clone(),
            });
        }
        w.flush().map_err(io(&shown))?;
        drop(w);
        sync(&file).map_err(io(&shown))?;
    }
    let params: Vec<WrittenParam> = written.into_iter().flatten().collect();
    let mut all = Sha256::new();
    for p in &params {
        all.update(p.sha256);
    }
    let out = Written {
        digest: all.finalize().into(),
        total_bytes: params.iter().map(|p| p.bytes).sum(),
        params,
        files: names.clone(),
        device: opts.device,
    };
    if n > 1 {
        let map: serde_json::Map<String, serde_json::Value> = out.params.iter().map(|p| (p.fqn.clone(), p.file.clone().into())).collect();
        let index = serde_json::json!({"metadata": {"total_size": out.total_bytes}, "weight_map": map});
        write_small(into, shown_dir, "model.safetensors.index.json", &pretty(&index))?;
    }
    // Written last, as a commit marker inside the staging directory.
    write_small(into, shown_dir, "manifest.json", &pretty(&manifest_json(m, seed, &out)))?;
    Ok(out)
}

/// Several devices' checkpoints, `DIR/device-K` (each as [`write_checkpoint_from`] with
/// `device: Some(K)` writes it), published together: `DIR` is staged and swapped as a whole, so
/// a reader never finds device checkpoints of two runs (or of two meshes) side by side.
pub struct DeviceSet {
    staged: Staged,
    dir: PathBuf,
}

impl DeviceSet {
    /// Locks and stages `dir`; an existing `dir` may hold only `device-K` checkpoints.
    pub fn begin(dir: &Path) -> Result<DeviceSet, CheckpointError> {
        Ok(DeviceSet { staged: Staged::begin(dir, device_set_contents)?, dir: dir.to_path_buf() })
    }

    /// Writes `DIR/device-K` for `opts.device = Some(K)` (into the staging directory).
    pub fn write(
        &self,
        m: &Module,
        seed: u64,
        opts: &WriteOptions,
        progress: &(dyn Fn(u64) + Sync),
        fill: &Fill,
    ) -> Result<Written, CheckpointError> {
        let Some(device) = opts.device else { return Err(CheckpointError::NoMesh) };
        let name = format!("device-{device}");
        let into = self.staged.path().join(&name);
        fault::hit(fault::Point::Create).and_then(|()| std::fs::create_dir(&into)).map_err(io(&self.dir.join(&name)))?;
        write_files(m, seed, &into, &self.dir.join(&name), opts, progress, fill)
    }

    /// Publishes every device written.
    pub fn commit(self) -> Result<(), CheckpointError> {
        Ok(self.staged.commit()?)
    }
}

/// What a [`DeviceSet`] may replace: an empty directory, or `device-K` checkpoints with their
/// lock files and leftovers.
pub fn device_set_contents(dir: &Path) -> Result<(), String> {
    for e in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let device = name.strip_prefix("device-").is_some_and(|k| !k.is_empty() && k.bytes().all(|c| c.is_ascii_digit()));
        if device && e.file_type().is_ok_and(|t| t.is_dir()) {
            checkpoint_contents(&e.path()).map_err(|r| format!("{name} {r}"))?;
        } else if !(name.starts_with(".device-") && (name.ends_with(".lock") || name.contains(".initc-tmp-"))) {
            return Err(format!(
                "holds {name}, which is no device-K checkpoint. A run replaces the whole directory; give a new or empty one, or remove it"
            ));
        }
    }
    Ok(())
}

/// What `initc run` may replace: an empty directory, or one holding only files a checkpoint
/// writer makes (this one's, or older versions' temporaries). Anything else would be deleted
/// by the replacement, so it is refused.
pub fn checkpoint_contents(dir: &Path) -> Result<(), String> {
    let mut foreign = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_file = e.file_type().is_ok_and(|t| t.is_file());
        let ours = matches!(name.as_str(), "manifest.json" | "model.safetensors" | "model.safetensors.index.json")
            || is_shard_file(&name)
            || (name.starts_with(".model") && name.ends_with(".partial"))
            || name.starts_with(".tmp");
        if !(ours && is_file) {
            foreign.push(if is_file { name } else { format!("{name} (not a file)") });
        }
    }
    if foreign.is_empty() {
        return Ok(());
    }
    foreign.sort();
    let shown: Vec<&str> = foreign.iter().take(3).map(String::as_str).collect();
    let more = if foreign.len() > 3 { format!(" and {} more", foreign.len() - 3) } else { String::new() };
    Err(format!(
        "holds what no initc checkpoint holds: {}{more}. A run replaces the whole directory; give a new or empty one, or remove those",
        shown.join(", ")
    ))
}

/// `model-00001-of-00003.safetensors`.
fn is_shard_file(name: &str) -> bool {
    let Some(mid) = name.strip_prefix("model-").and_then(|r| r.strip_suffix(".safetensors")) else { return false };
    mid.split_once("-of-").is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()))
}

fn create(path: &Path) -> std::io::Result<std::fs::File> {
    fault::hit(fault::Point::Create)?;
    std::fs::File::create(path)
}

fn sync(f: &std::fs::File) -> std::io::Result<()> {
    fault::hit(fault::Point::Fsync)?;
    f.sync_all()
}

/// One small file in the staging directory `tmp` (`shown` is the directory named in errors).
fn write_small(tmp: &Path, shown: &Path, name: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
    let shown = shown.join(name);
    let file = create(&tmp.join(name)).map_err(io(&shown))?;
    Faulty(&file).write_all(bytes).map_err(io(&shown))?;
    sync(&file).map_err(io(&shown))
}

fn pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s.into_bytes()
}

/// `manifest.json`: shapes, dtypes, SHA-256 of each tensor's raw little-endian bytes, and the
/// digest over them. For a whole checkpoint that is the model digest `initc verify` prints for
/// every mesh; a device checkpoint records the mesh, its coordinates, each shard's global
/// offset, and calls its digest `shard_digest`.
pub fn manifest_json(m: &Module, seed: u64, w: &Written) -> serde_json::Value {
    let params: Vec<serde_json::Value> = m
        .params
        .iter()
        .zip(&w.params)
        .map(|(p, wp)| {
            let mut v = serde_json::json!({"fqn": p.fqn, "shape": p.ty.shape, "dtype": p.ty.dtype.name(), "init": p.init, "file": wp.file, "bytes": wp.bytes, "sha256": hex(&wp.sha256)});
            if w.device.is_some() {
                v["offset"] = wp.offset.clone().into();
                v["local_shape"] = wp.shape.clone().into();
                v["sharding"] = p.sharding.as_ref().map(|s| s.to_string()).into();
            }
            v
        })
        .collect();
    let mut v = serde_json::json!({"name": m.name, "seed": seed, "files": w.files, "total_bytes": w.total_bytes, "params": params});
    match (w.device, &m.mesh) {
        (Some(d), Some(mesh)) => {
            v["mesh"] = mesh.to_string().into();
            v["device"] = d.into();
            v["coords"] = mesh.coords(d).into();
            v["shard_digest"] = hex(&w.digest).into();
        }
        _ => v["digest"] = hex(&w.digest).into(),
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1M tensors gave a 111 MB header that Python `safetensors` refuses; here 25,000 names of
    /// 4,000 bytes pass every IR limit and make a 100.5 MB header.
    #[test]
    fn a_header_readers_refuse_is_an_error() {
        let mut b = initc_ir::Builder::new("big");
        let ty = initc_ir::Type::new(initc_ir::DType::F32, [1]);
        let z = b.push(initc_ir::Op::Full { value: initc_ir::F64::new(0.0) }, ty.clone()).unwrap();
        let mut m = b.finish();
        let pad = "x".repeat(3990);
        for i in 0..25_000 {
            m.params.push(Param {
                fqn: format!("{pad}{i:05}"),
                ty: ty.clone(),
                value: z,
                axes: vec![],
                init: String::new(),
                sharding: None,
            });
        }
        initc_ir::verify(&m).unwrap();
        let items = items(&m, None).unwrap();
        let all: Vec<usize> = (0..items.len()).collect();
        let e = header(&m, 0, None, &items, &all, "model.safetensors").unwrap_err();
        assert!(matches!(e, CheckpointError::HeaderTooLarge { tensors: 25_000, bytes, .. } if bytes > MAX_HEADER_BYTES), "{e}");
        assert!(e.to_string().contains("--max-shard-size"));
        // Split in two files, each header is accepted.
        for half in all.chunks(12_500) {
            assert!(header(&m, 0, None, &items, half, "f").unwrap().len() as u64 <= MAX_HEADER_BYTES + 8);
        }
    }
}
