//! Threefry-2x32 (20 rounds), keys (`PRNGKey`, `fold_in`, `split`) and `random_bits` in
//! JAX's partitionable mode: element `i` of any draw hashes the counter `(hi32(i), lo32(i))`.

/// A threefry key `[k0, k1]` (= `jax.random.key_data`).
pub type Key = [u32; 2];

/// Threefry's key schedule parity: the third key word is `k0 ^ k1 ^ THREEFRY_PARITY`.
pub const THREEFRY_PARITY: u32 = 0x1BD1_1BDA;

const R0: [u32; 4] = [13, 15, 26, 6];
const R1: [u32; 4] = [17, 29, 16, 24];

/// One threefry2x32 block: `(y0, y1) = T(key; x0, x1)`.
#[inline(always)]
pub fn threefry2x32(key: Key, x: [u32; 2]) -> [u32; 2] {
    let mut a = [x[0]];
    let mut b = [x[1]];
    threefry_lanes(key, &mut a, &mut b);
    [a[0], b[0]]
}

/// Threefry on `N` independent lanes, written so LLVM vectorizes it.
#[inline(always)]
pub fn threefry_lanes<const N: usize>(key: Key, x0: &mut [u32; N], x1: &mut [u32; N]) {
    let ks = [key[0], key[1], key[0] ^ key[1] ^ THREEFRY_PARITY];
    for i in 0..N {
        x0[i] = x0[i].wrapping_add(ks[0]);
        x1[i] = x1[i].wrapping_add(ks[1]);
    }
    for g in 0..5usize {
        let rots = if g % 2 == 0 { R0 } else { R1 };
        for r in rots {
            for i in 0..N {
                x0[i] = x0[i].wrapping_add(x1[i]);
                x1[i] = x1[i].rotate_left(r) ^ x0[i];
            }
        }
        let (a, b) = (ks[(g + 1) % 3], ks[(g + 2) % 3].wrapping_add(g as u32 + 1));
        for i in 0..N {
            x0[i] = x0[i].wrapping_add(a);
            x1[i] = x1[i].wrapping_add(b);
        }
    }
}

/// `PRNGKey(seed)` for a u64 seed: `[seed >> 32, seed & 0xFFFFFFFF]` (JAX x64 mode; for seeds
/// below 2^32 also JAX's default x32 mode).
pub fn prng_key(seed: u64) -> Key {
    [(seed >> 32) as u32, seed as u32]
}

/// `jax.random.fold_in(key, data)`.
pub fn fold_in(key: Key, data: u32) -> Key {
    threefry2x32(key, [0, data])
}

/// `jax.random.split(key, n)[i]`.
pub fn split_at(key: Key, i: u64) -> Key {
    threefry2x32(key, [(i >> 32) as u32, i as u32])
}

/// The two threefry words of element `i` of a draw with `key`.
#[inline(always)]
pub fn block_at(key: Key, i: u64) -> [u32; 2] {
    threefry2x32(key, [(i >> 32) as u32, i as u32])
}

const LANES: usize = 8;

/// Generic body of the batch kernels: calls `emit(j, y0, y1)` for each flat index
/// `start + j`, `j < len`, in lane blocks of 8.
#[inline(always)]
pub(crate) fn for_run(key: Key, start: u64, len: usize, mut emit: impl FnMut(usize, u32, u32)) {
    let mut j = 0;
    while j < len {
        let n = (len - j).min(LANES);
        let mut a = [0u32; LANES];
        let mut b = [0u32; LANES];
        for l in 0..LANES {
            let idx = start.wrapping_add((j + l) as u64);
            a[l] = (idx >> 32) as u32;
            b[l] = idx as u32;
        }
        threefry_lanes(key, &mut a, &mut b);
        for l in 0..n {
            emit(j + l, a[l], b[l]);
        }
        j += n;
    }
}

/// Calls `emit(j, y0, y1)` for each explicit flat index `idx[j]`.
#[inline(always)]
pub(crate) fn for_list(key: Key, idx: &[u64], mut emit: impl FnMut(usize, u32, u32)) {
    for (j, chunk) in idx.chunks(LANES).enumerate() {
        let mut a = [0u32; LANES];
        let mut b = [0u32; LANES];
        for (l, &i) in chunk.iter().enumerate() {
            a[l] = (i >> 32) as u32;
            b[l] = i as u32;
        }
        threefry_lanes(key, &mut a, &mut b);
        for l in 0..chunk.len() {
            emit(j * LANES + l, a[l], b[l]);
        }
    }
}
