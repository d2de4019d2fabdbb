//! Shard geometry: which rectangle of each parameter a device holds, and which devices hold
//! the same one.

use initc_ir::{Mesh, Sharding};

/// A rectangular slice `[offset, offset + shape)` of a tensor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    pub offset: Vec<u64>,
    pub shape: Vec<u64>,
}

impl Region {
    /// The whole tensor.
    pub fn full(global: &[u64]) -> Region {
        Region { offset: vec![0; global.len()], shape: global.to_vec() }
    }

    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// The index of the piece of a dimension split over `axes` (major to minor) that a device at
/// `coords` holds, and the number of pieces.
fn piece(mesh: &Mesh, axes: &[String], coords: &[u64]) -> (u64, u64) {
    let (mut index, mut parts) = (0, 1);
    for a in axes {
        if let Some(i) = mesh.axis(a) {
            index = index * mesh.axes[i].size + coords[i];
            parts *= mesh.axes[i].size;
        }
    }
    (index, parts)
}

/// The region of a parameter of shape `global` with sharding `s` that the device at `coords`
/// holds. Pieces are `ceil(n / parts)` long; with padded (uneven) shardings the last ones are
/// shorter or empty, as XLA pads them.
pub fn shard_region(mesh: &Mesh, s: &Sharding, global: &[u64], coords: &[u64]) -> Region {
    let mut r = Region { offset: Vec::with_capacity(global.len()), shape: Vec::with_capacity(global.len()) };
    for (d, &n) in global.iter().enumerate() {
        let (index, parts) = piece(mesh, &s.dims[d], coords);
        let chunk = n.div_ceil(parts);
        let offset = (index * chunk).min(n);
        r.offset.push(offset);
        r.shape.push(chunk.min(n - offset));
    }
    r
}

/// Device `device`'s region (see [`shard_region`]).
pub fn device_region(mesh: &Mesh, s: &Sharding, global: &[u64], device: u64) -> Region {
    shard_region(mesh, s, global, &mesh.coords(device))
}

/// The padded local shape every device allocates (`ceil(n / parts)` per dim): what XLA's
/// per-device buffer has.
pub fn padded_local_shape(mesh: &Mesh, s: &Sharding, global: &[u64]) -> Vec<u64> {
    global.iter().enumerate().map(|(d, &n)| n.div_ceil(s.parts(mesh, d))).collect()
}

/// The devices that hold the same region as `device` (including itself), ascending: those
/// whose coordinates agree on every mesh axis the sharding uses.
pub fn replicas(mesh: &Mesh, s: &Sharding, device: u64) -> Vec<u64> {
    let used: Vec<usize> = s.dims.iter().flatten().filter_map(|a| mesh.axis(a)).collect();
    let me = mesh.coords(device);
    (0..mesh.devices()).filter(|&k| used.iter().all(|&i| mesh.coords(k)[i] == me[i])).collect()
}

/// How many devices hold each element (the product of the mesh axes the sharding leaves out).
pub fn replication(mesh: &Mesh, s: &Sharding) -> u64 {
    mesh.axes.iter().filter(|a| !s.dims.iter().flatten().any(|u| *u == a.name)).map(|a| a.size).product()
}
