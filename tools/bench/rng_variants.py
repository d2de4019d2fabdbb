"""Micro-benchmark of counter-to-bits layouts for sharding-invariant random init on one GPU.

Every variant fills N values of a truncated normal (JAX's inverse-CDF path: uniform in [a, b],
erf_inv, scale) from threefry2x32 or Philox-4x32-10 counters that are global flat indices, so every
variant is sharding-invariant. They differ only in how many values one hash call feeds and in how
XLA is asked to share that hash between neighbouring values:

  jax        one threefry per value, bits = x ^ y (jax.random, partitionable mode)
  tf2_sel    [N/2, 2] array, lane = iota over the last dim, select(lane, x, y): does XLA share the hash?
  tf2_u64    [N/2] u64 per hash = two f32 bit patterns, bitcast_convert to [N/2, 2] f32
  philox_sel [N/4, 4] array, Philox-4x32-10, select by lane
  *_bf16     the same for bf16 (JAX draws 8 bits per bf16 value)
  tf4_u64_bf16 / tf4_tab_bf16  4 bf16 per threefry through u64; with a 256-entry table instead of erf_inv
  tf2_tab14*_bf16  2 bf16 per threefry, one gather of a 16384-entry pair table (initc's fast bf16 form)
  tf1_tab / tf4_tab1g / tab2d  1, 2 or 4 gathers per block: XLA fuses the hash into one gather only
  bm16_bf16 / poly4_bf16 / bits4_bf16  Box-Muller from 16-bit words, a polynomial (timing only), no transform
Each line reports XLA's temp bytes: a non-zero figure means the hash was kept in a temporary (not fused).

Usage (GPU machine): python3 tools/bench/rng_variants.py [log2 N]   -> prints one line per variant
"""
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

jax.config.update("jax_enable_x64", True)
U32 = jnp.uint32
LOG2N = int(sys.argv[1]) if len(sys.argv) > 1 else 30
N = 1 << LOG2N
K0, K1 = 0x12345678, 0x9ABCDEF0


def rotl(x, r):
    return (x << U32(r)) | (x >> U32(32 - r))


def threefry(x0, x1, k0=K0, k1=K1):
    k0, k1 = U32(k0), U32(k1)
    k2 = k0 ^ k1 ^ U32(0x1BD11BDA)
    ks = [k0, k1, k2]
    rot = [[13, 15, 26, 6], [17, 29, 16, 24]]
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(5):
        for r in rot[i % 2]:
            x0 = x0 + x1
            x1 = rotl(x1, r)
            x1 = x1 ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + U32(i + 1)
    return x0, x1


