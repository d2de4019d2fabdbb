//! Sharding annotations: Shardy (`sdy.mesh` + `#sdy.sharding` on results, the default) or GSPMD
//! (`mhlo.sharding` strings). Mesh + PartitionSpec stay symbolic until here, as in JAX.

use initc_ir::{Mesh, Module, Param, Sharding};

use crate::text::quote;
use crate::{Options, Partitioner};

/// Module attributes and the ops before `@main` (the Shardy mesh).
pub(crate) fn module_prelude(m: &Module, opts: &Options) -> (String, String) {
    let n = m.mesh.as_ref().map_or(1, Mesh::devices);
    let attrs = format!("mhlo.num_partitions = {n} : i32, mhlo.num_replicas = 1 : i32");
    let prelude = match (&m.mesh, opts.partitioner) {
        (Some(mesh), Partitioner::Shardy) => {
            let axes: Vec<String> = mesh.axes.iter().map(|a| format!("{}={}", quote(&a.name), a.size)).collect();
            format!("  \"sdy.mesh\"() {{sym_name = \"mesh\", mesh = #sdy.mesh<[{}]>}} : () -> () loc(\"mesh\")\n", axes.join(", "))
        }
        _ => String::new(),
    };
    (attrs, prelude)
}

/// ` {sdy.sharding = ...}` for the key argument (replicated), or nothing without a mesh.
pub(crate) fn arg_attr(m: &Module, opts: &Options) -> String {
    match (&m.mesh, opts.partitioner) {
        (None, _) => String::new(),
        (Some(_), Partitioner::Shardy) => " {sdy.sharding = #sdy.sharding<@mesh, [{}]>}".into(),
        (Some(_), Partitioner::Gspmd) => " {mhlo.sharding = \"{replicated}\"}".into(),
    }
}

/// The result attribute carrying parameter `p`'s sharding.
pub(crate) fn result_attr(m: &Module, p: &Param, opts: &Options) -> String {
    let (Some(mesh), Some(s)) = (&m.mesh, &p.sharding) else { return String::new() };
    match opts.partitioner {
        Partitioner::Shardy => {
            let dims: Vec<String> =
                s.dims.iter().map(|d| format!("{{{}}}", d.iter().map(|a| quote(a)).collect::<Vec<_>>().join(", "))).collect();
            format!(" {{sdy.sharding = #sdy.sharding<@mesh, [{}]>}}", dims.join(", "))
        }
        Partitioner::Gspmd => format!(" {{mhlo.sharding = {}}}", quote(&gspmd(mesh, s))),
    }
}

/// The HLO sharding string: tiles per dimension over the devices of the mesh (row-major),
/// transposed so that each dimension's axes come in spec order, unused axes last (replicated).
pub fn gspmd(mesh: &Mesh, s: &Sharding) -> String {
    if s.is_replicated() || mesh.devices() == 1 {
        return "{replicated}".into();
    }
    let mut perm: Vec<usize> = s.dims.iter().flatten().filter_map(|a| mesh.axis(a)).collect();
    let used = perm.clone();
    let unused: Vec<usize> = (0..mesh.axes.len()).filter(|i| !used.contains(i)).collect();
    perm.extend(&unused);
    let mut tiles: Vec<u64> = (0..s.dims.len()).map(|d| s.parts(mesh, d)).collect();
    let repl: u64 = unused.iter().map(|&i| mesh.axes[i].size).product();
    if repl > 1 {
        tiles.push(repl);
    }
    let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let shape = list(&mesh.shape());
    let identity = perm.iter().enumerate().all(|(i, &p)| i == p);
    let iota = if identity {
        format!("<=[{}]", mesh.devices())
    } else {
        format!("<=[{shape}]T({})", perm.iter().map(usize::to_string).collect::<Vec<_>>().join(","))
    };
    let suffix = if repl > 1 { " last_tile_dim_replicate" } else { "" };
    format!("{{devices=[{}]{iota}{suffix}}}", list(&tiles))
}
