//! Compiling the shard programs and launching them on PJRT devices.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use initc_cpu::Evaluator;
use initc_ir::{DType, Module};
use initc_pjrt::{Buffer, Client, CompileOptions, Device, ElementType, Executable};
use rayon::prelude::*;

use crate::plan::{Batch, DeviceLaunches, DevicePlan, FUSE};
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
    /// One per `(program, launches per execute)` some batch uses ([`Batch`]).
    executables: Vec<Executable>,
    /// How many of those run several launches.
    batched: usize,
    /// Per device slot, its launches grouped into batches (one PJRT execute each).
    batches: Vec<Vec<Batch>>,
    /// Static words of every batch, on its device, for the seed they hold keys of.
    statics: Vec<Mutex<Statics>>,
    /// Table arguments (`pack::table_specs`), each distinct table once per device.
    tables: Vec<DeviceTables>,
    /// Host threads enqueueing launches per device.
    threads_per_device: usize,
    /// Compiling the programs (and, meanwhile, `first_upload`).
    pub compile_time: Duration,
    /// Packing and uploading the static words and tables.
    pub load_time: Duration,
    /// Part of `compile_time`, overlapped with XLA's compiles: a first one-word upload to
    /// each device (the slowest device's), which sets up the client's device memory.
    pub first_upload: Duration,
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

/// One device's static words: per batch, one buffer per group of [`FUSE`] launches (their
/// words one after the other: [`initc_stablehlo::batched_program`]), packed for `seed`.
struct Statics {
    seed: u64,
    buffers: Vec<Vec<Buffer>>,
}

/// Packs and starts uploading the static words of a device's batches for the evaluator's seed.
fn upload_statics(client: &Client, device: &Device, m: &Module, ev: &Evaluator, plan: &DevicePlan, dl: &DeviceLaunches, batches: &[Batch]) -> Result<(Vec<Vec<Buffer>>, Vec<initc_pjrt::Upload>), DeviceError> {
    let mut bufs = Vec::with_capacity(batches.len());
    let mut pending = Vec::with_capacity(batches.len());
    for b in batches {
        let mut group = Vec::new();
        for words in pack::batch_statics(m, ev, plan, dl, b, FUSE) {
            let (buf, up) = upload_words_async(client, device, &words)?;
            group.push(buf);
            pending.push(up);
        }
        bufs.push(group);
    }
    Ok((bufs, pending))
}

/// One device's table arguments: each distinct table once, and which ones each launch takes.
struct DeviceTables {
    buffers: Vec<Buffer>,
    /// Per launch, indices into `buffers` (its arguments 1, 2, ...).
    uses: Vec<Vec<usize>>,
}

