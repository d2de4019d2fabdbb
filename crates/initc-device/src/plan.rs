//! Which shard programs a set of devices needs and which launches each device runs.

use std::collections::HashMap;

use initc_ir::{DType, Module};
use initc_shard::{Region, device_region};
use initc_stablehlo::{Batched, LaunchData, Lowerer, ShardProg, Slot};
use rayon::prelude::*;

use crate::DeviceError;

/// Launches of a batch that share one static-word vector, so that XLA fuses them into one
/// kernel ([`initc_stablehlo::Batched`]).
pub const FUSE: usize = 4;

/// A distinct shard program (compiled once, launched for every shard that uses it).
#[derive(Clone, Debug)]
pub struct Program {
    pub ir: ShardProg,
    /// `ir`'s StableHLO text.
    pub text: String,
    pub shape: Vec<u64>,
    pub dtype: DType,
    pub summary: String,
    /// Launches using it, over all planned devices.
    pub launches: usize,
}

impl Program {
    pub fn words(&self) -> usize {
        self.ir.words()
    }

    /// How many of its launches one execute runs by default: 2 for random programs, 4 for table
    /// programs (fast-mode bf16), [`crate::MAX_BATCH`] for programs without a key (fills such
    /// as a norm's ones: microseconds of device work, almost no compile time). XLA's compile
    /// time grows with the launches a batched program inlines, and a cold start (one run after
    /// the compile) is what a user waits for: on one H200, 8B f32 (`initc run --backend pjrt
    /// --batch B --repeat 3`) compiled in 3.87 / 2.57 / 1.45 s at B = 8 / 4 / 2 in JAX mode
    /// and 5.48 / 3.45 / 1.80 s in fast mode, while the repeated run stayed within 2 % (40.0 /
    /// 40.1 / 40.8 ms; 23.5 / 23.5 / 23.8 ms) and the first run did not slow down. A PJRT
    /// execute costs the host ~20-100 µs (on 4 H200s, 312 executes took 6.4 ms), which
    /// larger batches (`--batch`, up to [`crate::MAX_BATCH`]) save in repeated runs.
    pub fn default_batch(&self) -> usize {
        if !self.ir.any_slot(|s| matches!(s, Slot::Key(_))) {
            crate::MAX_BATCH
        } else if self.ir.any_slot(|s| s == Slot::Bf16Table) {
            4
        } else {
            2
        }
    }

    /// Bytes one launch writes.
    pub fn bytes(&self) -> u64 {
        self.shape.iter().product::<u64>() * self.dtype.size_bytes()
    }
}

/// One parameter shard on one device.
#[derive(Clone, Debug)]
pub struct Launch {
    pub param: usize,
    pub program: usize,
    pub region: Region,
    /// The values behind its program's slots.
    pub data: LaunchData,
}

/// The launches of one mesh device, in parameter order.
#[derive(Clone, Debug)]
pub struct DeviceLaunches {
    /// Index in the module's mesh (0 without a mesh).
    pub mesh_device: u64,
    pub launches: Vec<Launch>,
}

#[derive(Clone, Debug)]
pub struct DevicePlan {
    pub programs: Vec<Program>,
    pub devices: Vec<DeviceLaunches>,
}

/// The region of parameter `p` that mesh device `dev` holds (the whole array without a mesh).
pub fn region_of(m: &Module, p: usize, dev: u64) -> Region {
    let param = &m.params[p];
    match (&m.mesh, &param.sharding) {
        (Some(mesh), Some(s)) => device_region(mesh, s, &param.ty.shape, dev),
        _ => Region::full(&param.ty.shape),
    }
}

impl DevicePlan {
    /// Plans mesh devices `devices` (each must exist in the module's mesh).
    pub fn new(m: &Module, devices: &[u64]) -> Result<DevicePlan, DeviceError> {
        let n = m.mesh.as_ref().map_or(1, |mesh| mesh.devices());
        if let Some(&d) = devices.iter().find(|&&d| d >= n) {
            return Err(DeviceError::NoSuchMeshDevice { device: d, devices: n });
        }
        let wanted = devices.iter().map(|&dev| (dev, (0..m.params.len()).map(|p| (p, region_of(m, p, dev))).collect())).collect();
        Self::plan(m, wanted)
    }

