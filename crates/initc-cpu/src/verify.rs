//! Sharding-invariance check: materialize every device's shards of every parameter for each
//! mesh, reassemble them, and compare with the unsharded tensor bit for bit.

use std::collections::HashSet;

use initc_ir::Module;
use sha2::{Digest, Sha256};

use crate::eval::Evaluator;
use crate::region::{Region, materialize};

/// The first difference found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub fqn: String,
    /// Global multi-index of the first differing element.
    pub index: Vec<u64>,
    /// The device whose shard differs from a replica of it (`None`: the reassembled tensor
    /// differs from the unsharded one).
    pub device: Option<u64>,
    /// Element bytes (little-endian hex): unsharded (or first replica) vs this mesh's.
    pub expected: String,
    pub found: String,
}

/// One mesh's outcome.
#[derive(Clone, Debug)]
pub struct MeshOutcome {
    pub mesh: String,
    pub devices: u64,
    /// Shard bytes materialized over all devices (replicas included).
    pub shard_bytes: u64,
    /// SHA-256 over the reassembled parameters' SHA-256 digests, model order.
    pub digest: [u8; 32],
    pub mismatch: Option<Mismatch>,
}

#[derive(Clone, Debug)]
pub struct VerifyOutcome {
    /// The unsharded run's digest (what `manifest.json` of `initc run` records).
    pub digest: [u8; 32],
    pub meshes: Vec<MeshOutcome>,
}

impl VerifyOutcome {
    pub fn passed(&self) -> bool {
        self.meshes.iter().all(|m| m.mismatch.is_none() && m.digest == self.digest)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("sharded module #{index} has no mesh")]
    NoMesh { index: usize },
    #[error("sharded module #{index} does not have the reference's parameters and nodes")]
    Different { index: usize },
}

