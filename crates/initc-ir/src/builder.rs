//! Checked, hash-consing construction of a module: every pushed node is verified against the
//! nodes before it, and an identical `(op, type)` returns the existing value instead of a copy.

use std::collections::HashMap;

use crate::module::{Module, Node, Param};
use crate::op::{Op, Value};
use crate::types::Type;
use crate::verify::{NodeError, check_node};

#[derive(Debug, Default)]
pub struct Builder {
    module: Module,
    dedup: HashMap<Node, Value>,
}

impl Builder {
    pub fn new(name: impl Into<String>) -> Builder {
        Builder { module: Module::new(name), dedup: HashMap::new() }
    }

    pub fn module(&self) -> &Module {
        &self.module
    }

    pub fn ty(&self, v: Value) -> &Type {
        self.module.ty(v)
    }

    pub fn set_seed(&mut self, seed: u64) {
        self.module.seed = seed;
    }

    pub fn set_rng_mode(&mut self, mode: crate::RngMode) {
        self.module.rng = mode;
    }

    /// Checks `op : ty` against the nodes already built and appends it (or returns the
    /// identical node built before).
    pub fn push(&mut self, op: Op, ty: Type) -> Result<Value, NodeError> {
        check_node(&self.module.nodes, &op, &ty)?;
        let node = Node { op, ty };
        if let Some(&v) = self.dedup.get(&node) {
            return Ok(v);
        }
        let v = self.module.push_node(node.op.clone(), node.ty.clone());
        self.dedup.insert(node, v);
        Ok(v)
    }

    /// Mutable access to the parameter table (the tracer owns FQN bookkeeping).
    pub fn params_mut(&mut self) -> &mut Vec<Param> {
        &mut self.module.params
    }

    pub fn finish(self) -> Module {
        self.module
    }
}
