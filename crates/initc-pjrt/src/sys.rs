//! `#[repr(C)]` mirrors of the PJRT C API structs initc uses, laid out as in
//! `xla/pjrt/c/pjrt_c_api.h` at API version 0.117 (the newest header read; the CUDA plugin of
//! jax 0.11.2 reports 0.115). Plugins accept argument structs at least as large as their own
//! and read only the fields they know, so every struct carries all fields up to its 0.117 size
//! even where initc leaves them zero. `tests` below pins sizes and offsets to the header.
//!
//! Functions are reached through the `PJRT_Api` table by slot (a slot is one pointer-sized
//! word from the start of the struct); [`Fn`] ties each slot to its argument struct.

#![allow(dead_code)]

use std::ffi::{c_char, c_void};

/// Opaque handles.
#[repr(C)]
pub struct PjrtError(());
#[repr(C)]
pub struct Event(());
#[repr(C)]
pub struct Client(());
#[repr(C)]
pub struct Device(());
#[repr(C)]
pub struct DeviceDescription(());
#[repr(C)]
pub struct Executable(());
#[repr(C)]
pub struct LoadedExecutable(());
#[repr(C)]
pub struct Buffer(());

pub type Ext = *mut c_void;

/// The first words of `PJRT_Api`: its size, extension chain and version.
#[repr(C)]
pub struct ApiHeader {
    pub struct_size: usize,
    pub extension_start: Ext,
    pub version: ApiVersion,
}

#[repr(C)]
pub struct ApiVersion {
    pub struct_size: usize,
    pub extension_start: Ext,
    pub major: i32,
    pub minor: i32,
}

/// Implemented by every argument struct: its 0.117 size is what `struct_size` says.
pub trait Args: Sized {
    fn new() -> Self {
        // SAFETY: every args struct is plain old data (integers, raw pointers, bools) for
        // which all-zero is a valid value (null pointers, zero sizes, `false`).
        let mut a: Self = unsafe { std::mem::zeroed() };
        // SAFETY: every args struct starts with `size_t struct_size`.
        unsafe { *(&mut a as *mut Self as *mut usize) = std::mem::size_of::<Self>() };
        a
    }
}

/// A PJRT function: its slot in `PJRT_Api`, its header name and its argument struct.
pub trait Fn {
    const SLOT: usize;
    const NAME: &'static str;
    type Args: Args;
}

macro_rules! args {
    ($($name:ident { $($field:ident : $ty:ty),* $(,)? })*) => {$(
        #[repr(C)]
        pub struct $name {
            pub struct_size: usize,
            pub extension_start: Ext,
            $(pub $field: $ty,)*
        }
        impl Args for $name {}
    )*};
}

