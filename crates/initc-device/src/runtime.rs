//! Compiling the shard programs and launching them on PJRT devices.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use initc_cpu::Evaluator;
use initc_ir::{DType, Module};
use initc_pjrt::{Buffer, Client, CompileOptions, Device, ElementType, Executable};
use rayon::prelude::*;

use crate::plan::{Batch, DevicePlan};
use crate::schedule::Schedule;
use crate::{DeviceError, pack};

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
    /// From the start of the run until its last execute was enqueued (the device works
    /// meanwhile).
    pub enqueue: Duration,
    /// Every PJRT execute of the run on this device, in queue order.
    pub timeline: Vec<ExecuteSpan>,
}

/// One PJRT execute of a run, times from the start of [`Materializer::run`]. `ready` is when the
/// host saw its last output ready: outputs are waited for in queue order, so it is at least
/// the previous execute's `ready`.
#[derive(Clone, Debug)]
pub struct ExecuteSpan {
    /// The host thread (of the device's enqueue threads) that called execute.
    pub thread: usize,
    pub executable: usize,
    pub launches: usize,
    /// Elements it writes.
    pub elements: u64,
    pub call: Duration,
    pub returned: Duration,
    pub ready: Duration,
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
    /// When the last device's enqueue threads had reported back (the rest is assembling
    /// the shard lists).
    pub received: Duration,
}

/// A model planned and compiled for some devices; [`Materializer::run`] materializes it for a
/// seed, as often as wanted.
pub struct Materializer<'m> {
    /// Per device slot, the host threads that enqueue its batches and wait for them; they
    /// live as long as the materializer (so that a run spawns no thread) and are joined first
    /// when it is dropped.
    workers: Vec<Vec<Worker>>,
    m: &'m Module,
    client: Client,
    schedule: Schedule,
    /// PJRT device (index into `client.devices()`) of each planned device.
    targets: Vec<usize>,
    /// How many executables run several launches.
    batched: usize,
    /// Per device slot: its batches, their arguments and the executables.
    states: Vec<Arc<DeviceState>>,
    /// One run at a time: a run may re-upload the static words the workers read.
    running: Mutex<()>,
    /// Compiling the programs (and, meanwhile, `first_upload`).
    pub compile_time: Duration,
    /// Packing and uploading the static words and tables.
    pub load_time: Duration,
    /// Part of `compile_time`, overlapped with XLA's compiles: a first one-word upload to
    /// each device (the slowest device's), which sets up the client's device memory.
    pub first_upload: Duration,
    /// How many of the executables the persistent cache (`INITC_COMPILE_CACHE`) served
    /// instead of XLA.
    pub cache_hits: usize,
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

/// One device's static words: per batch, one buffer per group of [`crate::FUSE`] launches
/// (their words one after the other: [`initc_stablehlo::Batched`]), packed for `seed`.
struct Statics {
    seed: u64,
    buffers: Vec<Vec<Buffer>>,
}

/// Starts uploading the static words of a device's batches ([`Schedule::statics`]).
fn upload_statics(
    client: &Client,
    device: &Device,
    statics: Vec<Vec<Vec<u32>>>,
) -> Result<(Vec<Vec<Buffer>>, Vec<initc_pjrt::Upload>), DeviceError> {
    let mut bufs = Vec::with_capacity(statics.len());
    let mut pending = Vec::with_capacity(statics.len());
    for batch in statics {
        let mut group = Vec::new();
        for words in batch {
            let (buf, up) = upload_words_async(client, device, &words)?;
            group.push(buf);
            pending.push(up);
        }
        bufs.push(group);
    }
    Ok((bufs, pending))
}

/// Everything a device's enqueue threads read.
struct DeviceState {
    device: Device,
    /// One per `(program, launches per execute)` some batch uses ([`Batch`]); shared by all
    /// devices.
    executables: Arc<Vec<Executable>>,
    /// Its launches grouped into batches (one PJRT execute each), in queue order.
    batches: Vec<Batch>,
    /// Static words of every batch, for the seed they hold keys of (read by the enqueue
    /// threads at once, replaced between runs).
    statics: RwLock<Statics>,
    /// Table arguments ([`Schedule::tables`]), each distinct table once.
    tables: DeviceTables,
    /// Per launch, its shard's description.
    shards: Vec<ShardMeta>,
}