def philox(c0, c1, c2, c3, k0=K0, k1=K1):
    k0, k1 = U32(k0), U32(k1)
    for _ in range(10):
        p0 = c0.astype(jnp.uint64) * jnp.uint64(0xD2511F53)
        p1 = c2.astype(jnp.uint64) * jnp.uint64(0xCD9E8D57)
        hi0, lo0 = (p0 >> 32).astype(U32), p0.astype(U32)
        hi1, lo1 = (p1 >> 32).astype(U32), p1.astype(U32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = k0 + U32(0x9E3779B9)
        k1 = k1 + U32(0xBB67AE85)
    return c0, c1, c2, c3


A, B = -0.9544997, 0.9544997  # erf(-2/sqrt2), erf(2/sqrt2)
S2 = np.float32(np.sqrt(2))


def tn_f32(bits32):
    f = lax.bitcast_convert_type((bits32 >> U32(9)) | U32(0x3F800000), jnp.float32) - 1.0
    u = jnp.maximum(jnp.float32(A), f * jnp.float32(B - A) + jnp.float32(A))
    return jnp.clip(S2 * lax.erf_inv(u), -2.0, 2.0) * jnp.float32(0.02)


def tn_bf16(bits8):  # bits8: u32 holding 8 random bits
    f = lax.bitcast_convert_type(((bits8 & U32(0xFF)) >> U32(1)).astype(jnp.uint16) | jnp.uint16(0x3F80), jnp.bfloat16) - jnp.bfloat16(1)
    u = jnp.maximum(jnp.bfloat16(A), f * jnp.bfloat16(B - A) + jnp.bfloat16(A))
    z = (lax.erf_inv(u.astype(jnp.float32))).astype(jnp.bfloat16) * jnp.bfloat16(S2)
    return jnp.clip(z, -2.0, 2.0) * jnp.bfloat16(0.02)


def table_bf16():
    b = jnp.arange(256, dtype=U32)
    return tn_bf16(b)


def jax_bits():
    """JAX's layout: one threefry block per element, its two words xored."""
    i = lax.iota(U32, N)
    x, y = threefry(jnp.zeros_like(i), i)
    return x ^ y


def v_jax():
    return tn_f32(jax_bits())


def v_tf2_sel():
    g = lax.broadcasted_iota(U32, (N // 2, 2), 0)
    lane = lax.broadcasted_iota(U32, (N // 2, 2), 1)
    x, y = threefry(jnp.zeros_like(g), g)
    return tn_f32(jnp.where(lane == 0, x, y)).reshape(N)


def v_tf2_u64():
    g = lax.iota(U32, N // 2)
    x, y = threefry(jnp.zeros_like(g), g)
    lo = lax.bitcast_convert_type(tn_f32(x), U32).astype(jnp.uint64)
    hi = lax.bitcast_convert_type(tn_f32(y), U32).astype(jnp.uint64)
    return lax.bitcast_convert_type(lo | (hi << jnp.uint64(32)), jnp.float32).reshape(N)


def v_philox_sel():
    g = lax.broadcasted_iota(U32, (N // 4, 4), 0)
    lane = lax.broadcasted_iota(U32, (N // 4, 4), 1)
    z = jnp.zeros_like(g)
    c = philox(g, z, z, z)
    b = jnp.where(lane == 0, c[0], jnp.where(lane == 1, c[1], jnp.where(lane == 2, c[2], c[3])))
    return tn_f32(b).reshape(N)


def v_jax_bf16():
    return tn_bf16(jax_bits())


def v_tf4_sel_bf16():
    g = lax.broadcasted_iota(U32, (N // 4, 4), 0)
    lane = lax.broadcasted_iota(U32, (N // 4, 4), 1)
    x, y = threefry(jnp.zeros_like(g), g)
    w = jnp.where(lane < 2, x, y) >> ((lane & U32(1)) * U32(16))
    return tn_bf16(w).reshape(N)


def _pack4(vals16):
    out = jnp.uint64(0)
    for j, v in enumerate(vals16):
        out = out | (v.astype(jnp.uint64) << jnp.uint64(16 * j))
    return lax.bitcast_convert_type(out, jnp.bfloat16).reshape(N)


def v_tf4_u64_bf16():
    g = lax.iota(U32, N // 4)
    x, y = threefry(jnp.zeros_like(g), g)
    lanes = [x, x >> U32(16), y, y >> U32(16)]
    return _pack4([lax.bitcast_convert_type(tn_bf16(l), jnp.uint16) for l in lanes])


def v_tf4_tab_bf16():
    tab = lax.bitcast_convert_type(table_bf16(), jnp.uint16)
    g = lax.iota(U32, N // 4)
    x, y = threefry(jnp.zeros_like(g), g)
    lanes = [x, x >> U32(16), y, y >> U32(16)]
    return _pack4([jnp.take(tab, (l & U32(0xFF)).astype(jnp.int32), mode="clip") for l in lanes])


def v_tab_sel_bf16():
    tab = table_bf16()
    g = lax.broadcasted_iota(U32, (N // 4, 4), 0)
    lane = lax.broadcasted_iota(U32, (N // 4, 4), 1)
    x, y = threefry(jnp.zeros_like(g), g)
    w = jnp.where(lane < 2, x, y) >> ((lane & U32(1)) * U32(16))
    return jnp.take(tab, (w & U32(0xFF)).astype(jnp.int32), mode="clip").reshape(N)


def bm_f32(x, y, poly):
    u1 = ((x >> U32(8)) + U32(1)).astype(jnp.float32) * jnp.float32(2.0**-24)
    r = jnp.sqrt(jnp.float32(-2.0) * jnp.log(u1))
    if not poly:
        t = (y >> U32(8)).astype(jnp.float32) * jnp.float32(2.0**-24 * 2 * np.pi)
        return r * jnp.cos(t), r * jnp.sin(t)
    d = ((y >> U32(8)) & U32(0x3FFFFF)).astype(jnp.float32) * jnp.float32(2.0**-22) - jnp.float32(0.5)
    cz, sz = quadrant_cos_sin(y >> U32(30), d, 9)
    return r * cz, r * sz


def quadrant_cos_sin(q, d, deg):
    """cos and sin of q * pi/2 + pi/4 + d * pi/2 (d in [-0.5, 0.5)) from Taylor polynomials of degree deg (9 or 5)."""
    t = d * jnp.float32(np.pi / 2)
    t2 = t * t
    if deg == 5:
        s = t * (1 + t2 * (-1 / 6 + t2 / 120))
        c = 1 + t2 * (-0.5 + t2 * (1 / 24 - t2 / 720))
    else:
        s = t * (1 + t2 * (-1 / 6 + t2 * (1 / 120 + t2 * (-1 / 5040 + t2 / 362880))))
        c = 1 + t2 * (-0.5 + t2 * (1 / 24 + t2 * (-1 / 720 + t2 / 40320)))
    h = jnp.float32(np.sqrt(0.5))
    sn, cs = (s + c) * h, (c - s) * h
    cz = jnp.where(q == 0, cs, jnp.where(q == 1, -sn, jnp.where(q == 2, -cs, sn)))
    sz = jnp.where(q == 0, sn, jnp.where(q == 1, cs, jnp.where(q == 2, -sn, -cs)))
    return cz, sz


def _pack2(a, b):
    lo = lax.bitcast_convert_type(a, U32).astype(jnp.uint64)
    hi = lax.bitcast_convert_type(b, U32).astype(jnp.uint64)
    return lax.bitcast_convert_type(lo | (hi << jnp.uint64(32)), jnp.float32).reshape(N)


def v_bm_u64():
    g = lax.iota(U32, N // 2)
    x, y = threefry(jnp.zeros_like(g), g)
    z0, z1 = bm_f32(x, y, False)
    return _pack2(z0 * jnp.float32(0.02), z1 * jnp.float32(0.02))


def v_bmp_u64():
    g = lax.iota(U32, N // 2)
    x, y = threefry(jnp.zeros_like(g), g)
    z0, z1 = bm_f32(x, y, True)
    return _pack2(z0 * jnp.float32(0.02), z1 * jnp.float32(0.02))


COLS = 4096  # 2-D variants: [N / COLS, COLS] like a weight shard


def v_tf4_tab2d_bf16():
    tab = lax.bitcast_convert_type(table_bf16(), jnp.uint16)
    g = lax.broadcasted_iota(U32, (N // COLS, COLS // 4), 0) * U32(COLS // 4) + lax.broadcasted_iota(U32, (N // COLS, COLS // 4), 1)
    x, y = threefry(jnp.zeros_like(g), g)
    lanes = [x, x >> U32(16), y, y >> U32(16)]
    return _pack4([jnp.take(tab, (l & U32(0xFF)).astype(jnp.int32), mode="clip") for l in lanes])


def v_tf1_tab_bf16():  # one bf16 per threefry block: a single gather per element
    tab = lax.bitcast_convert_type(table_bf16(), jnp.uint16)
    g = lax.iota(U32, N)
    x, y = threefry(jnp.zeros_like(g), g)
    return lax.bitcast_convert_type(jnp.take(tab, ((x ^ y) & U32(0xFF)).astype(jnp.int32), mode="clip"), jnp.bfloat16)


def v_tf4_tab1g_bf16():  # 4 lanes through one gather: indices packed as 4 x 8 bits, table of 4-lane u64? no: 2 lanes x 16-bit index into a 65536-entry u32 table
    tab = lax.bitcast_convert_type(table_bf16(), jnp.uint16).astype(U32)
    i = jnp.arange(65536, dtype=U32)
    tab2 = tab[i & U32(0xFF)] | (tab[(i >> U32(8)) & U32(0xFF)] << U32(16))  # two lanes per lookup
    g = lax.iota(U32, N // 4)
    x, y = threefry(jnp.zeros_like(g), g)
    # lanes 0,1 come from x (low byte of each 16-bit half), lanes 2,3 from y
    ix = (x & U32(0xFF)) | ((x >> U32(8)) & U32(0xFF00))
    iy = (y & U32(0xFF)) | ((y >> U32(8)) & U32(0xFF00))
    a = jnp.take(tab2, ix.astype(jnp.int32), mode="clip").astype(jnp.uint64)
    b = jnp.take(tab2, iy.astype(jnp.int32), mode="clip").astype(jnp.uint64)
    return lax.bitcast_convert_type(a | (b << jnp.uint64(32)), jnp.bfloat16).reshape(N)


def _tab14():  # two 7-bit lanes per entry: T[i & 0x7F] | T[i >> 7] << 16
    t = lax.bitcast_convert_type(table_bf16(), jnp.uint16)[::2].astype(U32)  # 128 entries (bit 0 unused)
    i = jnp.arange(16384, dtype=U32)
    return t[i & U32(0x7F)] | (t[i >> U32(7)] << U32(16))


def _pairs(tab14, g, clip=False):  # 2 bf16 per threefry block of g: one gather of a pair-table entry at y0 & 0x3FFF
    x, _ = threefry(jnp.zeros_like(g), g)
    k = (x & U32(0x3FFF)).astype(jnp.int32)
    v = jnp.take(tab14, k, mode="clip") if clip else tab14.at[k].get(mode="promise_in_bounds")
    return lax.bitcast_convert_type(v, jnp.bfloat16).reshape(N)


def _groups_2d():  # group counters of a [N / COLS, COLS] array, two elements per group
    return lax.broadcasted_iota(U32, (N // COLS, COLS // 2), 0) * U32(COLS // 2) + lax.broadcasted_iota(U32, (N // COLS, COLS // 2), 1)


def v_tf2_tab14_bf16():  # 2 bf16 per threefry block, one gather of a 2-lane entry
    return _pairs(_tab14(), lax.iota(U32, N // 2), clip=True)


def v_tf2_tab14_2d_bf16():
    return _pairs(_tab14(), _groups_2d())


def v_tf2_tab14arg_bf16(tab14):  # the 2-lane table as a runtime argument (initc uploads it with the launch)
    return _pairs(tab14, lax.iota(U32, N // 2))


def v_tf2_tab14arg_2d_bf16(tab14):
    return _pairs(tab14, _groups_2d())


def v_tf2_tab128arg_bf16(tab128):  # the 2-lane entry built in the program from a 128-entry argument
    tab14 = tab128[jnp.arange(16384) & 0x7F] | (tab128[jnp.arange(16384) >> 7] << U32(16))
    return _pairs(tab14, lax.iota(U32, N // 2))


def v_poly4_bf16():  # timing only: 4 lanes per block, an odd degree-15 polynomial of a 7-bit lane index
    g = lax.iota(U32, N // 4)
    x, y = threefry(jnp.zeros_like(g), g)
    coef = [1.2533, 0.3281, 0.1611, 0.0512, 0.3172, -0.9, 1.6, -1.1]

    def q(w):
        t = ((w >> U32(1)) & U32(0x7F)).astype(jnp.float32) * jnp.float32(1 / 64) - jnp.float32(63.5 / 64)
        t2 = t * t
        p = jnp.float32(coef[-1])
        for c in coef[-2::-1]:
            p = p * t2 + jnp.float32(c)
        return lax.bitcast_convert_type((t * p * jnp.float32(0.02)).astype(jnp.bfloat16), jnp.uint16)
    return _pack4([q(x), q(x >> U32(16)), q(y), q(y >> U32(16))])


def bm16_lo(h, a, deg):  # Box-Muller from a 16-bit radius word h and a 16-bit angle word a (both in the low bits)
    u1 = (h + U32(1)).astype(jnp.float32) * jnp.float32(2.0**-16)
    r = jnp.sqrt(jnp.float32(-2.0) * jnp.log(u1))
    d = (a & U32(0x3FFF)).astype(jnp.float32) * jnp.float32(2.0**-14) - jnp.float32(0.5)
    cz, sz = quadrant_cos_sin(a >> U32(14), d, deg)
    return r * cz, r * sz


def v_bm16_bf16():  # 4 bf16 normals per block: two Box-Muller pairs of 16-bit words, low-degree sin/cos
    g = lax.iota(U32, N // 4)
    x, y = threefry(jnp.zeros_like(g), g)
    a0, a1 = bm16_lo(x & U32(0xFFFF), x >> U32(16), 5)
    b0, b1 = bm16_lo(y & U32(0xFFFF), y >> U32(16), 5)
    bf = lambda z: lax.bitcast_convert_type((z * jnp.float32(0.02)).astype(jnp.bfloat16), jnp.uint16)
    return _pack4([bf(a0), bf(a1), bf(b0), bf(b1)])


def v_bits4_bf16():  # the floor: 4 bf16 per block, no transform
    g = lax.iota(U32, N // 4)
    x, y = threefry(jnp.zeros_like(g), g)
    return lax.bitcast_convert_type(x.astype(jnp.uint64) | (y.astype(jnp.uint64) << jnp.uint64(32)), jnp.bfloat16).reshape(N)


def v_bits_u64():
    g = lax.iota(U32, N // 2)
    x, y = threefry(jnp.zeros_like(g), g)
    return lax.bitcast_convert_type(x.astype(jnp.uint64) | (y.astype(jnp.uint64) << jnp.uint64(32)), jnp.float32).reshape(N)


def v_tf4_tab2_bf16():
    tab = lax.bitcast_convert_type(table_bf16(), jnp.uint16)
    g = lax.iota(U32, N // 4)
    x, y = threefry(jnp.zeros_like(g), g)
    lanes = [x, x >> U32(16), y, y >> U32(16)]
    return _pack4([tab.at[(l & U32(0xFF)).astype(jnp.int32)].get(mode="promise_in_bounds") for l in lanes])


def v_bmp4_bf16():
    g = lax.iota(U32, N // 4)
    x, y = threefry(jnp.zeros_like(g), g)
    # two Box-Muller pairs per hash, 16 bits each for u1 and the angle
    a0, a1 = bm_f32(x << U32(16), x & U32(0xFFFF0000), True)
    b0, b1 = bm_f32(y << U32(16), y & U32(0xFFFF0000), True)
    bf = lambda z: lax.bitcast_convert_type((z * jnp.float32(0.02)).astype(jnp.bfloat16), jnp.uint16)
    return _pack4([bf(a0), bf(a1), bf(b0), bf(b1)])


def mulhilo(a, m):
    p = a.astype(jnp.uint64) * jnp.uint64(m)
    return (p >> jnp.uint64(32)).astype(U32), p.astype(U32)


def philox4_2(g):  # Philox-4x32-10, counter (g, 0, 0, 0), 64-bit key, first two output words
    z = jnp.zeros_like(g)
    c0, c1, c2, c3 = g, z, z, z
    k0, k1 = U32(K0), U32(K1)
    for _ in range(10):
        hi0, lo0 = mulhilo(c0, 0xD2511F53)
        hi1, lo1 = mulhilo(c2, 0xCD9E8D57)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = k0 + U32(0x9E3779B9)
        k1 = k1 + U32(0xBB67AE85)
    return c0, c1


def philox2(g):  # Philox-2x32-10, counter (g, K1), 32-bit key K0
    c0, c1 = g, jnp.full_like(g, K1)
    k0 = U32(K0)
    for _ in range(10):
        hi, lo = mulhilo(c0, 0xD256D193)
        c0, c1 = hi ^ k0 ^ c1, lo
        k0 = k0 + U32(0x9E3779B9)
    return c0, c1


def v_ph4_bits():
    x, y = philox4_2(lax.iota(U32, N // 2))
    return lax.bitcast_convert_type(x.astype(jnp.uint64) | (y.astype(jnp.uint64) << jnp.uint64(32)), jnp.float32).reshape(N)


def v_ph4_bmp():
    x, y = philox4_2(lax.iota(U32, N // 2))
    z0, z1 = bm_f32(x, y, True)
    return _pack2(z0 * jnp.float32(0.02), z1 * jnp.float32(0.02))


def v_ph2_bmp():
    x, y = philox2(lax.iota(U32, N // 2))
    z0, z1 = bm_f32(x, y, True)
    return _pack2(z0 * jnp.float32(0.02), z1 * jnp.float32(0.02))


def v_ph4_erf():
    x, y = philox4_2(lax.iota(U32, N // 2))
    return _pack2(tn_f32(x), tn_f32(y))


def v_ph4_tab_bf16():
    tab = lax.bitcast_convert_type(table_bf16(), jnp.uint16)
    x, y = philox4_2(lax.iota(U32, N // 4))
    lanes = [x, x >> U32(16), y, y >> U32(16)]
    return _pack4([jnp.take(tab, (l & U32(0xFF)).astype(jnp.int32), mode="clip") for l in lanes])


def v_ph4_bmp_bf16():
    x, y = philox4_2(lax.iota(U32, N // 4))
    a0, a1 = bm_f32(x << U32(16), x & U32(0xFFFF0000), True)
    b0, b1 = bm_f32(y << U32(16), y & U32(0xFFFF0000), True)
    bf = lambda z: lax.bitcast_convert_type((z * jnp.float32(0.02)).astype(jnp.bfloat16), jnp.uint16)
    return _pack4([bf(a0), bf(a1), bf(b0), bf(b1)])


VARIANTS = [v_ph4_bits, v_ph4_bmp, v_ph2_bmp, v_ph4_erf, v_ph4_tab_bf16, v_ph4_bmp_bf16, v_bits_u64, v_bm_u64, v_bmp_u64, v_tf4_tab2_bf16, v_bmp4_bf16, v_jax, v_tf2_sel, v_tf2_u64, v_philox_sel, v_jax_bf16, v_tf4_sel_bf16, v_tf4_u64_bf16,
            v_tf4_tab_bf16, v_tab_sel_bf16, v_tf4_tab2d_bf16, v_tf1_tab_bf16, v_tf4_tab1g_bf16, v_tf2_tab14_bf16, v_tf2_tab14_2d_bf16, v_bm16_bf16, v_bits4_bf16, v_tf2_tab14arg_bf16, v_tf2_tab14arg_2d_bf16, v_tf2_tab128arg_bf16, v_poly4_bf16]


def main():
    only = sys.argv[2].split(",") if len(sys.argv) > 2 else None
    print(f"N = 2^{LOG2N} = {N}, device {jax.devices()[0].device_kind}")
    ref = {}
    for v in VARIANTS:
        name = v.__name__[2:]
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        args = {"tab14": (_tab14(),), "tab128": (lax.bitcast_convert_type(table_bf16(), jnp.uint16)[::2].astype(U32),)}
        a = next((args[k] for k in args if v.__code__.co_varnames[:v.__code__.co_argcount] == (k,)), ())
        f = jax.jit(v).lower(*a).compile()
        c = time.perf_counter() - t0
        out = f(*a)
        out.block_until_ready()
        ts = []
        for _ in range(5):
            del out
            t0 = time.perf_counter()
            out = f(*a)
            out.block_until_ready()
            ts.append(time.perf_counter() - t0)
        hlo = f.as_text()
        kernels = hlo.count("fusion(") + hlo.count("custom-call(")
        try:
            temp = f.memory_analysis().temp_size_in_bytes
        except Exception:  # noqa: BLE001 - not every backend reports it
            temp = -1
        head = np.asarray(out[:8].astype(jnp.float32))
        print(f"{name:16s} {min(ts)*1e3:8.3f} ms  {N*out.dtype.itemsize/min(ts)/1e9:7.1f} GB/s  "
              f"compile {c:5.2f} s  kernels~{kernels}  temp {temp / 1e6:8.1f} MB  head {np.array2string(head, precision=4)}", flush=True)
        ref[name] = out
        del out


if __name__ == "__main__":
    main()