args! {
    ErrorDestroyArgs { error: *mut PjrtError }
    ErrorMessageArgs { error: *const PjrtError, message: *const c_char, message_size: usize }
    ErrorGetCodeArgs { error: *const PjrtError, code: i32 }
    PluginInitializeArgs {}
    PluginAttributesArgs { attributes: *const NamedValue, num_attributes: usize }
    EventDestroyArgs { event: *mut Event }
    EventAwaitArgs { event: *mut Event }
    ClientCreateArgs {
        create_options: *const NamedValue, num_options: usize,
        kv_get_callback: *const c_void, kv_get_user_arg: *mut c_void,
        kv_put_callback: *const c_void, kv_put_user_arg: *mut c_void,
        client: *mut Client,
        kv_try_get_callback: *const c_void, kv_try_get_user_arg: *mut c_void,
    }
    ClientDestroyArgs { client: *mut Client }
    ClientStringArgs { client: *mut Client, value: *const c_char, value_size: usize }
    ClientAddressableDevicesArgs { client: *mut Client, devices: *const *mut Device, num_devices: usize }
    ClientCompileArgs {
        client: *mut Client, program: *const Program,
        compile_options: *const c_char, compile_options_size: usize,
        executable: *mut LoadedExecutable,
    }
    Program { code: *mut c_char, code_size: usize, format: *const c_char, format_size: usize }
    BufferFromHostBufferArgs {
        client: *mut Client, data: *const c_void, ty: i32, dims: *const i64, num_dims: usize,
        byte_strides: *const i64, num_byte_strides: usize, host_buffer_semantics: i32,
        device: *mut Device, memory: *mut c_void, device_layout: *mut c_void,
        done_with_host_buffer: *mut Event, buffer: *mut Buffer,
    }
    DeviceGetDescriptionArgs { device: *mut Device, description: *mut DeviceDescription }
    DescriptionIdArgs { description: *mut DeviceDescription, id: i32 }
    DescriptionStringArgs { description: *mut DeviceDescription, value: *const c_char, value_size: usize }
    DeviceLocalHardwareIdArgs { device: *mut Device, local_hardware_id: i32 }
    DeviceMemoryStatsArgs {
        device: *mut Device,
        bytes_in_use: i64,
        peak_bytes_in_use: i64, peak_bytes_in_use_is_set: bool,
        num_allocs: i64, num_allocs_is_set: bool,
        largest_alloc_size: i64, largest_alloc_size_is_set: bool,
        bytes_limit: i64, bytes_limit_is_set: bool,
        bytes_reserved: i64, bytes_reserved_is_set: bool,
        peak_bytes_reserved: i64, peak_bytes_reserved_is_set: bool,
        bytes_reservable_limit: i64, bytes_reservable_limit_is_set: bool,
        largest_free_block_bytes: i64, largest_free_block_bytes_is_set: bool,
        pool_bytes: i64, pool_bytes_is_set: bool,
        peak_pool_bytes: i64, peak_pool_bytes_is_set: bool,
        peak_allocated_bytes: i64, peak_allocated_bytes_is_set: bool,
    }
    DeviceClearMemoryStatsArgs { device: *mut Device }
    ExecutableDestroyArgs { executable: *mut Executable }
    ExecutableNumOutputsArgs { executable: *mut Executable, num_outputs: usize }
    ExecutableOptimizedProgramArgs { executable: *mut Executable, program: *mut Program }
    ExecutableSerializeArgs {
        executable: *mut Executable, serialized_bytes: *const c_char, serialized_bytes_size: usize,
        serialized_executable: *mut c_void, serialized_executable_deleter: Option<unsafe extern "C" fn(*mut c_void)>,
    }
    ExecutableDeserializeAndLoadArgs {
        client: *mut Client, serialized_executable: *const c_char, serialized_executable_size: usize,
        loaded_executable: *mut LoadedExecutable,
        overridden_serialized_compile_options: *const c_char, overridden_serialized_compile_options_size: usize,
    }
    LoadedExecutableDestroyArgs { executable: *mut LoadedExecutable }
    LoadedExecutableGetExecutableArgs { loaded: *mut LoadedExecutable, executable: *mut Executable }
    ExecuteOptions {
        send_callbacks: *mut c_void, recv_callbacks: *mut c_void,
        num_send_ops: usize, num_recv_ops: usize, launch_id: i32,
        non_donatable_input_indices: *const i64, num_non_donatable_input_indices: usize,
        context: *mut c_void, call_location: *const c_char,
        num_tasks: usize, task_ids: *mut i32, incarnation_ids: *mut i64,
        multi_slice_config: *mut c_void, use_major_to_minor_data_layout_for_callbacks: bool,
        hlo_output_callbacks: *mut c_void, num_hlo_output_callbacks: usize,
        custom_options: *const NamedValue, num_custom_options: usize,
    }
    ExecuteArgs {
        executable: *mut LoadedExecutable, options: *mut ExecuteOptions,
        argument_lists: *const *const *mut Buffer, num_devices: usize, num_args: usize,
        output_lists: *const *mut *mut Buffer, device_complete_events: *mut *mut Event,
        execute_device: *mut Device,
    }
    BufferDestroyArgs { buffer: *mut Buffer }
    BufferElementTypeArgs { buffer: *mut Buffer, ty: i32 }
    BufferDimensionsArgs { buffer: *mut Buffer, dims: *const i64, num_dims: usize }
    BufferOnDeviceSizeArgs { buffer: *mut Buffer, size: usize }
    BufferToHostArgs { src: *mut Buffer, host_layout: *mut c_void, dst: *mut c_void, dst_size: usize, event: *mut Event }
    BufferReadyEventArgs { buffer: *mut Buffer, event: *mut Event }
    BufferExternalRefArgs { buffer: *mut Buffer }
    BufferDeviceMemoryPointerArgs { buffer: *mut Buffer, device_memory_ptr: *mut c_void }
}

