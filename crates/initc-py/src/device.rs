//! The device runtime from Python: a PJRT client ([`Runtime`]) that materializes explicit shards
//! on its devices, and the device buffers it returns ([`DeviceArray`]), which a framework takes
//! over without a copy through DLPack (`torch.from_dlpack`, `jax.dlpack.from_dlpack`).
//!
//! Hand-over protocol (the Python array API's `__dlpack__`): the buffer is waited for on the
//! host before its capsule is made, so its contents are complete on every stream of the device
//! and the consumer's `stream` needs no event. The capsule owns the PJRT buffer and holds PJRT's
//! external reference count raised ([`initc_pjrt::ExternalRef`]); the consumer's call of the
//! DLPack deleter (when its tensor dies) lowers the count and frees the buffer, which keeps the
//! client alive until then, whatever happens to the `Runtime` object. A `DeviceArray` hands its
//! buffer over once: a second `__dlpack__` is refused.

use std::ffi::{CStr, c_void};
use std::sync::Mutex;

use dlpark::ffi::{DLDataType, DLDataTypeCode, DLDevice, DLDeviceType, DLManagedTensor, DLManagedTensorVersioned, DLPackVersion, DLTensor};
use initc_ir::DType;
use initc_pjrt::{Buffer, Client, ClientOptions, CompileOptions, ExternalRef, Plugin};
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::{Program, err};

/// `(fqn, offset, shape)`: one rectangle of a parameter.
type ShardRequest = (String, Vec<u64>, Vec<u64>);

/// A PJRT client on a plugin, shared by every materialization made through it.
#[pyclass(module = "initc._native", frozen)]
pub struct Runtime {
    client: Client,
    plugin: String,
}

#[pymethods]
impl Runtime {
    /// Loads the PJRT plugin at `plugin` (a path) and creates a client. The CUDA plugin's
    /// options default to sharing the GPU (no preallocation, a BFC allocator that grows on
    /// demand); `visible_devices` restricts the client to those CUDA ordinals.
    #[new]
    #[pyo3(signature = (plugin, *, preallocate = None, memory_fraction = None, allocator = None, visible_devices = None))]
    fn new(
        py: Python<'_>,
        plugin: &str,
        preallocate: Option<bool>,
        memory_fraction: Option<f32>,
        allocator: Option<String>,
        visible_devices: Option<Vec<i64>>,
    ) -> PyResult<Runtime> {
        let path = std::path::PathBuf::from(plugin);
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let sharing = ClientOptions::sharing();
        let opts = ClientOptions {
            preallocate: preallocate.or(sharing.preallocate),
            memory_fraction,
            allocator: allocator.or(sharing.allocator),
            visible_devices,
        }
        .for_plugin(&file);
        opts.validate().map_err(|e| err(format!("PJRT plugin {plugin}: client options: {e}")))?;
        let client = py
            .detach(move || Plugin::load(&path).and_then(|p| Client::with_options(p, &opts)))
            .map_err(|e| err(format!("PJRT plugin {plugin}: {e}")))?;
        Ok(Runtime { client, plugin: plugin.to_string() })
    }

    /// The plugin's path.
    #[getter]
    fn plugin(&self) -> String {
        self.plugin.clone()
    }

    /// `"cuda"`, `"rocm"`, `"tpu"`, ...
    #[getter]
    fn platform(&self) -> PyResult<String> {
        self.client.platform_name().map_err(err)
    }

    /// The addressable devices: `(index, id, local_hardware_id, kind)`; `index` is what
    /// [`Runtime::materialize`] takes, `local_hardware_id` the CUDA ordinal on GPUs.
    #[getter]
    fn devices(&self) -> Vec<(usize, i32, i32, String)> {
        self.client.devices().iter().enumerate().map(|(i, d)| (i, d.id, d.local_hardware_id, d.kind.clone())).collect()
    }

