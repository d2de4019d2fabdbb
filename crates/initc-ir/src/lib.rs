//! initc's intermediate representation of a model initialization program.
//!
//! API boundary: [`Module`] (a flat SSA arena in topological order plus the parameter table),
//! [`Builder`] (checked, hash-consing construction), the text format ([`parse`] and
//! `Display`), [`verify`], and passes ([`compact`]).
//!
//! Invariants of a verified module:
//! - every operand refers to an earlier node, so one forward sweep evaluates it;
//! - every node's type is consistent with its op and operands ([`check_node`]);
//! - it stays within [`limits`] (rank, operand depth, parameter count, total elements, names);
//! - parameter FQNs are unique, non-empty, and each parameter's declared type is its value's;
//! - with a mesh, every parameter has a well-formed sharding on it; without one, none has.
//!
//! This crate knows nothing about random number values, files or devices.

mod builder;
mod compact;
pub mod limits;
mod module;
mod op;
mod parse;
mod print;
mod sharding;
mod types;
mod verify;

pub use builder::Builder;
pub use compact::{Changed, compact};
pub use module::{Module, Node, Param, RngMode};
pub use op::{BinaryOp, CmpDir, F64, Op, UnaryOp, Value};
pub use parse::{ParseError, ParseErrorKind, parse};
pub use print::quote;
pub use sharding::{MAX_DEVICES, Mesh, MeshAxis, MeshError, Sharding, ShardingError, Uneven, is_identifier};
pub use types::{DType, Type};
pub use verify::{NodeError, VerifyError, check_node, owner_param, verify};
