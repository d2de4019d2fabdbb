//! Loading a plugin: `dlopen`, `GetPjrtApi()`, version check, `PJRT_Plugin_Initialize`, and the
//! one typed entry point to the function table ([`Plugin::call`]).

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{ErrorCode, PjrtError};
use crate::sys::{self, Args, Fn};

/// The PJRT major version initc speaks (0: every minor is ABI-compatible with the next).
pub const SUPPORTED_MAJOR: i32 = 0;
/// The oldest minor initc accepts: the one it has been run against (the CUDA plugin of
/// jax-cuda13-pjrt 0.11.2). Older plugins may lack fields initc sets.
pub const SUPPORTED_MINOR_MIN: i32 = 115;
/// The header minor the `sys` structs are sized to.
pub const HEADER_MINOR: i32 = 117;

/// A loaded plugin. Keeps the library mapped for as long as any handle lives.
pub struct Plugin {
    path: PathBuf,
    api: *const sys::ApiHeader,
    version: (i32, i32),
    _lib: libloading::Library,
}

// SAFETY: the PJRT C API is thread-safe; `api` points into the plugin's static data, which
// lives as long as `_lib`.
unsafe impl Send for Plugin {}
unsafe impl Sync for Plugin {}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plugin({}, {}.{})", self.path.display(), self.version.0, self.version.1)
    }
}

impl Plugin {
    /// Loads `path`, checks its API version and initializes it.
    pub fn load(path: &Path) -> Result<Arc<Plugin>, PjrtError> {
        let load_err = |reason: String| PjrtError::Load { path: path.to_path_buf(), reason };
        // SAFETY: loading a shared library runs its initializers; a PJRT plugin is meant to be
        // loaded this way (as jaxlib does).
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| load_err(e.to_string()))?;
        // SAFETY: `GetPjrtApi` has the signature `const PJRT_Api* GetPjrtApi(void)`.
        let api = unsafe {
            let get: libloading::Symbol<unsafe extern "C" fn() -> *const sys::ApiHeader> =
                lib.get(b"GetPjrtApi\0").map_err(|e| load_err(format!("no GetPjrtApi symbol ({e}); is this a PJRT plugin?")))?;
            get()
        };
        if api.is_null() {
            return Err(load_err("GetPjrtApi returned null".into()));
        }
        // SAFETY: non-null, and every PJRT_Api starts with the header.
        let (size, major, minor) = unsafe { ((*api).struct_size, (*api).version.major, (*api).version.minor) };
        if size < std::mem::size_of::<sys::ApiHeader>() {
            return Err(load_err(format!("PJRT_Api struct_size {size} is too small")));
        }
        check_version(path, major, minor)?;
        let plugin = Plugin { path: path.to_path_buf(), api, version: (major, minor), _lib: lib };
        plugin.call::<sys::PluginInitialize>(&mut sys::PluginInitializeArgs::new())?;
        Ok(Arc::new(plugin))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `(major, minor)` as the plugin reports it.
    pub fn version(&self) -> (i32, i32) {
        self.version
    }

    /// The plugin's attributes (`xla_version`, `stablehlo_current_version`, ...), rendered as
    /// text.
    pub fn attributes(&self) -> Result<Vec<(String, String)>, PjrtError> {
        let mut a = sys::PluginAttributesArgs::new();
        self.call::<sys::PluginAttributes>(&mut a)?;
        let mut out = Vec::new();
        for i in 0..a.num_attributes {
            // SAFETY: the plugin returns `num_attributes` values living as long as the process.
            let v = unsafe { &*a.attributes.add(i) };
            let name = unsafe { str_of(v.name, v.name_size) };
            let value = unsafe {
                match v.ty {
                    sys::NAMED_STRING => str_of(v.value as *const _, v.value_size),
                    sys::NAMED_INT64 => (v.value as i64).to_string(),
                    sys::NAMED_INT64_LIST => {
                        let p = v.value as *const i64;
                        let xs: Vec<String> = (0..v.value_size).map(|k| (*p.add(k)).to_string()).collect();
                        format!("[{}]", xs.join(", "))
                    }
                    sys::NAMED_FLOAT => f32::from_bits(v.value as u32).to_string(),
                    sys::NAMED_BOOL => ((v.value & 0xff) != 0).to_string(),
                    t => format!("<type {t}>"),
                }
            };
            out.push((name, value));
        }
        Ok(out)
    }

    /// Calls function `F` with `args`; a non-null `PJRT_Error*` becomes [`PjrtError::Call`].
    pub(crate) fn call<F: Fn>(&self, args: &mut F::Args) -> Result<(), PjrtError> {
        let f = self.slot(F::SLOT, F::NAME)?;
        // SAFETY: slot `F::SLOT` holds `PJRT_Error* (*)(F::Args*)` per the header, and `args`
        // is a properly sized `F::Args` (see `sys`).
        let err = unsafe {
            let f: unsafe extern "C" fn(*mut F::Args) -> *mut sys::PjrtError = std::mem::transmute(f);
            f(args)
        };
        if err.is_null() { Ok(()) } else { Err(self.take_error(F::NAME, err)) }
    }