/// `PJRT_NamedValue`: a key and a value whose member of the union `ty` selects.
#[repr(C)]
pub struct NamedValue {
    pub struct_size: usize,
    pub extension_start: Ext,
    pub name: *const c_char,
    pub name_size: usize,
    pub ty: i32,
    /// The union `{string_value, int64_value, int64_array_value, float_value, bool_value}`.
    pub value: u64,
    pub value_size: usize,
}

pub const NAMED_STRING: i32 = 0;
pub const NAMED_INT64: i32 = 1;
pub const NAMED_INT64_LIST: i32 = 2;
pub const NAMED_FLOAT: i32 = 3;
pub const NAMED_BOOL: i32 = 4;

/// `PJRT_HostBufferSemantics_kImmutableOnlyDuringCall`: PJRT copies the data before returning.
pub const HOST_BUFFER_IMMUTABLE_ONLY_DURING_CALL: i32 = 0;
/// `PJRT_HostBufferSemantics_kImmutableUntilTransferCompletes`: the caller keeps the data
/// until `done_with_host_buffer` fires; the call returns at once.
pub const HOST_BUFFER_IMMUTABLE_UNTIL_TRANSFER_COMPLETES: i32 = 1;

/// `PJRT_Buffer_Type` values initc uses.
pub mod buffer_type {
    pub const PRED: i32 = 1;
    pub const S32: i32 = 4;
    pub const U8: i32 = 6;
    pub const U16: i32 = 7;
    pub const U32: i32 = 8;
    pub const U64: i32 = 9;
    pub const F16: i32 = 10;
    pub const F32: i32 = 11;
    pub const F64: i32 = 12;
    pub const BF16: i32 = 13;
}

macro_rules! fns {
    ($($name:ident = $slot:literal, $cname:literal, $args:ty;)*) => {$(
        pub struct $name;
        impl Fn for $name {
            const SLOT: usize = $slot;
            const NAME: &'static str = $cname;
            type Args = $args;
        }
    )*};
}

