//! Device meshes and per-parameter shardings, as the IR records them.
//!
//! A [`Mesh`] is an ordered list of named axes (`fsdp=4,tp=2`); device `k` sits at the
//! row-major coordinates of `k` in the mesh shape (the last axis varies fastest), as
//! `jax.sharding.Mesh(np.array(devices).reshape(shape), names)` places them.
//! A [`Sharding`] is JAX's `PartitionSpec`: for every dimension, the mesh axes it is split
//! over (major to minor; none = replicated along it).
//!
//! Which rule produced a sharding is the shard pass's business (`initc-shard`); this module
//! only states what is well-formed: known axes, each used at most once, one entry per
//! dimension, and even division unless the mesh allows padded shards.

use std::fmt;
use std::str::FromStr;

use crate::types::Type;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MeshAxis {
    pub name: String,
    pub size: u64,
}

/// What to do when a dimension is not divisible by the product of its mesh axes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Uneven {
    /// Refuse (the default): every device's shard has the same shape.
    #[default]
    Error,
    /// XLA-style padding: shards of `ceil(n / k)`, the last ones short (possibly empty).
    Pad,
}

impl Uneven {
    pub fn name(self) -> &'static str {
        match self {
            Uneven::Error => "error",
            Uneven::Pad => "pad",
        }
    }

    pub fn from_name(s: &str) -> Option<Uneven> {
        match s {
            "error" => Some(Uneven::Error),
            "pad" => Some(Uneven::Pad),
            _ => None,
        }
    }
}

/// Devices arranged as a named n-dimensional grid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Mesh {
    pub axes: Vec<MeshAxis>,
    pub uneven: Uneven,
}

/// At most this many devices in one mesh (keeps every count and offset far from overflow).
pub const MAX_DEVICES: u64 = 1 << 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    #[error("a mesh needs at least one axis")]
    Empty,
    #[error("mesh axis name `{0}` is not an identifier (letters, digits, `_`; not starting with a digit)")]
    BadName(String),
    #[error("mesh axis `{0}` appears twice")]
    Duplicate(String),
    #[error("mesh axis `{name}` has size {size}; sizes are positive integers")]
    BadSize { name: String, size: String },
    #[error("the mesh has more than {MAX_DEVICES} devices")]
    TooLarge,
    #[error("`{0}` is not `axis=size`; write meshes as `fsdp=8` or `dp=2,fsdp=4,tp=8`")]
    Syntax(String),
}

pub fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Mesh {
    /// A mesh from `(name, size)` pairs, checked.
    pub fn new<S: Into<String>>(axes: impl IntoIterator<Item = (S, u64)>, uneven: Uneven) -> Result<Mesh, MeshError> {
        let mut out = Mesh { axes: vec![], uneven };
        let mut devices: u64 = 1;
        for (name, size) in axes {
            let name = name.into();
            if !is_identifier(&name) {
                return Err(MeshError::BadName(name));
            }
            if out.axis(&name).is_some() {
                return Err(MeshError::Duplicate(name));
            }
            if size == 0 {
                return Err(MeshError::BadSize { name, size: size.to_string() });
            }
            devices = devices.checked_mul(size).filter(|&d| d <= MAX_DEVICES).ok_or(MeshError::TooLarge)?;
            out.axes.push(MeshAxis { name, size });
        }
        if out.axes.is_empty() {
            return Err(MeshError::Empty);
        }
        Ok(out)
    }

    pub fn devices(&self) -> u64 {
        self.axes.iter().map(|a| a.size).product()
    }

    /// Position of the axis named `name`.
    pub fn axis(&self, name: &str) -> Option<usize> {
        self.axes.iter().position(|a| a.name == name)
    }

    pub fn size_of(&self, name: &str) -> Option<u64> {
        self.axis(name).map(|i| self.axes[i].size)
    }

    /// Device `k`'s coordinate along every axis (row-major, last axis fastest).
    pub fn coords(&self, device: u64) -> Vec<u64> {
        let mut rem = device;
        let mut c = vec![0; self.axes.len()];
        for (i, a) in self.axes.iter().enumerate().rev() {
            c[i] = rem % a.size;
            rem /= a.size;
        }
        c
    }

    pub fn shape(&self) -> Vec<u64> {
        self.axes.iter().map(|a| a.size).collect()
    }
}

