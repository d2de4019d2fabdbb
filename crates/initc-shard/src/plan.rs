//! The per-device memory plan: what `initc plan` prints and what users check against device
//! memory before a launch.

use initc_ir::Module;

use crate::geometry::{padded_local_shape, replication, shard_region};

/// One device's share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceLoad {
    pub device: u64,
    pub coords: Vec<u64>,
    /// Bytes of real parameter data the device holds.
    pub bytes: u64,
    /// Bytes it allocates (padded shards are allocated at full piece size).
    pub allocated: u64,
}

/// One parameter's share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamShare {
    /// Index into `Module::params`.
    pub index: usize,
    /// The local (padded) shape every device allocates.
    pub local_shape: Vec<u64>,
    pub local_bytes: u64,
    /// How many devices hold each element.
    pub replication: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub devices: Vec<DeviceLoad>,
    pub params: Vec<ParamShare>,
    /// Bytes of all parameters, once.
    pub total_bytes: u64,
}

impl Plan {
    /// The plan of a sharded module; `None` when it has no mesh.
    pub fn new(m: &Module) -> Option<Plan> {
        let mesh = m.mesh.as_ref()?;
        let mut devices: Vec<DeviceLoad> =
            (0..mesh.devices()).map(|d| DeviceLoad { device: d, coords: mesh.coords(d), bytes: 0, allocated: 0 }).collect();
        let mut params = Vec::with_capacity(m.params.len());
        for (index, p) in m.params.iter().enumerate() {
            let s = p.sharding.as_ref()?;
            let elem = p.ty.dtype.size_bytes();
            let local_shape = padded_local_shape(mesh, s, &p.ty.shape);
            let local_bytes = local_shape.iter().product::<u64>() * elem;
            for d in &mut devices {
                d.bytes += shard_region(mesh, s, &p.ty.shape, &d.coords).numel() * elem;
                d.allocated += local_bytes;
            }
            params.push(ParamShare { index, local_shape, local_bytes, replication: replication(mesh, s) });
        }
        Some(Plan { devices, params, total_bytes: m.total_bytes() })
    }

    pub fn min_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.bytes).min().unwrap_or(0)
    }

    pub fn max_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.bytes).max().unwrap_or(0)
    }

    pub fn mean_bytes(&self) -> f64 {
        self.stored_bytes() as f64 / self.devices.len().max(1) as f64
    }

    /// Bytes held over all devices together.
    pub fn stored_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.bytes).sum()
    }

    /// Stored bytes over parameter bytes: 1.0 for fully sharded, the device count for replicated.
    pub fn replication_factor(&self) -> f64 {
        self.stored_bytes() as f64 / self.total_bytes.max(1) as f64
    }

    /// The `n` parameters with the largest per-device shards (ties in model order).
    pub fn largest(&self, n: usize) -> Vec<&ParamShare> {
        let mut v: Vec<&ParamShare> = self.params.iter().collect();
        v.sort_by(|a, b| b.local_bytes.cmp(&a.local_bytes).then(a.index.cmp(&b.index)));
        v.truncate(n);
        v
    }
}
