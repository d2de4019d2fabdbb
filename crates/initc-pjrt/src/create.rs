//! Client create options: the named values `PJRT_Client_Create` takes.
//!
//! The CUDA plugin (jax-cuda*-pjrt) reads `allocator` (`"default"`, `"bfc"`, `"cuda"`,
//! `"platform"`), `memory_fraction` (float) and `preallocate` (bool). By default it preallocates
//! 75 % of the GPU for its BFC allocator (measured on an H200: "XLA backend allocating
//! 104.85GiB"), so a process that also runs torch or JAX has no memory left for them.
//! [`ClientOptions::sharing`] — what initc uses — asks for a BFC allocator that grows on demand.

use std::ffi::c_char;

use crate::sys::{NAMED_BOOL, NAMED_FLOAT, NAMED_INT64_LIST, NAMED_STRING, NamedValue};

/// Options for [`crate::Client::with_options`]. `None` leaves the plugin's default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientOptions {
    /// Take the allocator's memory up front (`preallocate`).
    pub preallocate: Option<bool>,
    /// Fraction of device memory the allocator may use (`memory_fraction`, 0 < f ≤ 1).
    pub memory_fraction: Option<f32>,
    /// `allocator`: `"default"`, `"bfc"`, `"cuda"` or `"platform"`.
    pub allocator: Option<String>,
    /// `visible_devices`: the CUDA ordinals the client opens (default: all). A torchrun rank
    /// passes its own GPU, so that its client neither sees nor sets up the others.
    pub visible_devices: Option<Vec<i64>>,
}

impl ClientOptions {
    /// Room for torch or JAX beside initc in one process: no preallocation, a BFC allocator.
    pub fn sharing() -> ClientOptions {
        ClientOptions { preallocate: Some(false), memory_fraction: None, allocator: Some("bfc".into()), visible_devices: None }
    }

    /// The options a plugin accepts. Only the CUDA plugin (its file name contains `cuda`)
    /// knows these names; others (libtpu) get none rather than an "unknown option" failure.
    pub fn for_plugin(&self, plugin_file: &str) -> ClientOptions {
        if plugin_file.contains("cuda") { self.clone() } else { ClientOptions::default() }
    }

    /// Checks the values (a fraction outside (0, 1], an unknown allocator).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(f) = self.memory_fraction
            && !(f > 0.0 && f <= 1.0)
        {
            return Err(format!("memory_fraction must be in (0, 1], got {f}"));
        }
        if let Some(a) = &self.allocator
            && !["default", "bfc", "cuda", "platform"].contains(&a.as_str())
        {
            return Err(format!("allocator `{a}` is not one of default, bfc, cuda, platform"));
        }
        if let Some(v) = &self.visible_devices
            && (v.is_empty() || v.iter().any(|&d| d < 0))
        {
            return Err(format!("visible_devices must list device ordinals (≥ 0), got {v:?}"));
        }
        Ok(())
    }

    /// The named values, borrowing `self`'s strings (keep `self` alive while they are used).
    pub(crate) fn named_values(&self) -> Vec<NamedValue> {
        let mut out = Vec::new();
        let mut push = |name: &'static str, ty: i32, value: u64, value_size: usize| {
            out.push(NamedValue {
                struct_size: std::mem::size_of::<NamedValue>(),
                extension_start: std::ptr::null_mut(),
                name: name.as_ptr() as *const c_char,
                name_size: name.len(),
                ty,
                value,
                value_size,
            })
        };
        if let Some(p) = self.preallocate {
            push("preallocate", NAMED_BOOL, u64::from(p), 1);
        }
        if let Some(f) = self.memory_fraction {
            push("memory_fraction", NAMED_FLOAT, u64::from(f.to_bits()), 1);
        }
        if let Some(a) = &self.allocator {
            push("allocator", NAMED_STRING, a.as_ptr() as u64, a.len());
        }
        if let Some(v) = &self.visible_devices {
            push("visible_devices", NAMED_INT64_LIST, v.as_ptr() as u64, v.len());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_values_carry_each_option_in_its_union_member() {
        let o = ClientOptions {
            preallocate: Some(false),
            memory_fraction: Some(0.5),
            allocator: Some("bfc".into()),
            visible_devices: Some(vec![2, 3]),
        };
        let v = o.named_values();
        assert_eq!(v.len(), 4);
        let name = |n: &NamedValue| unsafe {
            std::str::from_utf8(std::slice::from_raw_parts(n.name as *const u8, n.name_size)).unwrap().to_string()
        };
        assert_eq!((name(&v[0]).as_str(), v[0].ty, v[0].value, v[0].value_size), ("preallocate", NAMED_BOOL, 0, 1));
        assert_eq!((name(&v[1]).as_str(), v[1].ty, f32::from_bits(v[1].value as u32)), ("memory_fraction", NAMED_FLOAT, 0.5));
        let s = unsafe { std::str::from_utf8(std::slice::from_raw_parts(v[2].value as *const u8, v[2].value_size)).unwrap() };
        assert_eq!((name(&v[2]).as_str(), v[2].ty, s), ("allocator", NAMED_STRING, "bfc"));
        let l = unsafe { std::slice::from_raw_parts(v[3].value as *const i64, v[3].value_size) };
        assert_eq!((name(&v[3]).as_str(), v[3].ty, l), ("visible_devices", NAMED_INT64_LIST, &[2i64, 3][..]));
        assert!(ClientOptions::default().named_values().is_empty());
    }

    #[test]
    fn only_the_cuda_plugin_gets_cuda_options_and_bad_values_are_refused() {
        let s = ClientOptions::sharing();
        assert_eq!(s.for_plugin("/x/jax_plugins/xla_cuda13/xla_cuda_plugin.so"), s);
        assert_eq!(s.for_plugin("/x/libtpu/libtpu.so"), ClientOptions::default());
        assert!(ClientOptions { memory_fraction: Some(1.5), ..Default::default() }.validate().unwrap_err().contains("(0, 1]"));
        assert!(ClientOptions { allocator: Some("arena".into()), ..Default::default() }.validate().unwrap_err().contains("arena"));
        assert!(ClientOptions { visible_devices: Some(vec![]), ..Default::default() }.validate().unwrap_err().contains("ordinals"));
        assert!(s.validate().is_ok());
    }
}