/// A [`Shard`] without its buffer.
#[derive(Clone)]
struct ShardMeta {
    param: usize,
    fqn: String,
    offset: Vec<u64>,
    shape: Vec<u64>,
    dtype: DType,
}

impl ShardMeta {
    fn numel(&self) -> u64 {
        self.shape.iter().product()
    }

    fn with(&self, buffer: Buffer) -> Shard {
        Shard {
            param: self.param,
            fqn: self.fqn.clone(),
            offset: self.offset.clone(),
            shape: self.shape.clone(),
            dtype: self.dtype,
            buffer,
        }
    }
}

/// What one enqueue thread returns for a run: `(launch, shard)` for each output, and the
/// span of each of its executes.
type WorkerOut = (Vec<(usize, Shard)>, Vec<(usize, ExecuteSpan)>);

/// A run request: the run's start, and where to send the outcome.
type Job = (Instant, Sender<Result<WorkerOut, DeviceError>>);

/// A host thread that enqueues batches `t, t + threads, ...` of one device, then waits for
/// their outputs in queue order, once per job.
struct Worker {
    jobs: Option<Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(state: Arc<DeviceState>, t: usize, threads: usize) -> Result<Worker, DeviceError> {
        let (tx, rx): (Sender<Job>, Receiver<Job>) = channel();
        let handle = std::thread::Builder::new()
            .name(format!("initc-enqueue-{}-{t}", state.device.id))
            .spawn(move || {
                for (start, reply) in rx {
                    let _ = reply.send(state.enqueue_and_wait(t, threads, start));
                }
            })
            .map_err(|e| DeviceError::Internal(format!("spawning an enqueue thread: {e}")))?;
        Ok(Worker { jobs: Some(tx), handle: Some(handle) })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.jobs.take()); // ends the thread's loop
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl DeviceState {
    /// Enqueues batches `t, t + threads, ...`, then waits for their outputs in queue order
    /// (so that the waits overlap the device's work).
    fn enqueue_and_wait(&self, t: usize, threads: usize, start: Instant) -> Result<WorkerOut, DeviceError> {
        let statics = self.statics.read().map_err(|_| DeviceError::Internal("a run panicked".into()))?;
        let mut out = Vec::new();
        let mut spans = Vec::new();
        for (b, batch) in self.batches.iter().enumerate().skip(t).step_by(threads) {
            let mut args: Vec<&Buffer> = statics.buffers[b].iter().collect();
            for &k in &batch.launches {
                args.extend(self.tables.uses[k].iter().map(|&x| &self.tables.buffers[x]));
            }
            let call = start.elapsed();
            let res = self.executables[batch.executable].execute_on(&self.device, &args)?;
            let returned = start.elapsed();
            if res.len() != batch.launches.len() {
                return Err(DeviceError::Internal(format!(
                    "executable {} returned {} buffers for {} launches",
                    batch.executable,
                    res.len(),
                    batch.launches.len()
                )));
            }
            let elements = batch.launches.iter().map(|&k| self.shards[k].numel()).sum();
            spans.push((
                b,
                ExecuteSpan {
                    thread: t,
                    executable: batch.executable,
                    launches: batch.launches.len(),
                    elements,
                    call,
                    returned,
                    ready: Duration::ZERO,
                },
            ));
            // Describing the shards here, while the device works, keeps it off the end of the run.
            out.extend(batch.launches.iter().zip(res).map(|(&k, buf)| (k, self.shards[k].with(buf))));
        }
        drop(statics);
        let mut outputs = out.iter();
        for (b, span) in spans.iter_mut() {
            for _ in 0..self.batches[*b].launches.len() {
                if let Some((_, shard)) = outputs.next() {
                    shard.buffer.wait_ready()?;
                }
            }
            span.ready = start.elapsed();
        }
        Ok((out, spans))
    }
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
    pub fn with_batch(
        m: &'m Module,
        client: Client,
        mesh_devices: &[u64],
        options: &CompileOptions,
        max_batch: Option<usize>,
    ) -> Result<Materializer<'m>, DeviceError> {
        let targets = assign(m, mesh_devices, client.devices().len())?;
        let schedule = Schedule::new(m, mesh_devices, max_batch)?;
        Self::build(m, client, schedule, targets, options)
    }