    /// The allocator's statistics of device `index` (bytes in use, peak, limit), where the
    /// plugin keeps them.
    fn memory_stats<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyDict>> {
        let dev = self.device(index)?;
        let s = self.client.memory_stats(dev).map_err(err)?;
        let d = PyDict::new(py);
        d.set_item("bytes_in_use", s.bytes_in_use)?;
        d.set_item("peak_bytes_in_use", s.peak_bytes_in_use)?;
        d.set_item("bytes_limit", s.bytes_limit)?;
        Ok(d)
    }

    /// Makes explicit shards of `program` for `seed` (default: the program's) on this client's
    /// devices and returns them as `DeviceArray`s, ready, in request order.
    ///
    /// `requests` is a list of `(device_index, [(fqn, offset, shape), ...])`; a device may
    /// appear more than once. Values are the program's (the value contract): the same bits
    /// for any rectangle as the CPU engine's. `batch` caps the launches per PJRT execute.
    /// Returns `(arrays, timings)` with `timings` in seconds: `compile` (planning and XLA
    /// compiles), `load` (static words and tables), `run` (the seed's launches until every
    /// buffer is ready); and counts: `executables` (distinct programs compiled) and
    /// `cache_hits` (how many of them `INITC_COMPILE_CACHE` served instead of XLA).
    #[pyo3(signature = (program, requests, seed = None, batch = None))]
    fn materialize<'py>(
        &self,
        py: Python<'py>,
        program: &Program,
        requests: Vec<(usize, Vec<ShardRequest>)>,
        seed: Option<u64>,
        batch: Option<usize>,
    ) -> PyResult<(Vec<Vec<DeviceArray>>, Bound<'py, PyDict>)> {
        let m = program.m.clone();
        let platform = self.client.platform_name().map_err(err)?;
        let mut targets = Vec::with_capacity(requests.len());
        let mut regions = Vec::with_capacity(requests.len());
        for (index, list) in requests {
            self.device(index)?;
            targets.push(index);
            let mut rs = Vec::with_capacity(list.len());
            for (fqn, offset, shape) in list {
                let p = m
                    .params
                    .iter()
                    .position(|p| p.fqn == fqn)
                    .ok_or_else(|| err(format!("no parameter named `{fqn}` in program {:?}", m.name)))?;
                rs.push((p, initc_shard::Region { offset, shape }));
            }
            regions.push(rs);
        }
        if batch.is_some_and(|b| b == 0 || b > initc_device::MAX_BATCH) {
            return Err(err(format!("batch must be in 1..={}", initc_device::MAX_BATCH)));
        }
        let client = self.client.clone();
        let pjrt_devices: Vec<initc_pjrt::Device> = targets.iter().map(|&i| self.client.devices()[i].clone()).collect();
        let seed = seed.unwrap_or(m.seed);
        let done = py
            .detach(move || initc_device::materialize_regions(&m, client, targets, regions, &CompileOptions::default(), batch, seed))
            .map_err(|e| {
                err(match e.hint() {
                    Some(h) => format!("{e}\nhint: {h}"),
                    None => e.to_string(),
                })
            })?;
        let t = PyDict::new(py);
        t.set_item("compile", done.compile.as_secs_f64())?;
        t.set_item("load", done.load.as_secs_f64())?;
        t.set_item("run", done.run.as_secs_f64())?;
        t.set_item("executables", done.executables)?;
        t.set_item("cache_hits", done.cache_hits)?;
        let arrays = done
            .devices
            .into_iter()
            .zip(&pjrt_devices)
            .map(|(shards, dev)| {
                let device = dl_device(&platform, dev.local_hardware_id);
                shards
                    .into_iter()
                    .map(|s| DeviceArray {
                        buffer: Mutex::new(Some(s.buffer)),
                        fqn: s.fqn,
                        offset: s.offset,
                        shape: s.shape,
                        dtype: s.dtype,
                        device: device.clone(),
                        platform: platform.clone(),
                        pjrt_device: dev.id,
                        exported: Default::default(),
                    })
                    .collect()
            })
            .collect();
        Ok((arrays, t))
    }
}

