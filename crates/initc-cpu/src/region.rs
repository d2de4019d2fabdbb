//! Rectangular regions (a device's shard of a parameter) and their bounded-memory, parallel,
//! in-order materialization.

use rayon::prelude::*;

use crate::eval::{Evaluator, Idx, strides};
use initc_ir::Value;
pub use initc_shard::Region;

/// Elements per work item: large enough to amortize dispatch, small enough to stay in cache.
pub const CHUNK: usize = 1 << 16;

/// The region as runs of contiguous global flat indices, cut into pieces of at most `CHUNK`.
struct Runs {
    global_strides: Vec<u64>,
    /// Dims `0..k` are iterated row by row; the run covers dims `k..` (contiguous in memory).
    k: usize,
    offset: Vec<u64>,
    outer: Vec<u64>,
    run_len: u64,
    pieces_per_run: u64,
    rows: u64,
}

impl Runs {
    fn new(global: &[u64], r: &Region) -> Runs {
        let rank = global.len();
        // The smallest k such that every dim after k is fully covered: dims k.. are contiguous.
        let full = |d: usize| r.offset[d] == 0 && r.shape[d] == global[d];
        let mut k = rank.saturating_sub(1);
        while k > 0 && full(k) {
            k -= 1;
        }
        let gs = strides(global);
        let (run_len, outer) = if rank == 0 { (1, vec![]) } else { (r.shape[k] * gs[k], r.shape[..k].to_vec()) };
        let rows: u64 = outer.iter().product();
        let pieces_per_run = run_len.div_ceil(CHUNK as u64).max(1);
        Runs { global_strides: gs, k, offset: r.offset.clone(), outer, run_len, pieces_per_run, rows: if run_len == 0 { 0 } else { rows } }
    }

    fn count(&self) -> u64 {
        self.rows * self.pieces_per_run
    }

    fn piece(&self, i: u64) -> Idx {
        let (row, piece) = (i / self.pieces_per_run, i % self.pieces_per_run);
        let mut start = if self.global_strides.is_empty() { 0 } else { self.offset[self.k] * self.global_strides[self.k] };
        let mut rem = row;
        for d in (0..self.k).rev() {
            let c = rem % self.outer[d];
            rem /= self.outer[d];
            start += (c + self.offset[d]) * self.global_strides[d];
        }
        let lo = piece * CHUNK as u64;
        let len = (self.run_len - lo).min(CHUNK as u64) as usize;
        Idx::Run { start: start + lo, len }
    }
}

/// Materializes `region` of node `value` (of global shape `global`) as little-endian bytes in
/// row-major order of the region, handing consecutive pieces to `sink`. Work is parallel;
/// memory stays O(threads × CHUNK).
pub fn materialize<E>(
    ev: &Evaluator,
    value: Value,
    global: &[u64],
    region: &Region,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let runs = Runs::new(global, region);
    let group = (rayon::current_num_threads() * 4) as u64;
    let mut i = 0;
    while i < runs.count() {
        let end = (i + group).min(runs.count());
        let bytes: Vec<Vec<u8>> = (i..end)
            .into_par_iter()
            .map(|p| {
                let mut out = Vec::new();
                ev.eval(value, &runs.piece(p)).append_le_bytes(&mut out);
                out
            })
            .collect();
        for b in &bytes {
            sink(b)?;
        }
        i = end;
    }
    Ok(())
}