    /// Compiles explicit shards ([`DevicePlan::for_regions`]): `requests[i]` lists the
    /// `(parameter, region)` shards PJRT device `targets[i]` (an index into
    /// `client.devices()`) makes, in that order; [`Materialized::devices`]`[i]` holds them in
    /// the same order. Several slots may name one PJRT device.
    pub fn for_regions(
        m: &'m Module,
        client: Client,
        targets: Vec<usize>,
        requests: Vec<Vec<(usize, initc_shard::Region)>>,
        options: &CompileOptions,
        max_batch: Option<usize>,
    ) -> Result<Materializer<'m>, DeviceError> {
        let available = client.devices().len();
        if let Some(&index) = targets.iter().find(|&&t| t >= available) {
            return Err(DeviceError::NoSuchDevice { index, available });
        }
        if targets.len() != requests.len() {
            return Err(DeviceError::Internal(format!("{} targets for {} request lists", targets.len(), requests.len())));
        }
        let schedule = Schedule::for_plan(DevicePlan::for_regions(m, requests)?, max_batch);
        Self::build(m, client, schedule, targets, options)
    }

    fn build(
        m: &'m Module,
        client: Client,
        schedule: Schedule,
        targets: Vec<usize>,
        options: &CompileOptions,
    ) -> Result<Materializer<'m>, DeviceError> {
        let t0 = Instant::now();
        // A client's first transfer to a device sets up its memory (1.5-2 s on an H200, most of
        // what loading took): done here, on a thread per device, while XLA compiles.
        let (executables, first) = std::thread::scope(|s| {
            let warm: Vec<_> = targets
                .iter()
                .map(|&t| {
                    let (client, device) = (&client, &client.devices()[t]);
                    s.spawn(move || -> Result<Duration, DeviceError> {
                        let t = Instant::now();
                        let (buf, up) = upload_words_async(client, device, &[0])?;
                        up.wait()?;
                        buf.wait_ready()?;
                        Ok(t.elapsed())
                    })
                })
                .collect();
            let executables = compile_all(&client, &schedule, options);
            let first = warm
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(DeviceError::Internal("an upload thread panicked".into()))))
                .collect::<Result<Vec<_>, _>>();
            (executables, first)
        });
        let ((executables, cache_hits), first_upload) = (executables?, first?.into_iter().max().unwrap_or_default());
        let batched = schedule.executables.iter().filter(|w| w.1 > 1).count();
        let compile_time = t0.elapsed();
        let t1 = Instant::now();
        let ev = Evaluator::new(m, m.seed);
        // Static words, one thread per device (uploads to different devices overlap).
        let loaded = std::thread::scope(|s| {
            let handles: Vec<_> = (0..schedule.plan.devices.len())
                .map(|i| {
                    let (client, schedule, ev, device) = (&client, &schedule, &ev, &client.devices()[targets[i]]);
                    s.spawn(move || -> Result<(Vec<Vec<Buffer>>, DeviceTables), DeviceError> {
                        let args = schedule.tables(ev, i);
                        let mut tables = DeviceTables { buffers: Vec::with_capacity(args.specs.len()), uses: args.uses };
                        let mut pending = Vec::with_capacity(args.specs.len());
                        for spec in &args.specs {
                            let (buf, up) = upload_words_async(client, device, &spec.build()?)?;
                            tables.buffers.push(buf);
                            pending.push(up);
                        }
                        let (bufs, more) = upload_statics(client, device, schedule.statics(m, ev, i)?)?;
                        for up in pending.into_iter().chain(more) {
                            up.wait()?;
                        }
                        Ok((bufs, tables))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(DeviceError::Internal("an upload thread panicked".into()))))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let executables = Arc::new(executables);
        let states: Vec<Arc<DeviceState>> = loaded
            .into_iter()
            .zip(schedule.batches.iter().cloned())
            .enumerate()
            .map(|(i, ((buffers, tables), batches))| {
                Arc::new(DeviceState {
                    device: client.devices()[targets[i]].clone(),
                    executables: executables.clone(),
                    batches,
                    statics: RwLock::new(Statics { seed: m.seed, buffers }),
                    tables,
                    shards: schedule.plan.devices[i]
                        .launches
                        .iter()
                        .map(|l| {
                            let p = &m.params[l.param];
                            ShardMeta {
                                param: l.param,
                                fqn: p.fqn.clone(),
                                offset: l.region.offset.clone(),
                                shape: l.region.shape.clone(),
                                dtype: p.ty.dtype,
                            }
                        })
                        .collect(),
                })
            })
            .collect();
        let load_time = t1.elapsed();
        let mut mat = Materializer {
            workers: Vec::new(),
            m,
            client,
            schedule,
            targets,
            batched,
            states,
            running: Mutex::new(()),
            compile_time,
            load_time,
            first_upload,
            cache_hits,
        };
        mat.set_threads_per_device(DEFAULT_THREADS)?;
        Ok(mat)
    }

    /// How many host threads enqueue each device's launches (default [`DEFAULT_THREADS`]).
    /// They are spawned here and live until the materializer is dropped.
    pub fn set_threads_per_device(&mut self, n: usize) -> Result<(), DeviceError> {
        self.workers.clear();
        for state in &self.states {
            let threads = n.max(1).min(state.batches.len().max(1));
            self.workers.push((0..threads).map(|t| Worker::spawn(state.clone(), t, threads)).collect::<Result<_, _>>()?);
        }
        Ok(())
    }

    /// Distinct executables compiled (or loaded from the cache) for the schedule.
    pub fn executables(&self) -> usize {
        self.schedule.executables.len()
    }

    /// Executables that run several launches of one program.
    pub fn batched_executables(&self) -> usize {
        self.batched
    }

    /// PJRT execute calls per run, all devices together.
    pub fn executes_per_run(&self) -> usize {
        self.states.iter().map(|s| s.batches.len()).sum()
    }

    pub fn plan(&self) -> &DevicePlan {
        &self.schedule.plan
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The PJRT device that mesh device slot `i` (in the order given to `new`) runs on.
    pub fn device(&self, i: usize) -> &Device {
        &self.client.devices()[self.targets[i]]
    }

    /// Materializes every planned shard for `seed` and waits until all are ready. Each device
    /// is driven by its own host threads (`set_threads_per_device`), which wait for work
    /// between runs.
    pub fn run(&self, seed: u64) -> Result<Materialized, DeviceError> {
        let _one_at_a_time = self.running.lock().map_err(|_| DeviceError::Internal("a run panicked".into()))?;
        let t0 = Instant::now();
        // The static words hold the keys: for a new seed, pack and upload them again first.
        let mut reseeded = Vec::new();
        if self.states.iter().any(|st| st.statics.read().is_ok_and(|s| s.seed != seed)) {
            let ev = Evaluator::new(self.m, seed);
            for (i, st) in self.states.iter().enumerate() {
                let mut statics = st.statics.write().map_err(|_| DeviceError::Internal("a run panicked".into()))?;
                if statics.seed != seed {
                    let (buffers, pending) = upload_statics(&self.client, &st.device, self.schedule.statics(self.m, &ev, i)?)?;
                    *statics = Statics { seed, buffers };
                    reseeded.extend(pending);
                }
            }
        }
        let mut replies = Vec::with_capacity(self.workers.len());
        for workers in &self.workers {
            let mut rx = Vec::with_capacity(workers.len());
            for w in workers {
                let (tx, r) = channel();
                w.jobs
                    .as_ref()
                    .ok_or_else(|| DeviceError::Internal("an enqueue thread is gone".into()))?
                    .send((t0, tx))
                    .map_err(|_| DeviceError::Internal("an enqueue thread is gone".into()))?;
                rx.push(r);
            }
            replies.push(rx);
        }
        let mut devices = Vec::with_capacity(self.states.len());
        let mut received = Duration::ZERO;
        for (i, rx) in replies.into_iter().enumerate() {
            let mut outs = Vec::with_capacity(rx.len());
            for r in rx {
                outs.push(r.recv().map_err(|_| DeviceError::Internal("an enqueue thread panicked".into()))??);
            }
            received = t0.elapsed();
            devices.push(self.collect(i, outs)?);
        }
        for up in reseeded {
            up.wait()?;
        }
        Ok(Materialized { devices, elapsed: t0.elapsed(), received })
    }

    /// Device slot `i`'s shards from its enqueue threads' outputs (and a zero-sized buffer for
    /// each empty shard, which runs no program).
    fn collect(&self, i: usize, outs: Vec<WorkerOut>) -> Result<DeviceShards, DeviceError> {
        let st = &self.states[i];
        let mut slots: Vec<Option<Shard>> = (0..st.shards.len()).map(|_| None).collect();
        let mut spans: Vec<Option<ExecuteSpan>> = vec![None; st.batches.len()];
        for (shards, times) in outs {
            for (k, shard) in shards {
                slots[k] = Some(shard);
            }
            for (b, span) in times {
                spans[b] = Some(span);
            }
        }
        for (slot, meta) in slots.iter_mut().zip(&st.shards) {
            if meta.numel() == 0 {
                let dims: Vec<i64> = meta.shape.iter().map(|&d| d as i64).collect();
                let buf = self.client.upload(&st.device, element_type(meta.dtype)?, &dims, &[])?;
                buf.wait_ready()?;
                *slot = Some(meta.with(buf));
            }
        }
        let shards = slots
            .into_iter()
            .map(|s| s.ok_or_else(|| DeviceError::Internal("a launch produced no buffer".into())))
            .collect::<Result<Vec<_>, _>>()?;
        let timeline: Vec<ExecuteSpan> = spans.into_iter().flatten().collect();
        let enqueue = timeline.iter().map(|s| s.returned).max().unwrap_or_default();
        Ok(DeviceShards { mesh_device: self.schedule.plan.devices[i].mesh_device, device: st.device.clone(), shards, enqueue, timeline })
    }
}

/// Host threads per device that enqueue its executes, by default. On 4 H200s (8B, bf16,
/// fsdp=4) 1, 2 and 4 threads gave 4.12, 3.98 and 4.01 ms while a run still spawned its
/// threads; not re-measured since they live across runs (2: 3.54 ms).
pub const DEFAULT_THREADS: usize = 2;

/// Starts uploading `words`; the buffer is usable at once, the [`initc_pjrt::Upload`] keeps
/// the host copy until PJRT has read it.
fn upload_words_async(client: &Client, device: &Device, words: &[u32]) -> Result<(Buffer, initc_pjrt::Upload), DeviceError> {
    Ok(client.upload_async(device, ElementType::U32, &[words.len() as i64], pack::le_bytes(words))?)
}

/// The most launches `--batch` accepts per execute.
pub const MAX_BATCH: usize = 64;

/// Compiles every executable of the schedule ([`Schedule::executable_text`]), in parallel
/// (PJRT compiles are thread-safe); returns them and how many of them the persistent cache
/// served.
fn compile_all(client: &Client, schedule: &Schedule, options: &CompileOptions) -> Result<(Vec<Executable>, usize), DeviceError> {
    let cache = initc_pjrt::CompileCache::from_env(client);
    let compiled: Vec<(Executable, bool)> = (0..schedule.executables.len())
        .into_par_iter()
        .map(|e| {
            let text = schedule.executable_text(e);
            compile(client, cache.as_ref(), text.as_bytes(), options)
                .map_err(|source| DeviceError::Compile { program: schedule.executable_name(e), source })
        })
        .collect::<Result<_, _>>()?;
    let hits = compiled.iter().filter(|c| c.1).count();
    Ok((compiled.into_iter().map(|c| c.0).collect(), hits))
}

/// `client.compile`, through the opt-in persistent cache (`INITC_COMPILE_CACHE`, see
/// [`initc_pjrt::CompileCache`]) when there is one; `true` when the cache served it.
pub(crate) fn compile(
    client: &Client,
    cache: Option<&initc_pjrt::CompileCache>,
    program: &[u8],
    options: &CompileOptions,
) -> Result<(Executable, bool), initc_pjrt::PjrtError> {
    match cache {
        Some(c) => c.compile(client, program, options).map(|(exe, served)| (exe, served == initc_pjrt::Served::Hit)),
        None => client.compile(program, options).map(|exe| (exe, false)),
    }
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