impl<'m> Materializer<'m> {
    /// Plans `mesh_devices`, maps them onto the client's devices and compiles every distinct
    /// shard program (in parallel).
    pub fn new(m: &'m Module, client: Client, mesh_devices: &[u64], options: &CompileOptions) -> Result<Materializer<'m>, DeviceError> {
        Self::with_batch(m, client, mesh_devices, options, None)
    }

    /// [`Materializer::new`] with at most `max_batch` launches per PJRT execute (1: one
    /// execute per launch; `None`: [`crate::Program::default_batch`]; larger batches cost
    /// compile time).
    pub fn with_batch(m: &'m Module, client: Client, mesh_devices: &[u64], options: &CompileOptions, max_batch: Option<usize>) -> Result<Materializer<'m>, DeviceError> {
        let targets = assign(m, mesh_devices, client.devices().len())?;
        let plan = DevicePlan::new(m, mesh_devices)?;
        let t0 = Instant::now();
        let (batches, wanted) = plan.batches(max_batch);
        // A client's first transfer to a device sets up its memory (1.5-2 s on an H200, most of
        // what loading took): done here, on a thread per device, while XLA compiles.
        let (executables, first) = std::thread::scope(|s| {
            let warm: Vec<_> = targets.iter().map(|&t| {
                let (client, device) = (&client, &client.devices()[t]);
                s.spawn(move || -> Result<Duration, DeviceError> {
                    let t = Instant::now();
                    let (buf, up) = upload_words_async(client, device, &[0])?;
                    up.wait()?;
                    buf.wait_ready()?;
                    Ok(t.elapsed())
                })
            }).collect();
            let executables = compile_all(&client, &plan, &wanted, options);
            let first = warm.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(DeviceError::Internal("an upload thread panicked".into())))).collect::<Result<Vec<_>, _>>();
            (executables, first)
        });
        let (executables, first_upload) = (executables?, first?.into_iter().max().unwrap_or_default());
        let batched = wanted.iter().filter(|w| w.1 > 1).count();
        let compile_time = t0.elapsed();
        let t1 = Instant::now();
        let ev = Evaluator::new(m, m.seed);
        // Static words, one thread per device (uploads to different devices overlap).
        let loaded = std::thread::scope(|s| {
            let handles: Vec<_> = plan.devices.iter().enumerate().map(|(i, dl)| {
                let (client, plan, ev, device) = (&client, &plan, &ev, &client.devices()[targets[i]]);
                let batches = &batches;
                s.spawn(move || -> Result<(Vec<Vec<Buffer>>, DeviceTables), DeviceError> {
                    let (specs, uses) = pack::device_tables(m, ev, dl);
                    let mut tables = DeviceTables { buffers: Vec::with_capacity(specs.len()), uses };
                    let mut pending = Vec::with_capacity(specs.len());
                    for spec in &specs {
                        let (buf, up) = upload_words_async(client, device, &spec.build())?;
                        tables.buffers.push(buf);
                        pending.push(up);
                    }
                    let (bufs, more) = upload_statics(client, device, m, ev, plan, dl, &batches[i])?;
                    for up in pending.into_iter().chain(more) {
                        up.wait()?;
                    }
                    Ok((bufs, tables))
                })
            }).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(DeviceError::Internal("an upload thread panicked".into())))).collect::<Result<Vec<_>, _>>()
        })?;
        let (statics, tables): (Vec<_>, Vec<_>) = loaded.into_iter().map(|(buffers, t)| (Mutex::new(Statics { seed: m.seed, buffers }), t)).unzip();
        let load_time = t1.elapsed();
        Ok(Materializer { m, client, plan, targets, executables, batched, batches, statics, tables, threads_per_device: 4, compile_time, load_time, first_upload })
    }

    /// How many host threads enqueue each device's launches (default 4).
    pub fn set_threads_per_device(&mut self, n: usize) {
        self.threads_per_device = n.max(1);
    }

    /// Executables that run several launches of one program.
    pub fn batched_executables(&self) -> usize {
        self.batched
    }

    /// PJRT execute calls per run, all devices together.
    pub fn executes_per_run(&self) -> usize {
        self.batches.iter().map(Vec::len).sum()
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
        // The static words hold the keys: a new seed packs and uploads them again first.
        let mut statics = self.statics[i].lock().map_err(|_| DeviceError::Internal("a launch thread panicked".into()))?;
        let mut reseeded = Vec::new();
        if statics.seed != ev.seed() {
            let (buffers, pending) = upload_statics(&self.client, &device, self.m, ev, &self.plan, dl, &self.batches[i])?;
            *statics = Statics { seed: ev.seed(), buffers };
            reseeded = pending;
        }
        let statics = &statics.buffers;
        let n = dl.launches.len();
        let batches = &self.batches[i];
        let threads = self.threads_per_device.min(batches.len().max(1));
        // Batch b goes to thread b % threads; each thread returns (batch, launch, buffer).
        let parts: Vec<Result<Vec<(usize, usize, Buffer)>, DeviceError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|t| {
                let device = &device;
                s.spawn(move || -> Result<Vec<(usize, usize, Buffer)>, DeviceError> {
                    let mut out = Vec::with_capacity(n / threads + 1);
                    for (b, batch) in batches.iter().enumerate().skip(t).step_by(threads) {
                        let mut args: Vec<&Buffer> = statics[b].iter().collect();
                        for &k in &batch.launches {
                            args.extend(self.tables[i].uses[k].iter().map(|&t| &self.tables[i].buffers[t]));
                        }
                        let res = self.executables[batch.executable].execute_on(device, &args)?;
                        if res.len() != batch.launches.len() {
                            return Err(DeviceError::Internal(format!("executable {} returned {} buffers for {} launches", batch.executable, res.len(), batch.launches.len())));
                        }
                        out.extend(batch.launches.iter().zip(res).map(|(&k, buf)| (b, k, buf)));
                    }
                    Ok(out)
                })
            }).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(DeviceError::Internal("a launch thread panicked".into())))).collect()
        });
        let mut launched = Vec::with_capacity(n);
        for part in parts {
            launched.extend(part?);
        }
        // Wait in the order the batches were queued, so that the waits overlap the device's work
        // and only the last batches' remain when it finishes.
        launched.sort_by_key(|x| x.0);
        let enqueue = t0.elapsed();
        let mut slots: Vec<Option<Buffer>> = (0..n).map(|_| None).collect();
        for (_, k, buf) in launched {
            buf.wait_ready()?;
            slots[k] = Some(buf);
        }
        // Empty shards: a zero-sized buffer each, no program.
        for (k, l) in dl.launches.iter().enumerate() {
            if l.region.numel() == 0 {
                let p = &self.m.params[l.param];
                let dims: Vec<i64> = l.region.shape.iter().map(|&d| d as i64).collect();
                let buf = self.client.upload(&device, element_type(p.ty.dtype)?, &dims, &[])?;
                buf.wait_ready()?;
                slots[k] = Some(buf);
            }
        }
        let mut shards = Vec::with_capacity(n);
        for (l, buf) in dl.launches.iter().zip(slots) {
            let buffer = buf.ok_or_else(|| DeviceError::Internal("a launch produced no buffer".into()))?;
            let p = &self.m.params[l.param];
            shards.push(Shard { param: l.param, fqn: p.fqn.clone(), offset: l.region.offset.clone(), shape: l.region.shape.clone(), dtype: p.ty.dtype, buffer });
        }
        for up in reseeded {
            up.wait()?;
        }
        Ok(DeviceShards { mesh_device: dl.mesh_device, device, shards, enqueue })
    }
}

/// Starts uploading `words`; the buffer is usable at once, the [`initc_pjrt::Upload`] keeps
/// the host copy until PJRT has read it.
fn upload_words_async(client: &Client, device: &Device, words: &[u32]) -> Result<(Buffer, initc_pjrt::Upload), DeviceError> {
    Ok(client.upload_async(device, ElementType::U32, &[words.len() as i64], pack::le_bytes(words))?)
}

/// The most launches `--batch` accepts per execute.
pub const MAX_BATCH: usize = 64;

/// Compiles `(program, k)` for each wanted pair ([`DevicePlan::executable_text`]), in parallel
/// (PJRT compiles are thread-safe).
fn compile_all(client: &Client, plan: &DevicePlan, wanted: &[(usize, usize)], options: &CompileOptions) -> Result<Vec<Executable>, DeviceError> {
    wanted.par_iter()
        .map(|&(p, k)| {
            let text = plan.executable_text(p, k)?;
            let prog = &plan.programs[p];
            let program = if k == 1 { prog.summary.clone() } else { format!("{} x{k} batched", prog.summary) };
            client.compile(text.as_bytes(), options).map_err(|e| DeviceError::Compile { program, source: e })
        })
        .collect()
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