impl Runtime {
    fn device(&self, index: usize) -> PyResult<&initc_pjrt::Device> {
        self.client
            .devices()
            .get(index)
            .ok_or_else(|| err(format!("device index {index}: the client has {} devices", self.client.devices().len())))
    }
}

/// The DLPack device of a PJRT platform's device, or `Err(platform)` where DLPack has none.
fn dl_device(platform: &str, local_hardware_id: i32) -> Result<DLDevice, String> {
    let device_type = match platform {
        "cuda" | "gpu" => DLDeviceType::CUDA,
        "rocm" => DLDeviceType::ROCM,
        "cpu" | "host" => return Ok(DLDevice { device_type: DLDeviceType::CPU, device_id: 0 }),
        other => return Err(other.to_string()),
    };
    Ok(DLDevice { device_type, device_id: local_hardware_id.max(0) })
}

fn dl_dtype(d: DType) -> Option<DLDataType> {
    let (code, bits) = match d {
        DType::F32 => (DLDataTypeCode::FLOAT, 32),
        DType::F64 => (DLDataTypeCode::FLOAT, 64),
        DType::F16 => (DLDataTypeCode::FLOAT, 16),
        DType::BF16 => (DLDataTypeCode::BFLOAT, 16),
        DType::U8 => (DLDataTypeCode::UINT, 8),
        DType::U16 => (DLDataTypeCode::UINT, 16),
        DType::U32 => (DLDataTypeCode::UINT, 32),
        DType::U64 => (DLDataTypeCode::UINT, 64),
        DType::I32 => (DLDataTypeCode::INT, 32),
        DType::Bool => (DLDataTypeCode::BOOL, 8),
        DType::Key => return None,
    };
    Some(DLDataType { code, bits, lanes: 1 })
}

/// One shard made by a [`Runtime`], on one device, until it is handed over.
#[pyclass(module = "initc._native", frozen)]
pub struct DeviceArray {
    buffer: Mutex<Option<Buffer>>,
    fqn: String,
    offset: Vec<u64>,
    shape: Vec<u64>,
    dtype: DType,
    device: Result<DLDevice, String>,
    platform: String,
    pjrt_device: i32,
    /// The device address handed over (0 until then, and for an empty shard).
    exported: std::sync::atomic::AtomicUsize,
}

const LEGACY: &CStr = c"dltensor";
const VERSIONED: &CStr = c"dltensor_versioned";

/// What a capsule's DLPack tensor owns: the lent buffer (or an empty one, which has no
/// address to lend) and the shape and strides the `DLTensor` points at.
struct Held {
    _buffer: Lent,
    shape: Vec<i64>,
    strides: Vec<i64>,
}

enum Lent {
    Memory(ExternalRef),
    Empty { _buffer: Buffer },
}

#[pymethods]
impl DeviceArray {
    #[getter]
    fn fqn(&self) -> String {
        self.fqn.clone()
    }

    /// Where the shard starts in the global parameter.
    #[getter]
    fn offset(&self) -> Vec<u64> {
        self.offset.clone()
    }

    #[getter]
    fn shape(&self) -> Vec<u64> {
        self.shape.clone()
    }

