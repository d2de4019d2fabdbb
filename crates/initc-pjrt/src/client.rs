//! Safe handles over the C API: client, devices, executables, buffers, events.

use std::ffi::c_char;
use std::sync::Arc;

use crate::create::ClientOptions;
use crate::error::PjrtError;
use crate::options::CompileOptions;
use crate::plugin::{Plugin, str_of};
use crate::sys::{self, Args};

/// Owns a `PJRT_Client`; destroyed when the last handle referring to it is dropped.
struct ClientInner {
    plugin: Arc<Plugin>,
    raw: *mut sys::Client,
}

// SAFETY: PJRT clients are thread-safe.
unsafe impl Send for ClientInner {}
unsafe impl Sync for ClientInner {}

impl Drop for ClientInner {
    fn drop(&mut self) {
        let mut a = sys::ClientDestroyArgs::new();
        a.client = self.raw;
        let _ = self.plugin.call::<sys::ClientDestroy>(&mut a);
    }
}

/// A PJRT client with its addressable devices.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
    devices: Vec<Device>,
}

/// An addressable device.
#[derive(Clone, Debug)]
pub struct Device {
    raw: *mut sys::Device,
    /// Global device id.
    pub id: i32,
    /// Local hardware id (the CUDA ordinal on GPU), or -1.
    pub local_hardware_id: i32,
    /// e.g. "NVIDIA H200".
    pub kind: String,
    pub debug: String,
}

// SAFETY: device handles are owned by the client and valid while it lives; PJRT is thread-safe.
unsafe impl Send for Device {}
unsafe impl Sync for Device {}

/// `PJRT_Device_MemoryStats`, with the fields the plugin did not set as `None`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryStats {
    pub bytes_in_use: i64,
    pub peak_bytes_in_use: Option<i64>,
    pub bytes_limit: Option<i64>,
    pub largest_alloc_size: Option<i64>,
}

/// Element types initc moves across the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementType {
    Pred,
    S32,
    U8,
    U16,
    U32,
    U64,
    F16,
    BF16,
    F32,
    F64,
}

impl ElementType {
    fn raw(self) -> i32 {
        use sys::buffer_type::*;
        match self {
            ElementType::Pred => PRED,
            ElementType::S32 => S32,
            ElementType::U8 => U8,
            ElementType::U16 => U16,
            ElementType::U32 => U32,
            ElementType::U64 => U64,
            ElementType::F16 => F16,
            ElementType::BF16 => BF16,
            ElementType::F32 => F32,
            ElementType::F64 => F64,
        }
    }

    pub fn size(self) -> usize {
        match self {
            ElementType::Pred | ElementType::U8 => 1,
            ElementType::U16 | ElementType::F16 | ElementType::BF16 => 2,
            ElementType::S32 | ElementType::U32 | ElementType::F32 => 4,
            ElementType::U64 | ElementType::F64 => 8,
        }
    }
}

impl Client {
    /// Creates a client on `plugin` with [`ClientOptions::sharing`] (no preallocation, so
    /// torch or JAX in the same process keep their memory), where the plugin knows them.
    pub fn new(plugin: Arc<Plugin>) -> Result<Client, PjrtError> {
        let file = plugin.path().file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let opts = ClientOptions::sharing().for_plugin(&file);
        Self::with_options(plugin, &opts)
    }

    /// Creates a client on `plugin` with `opts` passed as its create options as they are.
    pub fn with_options(plugin: Arc<Plugin>, opts: &ClientOptions) -> Result<Client, PjrtError> {
        opts.validate().map_err(|e| PjrtError::Usage(format!("client options: {e}")))?;
        let named = opts.named_values();
        let mut a = sys::ClientCreateArgs::new();
        a.create_options = if named.is_empty() { std::ptr::null() } else { named.as_ptr() };
        a.num_options = named.len();
        plugin.call::<sys::ClientCreate>(&mut a)?;
        let inner = Arc::new(ClientInner { plugin, raw: a.client });
        let devices = Self::addressable_devices(&inner)?;
        Ok(Client { inner, devices })
    }

