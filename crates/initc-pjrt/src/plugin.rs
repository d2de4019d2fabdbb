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
    /// Loads `path`, checks that `GetPjrtApi` returns a plausible function table of a supported
    /// version, and only then initializes it. A bare file name means `./name`: the dynamic
    /// loader's search path is never consulted (`--plugin libz.so.1` would load the system's).
    pub fn load(path: &Path) -> Result<Arc<Plugin>, PjrtError> {
        let path = &explicit_path(path);
        let load_err = |reason: String| PjrtError::Load { path: path.to_path_buf(), reason };
        // SAFETY: loading a shared library runs its initializers; a PJRT plugin is meant to be
        // loaded this way (as jaxlib does). `path` has a directory part, so dlopen opens that
        // file only.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| load_err(e.to_string()))?;
        // SAFETY: `GetPjrtApi` has the signature `const PJRT_Api* GetPjrtApi(void)`.
        let api = unsafe {
            let get: libloading::Symbol<unsafe extern "C" fn() -> *const sys::ApiHeader> =
                lib.get(b"GetPjrtApi\0").map_err(|e| load_err(format!("no GetPjrtApi symbol ({e}); is this a PJRT plugin?")))?;
            get()
        };
        // SAFETY: `api` is what GetPjrtApi returned; check_table reads it only as far as its
        // checked sizes allow.
        let (major, minor) = unsafe { check_table(api) }.map_err(load_err)?;
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

/// `path` itself if it has a directory part, else `./path`.
pub fn explicit_path(path: &Path) -> PathBuf {
    let bare = path.parent().is_some_and(|p| p.as_os_str().is_empty());
    if bare { Path::new(".").join(path) } else { path.to_path_buf() }
}

/// The largest `PJRT_Api` initc believes (0.117's is about 1.2 KB).
const MAX_TABLE_BYTES: usize = 1 << 16;

/// Functions a table must have before initc calls any of them.
const REQUIRED: [(usize, &str); 5] = [
    (sys::ErrorDestroy::SLOT, sys::ErrorDestroy::NAME),
    (sys::ErrorMessage::SLOT, sys::ErrorMessage::NAME),
    (sys::ErrorGetCode::SLOT, sys::ErrorGetCode::NAME),
    (sys::PluginInitialize::SLOT, sys::PluginInitialize::NAME),
    (sys::ClientCreate::SLOT, sys::ClientCreate::NAME),
];

/// Checks what `GetPjrtApi` returned before anything in it is called: non-null, aligned, a
/// `struct_size` between the required functions' end and [`MAX_TABLE_BYTES`], a sane version
/// struct, and the functions initc needs first present. Returns `(major, minor)`.
///
/// # Safety
/// `api` must be null or valid for reads of its `struct_size` bytes when that size is within
/// the checked bounds (what a PJRT plugin promises).
pub(crate) unsafe fn check_table(api: *const sys::ApiHeader) -> Result<(i32, i32), String> {
    if api.is_null() {
        return Err("GetPjrtApi returned null".into());
    }
    if !api.is_aligned() {
        return Err(format!("GetPjrtApi returned a misaligned pointer {api:p}"));
    }
    // SAFETY: non-null and aligned; every PJRT_Api starts with the header.
    let (size, vsize, major, minor) =
        unsafe { ((*api).struct_size, (*api).version.struct_size, (*api).version.major, (*api).version.minor) };
    let min = (REQUIRED.iter().map(|r| r.0).max().unwrap_or(0) + 1) * 8;
    if !(min..=MAX_TABLE_BYTES).contains(&size) {
        return Err(format!(
            "implausible PJRT_Api: struct_size {size} (a table holding the functions initc needs is {min} to {MAX_TABLE_BYTES} bytes)"
        ));
    }
    if !(std::mem::size_of::<sys::ApiVersion>()..=4096).contains(&vsize) {
        return Err(format!("implausible PJRT_Api: PJRT_Api_Version struct_size {vsize}"));
    }
    for (slot, name) in REQUIRED {
        // SAFETY: slot * 8 < size (checked above).
        if unsafe { *(api as *const *const c_void).add(slot) }.is_null() {
            return Err(format!("implausible PJRT_Api: {name} is null"));
        }
    }
    Ok((major, minor))
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
    fn a_bare_name_is_a_file_in_the_current_directory() {
        // libc.so.6 is on the loader's search path, never in the crate directory.
        let err = Plugin::load(Path::new("libc.so.6")).unwrap_err().to_string();
        assert!(err.contains("./libc.so.6") && !err.contains("GetPjrtApi"), "{err}");
        assert_eq!(explicit_path(Path::new("x.so")), Path::new("./x.so"));
        assert_eq!(explicit_path(Path::new("/a/x.so")), Path::new("/a/x.so"));
        assert_eq!(explicit_path(Path::new("d/x.so")), Path::new("d/x.so"));
    }

    /// A fake table: header, version (0.117), then `slots` function words set to `f`.
    fn table(size: usize, f: usize) -> Vec<usize> {
        let mut t = vec![0usize; 200];
        t[0] = size;
        t[2] = std::mem::size_of::<sys::ApiVersion>();
        t[4] = 117 << 32;
        for w in &mut t[5..] {
            *w = f;
        }
        t
    }

    #[test]
    fn implausible_tables_are_refused_before_any_call() {
        let check = |t: &[usize]| unsafe { check_table(t.as_ptr() as *const sys::ApiHeader) };
        assert_eq!(check(&table(1200, 1)), Ok((0, 117)));
        assert!(unsafe { check_table(std::ptr::null()) }.unwrap_err().contains("null"));
        assert!(check(&table(16, 1)).unwrap_err().contains("struct_size 16"));
        assert!(check(&table(1 << 40, 1)).unwrap_err().contains("struct_size"));
        assert!(check(&table(1200, 0)).unwrap_err().contains("PJRT_Error_Destroy is null"));
        let mut t = table(1200, 1);
        t[2] = 7;
        assert!(check(&t).unwrap_err().contains("PJRT_Api_Version struct_size 7"));
        let bytes = [0u8; 64];
        let odd = unsafe { bytes.as_ptr().add(1) } as *const sys::ApiHeader;
        assert!(unsafe { check_table(odd) }.unwrap_err().contains("misaligned"));
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