/// `fsdp=4,tp=2` (the `uneven` policy is not part of this spelling).
impl fmt::Display for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.axes.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}={}", a.name, a.size)?;
        }
        Ok(())
    }
}

/// Parses `fsdp=4,tp=2` (spaces allowed around items).
impl FromStr for Mesh {
    type Err = MeshError;

    fn from_str(s: &str) -> Result<Mesh, MeshError> {
        let mut axes = Vec::new();
        for item in s.split(',') {
            let (name, size) = item.split_once('=').ok_or_else(|| MeshError::Syntax(item.trim().to_string()))?;
            let (name, size) = (name.trim(), size.trim());
            if !is_identifier(name) {
                return Err(MeshError::BadName(name.to_string()));
            }
            let n: u64 = size.parse().map_err(|_| MeshError::BadSize { name: name.to_string(), size: size.to_string() })?;
            axes.push((name.to_string(), n));
        }
        Mesh::new(axes, Uneven::Error)
    }
}

/// A `PartitionSpec`: per dimension, the mesh axes it is split over (major to minor).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sharding {
    pub dims: Vec<Vec<String>>,
}

impl Sharding {
    pub fn replicated(rank: usize) -> Sharding {
        Sharding { dims: vec![vec![]; rank] }
    }

    pub fn is_replicated(&self) -> bool {
        self.dims.iter().all(Vec::is_empty)
    }

    /// How many pieces dimension `d` is cut into.
    pub fn parts(&self, mesh: &Mesh, d: usize) -> u64 {
        self.dims[d].iter().map(|a| mesh.size_of(a).unwrap_or(1)).product()
    }

    /// Checks that every axis is one of `mesh`'s and none is used twice (whatever the rank).
    pub fn check_axes(&self, mesh: &Mesh) -> Result<(), ShardingError> {
        let mut used: Vec<&str> = vec![];
        for (dim, axes) in self.dims.iter().enumerate() {
            for a in axes {
                if mesh.axis(a).is_none() {
                    return Err(ShardingError::UnknownAxis { axis: a.clone(), dim, mesh: mesh.to_string() });
                }
                if used.contains(&a.as_str()) {
                    return Err(ShardingError::AxisTwice { axis: a.clone() });
                }
                used.push(a);
            }
        }
        Ok(())
    }

    /// Checks this sharding for a parameter of type `ty` on `mesh`.
    pub fn check(&self, mesh: &Mesh, ty: &Type) -> Result<(), ShardingError> {
        if self.dims.len() != ty.rank() {
            return Err(ShardingError::Rank { entries: self.dims.len(), rank: ty.rank() });
        }
        self.check_axes(mesh)?;
        for dim in 0..self.dims.len() {
            let parts = self.parts(mesh, dim);
            if mesh.uneven == Uneven::Error && !ty.shape[dim].is_multiple_of(parts) {
                return Err(ShardingError::Indivisible { dim, size: ty.shape[dim], axes: self.dims[dim].clone(), parts });
            }
        }
        Ok(())
    }
}

/// `[{tp,fsdp},{}]`: Shardy's spelling without quotes.
impl fmt::Display for Sharding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.dims.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{{{}}}", d.join(","))?;
        }
        f.write_str("]")
    }
}

/// What is wrong with a sharding; the caller adds the parameter and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardingError {
    #[error("{entries} spec entries for a rank-{rank} parameter")]
    Rank { entries: usize, rank: usize },
    #[error("dim {dim}: `{axis}` is not an axis of mesh {mesh}")]
    UnknownAxis { axis: String, dim: usize, mesh: String },
    #[error("mesh axis `{axis}` is used twice")]
    AxisTwice { axis: String },
    #[error("dim {dim} (size {size}) is not divisible by {} = {parts}", axes_product(.axes))]
    Indivisible { dim: usize, size: u64, axes: Vec<String>, parts: u64 },
}

fn axes_product(axes: &[String]) -> String {
    if axes.len() == 1 { axes[0].clone() } else { axes.join("×") }
}