    fn plugin(&self) -> &Plugin {
        &self.inner.plugin
    }

    /// The file the client's plugin was loaded from.
    pub fn plugin_path(&self) -> std::path::PathBuf {
        self.inner.plugin.path().to_path_buf()
    }

    fn addressable_devices(inner: &ClientInner) -> Result<Vec<Device>, PjrtError> {
        let p = &inner.plugin;
        let mut a = sys::ClientAddressableDevicesArgs::new();
        a.client = inner.raw;
        p.call::<sys::ClientAddressableDevices>(&mut a)?;
        let mut out = Vec::with_capacity(a.num_devices);
        for i in 0..a.num_devices {
            // SAFETY: the plugin returns `num_devices` device pointers owned by the client.
            let raw = unsafe { *a.devices.add(i) };
            let mut d = sys::DeviceGetDescriptionArgs::new();
            d.device = raw;
            p.call::<sys::DeviceGetDescription>(&mut d)?;
            let mut id = sys::DescriptionIdArgs::new();
            id.description = d.description;
            p.call::<sys::DescriptionId>(&mut id)?;
            let kind = description_string::<sys::DescriptionKind>(p, d.description)?;
            let debug = description_string::<sys::DescriptionDebugString>(p, d.description)?;
            let mut hw = sys::DeviceLocalHardwareIdArgs::new();
            hw.device = raw;
            let local_hardware_id = match p.call::<sys::DeviceLocalHardwareId>(&mut hw) {
                Ok(()) => hw.local_hardware_id,
                Err(_) => -1,
            };
            out.push(Device { raw, id: id.id, local_hardware_id, kind, debug });
        }
        Ok(out)
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// "cuda", "cpu", "tpu", ...
    pub fn platform_name(&self) -> Result<String, PjrtError> {
        self.string::<sys::ClientPlatformName>()
    }

    pub fn platform_version(&self) -> Result<String, PjrtError> {
        self.string::<sys::ClientPlatformVersion>()
    }

    fn string<F: sys::Fn<Args = sys::ClientStringArgs>>(&self) -> Result<String, PjrtError> {
        let mut a = sys::ClientStringArgs::new();
        a.client = self.inner.raw;
        self.plugin().call::<F>(&mut a)?;
        // SAFETY: owned by the client, valid for `value_size` bytes.
        Ok(unsafe { str_of(a.value, a.value_size) })
    }

    pub fn plugin_version(&self) -> (i32, i32) {
        self.plugin().version()
    }

    pub fn plugin_attributes(&self) -> Result<Vec<(String, String)>, PjrtError> {
        self.plugin().attributes()
    }

    /// Compiles an MLIR (StableHLO) module, given as text or bytecode.
    pub fn compile(&self, mlir: &[u8], options: &CompileOptions) -> Result<Executable, PjrtError> {
        let format = b"mlir";
        let mut prog = sys::Program::new();
        prog.code = mlir.as_ptr() as *mut c_char;
        prog.code_size = mlir.len();
        prog.format = format.as_ptr() as *const c_char;
        prog.format_size = format.len();
        let opts = options.encode();
        let mut a = sys::ClientCompileArgs::new();
        a.client = self.inner.raw;
        a.program = &prog;
        a.compile_options = opts.as_ptr() as *const c_char;
        a.compile_options_size = opts.len();
        self.plugin().call::<sys::ClientCompile>(&mut a)?;
        let mut exe = Executable { client: self.inner.clone(), raw: a.executable, num_outputs: 0 };
        exe.num_outputs = exe.query_num_outputs()?;
        Ok(exe)
    }

    /// Loads an executable that [`Executable::serialize`] wrote with this plugin version.
    pub fn deserialize(&self, bytes: &[u8]) -> Result<Executable, PjrtError> {
        let mut a = sys::ExecutableDeserializeAndLoadArgs::new();
        a.client = self.inner.raw;
        a.serialized_executable = bytes.as_ptr() as *const c_char;
        a.serialized_executable_size = bytes.len();
        self.plugin().call::<sys::ExecutableDeserializeAndLoad>(&mut a)?;
        let mut exe = Executable { client: self.inner.clone(), raw: a.loaded_executable, num_outputs: 0 };
        exe.num_outputs = exe.query_num_outputs()?;
        Ok(exe)
    }

    /// Copies a dense row-major host array to `device`. PJRT has copied the data when this
    /// returns (`kImmutableOnlyDuringCall`); the transfer itself may still be in flight.
    pub fn upload(&self, device: &Device, ty: ElementType, dims: &[i64], bytes: &[u8]) -> Result<Buffer, PjrtError> {
        let (buf, done) = self.from_host(device, ty, dims, bytes, sys::HOST_BUFFER_IMMUTABLE_ONLY_DURING_CALL)?;
        destroy_event(self.plugin(), done);
        Ok(buf)
    }

    /// `PJRT_Client_BufferFromHostBuffer` with `semantics`; returns the buffer and the
    /// `done_with_host_buffer` event (possibly null).
    #[allow(clippy::wrong_self_convention)] // `self` is the client the buffer is made on
    fn from_host(
        &self,
        device: &Device,
        ty: ElementType,
        dims: &[i64],
        bytes: &[u8],
        semantics: i32,
    ) -> Result<(Buffer, *mut sys::Event), PjrtError> {
        let n: i64 = dims.iter().product();
        if bytes.len() != n as usize * ty.size() {
            return Err(PjrtError::Usage(format!("upload: {} bytes for {dims:?} {ty:?}", bytes.len())));
        }
        let mut a = sys::BufferFromHostBufferArgs::new();
        a.client = self.inner.raw;
        a.data = bytes.as_ptr() as *const _;
        a.ty = ty.raw();
        a.dims = dims.as_ptr();
        a.num_dims = dims.len();
        a.host_buffer_semantics = semantics;
        a.device = device.raw;
        self.plugin().call::<sys::ClientBufferFromHostBuffer>(&mut a)?;
        Ok((Buffer { client: self.inner.clone(), raw: a.buffer }, a.done_with_host_buffer))
    }

    /// Starts copying `bytes` to `device` and returns at once: the buffer is usable right
    /// away (computations wait for the transfer), and `bytes` stays alive inside the returned
    /// [`Upload`] until PJRT is done reading it.
    pub fn upload_async(&self, device: &Device, ty: ElementType, dims: &[i64], bytes: Vec<u8>) -> Result<(Buffer, Upload), PjrtError> {
        let (buf, event) = self.from_host(device, ty, dims, &bytes, sys::HOST_BUFFER_IMMUTABLE_UNTIL_TRANSFER_COMPLETES)?;
        Ok((buf, Upload { client: self.inner.clone(), event, bytes: Some(bytes) }))
    }

    /// The device's allocator statistics.
    pub fn memory_stats(&self, device: &Device) -> Result<MemoryStats, PjrtError> {
        let mut a = sys::DeviceMemoryStatsArgs::new();
        a.device = device.raw;
        self.plugin().call::<sys::DeviceMemoryStats>(&mut a)?;
        let opt = |v: i64, set: bool| set.then_some(v);
        Ok(MemoryStats {
            bytes_in_use: a.bytes_in_use,
            peak_bytes_in_use: opt(a.peak_bytes_in_use, a.peak_bytes_in_use_is_set),
            bytes_limit: opt(a.bytes_limit, a.bytes_limit_is_set),
            largest_alloc_size: opt(a.largest_alloc_size, a.largest_alloc_size_is_set),
        })
    }

    /// Resets the device's peak statistics, where the plugin supports it (`Ok(false)` if not).
    pub fn clear_memory_stats(&self, device: &Device) -> Result<bool, PjrtError> {
        let mut a = sys::DeviceClearMemoryStatsArgs::new();
        a.device = device.raw;
        match self.plugin().call::<sys::DeviceClearMemoryStats>(&mut a) {
            Ok(()) => Ok(true),
            Err(PjrtError::Missing { .. }) | Err(PjrtError::Call { code: crate::ErrorCode::Unimplemented, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn description_string<F: sys::Fn<Args = sys::DescriptionStringArgs>>(
    p: &Plugin,
    d: *mut sys::DeviceDescription,
) -> Result<String, PjrtError> {
    let mut a = sys::DescriptionStringArgs::new();
    a.description = d;
    p.call::<F>(&mut a)?;
    // SAFETY: owned by the description, valid for `value_size` bytes.
    Ok(unsafe { str_of(a.value, a.value_size) })
}

fn destroy_event(p: &Plugin, e: *mut sys::Event) {
    if !e.is_null() {
        let mut a = sys::EventDestroyArgs::new();
        a.event = e;
        let _ = p.call::<sys::EventDestroy>(&mut a);
    }
}

/// Waits for `e` (if any), frees it and returns its status.
fn await_event(p: &Plugin, e: *mut sys::Event) -> Result<(), PjrtError> {
    if e.is_null() {
        return Ok(());
    }
    let mut a = sys::EventAwaitArgs::new();
    a.event = e;
    let r = p.call::<sys::EventAwait>(&mut a);
    destroy_event(p, e);
    r
}

/// The host side of an [`Client::upload_async`]: holds the data until PJRT has read it.
/// [`Upload::wait`] (or drop, which waits) releases it.
pub struct Upload {
    client: Arc<ClientInner>,
    event: *mut sys::Event,
    bytes: Option<Vec<u8>>,
}

// SAFETY: events may be awaited from any thread.
unsafe impl Send for Upload {}

impl Upload {
    /// Waits until PJRT no longer reads the host data, then frees it.
    pub fn wait(mut self) -> Result<(), PjrtError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), PjrtError> {
        let e = std::mem::replace(&mut self.event, std::ptr::null_mut());
        let r = await_event(&self.client.plugin, e);
        self.bytes = None;
        r
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// A loaded executable.
pub struct Executable {
    client: Arc<ClientInner>,
    raw: *mut sys::LoadedExecutable,
    num_outputs: usize,
}

// SAFETY: PJRT executables may be launched from several threads.
unsafe impl Send for Executable {}
unsafe impl Sync for Executable {}

impl Drop for Executable {
    fn drop(&mut self) {
        let mut a = sys::LoadedExecutableDestroyArgs::new();
        a.executable = self.raw;
        let _ = self.client.plugin.call::<sys::LoadedExecutableDestroy>(&mut a);
    }
}

impl Executable {
    /// Runs `f` on the executable's `PJRT_Executable` view, freeing the view afterwards.
    fn with_view<T>(&self, f: impl FnOnce(*mut sys::Executable) -> Result<T, PjrtError>) -> Result<T, PjrtError> {
        let p = &self.client.plugin;
        let mut g = sys::LoadedExecutableGetExecutableArgs::new();
        g.loaded = self.raw;
        p.call::<sys::LoadedExecutableGetExecutable>(&mut g)?;
        let r = f(g.executable);
        let mut d = sys::ExecutableDestroyArgs::new();
        d.executable = g.executable;
        let _ = p.call::<sys::ExecutableDestroy>(&mut d);
        r
    }

    fn query_num_outputs(&self) -> Result<usize, PjrtError> {
        self.with_view(|e| {
            let mut a = sys::ExecutableNumOutputsArgs::new();
            a.executable = e;
            self.client.plugin.call::<sys::ExecutableNumOutputs>(&mut a)?;
            Ok(a.num_outputs)
        })
    }

    pub fn num_outputs(&self) -> usize {
        self.num_outputs
    }

    /// The plugin's serialization of the compiled executable (`PJRT_Executable_Serialize`): loadable
    /// by [`Client::deserialize`] with the same plugin and platform version only.
    pub fn serialize(&self) -> Result<Vec<u8>, PjrtError> {
        self.with_view(|e| {
            let mut a = sys::ExecutableSerializeArgs::new();
            a.executable = e;
            self.client.plugin.call::<sys::ExecutableSerialize>(&mut a)?;
            let out = if a.serialized_bytes.is_null() {
                Vec::new()
            } else {
                // SAFETY: valid for `serialized_bytes_size` bytes until the deleter runs.
                unsafe { std::slice::from_raw_parts(a.serialized_bytes as *const u8, a.serialized_bytes_size) }.to_vec()
            };
            if let Some(delete) = a.serialized_executable_deleter {
                // SAFETY: called once, on what the plugin returned.
                unsafe { delete(a.serialized_executable) };
            }
            Ok(out)
        })
    }

    /// XLA's optimized HLO module (serialized `HloModuleProto`), for inspection.
    pub fn optimized_program(&self) -> Result<Vec<u8>, PjrtError> {
        self.with_view(|e| {
            let p = &self.client.plugin;
            let mut prog = sys::Program::new();
            let mut a = sys::ExecutableOptimizedProgramArgs::new();
            a.executable = e;
            a.program = &mut prog;
            // First call: the plugin reports the size.
            p.call::<sys::ExecutableOptimizedProgram>(&mut a)?;
            let mut buf = vec![0u8; prog.code_size];
            prog.code = buf.as_mut_ptr() as *mut c_char;
            a.program = &mut prog;
            p.call::<sys::ExecutableOptimizedProgram>(&mut a)?;
            buf.truncate(prog.code_size);
            Ok(buf)
        })
    }

    /// Launches a single-device (portable) executable on `device`. Returns once the launch
    /// is enqueued; the outputs become ready asynchronously.
    pub fn execute_on(&self, device: &Device, args: &[&Buffer]) -> Result<Vec<Buffer>, PjrtError> {
        let p = &self.client.plugin;
        let arg_ptrs: Vec<*mut sys::Buffer> = args.iter().map(|b| b.raw).collect();
        let arg_lists: [*const *mut sys::Buffer; 1] = [arg_ptrs.as_ptr()];
        let mut outs: Vec<*mut sys::Buffer> = vec![std::ptr::null_mut(); self.num_outputs];
        let out_lists: [*mut *mut sys::Buffer; 1] = [outs.as_mut_ptr()];
        let mut opts = sys::ExecuteOptions::new();
        let mut a = sys::ExecuteArgs::new();
        a.executable = self.raw;
        a.options = &mut opts;
        a.argument_lists = arg_lists.as_ptr();
        a.num_devices = 1;
        a.num_args = args.len();
        a.output_lists = out_lists.as_ptr();
        a.execute_device = device.raw;
        p.call::<sys::LoadedExecutableExecute>(&mut a)?;
        Ok(outs.into_iter().map(|raw| Buffer { client: self.client.clone(), raw }).collect())
    }
}

/// A device buffer. Freed (on the device) when dropped.
pub struct Buffer {
    client: Arc<ClientInner>,
    raw: *mut sys::Buffer,
}

// SAFETY: PJRT buffers may be used from any thread.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl Drop for Buffer {
    fn drop(&mut self) {
        let mut a = sys::BufferDestroyArgs::new();
        a.buffer = self.raw;
        let _ = self.client.plugin.call::<sys::BufferDestroy>(&mut a);
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({:?})", self.raw)
    }
}

impl Buffer {
    /// The raw `PJRT_Buffer*`, for a frontend that adopts it through the same plugin.
    pub fn as_raw(&self) -> *mut std::ffi::c_void {
        self.raw as *mut _
    }

    pub fn dims(&self) -> Result<Vec<i64>, PjrtError> {
        let mut a = sys::BufferDimensionsArgs::new();
        a.buffer = self.raw;
        self.client.plugin.call::<sys::BufferDimensions>(&mut a)?;
        // SAFETY: valid for `num_dims` values while the buffer lives.
        Ok(unsafe { std::slice::from_raw_parts(a.dims, a.num_dims) }.to_vec())
    }

    pub fn on_device_size(&self) -> Result<usize, PjrtError> {
        let mut a = sys::BufferOnDeviceSizeArgs::new();
        a.buffer = self.raw;
        self.client.plugin.call::<sys::BufferOnDeviceSize>(&mut a)?;
        Ok(a.size)
    }

    /// Blocks until the buffer's contents are computed (or their computation failed).
    pub fn wait_ready(&self) -> Result<(), PjrtError> {
        let mut a = sys::BufferReadyEventArgs::new();
        a.buffer = self.raw;
        self.client.plugin.call::<sys::BufferReadyEvent>(&mut a)?;
        await_event(&self.client.plugin, a.event)
    }

    /// Lends the buffer's device memory to another framework (DLPack): raises PJRT's external
    /// reference count, so that PJRT neither frees nor moves the memory while the returned
    /// [`ExternalRef`] lives, and reads the memory's address. The buffer itself lives as long
    /// as the guard (it owns it). Wait for [`Buffer::wait_ready`] before a consumer reads it.
    pub fn lend(self) -> Result<ExternalRef, PjrtError> {
        let mut a = sys::BufferExternalRefArgs::new();
        a.buffer = self.raw;
        self.client.plugin.call::<sys::BufferIncreaseExternalReferenceCount>(&mut a)?;
        // From here on the guard's drop lowers the count again, whatever happens next.
        let mut guard = ExternalRef { buffer: self, ptr: std::ptr::null_mut() };
        let mut p = sys::BufferDeviceMemoryPointerArgs::new();
        p.buffer = guard.buffer.raw;
        guard.buffer.client.plugin.call::<sys::BufferOpaqueDeviceMemoryDataPointer>(&mut p)?;
        guard.ptr = p.device_memory_ptr;
        Ok(guard)
    }

    /// Copies the buffer to `dst` (dense, row-major) and waits for the copy.
    pub fn to_host(&self, dst: &mut [u8]) -> Result<(), PjrtError> {
        let mut a = sys::BufferToHostArgs::new();
        a.src = self.raw;
        a.dst = dst.as_mut_ptr() as *mut _;
        a.dst_size = dst.len();
        self.client.plugin.call::<sys::BufferToHostBuffer>(&mut a)?;
        await_event(&self.client.plugin, a.event)
    }
}

/// A buffer whose device memory is lent out ([`Buffer::lend`]): PJRT's external reference
/// count stays raised, and the buffer alive, until this is dropped.
pub struct ExternalRef {
    buffer: Buffer,
    ptr: *mut std::ffi::c_void,
}

// SAFETY: as for `Buffer`; the address is only data.
unsafe impl Send for ExternalRef {}
unsafe impl Sync for ExternalRef {}

impl ExternalRef {
    /// The device address of the buffer's first byte (`PJRT_Buffer_OpaqueDeviceMemoryDataPointer`:
    /// on CUDA a device pointer).
    pub fn device_pointer(&self) -> *mut std::ffi::c_void {
        self.ptr
    }

    pub fn buffer(&self) -> &Buffer {
        &self.buffer
    }
}

impl Drop for ExternalRef {
    fn drop(&mut self) {
        let mut a = sys::BufferExternalRefArgs::new();
        a.buffer = self.buffer.raw;
        let _ = self.buffer.client.plugin.call::<sys::BufferDecreaseExternalReferenceCount>(&mut a);
    }
}

impl std::fmt::Debug for ExternalRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExternalRef({:?} at {:?})", self.buffer.raw, self.ptr)
    }
}
