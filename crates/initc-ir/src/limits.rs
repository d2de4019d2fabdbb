//! Bounds on a module, checked by [`crate::verify`], so that any input is either processed
//! with bounded time, memory and stack, or refused with an error naming the limit. They sit far
//! above real models (Llama-3 405B: 1,138 tensors, rank 2, depth 7, 4.1e11 elements) and below
//! what breaks a consumer: the CPU engine recurses once per operand level, and numpy opens
//! arrays of rank 32 at most (64 since numpy 2).

/// Dimensions of any value.
pub const MAX_RANK: usize = 32;
/// Longest operand chain from a parameter's value to the seed (the CPU engine recurses once
/// per level; 10,000 levels overflowed an 8 MiB stack).
pub const MAX_DEPTH: usize = 512;
/// Nodes visited to evaluate one node, counting a shared operand once per path to it (the CPU
/// engine evaluates on demand, without caching: 60 levels of `add %k, %k` would be 2^60 visits).
pub const MAX_TREE: u64 = 1 << 16;
/// Parameters of a module (every tensor costs a header entry of its checkpoint file).
pub const MAX_PARAMS: usize = 1 << 20;
/// Elements over all parameters (2^50: 4 PiB in f32).
pub const MAX_TOTAL_ELEMENTS: u64 = 1 << 50;
/// Bytes of a parameter FQN or a module name.
pub const MAX_NAME_BYTES: usize = 4096;

/// Why `name` cannot name a parameter or a module: empty, too long, or holding a control
/// character (NUL, newline, ...), which file formats and terminals do not carry faithfully.
pub fn name_problem(name: &str) -> Option<String> {
    if name.len() > MAX_NAME_BYTES {
        return Some(format!("is {} bytes long (at most {MAX_NAME_BYTES})", name.len()));
    }
    name.chars()
        .find(|c| c.is_control())
        .map(|c| format!("holds the control character {:?} (names may not contain NUL, newlines or other control characters)", c))
}

/// Whether `s` can name a logical axis: what the text IR reads as one word (a letter or `_`,
/// then letters, digits or `_`).
pub fn is_axis_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_alphabetic() || c == '_') && c.all(|c| c.is_alphanumeric() || c == '_')
}