/// Checks every sharded variant of `reference` (same nodes and parameters, each with a mesh).
/// `progress(bytes)` counts materialized bytes.
pub fn verify_shardings(
    reference: &Module,
    sharded: &[Module],
    seed: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifyOutcome, VerifyError> {
    for (index, m) in sharded.iter().enumerate() {
        if m.mesh.is_none() {
            return Err(VerifyError::NoMesh { index });
        }
        let same = m.nodes == reference.nodes
            && m.params.len() == reference.params.len()
            && m.params.iter().zip(&reference.params).all(|(a, b)| a.fqn == b.fqn && a.value == b.value && a.ty == b.ty);
        if !same {
            return Err(VerifyError::Different { index });
        }
    }
    let ev = Evaluator::new(reference, seed);
    let mut ref_digest = Sha256::new();
    let mut mesh_digests: Vec<Sha256> = sharded.iter().map(|_| Sha256::new()).collect();
    let mut outcomes: Vec<MeshOutcome> = sharded
        .iter()
        .map(|m| {
            let mesh = m.mesh.as_ref().map_or(String::new(), |x| x.to_string());
            MeshOutcome { devices: m.mesh.as_ref().map_or(1, |x| x.devices()), mesh, shard_bytes: 0, digest: [0; 32], mismatch: None }
        })
        .collect();
    for (pi, p) in reference.params.iter().enumerate() {
        let full = bytes_of(&ev, p.value, &p.ty.shape, &Region::full(&p.ty.shape), progress);
        ref_digest.update(Sha256::digest(&full));
        for (mi, m) in sharded.iter().enumerate() {
            let out = &mut outcomes[mi];
            let assembled = assemble(&ev, m, pi, progress, &mut out.shard_bytes, &mut out.mismatch);
            mesh_digests[mi].update(Sha256::digest(&assembled));
            if out.mismatch.is_none() {
                out.mismatch = first_difference(&full, &assembled, p.ty.dtype.size_bytes() as usize, &p.ty.shape)
                    .map(|(index, expected, found)| Mismatch { fqn: p.fqn.clone(), index, device: None, expected, found });
            }
        }
    }
    for (o, d) in outcomes.iter_mut().zip(mesh_digests) {
        o.digest = d.finalize().into();
    }
    Ok(VerifyOutcome { digest: ref_digest.finalize().into(), meshes: outcomes })
}

fn bytes_of(ev: &Evaluator, v: initc_ir::Value, global: &[u64], r: &Region, progress: &(dyn Fn(u64) + Sync)) -> Vec<u8> {
    let mut out = Vec::with_capacity((r.numel() * ev.module().ty(v).dtype.size_bytes()) as usize);
    let _ = materialize::<()>(ev, v, global, r, |b| {
        progress(b.len() as u64);
        out.extend_from_slice(b);
        Ok(())
    });
    out
}

/// Reassembles parameter `pi` of `m` from every device's shard. A replica that differs from
/// the first copy of its region is recorded in `mismatch`.
fn assemble(
    ev: &Evaluator,
    m: &Module,
    pi: usize,
    progress: &(dyn Fn(u64) + Sync),
    shard_bytes: &mut u64,
    mismatch: &mut Option<Mismatch>,
) -> Vec<u8> {
    let p = &m.params[pi];
    let (Some(mesh), Some(s)) = (&m.mesh, &p.sharding) else { return Vec::new() };
    let elem = p.ty.dtype.size_bytes() as usize;
    let mut out = vec![0u8; p.ty.numel().unwrap_or(0) as usize * elem];
    // Offsets of regions already placed: a later device with the same one is a replica.
    let mut placed: HashSet<Vec<u64>> = HashSet::new();
    for d in 0..mesh.devices() {
        let r = initc_shard::device_region(mesh, s, &p.ty.shape, d);
        if r.numel() == 0 {
            continue;
        }
        let local = bytes_of(ev, p.value, &p.ty.shape, &r, progress);
        *shard_bytes += local.len() as u64;
        if placed.contains(&r.offset) {
            let mut copy = vec![0u8; local.len()];
            rows(&p.ty.shape, &r, elem, |g, l, n| copy[l..l + n].copy_from_slice(&out[g..g + n]));
            if mismatch.is_none() {
                *mismatch = first_difference(&copy, &local, elem, &r.shape).map(|(li, expected, found)| {
                    let index = li.iter().zip(&r.offset).map(|(i, o)| i + o).collect();
                    Mismatch { fqn: p.fqn.clone(), index, device: Some(d), expected, found }
                });
            }
        } else {
            placed.insert(r.offset.clone());
            rows(&p.ty.shape, &r, elem, |g, l, n| out[g..g + n].copy_from_slice(&local[l..l + n]));
        }
    }
    out
}

/// Calls `f(global_byte_offset, local_byte_offset, byte_len)` for each contiguous row of
/// region `r` in a row-major tensor of shape `global`.
pub(crate) fn rows(global: &[u64], r: &Region, elem: usize, mut f: impl FnMut(usize, usize, usize)) {
    let rank = global.len();
    if rank == 0 {
        f(0, 0, elem);
        return;
    }
    let gs = crate::eval::strides(global);
    let row = r.shape[rank - 1] as usize * elem;
    let outer: u64 = r.shape[..rank - 1].iter().product();
    for k in 0..outer {
        let (mut rem, mut g) = (k, r.offset[rank - 1]);
        for d in (0..rank - 1).rev() {
            g += (rem % r.shape[d] + r.offset[d]) * gs[d];
            rem /= r.shape[d];
        }
        f(g as usize * elem, k as usize * row, row);
    }
}

/// The first element where `a` and `b` differ: its multi-index in `shape`, and both values.
fn first_difference(a: &[u8], b: &[u8], elem: usize, shape: &[u64]) -> Option<(Vec<u64>, String, String)> {
    if a.len() != b.len() {
        return Some((vec![], format!("{} bytes", a.len()), format!("{} bytes", b.len())));
    }
    let at = a.chunks(elem).zip(b.chunks(elem)).position(|(x, y)| x != y)?;
    let mut rem = at as u64;
    let mut index = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        index[d] = rem % shape[d].max(1);
        rem /= shape[d].max(1);
    }
    let hex = |x: &[u8]| format!("0x{}", crate::checkpoint::hex(&x.iter().rev().copied().collect::<Vec<u8>>()));
    Some((index, hex(&a[at * elem..(at + 1) * elem]), hex(&b[at * elem..(at + 1) * elem])))
}