// Slots: word offsets in `PJRT_Api` (header + 3-word `PJRT_Api_Version` + function pointers).
fns! {
    ErrorDestroy = 5, "PJRT_Error_Destroy", ErrorDestroyArgs;
    ErrorMessage = 6, "PJRT_Error_Message", ErrorMessageArgs;
    ErrorGetCode = 7, "PJRT_Error_GetCode", ErrorGetCodeArgs;
    PluginInitialize = 8, "PJRT_Plugin_Initialize", PluginInitializeArgs;
    PluginAttributes = 9, "PJRT_Plugin_Attributes", PluginAttributesArgs;
    EventDestroy = 10, "PJRT_Event_Destroy", EventDestroyArgs;
    EventAwait = 13, "PJRT_Event_Await", EventAwaitArgs;
    ClientCreate = 15, "PJRT_Client_Create", ClientCreateArgs;
    ClientDestroy = 16, "PJRT_Client_Destroy", ClientDestroyArgs;
    ClientPlatformName = 17, "PJRT_Client_PlatformName", ClientStringArgs;
    ClientPlatformVersion = 19, "PJRT_Client_PlatformVersion", ClientStringArgs;
    ClientAddressableDevices = 21, "PJRT_Client_AddressableDevices", ClientAddressableDevicesArgs;
    ClientCompile = 25, "PJRT_Client_Compile", ClientCompileArgs;
    ClientBufferFromHostBuffer = 27, "PJRT_Client_BufferFromHostBuffer", BufferFromHostBufferArgs;
    DescriptionId = 28, "PJRT_DeviceDescription_Id", DescriptionIdArgs;
    DescriptionKind = 31, "PJRT_DeviceDescription_Kind", DescriptionStringArgs;
    DescriptionDebugString = 32, "PJRT_DeviceDescription_DebugString", DescriptionStringArgs;
    DeviceGetDescription = 34, "PJRT_Device_GetDescription", DeviceGetDescriptionArgs;
    DeviceLocalHardwareId = 36, "PJRT_Device_LocalHardwareId", DeviceLocalHardwareIdArgs;
    DeviceMemoryStats = 39, "PJRT_Device_MemoryStats", DeviceMemoryStatsArgs;
    ExecutableDestroy = 45, "PJRT_Executable_Destroy", ExecutableDestroyArgs;
    ExecutableNumOutputs = 49, "PJRT_Executable_NumOutputs", ExecutableNumOutputsArgs;
    ExecutableOptimizedProgram = 53, "PJRT_Executable_OptimizedProgram", ExecutableOptimizedProgramArgs;
    ExecutableSerialize = 54, "PJRT_Executable_Serialize", ExecutableSerializeArgs;
    LoadedExecutableDestroy = 55, "PJRT_LoadedExecutable_Destroy", LoadedExecutableDestroyArgs;
    LoadedExecutableGetExecutable = 56, "PJRT_LoadedExecutable_GetExecutable", LoadedExecutableGetExecutableArgs;
    LoadedExecutableExecute = 60, "PJRT_LoadedExecutable_Execute", ExecuteArgs;
    ExecutableDeserializeAndLoad = 61, "PJRT_Executable_DeserializeAndLoad", ExecutableDeserializeAndLoadArgs;
    BufferDestroy = 63, "PJRT_Buffer_Destroy", BufferDestroyArgs;
    BufferElementType = 64, "PJRT_Buffer_ElementType", BufferElementTypeArgs;
    BufferDimensions = 65, "PJRT_Buffer_Dimensions", BufferDimensionsArgs;
    BufferOnDeviceSize = 69, "PJRT_Buffer_OnDeviceSizeInBytes", BufferOnDeviceSizeArgs;
    BufferToHostBuffer = 75, "PJRT_Buffer_ToHostBuffer", BufferToHostArgs;
    BufferReadyEvent = 77, "PJRT_Buffer_ReadyEvent", BufferReadyEventArgs;
    BufferIncreaseExternalReferenceCount = 79, "PJRT_Buffer_IncreaseExternalReferenceCount", BufferExternalRefArgs;
    BufferDecreaseExternalReferenceCount = 80, "PJRT_Buffer_DecreaseExternalReferenceCount", BufferExternalRefArgs;
    BufferOpaqueDeviceMemoryDataPointer = 81, "PJRT_Buffer_OpaqueDeviceMemoryDataPointer", BufferDeviceMemoryPointerArgs;
    DeviceClearMemoryStats = 140, "PJRT_Device_ClearMemoryStats", DeviceClearMemoryStatsArgs;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// Sizes of the 0.117 header's structs (`sizeof` from a C compiler on x86-64).
    #[test]
    fn struct_sizes_match_the_header() {
        let cases: &[(&str, usize, usize)] = &[
            ("PJRT_Api_Version", size_of::<ApiVersion>(), 24),
            ("PJRT_Error_Destroy_Args", size_of::<ErrorDestroyArgs>(), 24),
            ("PJRT_Error_Message_Args", size_of::<ErrorMessageArgs>(), 40),
            ("PJRT_Error_GetCode_Args", size_of::<ErrorGetCodeArgs>(), 32),
            ("PJRT_NamedValue", size_of::<NamedValue>(), 56),
            ("PJRT_Plugin_Initialize_Args", size_of::<PluginInitializeArgs>(), 16),
            ("PJRT_Plugin_Attributes_Args", size_of::<PluginAttributesArgs>(), 32),
            ("PJRT_Event_Destroy_Args", size_of::<EventDestroyArgs>(), 24),
            ("PJRT_Event_Await_Args", size_of::<EventAwaitArgs>(), 24),
            ("PJRT_Client_Create_Args", size_of::<ClientCreateArgs>(), 88),
            ("PJRT_Client_Destroy_Args", size_of::<ClientDestroyArgs>(), 24),
            ("PJRT_Client_PlatformName_Args", size_of::<ClientStringArgs>(), 40),
            ("PJRT_Client_AddressableDevices_Args", size_of::<ClientAddressableDevicesArgs>(), 40),
            ("PJRT_Client_Compile_Args", size_of::<ClientCompileArgs>(), 56),
            ("PJRT_Program", size_of::<Program>(), 48),
            ("PJRT_Client_BufferFromHostBuffer_Args", size_of::<BufferFromHostBufferArgs>(), 120),
            ("PJRT_Device_GetDescription_Args", size_of::<DeviceGetDescriptionArgs>(), 32),
            ("PJRT_DeviceDescription_Id_Args", size_of::<DescriptionIdArgs>(), 32),
            ("PJRT_DeviceDescription_Kind_Args", size_of::<DescriptionStringArgs>(), 40),
            ("PJRT_Device_LocalHardwareId_Args", size_of::<DeviceLocalHardwareIdArgs>(), 32),
            ("PJRT_Device_MemoryStats_Args", size_of::<DeviceMemoryStatsArgs>(), 208),
            ("PJRT_Device_ClearMemoryStats_Args", size_of::<DeviceClearMemoryStatsArgs>(), 24),
            ("PJRT_Executable_Destroy_Args", size_of::<ExecutableDestroyArgs>(), 24),
            ("PJRT_Executable_NumOutputs_Args", size_of::<ExecutableNumOutputsArgs>(), 32),
            ("PJRT_Executable_OptimizedProgram_Args", size_of::<ExecutableOptimizedProgramArgs>(), 32),
            ("PJRT_LoadedExecutable_Destroy_Args", size_of::<LoadedExecutableDestroyArgs>(), 24),
            ("PJRT_LoadedExecutable_GetExecutable_Args", size_of::<LoadedExecutableGetExecutableArgs>(), 32),
            ("PJRT_ExecuteOptions", size_of::<ExecuteOptions>(), 160),
            ("PJRT_LoadedExecutable_Execute_Args", size_of::<ExecuteArgs>(), 80),
            ("PJRT_Buffer_Destroy_Args", size_of::<BufferDestroyArgs>(), 24),
            ("PJRT_Buffer_ElementType_Args", size_of::<BufferElementTypeArgs>(), 32),
            ("PJRT_Buffer_Dimensions_Args", size_of::<BufferDimensionsArgs>(), 40),
            ("PJRT_Buffer_OnDeviceSizeInBytes_Args", size_of::<BufferOnDeviceSizeArgs>(), 32),
            ("PJRT_Buffer_ToHostBuffer_Args", size_of::<BufferToHostArgs>(), 56),
            ("PJRT_Buffer_ReadyEvent_Args", size_of::<BufferReadyEventArgs>(), 32),
            ("PJRT_Buffer_IncreaseExternalReferenceCount_Args", size_of::<BufferExternalRefArgs>(), 24),
            ("PJRT_Executable_Serialize_Args", size_of::<ExecutableSerializeArgs>(), 56),
            ("PJRT_Executable_DeserializeAndLoad_Args", size_of::<ExecutableDeserializeAndLoadArgs>(), 64),
            ("PJRT_Buffer_OpaqueDeviceMemoryDataPointer_Args", size_of::<BufferDeviceMemoryPointerArgs>(), 32),
        ];
        for (name, ours, header) in cases {
            assert_eq!(ours, header, "{name}");
        }
    }

    /// Offsets of the fields whose position is easiest to get wrong (after ints and bools).
    #[test]
    fn field_offsets_match_the_header() {
        let cases: &[(&str, usize, usize)] = &[
            ("PJRT_Api_Version.minor_version", offset_of!(ApiVersion, minor), 20),
            ("PJRT_Error_Message_Args.message_size", offset_of!(ErrorMessageArgs, message_size), 32),
            ("PJRT_Error_GetCode_Args.code", offset_of!(ErrorGetCodeArgs, code), 24),
            ("PJRT_NamedValue.type", offset_of!(NamedValue, ty), 32),
            ("PJRT_NamedValue.int64_value", offset_of!(NamedValue, value), 40),
            ("PJRT_NamedValue.value_size", offset_of!(NamedValue, value_size), 48),
            ("PJRT_Plugin_Attributes_Args.num_attributes", offset_of!(PluginAttributesArgs, num_attributes), 24),
            ("PJRT_Client_Create_Args.client", offset_of!(ClientCreateArgs, client), 64),
            ("PJRT_Client_Create_Args.kv_try_get_user_arg", offset_of!(ClientCreateArgs, kv_try_get_user_arg), 80),
            ("PJRT_Client_AddressableDevices_Args.num_addressable_devices", offset_of!(ClientAddressableDevicesArgs, num_devices), 32),
            ("PJRT_Client_Compile_Args.compile_options_size", offset_of!(ClientCompileArgs, compile_options_size), 40),
            ("PJRT_Client_Compile_Args.executable", offset_of!(ClientCompileArgs, executable), 48),
            ("PJRT_Program.format_size", offset_of!(Program, format_size), 40),
            ("PJRT_Client_BufferFromHostBuffer_Args.type", offset_of!(BufferFromHostBufferArgs, ty), 32),
            ("PJRT_Client_BufferFromHostBuffer_Args.dims", offset_of!(BufferFromHostBufferArgs, dims), 40),
            (
                "PJRT_Client_BufferFromHostBuffer_Args.host_buffer_semantics",
                offset_of!(BufferFromHostBufferArgs, host_buffer_semantics),
                72,
            ),
            ("PJRT_Client_BufferFromHostBuffer_Args.device", offset_of!(BufferFromHostBufferArgs, device), 80),
            (
                "PJRT_Client_BufferFromHostBuffer_Args.done_with_host_buffer",
                offset_of!(BufferFromHostBufferArgs, done_with_host_buffer),
                104,
            ),
            ("PJRT_Client_BufferFromHostBuffer_Args.buffer", offset_of!(BufferFromHostBufferArgs, buffer), 112),
            ("PJRT_DeviceDescription_Id_Args.id", offset_of!(DescriptionIdArgs, id), 24),
            ("PJRT_DeviceDescription_Kind_Args.device_kind_size", offset_of!(DescriptionStringArgs, value_size), 32),
            ("PJRT_Device_LocalHardwareId_Args.local_hardware_id", offset_of!(DeviceLocalHardwareIdArgs, local_hardware_id), 24),
            ("PJRT_Device_MemoryStats_Args.bytes_in_use", offset_of!(DeviceMemoryStatsArgs, bytes_in_use), 24),
            ("PJRT_Device_MemoryStats_Args.peak_bytes_in_use", offset_of!(DeviceMemoryStatsArgs, peak_bytes_in_use), 32),
            ("PJRT_Device_MemoryStats_Args.peak_bytes_in_use_is_set", offset_of!(DeviceMemoryStatsArgs, peak_bytes_in_use_is_set), 40),
            ("PJRT_Device_MemoryStats_Args.bytes_limit", offset_of!(DeviceMemoryStatsArgs, bytes_limit), 80),
            ("PJRT_Device_MemoryStats_Args.bytes_limit_is_set", offset_of!(DeviceMemoryStatsArgs, bytes_limit_is_set), 88),
            (
                "PJRT_Device_MemoryStats_Args.peak_allocated_bytes_is_set",
                offset_of!(DeviceMemoryStatsArgs, peak_allocated_bytes_is_set),
                200,
            ),
            ("PJRT_Executable_NumOutputs_Args.num_outputs", offset_of!(ExecutableNumOutputsArgs, num_outputs), 24),
            ("PJRT_ExecuteOptions.launch_id", offset_of!(ExecuteOptions, launch_id), 48),
            ("PJRT_ExecuteOptions.context", offset_of!(ExecuteOptions, context), 72),
            (
                "PJRT_ExecuteOptions.use_major_to_minor_data_layout_for_callbacks",
                offset_of!(ExecuteOptions, use_major_to_minor_data_layout_for_callbacks),
                120,
            ),
            ("PJRT_ExecuteOptions.num_custom_options", offset_of!(ExecuteOptions, num_custom_options), 152),
            ("PJRT_LoadedExecutable_Execute_Args.argument_lists", offset_of!(ExecuteArgs, argument_lists), 32),
            ("PJRT_LoadedExecutable_Execute_Args.output_lists", offset_of!(ExecuteArgs, output_lists), 56),
            ("PJRT_LoadedExecutable_Execute_Args.execute_device", offset_of!(ExecuteArgs, execute_device), 72),
            ("PJRT_Buffer_ElementType_Args.type", offset_of!(BufferElementTypeArgs, ty), 24),
            ("PJRT_Buffer_Dimensions_Args.num_dims", offset_of!(BufferDimensionsArgs, num_dims), 32),
            ("PJRT_Buffer_ToHostBuffer_Args.dst_size", offset_of!(BufferToHostArgs, dst_size), 40),
            ("PJRT_Buffer_ToHostBuffer_Args.event", offset_of!(BufferToHostArgs, event), 48),
        ];
        for (name, ours, header) in cases {
            assert_eq!(ours, header, "{name}");
        }
    }

    /// Slots are `offsetof(PJRT_Api, fn) / 8` in the header; `PJRT_Api` is 1144 bytes (143
    /// words) at 0.117, as the jax 0.11.2 CUDA plugin (0.115) reports for its own table.
    #[test]
    fn api_slots_match_the_header() {
        let cases: &[(&str, usize, usize)] = &[
            (ErrorDestroy::NAME, ErrorDestroy::SLOT, 5),
            (PluginInitialize::NAME, PluginInitialize::SLOT, 8),
            (EventAwait::NAME, EventAwait::SLOT, 13),
            (ClientCreate::NAME, ClientCreate::SLOT, 15),
            (ClientCompile::NAME, ClientCompile::SLOT, 25),
            (ClientBufferFromHostBuffer::NAME, ClientBufferFromHostBuffer::SLOT, 27),
            (DeviceMemoryStats::NAME, DeviceMemoryStats::SLOT, 39),
            (LoadedExecutableExecute::NAME, LoadedExecutableExecute::SLOT, 60),
            (ExecutableSerialize::NAME, ExecutableSerialize::SLOT, 54),
            (ExecutableDeserializeAndLoad::NAME, ExecutableDeserializeAndLoad::SLOT, 61),
            (BufferToHostBuffer::NAME, BufferToHostBuffer::SLOT, 75),
            (BufferReadyEvent::NAME, BufferReadyEvent::SLOT, 77),
            (BufferIncreaseExternalReferenceCount::NAME, BufferIncreaseExternalReferenceCount::SLOT, 79),
            (BufferDecreaseExternalReferenceCount::NAME, BufferDecreaseExternalReferenceCount::SLOT, 80),
            (BufferOpaqueDeviceMemoryDataPointer::NAME, BufferOpaqueDeviceMemoryDataPointer::SLOT, 81),
            (DeviceClearMemoryStats::NAME, DeviceClearMemoryStats::SLOT, 140),
        ];
        for (name, ours, header) in cases {
            assert_eq!(ours, header, "{name}");
        }
        assert_eq!(size_of::<ApiHeader>(), 8 * 5, "the version struct ends at slot 5");
    }

    #[test]
    fn new_args_carry_their_size_and_zeros() {
        let a = ClientCreateArgs::new();
        assert_eq!(a.struct_size, 88);
        assert!(a.client.is_null() && a.create_options.is_null() && a.num_options == 0);
    }
}
