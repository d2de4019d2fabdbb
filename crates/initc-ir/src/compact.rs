//! Dead-node elimination and renumbering. Tracing leaves nodes behind when a parameter is
//! re-assigned (last write wins); compacting before printing keeps goldens free of them.

use crate::module::Module;
use crate::op::Value;

/// Whether a pass changed the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Yes,
    No,
}

/// Removes every node no parameter depends on and renumbers the rest in their original order.
pub fn compact(m: &mut Module) -> Changed {
    let mut live = vec![false; m.nodes.len()];
    for p in &m.params {
        live[p.value.index()] = true;
    }
    for i in (0..m.nodes.len()).rev() {
        if live[i] {
            for v in m.nodes[i].op.operands() {
                live[v.index()] = true;
            }
        }
    }
    if live.iter().all(|&l| l) {
        return Changed::No;
    }
    let mut new_index = vec![Value(u32::MAX); m.nodes.len()];
    let old = std::mem::take(&mut m.nodes);
    for (i, mut node) in old.into_iter().enumerate() {
        if live[i] {
            node.op.map_operands(|v| new_index[v.index()]);
            new_index[i] = Value(m.nodes.len() as u32);
            m.nodes.push(node);
        }
    }
    for p in &mut m.params {
        p.value = new_index[p.value.index()];
    }
    Changed::Yes
}