    /// Plans explicit rectangles: slot `i` of `requests` is one device, which makes the listed
    /// `(parameter, region)` shards in that order (a framework's own sharding: a JAX
    /// `NamedSharding`'s device indices, a DTensor's local shard). Values are the same as for
    /// any other region (the value contract); the module's mesh is not consulted.
    pub fn for_regions(m: &Module, requests: Vec<Vec<(usize, Region)>>) -> Result<DevicePlan, DeviceError> {
        for (p, r) in requests.iter().flatten() {
            let param = m.params.get(*p).ok_or_else(|| DeviceError::Internal(format!("parameter index {p} out of range")))?;
            let global = &param.ty.shape;
            let fits = r.offset.len() == global.len()
                && r.shape.len() == global.len()
                && r.offset.iter().zip(&r.shape).zip(global).all(|((&o, &n), &g)| o.checked_add(n).is_some_and(|end| end <= g));
            if !fits {
                return Err(DeviceError::BadRegion {
                    fqn: param.fqn.clone(),
                    offset: r.offset.clone(),
                    shape: r.shape.clone(),
                    global: global.clone(),
                });
            }
        }
        Self::plan(m, requests.into_iter().enumerate().map(|(i, r)| (i as u64, r)).collect())
    }

    fn plan(m: &Module, wanted: Vec<(u64, Vec<(usize, Region)>)>) -> Result<DevicePlan, DeviceError> {
        // Programs are shared by structure: equal programs print equal text.
        let mut index: HashMap<ShardProg, usize> = HashMap::new();
        let mut programs: Vec<Program> = Vec::new();
        let mut out = Vec::with_capacity(wanted.len());
        let lowerer = Lowerer::new(m);
        for (dev, regions) in wanted {
            let emitted: Vec<_> =
                regions.into_par_iter().map(|(p, region)| lowerer.lower(p, &region).map(|sp| (p, region, sp))).collect::<Result<_, _>>()?;
            let mut launches = Vec::with_capacity(emitted.len());
            for (param, region, sp) in emitted {
                let program = match index.get(&sp.prog) {
                    Some(&p) => p,
                    None => {
                        index.insert(sp.prog.clone(), programs.len());
                        programs.push(Program {
                            text: sp.prog.print(),
                            shape: sp.prog.shape.clone(),
                            dtype: sp.prog.dtype,
                            ir: sp.prog,
                            summary: sp.summary,
                            launches: 0,
                        });
                        programs.len() - 1
                    }
                };
                programs[program].launches += 1;
                launches.push(Launch { param, program, region, data: sp.data });
            }
            out.push(DeviceLaunches { mesh_device: dev, launches });
        }
        Ok(DevicePlan { programs, devices: out })
    }
}

/// Launches of one program run by one PJRT execute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Index into the executables [`DevicePlan::batches`] asks for.
    pub executable: usize,
    /// Indices into the device's launches, in the executable's output order.
    pub launches: Vec<usize>,
}

impl DevicePlan {
    /// Groups each device's non-empty launches by program into batches of at most `max_batch`
    /// (default: [`Program::default_batch`]) launches (one execute each), most bytes first;
    /// returns them and the executables they need, `(program, launches per execute)` in the
    /// order of [`Batch::executable`] (`k > 1`: [`Batched`]).
    ///
    /// Most bytes first: if the host spends a fixed time `c` per execute and the device `w_j`
    /// on batch `j`, the device finishes at `max_k (k c + sum_{j >= k} w_j)`, which this order
    /// minimizes for every `k` at once (each suffix holds the smallest batches).
    pub fn batches(&self, max_batch: Option<usize>) -> (Vec<Vec<Batch>>, Vec<(usize, usize)>) {
        let mut wanted: Vec<(usize, usize)> = Vec::new();
        let mut index: HashMap<(usize, usize), usize> = HashMap::new();
        let mut per_device = Vec::with_capacity(self.devices.len());
        for dl in &self.devices {
            let mut by_program: Vec<Vec<usize>> = vec![Vec::new(); self.programs.len()];
            for (k, l) in dl.launches.iter().enumerate() {
                if l.region.numel() > 0 {
                    by_program[l.program].push(k);
                }
            }
            let mut batches = Vec::new();
            let mut bytes = Vec::new();
            for (p, ks) in by_program.iter().enumerate() {
                for chunk in ks.chunks(max_batch.unwrap_or_else(|| self.programs[p].default_batch()).max(1)) {
                    let executable = *index.entry((p, chunk.len())).or_insert_with(|| {
                        wanted.push((p, chunk.len()));
                        wanted.len() - 1
                    });
                    batches.push(Batch { executable, launches: chunk.to_vec() });
                    bytes.push(self.programs[p].bytes() * chunk.len() as u64);
                }
            }
            let mut order: Vec<usize> = (0..batches.len()).collect();
            order.sort_by_key(|&b| std::cmp::Reverse(bytes[b]));
            let batches: Vec<Batch> = order.into_iter().map(|b| batches[b].clone()).collect();
            per_device.push(batches);
        }
        (per_device, wanted)
    }
}

impl DevicePlan {
    /// The text of the executable running `k` launches of program `p` per execute: the program
    /// itself, or for `k > 1` the [`Batched`] program with groups of [`FUSE`].
    pub fn executable_text(&self, p: usize, k: usize) -> String {
        Batched::new(&self.programs[p].ir, k, FUSE).print()
    }
}