    /// initc's dtype name (`"f32"`, `"bf16"`, ...).
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype.name()
    }

    #[getter]
    fn nbytes(&self) -> u64 {
        self.shape.iter().product::<u64>() * self.dtype.size_bytes()
    }

    /// The PJRT platform and global device id it lives on.
    #[getter]
    fn device(&self) -> (String, i32) {
        (self.platform.clone(), self.pjrt_device)
    }

    /// The device address its DLPack capsule carried (0 before it is handed over): a
    /// consumer's tensor at this address took the buffer without a copy.
    #[getter]
    fn exported_pointer(&self) -> usize {
        self.exported.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether its buffer is still here (not handed over through DLPack).
    #[getter]
    fn available(&self) -> bool {
        self.buffer.lock().is_ok_and(|b| b.is_some())
    }

    /// A host copy of its bytes (little-endian, row-major): for checks, not for hand-over.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let guard = self.buffer.lock().map_err(|_| err("a DeviceArray lock was poisoned"))?;
        let buf = guard.as_ref().ok_or_else(|| self.gone())?;
        let mut out = vec![0u8; self.nbytes() as usize];
        if !out.is_empty() {
            py.detach(|| buf.to_host(&mut out)).map_err(err)?;
        }
        Ok(PyBytes::new(py, &out))
    }

    fn __dlpack_device__(&self) -> PyResult<(i32, i32)> {
        let d = self.dl_device()?;
        Ok((d.device_type.0 as i32, d.device_id))
    }

    /// Hands the buffer over (DLPack): a `dltensor_versioned` capsule when `max_version` is at
    /// least (1, 0), else the legacy `dltensor` one. Contents are ready on every stream (waited
    /// for on the host), so any `stream` the consumer names is accepted except 0, which the
    /// protocol forbids on CUDA. `dl_device` must be the array's own device; `copy=True` is
    /// refused (initc hands over its buffer, it does not copy).
    #[pyo3(signature = (*, stream = None, max_version = None, dl_device = None, copy = None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<Bound<'py, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let device = self.dl_device()?;
        if let Some((ty, id)) = dl_device
            && (ty != device.device_type.0 as i32 || id != device.device_id)
        {
            return Err(PyBufferError::new_err(format!(
                "`{}` lives on DLPack device ({}, {}); it cannot be exported to ({ty}, {id}) without a copy",
                self.fqn, device.device_type.0, device.device_id
            )));
        }
        if copy == Some(true) {
            return Err(PyBufferError::new_err(format!(
                "`{}`: initc hands its device buffer over and does not copy (copy=True)",
                self.fqn
            )));
        }
        if let Some(s) = &stream
            && !s.is_none()
        {
            let s: i64 = s.extract().map_err(|_| err(format!("`{}`: __dlpack__ stream must be an integer or None", self.fqn)))?;
            if device.device_type == DLDeviceType::CPU {
                return Err(err(format!("`{}` is on the CPU, where the DLPack stream must be None (got {s})", self.fqn)));
            }
            if s == 0 {
                return Err(err(format!(
                    "`{}`: stream 0 is ambiguous and not allowed by DLPack on CUDA (use 1 for the legacy default stream, 2 for per-thread)",
                    self.fqn
                )));
            }
        }
        let dtype =
            dl_dtype(self.dtype).ok_or_else(|| err(format!("`{}`: a {} parameter has no DLPack type", self.fqn, self.dtype.name())))?;
        let buffer = self.buffer.lock().map_err(|_| err("a DeviceArray lock was poisoned"))?.take().ok_or_else(|| self.gone())?;
        let numel: u64 = self.shape.iter().product();
        let lent = py
            .detach(move || -> Result<Lent, initc_pjrt::PjrtError> {
                buffer.wait_ready()?;
                if numel == 0 { Ok(Lent::Empty { _buffer: buffer }) } else { buffer.lend().map(Lent::Memory) }
            })
            .map_err(|e| err(format!("`{}`: handing the buffer over: {e}", self.fqn)))?;
        let data = match &lent {
            Lent::Memory(r) => r.device_pointer(),
            Lent::Empty { .. } => std::ptr::null_mut(),
        };
        self.exported.store(data as usize, std::sync::atomic::Ordering::Relaxed);
        let shape: Vec<i64> = self.shape.iter().map(|&d| d as i64).collect();
        let mut strides = vec![1i64; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1].max(1);
        }
        let mut held = Box::new(Held { _buffer: lent, shape, strides });
        let tensor = DLTensor {
            data,
            device,
            ndim: held.shape.len() as i32,
            dtype,
            shape: held.shape.as_mut_ptr(),
            strides: held.strides.as_mut_ptr(),
            byte_offset: 0,
        };
        let ctx = Box::into_raw(held) as *mut c_void;
        let versioned = max_version.is_some_and(|(major, _)| major >= 1);
        // SAFETY: each pointer is a fresh Box that the capsule (unconsumed) or the consumer
        // (through `deleter`) frees exactly once.
        let cap = unsafe {
            if versioned {
                let mt = Box::into_raw(Box::new(DLManagedTensorVersioned {
                    version: DLPackVersion { major: 1, minor: 0 },
                    manager_ctx: ctx,
                    deleter: Some(delete_versioned),
                    flags: dlpark::DlpackFlags::empty(),
                    dl_tensor: tensor,
                }));
                pyo3::ffi::PyCapsule_New(mt as *mut c_void, VERSIONED.as_ptr(), Some(capsule_versioned))
            } else {
                let mt = Box::into_raw(Box::new(DLManagedTensor { dl_tensor: tensor, manager_ctx: ctx, deleter: Some(delete_legacy) }));
                pyo3::ffi::PyCapsule_New(mt as *mut c_void, LEGACY.as_ptr(), Some(capsule_legacy))
            }
        };
        // SAFETY: a new reference, or null with the Python error set.
        unsafe { Bound::from_owned_ptr_or_err(py, cap) }
    }

    fn __repr__(&self) -> String {
        let state = if self.available() { "" } else { ", handed over" };
        format!(
            "DeviceArray({} {}{:?} at {:?} on {}:{}{state})",
            self.fqn,
            self.dtype.name(),
            self.shape,
            self.offset,
            self.platform,
            self.pjrt_device
        )
    }
}

