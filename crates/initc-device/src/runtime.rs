//! Compiling the shard programs and launching them on PJRT devices.

use std::time::{Duration, Instant};

use initc_cpu::Evaluator;
use initc_ir::{DType, Module};
use initc_pjrt::{Buffer, Client, CompileOptions, Device, ElementType, Executable};

use crate::plan::DevicePlan;
use crate::{pack, DeviceError};

/// One parameter shard living on a device.
#[derive(Debug)]
pub struct Shard {
    pub param: usize,
    pub fqn: String,
    /// Where the shard starts in the global parameter, and its shape.
    pub offset: Vec<u64>,
    pub shape: Vec<u64>,
    pub dtype: DType,
    /// The PJRT buffer (on `DeviceShards::device`).
    pub buffer: Buffer,
}

impl Shard {
    pub fn bytes(&self) -> u64 {
        self.shape.iter().product::<u64>() * self.dtype.size_bytes()
    }
}

/// Everything one device holds after a run.
#[derive(Debug)]
pub struct DeviceShards {
    pub mesh_device: u64,
    pub device: Device,
    pub shards: Vec<Shard>,
    /// Host time to pack, upload and enqueue every launch (the device works meanwhile).
    pub enqueue: Duration,
}

impl DeviceShards {
    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(Shard::bytes).sum()
    }
}

/// The result of [`Materializer::run`].
#[derive(Debug)]
pub struct Materialized {
    pub devices: Vec<DeviceShards>,
    /// From the seed to every buffer ready.
    pub elapsed: Duration,
}

/// A model planned and compiled for some devices; [`Materializer::run`] materializes it for a
/// seed, as often as wanted.
pub struct Materializer<'m> {
    m: &'m Module,
    client: Client,
    plan: DevicePlan,
    /// PJRT device (index into `client.devices()`) of each planned device.
    targets: Vec<usize>,
    executables: Vec<Executable>,
    pub compile_time: Duration,
}

/// Maps mesh devices onto addressable PJRT devices: mesh device `k` runs on addressable device
/// `k`, or on device 0 when a single mesh device is asked for (`run --device K` on one GPU).
pub fn assign(m: &Module, mesh_devices: &[u64], available: usize) -> Result<Vec<usize>, DeviceError> {
    if mesh_devices.len() == 1 && available >= 1 {
        return Ok(vec![0]);
    }
    let needed = m.mesh.as_ref().map_or(1, |mesh| mesh.devices());
    if needed as usize > available {
        return Err(DeviceError::TooFewDevices { needed, available, mesh: m.mesh.as_ref().map(|x| x.to_string()).unwrap_or_default() });
    }
    Ok(mesh_devices.iter().map(|&d| d as usize).collect())
}

impl<'m> Materializer<'m> {
    /// Plans `mesh_devices`, maps them onto the client's devices and compiles every distinct
    /// shard program (in parallel).
    pub fn new(m: &'m Module, client: Client, mesh_devices: &[u64], options: &CompileOptions) -> Result<Materializer<'m>, DeviceError> {
        let targets = assign(m, mesh_devices, client.devices().len())?;
        let plan = DevicePlan::new(m, mesh_devices)?;
        let t0 = Instant::now();
        let executables = compile_all(&client, &plan, options)?;
        Ok(Materializer { m, client, plan, targets, executables, compile_time: t0.elapsed() })
    }

    pub fn plan(&self) -> &DevicePlan {
        &self.plan
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The PJRT device that mesh device slot `i` (in the order given to `new`) runs on.
    pub fn device(&self, i: usize) -> &Device {
        &self.client.devices()[self.targets[i]]
    }

    /// Materializes every planned shard for `seed` and waits until all are ready. Each device
    /// is driven by its own host thread.
    pub fn run(&self, seed: u64) -> Result<Materialized, DeviceError> {
        let t0 = Instant::now();
        let ev = Evaluator::new(self.m, seed);
        let per_device: Vec<Result<DeviceShards, DeviceError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..self.plan.devices.len()).map(|i| {
                let ev = &ev;
                s.spawn(move || self.run_device(ev, i))
            }).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(DeviceError::Internal("a launch thread panicked".into())))).collect()
        });
        let devices = per_device.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(Materialized { devices, elapsed: t0.elapsed() })
    }

    fn run_device(&self, ev: &Evaluator, i: usize) -> Result<DeviceShards, DeviceError> {
        let t0 = Instant::now();
        let dl = &self.plan.devices[i];
        let device = self.device(i).clone();
        let mut shards = Vec::with_capacity(dl.launches.len());
        let mut args = Vec::with_capacity(dl.launches.len());
        for l in &dl.launches {
            let prog = &self.plan.programs[l.program];
            let p = &self.m.params[l.param];
            let dims: Vec<i64> = l.region.shape.iter().map(|&d| d as i64).collect();
            let buffer = if l.region.numel() == 0 {
                self.client.upload(&device, element_type(p.ty.dtype)?, &dims, &[])?
            } else {
                let words = pack::pack(self.m, ev, prog, l);
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                let arg = self.client.upload(&device, ElementType::U32, &[words.len() as i64], &bytes)?;
                let mut out = self.executables[l.program].execute_on(&device, &[&arg])?;
                args.push(arg);
                out.pop().ok_or_else(|| DeviceError::Internal(format!("program {} returned nothing", l.program)))?
            };
            shards.push(Shard { param: l.param, fqn: p.fqn.clone(), offset: l.region.offset.clone(), shape: l.region.shape.clone(), dtype: p.ty.dtype, buffer });
        }
        let enqueue = t0.elapsed();
        for s in &shards {
            s.buffer.wait_ready()?;
        }
        drop(args);
        Ok(DeviceShards { mesh_device: dl.mesh_device, device, shards, enqueue })
    }
}

fn compile_all(client: &Client, plan: &DevicePlan, options: &CompileOptions) -> Result<Vec<Executable>, DeviceError> {
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get()).min(plan.programs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut slots: Vec<Option<Result<Executable, DeviceError>>> = (0..plan.programs.len()).map(|_| None).collect();
    let results = std::sync::Mutex::new(&mut slots);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(p) = plan.programs.get(i) else { break };
                let r = client.compile(p.text.as_bytes(), options).map_err(|e| DeviceError::Compile { program: p.summary.clone(), source: e });
                if let Ok(mut g) = results.lock() {
                    g[i] = Some(r);
                }
            });
        }
    });
    slots.into_iter().map(|r| r.unwrap_or_else(|| Err(DeviceError::Internal("a compile thread panicked".into())))).collect()
}

pub fn element_type(d: DType) -> Result<ElementType, DeviceError> {
    Ok(match d {
        DType::F32 => ElementType::F32,
        DType::BF16 => ElementType::BF16,
        DType::F16 => ElementType::F16,
        DType::F64 => ElementType::F64,
        DType::U8 => ElementType::U8,
        DType::U16 => ElementType::U16,
        DType::U32 => ElementType::U32,
        DType::U64 => ElementType::U64,
        DType::I32 => ElementType::S32,
        DType::Bool => ElementType::Pred,
        DType::Key => return Err(DeviceError::Internal("key-typed parameter".into())),
    })
}
