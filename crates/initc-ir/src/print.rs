//! The text format printer. `parse(print(m)) == m` and `print(parse(t)) == t` for printed `t`.
//!
//! ```text
//! module "tiny" seed=0
//! %0 = seed : key
//! %1 = fold_in %0, 0x9c3e62f1 : key
//! %2 = truncated_normal %1, lower=-100.0, upper=100.0 : f32[256,256]
//! %3 = full 0.02 : f32[256,256]
//! %4 = mul %2, %3 : f32[256,256]
//! param "layers.0.attention.wq.weight" : f32[256,256] = %4, axes=[heads,embed], init="..."
//! ```
//!
//! A sharded module has a `mesh [fsdp=4,tp=2]` line (plus ` uneven=pad` when padded shards are
//! allowed) after the header, and every `param` line ends in `, sharding=[{tp,fsdp},{}]`.

use std::fmt::{self, Write};

use crate::module::{Module, Node, Param};
use crate::op::Op;

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "module {} seed={}", quote(&self.name), self.seed)?;
        if self.rng != crate::RngMode::Jax {
            write!(f, " rng={}", self.rng.name())?;
        }
        writeln!(f)?;
        if let Some(mesh) = &self.mesh {
            let uneven = if mesh.uneven == crate::Uneven::Pad { " uneven=pad" } else { "" };
            writeln!(f, "mesh [{mesh}]{uneven}")?;
        }
        for (i, node) in self.nodes.iter().enumerate() {
            writeln!(f, "%{i} = {node}")?;
        }
        for p in &self.params {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "param {} : {} = {}, axes=[{}], init={}", quote(&self.fqn), self.ty, self.value, self.axes.join(","), quote(&self.init))?;
        if let Some(s) = &self.sharding {
            write!(f, ", sharding={s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.op.mnemonic())?;
        match &self.op {
            Op::Seed => {}
            Op::FoldIn { key, data } => write!(f, " {key}, 0x{data:08x}")?,
            Op::Split { key, count } => write!(f, " {key}, {count}")?,
            Op::RandomBits { key, width } => write!(f, " {key}, {width}")?,
            Op::Uniform { key, min, max } => write!(f, " {key}, min={min}, max={max}")?,
            Op::Normal { key } => write!(f, " {key}")?,
            Op::TruncatedNormal { key, lower, upper } => write!(f, " {key}, lower={lower}, upper={upper}")?,
            Op::Full { value } => write!(f, " {value}")?,
            Op::Iota { dim } => write!(f, " dim={dim}")?,
            Op::Unary { x, .. } | Op::Convert { x } | Op::Reshape { x } => write!(f, " {x}")?,
            Op::Binary { a, b, .. } => write!(f, " {a}, {b}")?,
            Op::Compare { dir, a, b } => write!(f, " {dir} {a}, {b}")?,
            Op::Select { pred, on_true, on_false } => write!(f, " {pred}, {on_true}, {on_false}")?,
            Op::Broadcast { x, dims } => write!(f, " {x}, dims={}", list(dims))?,
            Op::Transpose { x, perm } => write!(f, " {x}, perm={}", list(perm))?,
            Op::Slice { x, start, limit } => write!(f, " {x}, start={}, limit={}", list(start), list(limit))?,
            Op::Concat { xs, dim } => {
                for x in xs {
                    write!(f, " {x},")?;
                }
                write!(f, " dim={dim}")?;
            }
        }
        write!(f, " : {}", self.ty)
    }
}

fn list<T: fmt::Display>(xs: &[T]) -> String {
    let mut s = String::from("[");
    for (i, x) in xs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s.push(']');
    s
}

/// A double-quoted string with `"` and `\` escaped, and control characters as `\u{..}`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