impl DeviceArray {
    fn gone(&self) -> PyErr {
        PyBufferError::new_err(format!("`{}`: this DeviceArray was already handed over (DLPack exports a buffer once)", self.fqn))
    }

    fn dl_device(&self) -> PyResult<DLDevice> {
        self.device.clone().map_err(|p| err(format!("`{}`: PJRT platform `{p}` has no DLPack device type", self.fqn)))
    }
}

unsafe extern "C" fn delete_legacy(mt: *mut DLManagedTensor) {
    if mt.is_null() {
        return;
    }
    // SAFETY: `mt` and its context were made by `__dlpack__` and are freed only here.
    unsafe {
        let mt = Box::from_raw(mt);
        drop(Box::from_raw(mt.manager_ctx as *mut Held));
    }
}

unsafe extern "C" fn delete_versioned(mt: *mut DLManagedTensorVersioned) {
    if mt.is_null() {
        return;
    }
    // SAFETY: as in `delete_legacy`.
    unsafe {
        let mt = Box::from_raw(mt);
        drop(Box::from_raw(mt.manager_ctx as *mut Held));
    }
}

/// A capsule nobody consumed (still named `dltensor`) frees its tensor; a consumer renames it
/// (`used_dltensor`) and calls the deleter itself.
unsafe extern "C" fn capsule_legacy(cap: *mut pyo3::ffi::PyObject) {
    // SAFETY: the interpreter passes the capsule being destroyed.
    unsafe {
        if pyo3::ffi::PyCapsule_IsValid(cap, LEGACY.as_ptr()) == 1 {
            let mt = pyo3::ffi::PyCapsule_GetPointer(cap, LEGACY.as_ptr()) as *mut DLManagedTensor;
            delete_legacy(mt);
        }
    }
}

unsafe extern "C" fn capsule_versioned(cap: *mut pyo3::ffi::PyObject) {
    // SAFETY: as in `capsule_legacy`.
    unsafe {
        if pyo3::ffi::PyCapsule_IsValid(cap, VERSIONED.as_ptr()) == 1 {
            let mt = pyo3::ffi::PyCapsule_GetPointer(cap, VERSIONED.as_ptr()) as *mut DLManagedTensorVersioned;
            delete_versioned(mt);
        }
    }
}
