//! The sharding pass and shard geometry.
//!
//! API boundary: [`Rules`] (explicit `[[shard]]` globs, Flax-style logical rules, built-in
//! sets) → [`shard`] sets `Module::mesh` and every parameter's `Sharding`; [`shard_region`]
//! says which rectangle of a parameter a device holds; [`Plan`] sums that per device.
//!
//! Invariants: the pass only attaches annotations, never changes nodes, so a parameter's
//! values cannot depend on the mesh or rules; regions of the distinct replica groups of a
//! parameter tile it exactly (disjoint, covering; property-tested).

mod geometry;
mod pass;
mod plan;
mod rules;

pub use geometry::{Region, device_region, padded_local_shape, replicas, replication, shard_region};
pub use pass::{Report, shard, unshard};
pub use plan::{DeviceLoad, ParamShare, Plan};
pub use rules::{BUILTINS, Builtin, LogicalRule, Rule, RuleRef, Rules, ShardError, glob_match};