    /// The function pointer in `slot`, checked against the table's size.
    fn slot(&self, slot: usize, name: &'static str) -> Result<*const c_void, PjrtError> {
        // SAFETY: `api` is valid for `struct_size` bytes.
        let size = unsafe { (*self.api).struct_size };
        let missing = || PjrtError::Missing { path: self.path.clone(), call: name, slots: size / 8 };
        if (slot + 1) * 8 > size {
            return Err(missing());
        }
        // SAFETY: in bounds (checked above); the table is an array of pointers after the header.
        let f = unsafe { *(self.api as *const *const c_void).add(slot) };
        if f.is_null() { Err(missing()) } else { Ok(f) }
    }

    /// Reads code and message out of a `PJRT_Error` and frees it.
    fn take_error(&self, call: &'static str, err: *mut sys::PjrtError) -> PjrtError {
        let mut m = sys::ErrorMessageArgs::new();
        m.error = err;
        let mut message = String::from("(no message)");
        if let Ok(f) = self.slot(sys::ErrorMessage::SLOT, sys::ErrorMessage::NAME) {
            // SAFETY: `PJRT_Error_Message` returns void and fills `m`; the message lives as
            // long as `err`.
            unsafe {
                let f: unsafe extern "C" fn(*mut sys::ErrorMessageArgs) = std::mem::transmute(f);
                f(&mut m);
                message = str_of(m.message, m.message_size);
            }
        }
        let mut c = sys::ErrorGetCodeArgs::new();
        c.error = err;
        let code = match self.call_raw::<sys::ErrorGetCode>(&mut c) {
            true => ErrorCode::from_raw(c.code),
            false => ErrorCode::Unknown,
        };
        if let Ok(f) = self.slot(sys::ErrorDestroy::SLOT, sys::ErrorDestroy::NAME) {
            let mut d = sys::ErrorDestroyArgs::new();
            d.error = err;
            // SAFETY: `PJRT_Error_Destroy` returns void; `err` is not used afterwards.
            unsafe {
                let f: unsafe extern "C" fn(*mut sys::ErrorDestroyArgs) = std::mem::transmute(f);
                f(&mut d);
            }
        }
        PjrtError::Call { call, code, message }
    }

    /// A call whose own error (if any) is dropped: used while reporting another error.
    fn call_raw<F: Fn>(&self, args: &mut F::Args) -> bool {
        let Ok(f) = self.slot(F::SLOT, F::NAME) else { return false };
        // SAFETY: as in `call`.
        unsafe {
            let f: unsafe extern "C" fn(*mut F::Args) -> *mut sys::PjrtError = std::mem::transmute(f);
            f(args).is_null()
        }
    }
}

/// Refuses another major version, or a minor older than [`SUPPORTED_MINOR_MIN`].
pub(crate) fn check_version(path: &Path, major: i32, minor: i32) -> Result<(), PjrtError> {
    if major == SUPPORTED_MAJOR && minor >= SUPPORTED_MINOR_MIN {
        return Ok(());
    }
    Err(PjrtError::Version {
        path: path.to_path_buf(),
        major,
        minor,
        supported_major: SUPPORTED_MAJOR,
        supported_min: SUPPORTED_MINOR_MIN,
        header_minor: HEADER_MINOR,
    })
}

/// Copies a (pointer, length) string from the plugin.
///
/// # Safety
/// `p` must be valid for `n` bytes, or null.
pub(crate) unsafe fn str_of(p: *const std::ffi::c_char, n: usize) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per the contract above.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, n) };
    String::from_utf8_lossy(bytes).into_owned()
}

// `Args::new` is used through the trait in this module.
#[allow(unused_imports)]
use sys::Args as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_without_get_pjrt_api_is_refused_with_its_path() {
        // libc is always there and is no PJRT plugin.
        let err = Plugin::load(Path::new("libc.so.6")).unwrap_err();
        let s = err.to_string();
        assert!(s.contains("libc.so.6") && s.contains("GetPjrtApi"), "{s}");
    }

    #[test]
    fn versions_are_checked_by_major_and_oldest_minor() {
        let p = Path::new("/x/plugin.so");
        assert!(check_version(p, 0, 115).is_ok());
        assert!(check_version(p, 0, 140).is_ok(), "newer minors are ABI-compatible");
        let old = check_version(p, 0, 54).unwrap_err().to_string();
        assert!(old.contains("0.54") && old.contains("0.115") && old.contains("/x/plugin.so"), "{old}");
        let major = check_version(p, 1, 200).unwrap_err().to_string();
        assert!(major.contains("1.200") && major.contains("0.115"), "{major}");
    }

    #[test]
    fn a_missing_file_is_a_load_error() {
        let err = Plugin::load(Path::new("/nonexistent/xla_cuda_plugin.so")).unwrap_err();
        assert!(matches!(err, PjrtError::Load { .. }), "{err}");
    }
}
