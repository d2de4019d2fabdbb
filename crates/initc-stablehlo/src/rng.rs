//! `jax.random` as StableHLO, one private function per (distribution, dtype, shape), spelled
//! the way JAX lowers it (docs/RNG_SPEC.md §8): iota-derived u64 counters split into hi/lo u32
//! words, threefry2x32 as unrolled u32 ops, bits → floats, `chlo.erf_inv`. Per-parameter
//! scalars (uniform bounds, truncated-normal `a`/`b`, clamp bounds) are operands, so
//! identical layers share one function; they are constants at the call site, so after XLA
//! inlines the call it folds them exactly as it folds JAX's.
//! No `stablehlo.rng`/`rng_bit_generator`: their values are implementation-defined, and XLA's
//! SPMD partitioner computes them at global shape and slices.

use std::collections::HashSet;

use initc_ir::{DType, RngMode};
use initc_rng::Half;

use crate::sp::Lane;
use crate::text::{Body, Val, args, elem, i64_array, private_func, shape_tag, tensor};

/// The private functions emitted so far (each once), in emission order.
#[derive(Default)]
pub(crate) struct Funcs {
    names: HashSet<String>,
    pub text: Vec<String>,
    /// `None`: counters are the flat indices of the array itself (a whole array per program).
    /// `Some(global)`: the program computes one shard; keys are `tensor<4xui32>` =
    /// `[k0, k1, base_hi, base_lo]` and an element's counter is `base + Σ iota_d·strides[d]`,
    /// its flat index in the global array.
    pub shard: Option<Global>,
    pub mode: RngMode,
}

impl Funcs {
    /// A whole-array function set (the SPMD module).
    pub fn global(mode: RngMode) -> Funcs {
        Funcs { mode, ..Funcs::default() }
    }

    /// A function set computing one shard of an array with row-major `counters` (a shard
    /// program's [`crate::sp::Counters`]).
    pub fn shard(counters: &crate::sp::Counters, mode: RngMode) -> Funcs {
        let global = Global { strides: counters.strides.clone(), wide: counters.wide };
        Funcs { shard: Some(global), mode, ..Funcs::default() }
    }

    /// The key operand's type: key data, plus in shard mode the shard's counter base and the
    /// key schedule word (`[k0, k1, base_hi, base_lo, k0 ^ k1 ^ 0x1BD11BDA]`).
    pub fn key_ty(&self) -> String {
        tensor(&[if self.shard.is_some() { 5 } else { 2 }], "ui32")
    }

    /// Fast RNG mode ([`initc_ir::RngMode::Fast`]): packed threefry lanes, Box-Muller f32 normals.
    pub fn fast(&self) -> bool {
        self.mode == RngMode::Fast
    }

    /// Function-name suffix distinguishing shard-mode variants: packed shard programs (fast mode)
    /// call a lane's own variant of each draw. The array's elements are then its groups (`shard`
    /// describes the grouped array, counters are group indices) and a function yields lane `j`
    /// of its group's block. Lanes call the same `bits` function, so after inlining XLA's CSE
    /// computes each block once for all lanes.
    fn mode_tag(&self, lane: Option<Lane>) -> String {
        let g = self.shard_tag();
        match lane {
            None => g,
            Some(Lane { lanes, lane }) => format!("{g}_lane{lane}of{lanes}"),
        }
    }

    /// Name suffix of a shard-mode function set (empty for the whole-array one).
    fn shard_tag(&self) -> String {
        self.shard.as_ref().map_or(String::new(), |g| format!("_g{}", shape_tag(&g.strides)))
    }

    fn define(&mut self, name: &str, arg_types: &[String], results: &[String], build: impl FnOnce(&mut Self, &mut Body, &[Val])) -> String {
        if self.names.insert(name.to_string()) {
            let mut body = Body::new(name);
            let a = args(arg_types);
            build(self, &mut body, &a);
            self.text.push(private_func(name, arg_types, results, &body));
        }
        name.to_string()
    }

    /// `@threefry2x32_S(k0, k1, c0, c1) -> (y0, y1)`: 20 rounds, key words broadcast.
    pub fn threefry(&mut self, shape: &[u64]) -> String {
        let t = tensor(shape, "ui32");
        let s = tensor(&[], "ui32");
        let name = format!("threefry2x32_{}", shape_tag(shape));
        self.define(&name, &[s.clone(), s.clone(), t.clone(), t.clone()], &[t.clone(), t.clone()], |_, b, a| {
            let parity = b.constant("466688986", &s); // 0x1BD11BDA
            let k01 = b.ew("stablehlo.xor", &[&a[0], &a[1]]);
            let k2 = b.ew("stablehlo.xor", &[&k01, &parity]);
            let y = threefry_rounds(b, &t, [&a[0], &a[1], &k2], &a[2], &a[3]);
            b.ret(&[&y[0], &y[1]]);
        })
    }

    /// `@threefry2x32ks_S(k0, k1, k2, c0, c1) -> (y0, y1)`: [`Funcs::threefry`] with the key
    /// schedule word `k2 = k0 ^ k1 ^ 0x1BD11BDA` given (shard programs read it from their
    /// static words: computed on the device, it would be a kernel of its own).
    fn threefry_ks(&mut self, shape: &[u64]) -> String {
        let t = tensor(shape, "ui32");
        let s = tensor(&[], "ui32");
        let name = format!("threefry2x32ks_{}", shape_tag(shape));
        self.define(&name, &[s.clone(), s.clone(), s.clone(), t.clone(), t.clone()], &[t.clone(), t.clone()], |_, b, a| {
            let y = threefry_rounds(b, &t, [&a[0], &a[1], &a[2]], &a[3], &a[4]);
            b.ret(&[&y[0], &y[1]]);
        })
    }

    /// The key schedule words of `key`: `k0, k1` and, in shard mode (key `[k0, k1, base_hi,
    /// base_lo, k2]`), the given `k2`.
    fn key_schedule(&self, b: &mut Body, key: &Val) -> (Val, Val, Option<Val>) {
        let (k0, k1) = key_words(b, key);
        let k2 = self.shard.is_some().then(|| {
            let one = tensor(&[1], "ui32");
            let k2 = b.op(
                "stablehlo.slice",
                &[key],
                &format!("start_indices = {}, limit_indices = {}, strides = {}", i64_array([4]), i64_array([5]), i64_array([1])),
                &one,
            );
            b.op("stablehlo.reshape", &[&k2], "", &tensor(&[], "ui32"))
        });
        (k0, k1, k2)
    }

    /// Threefry of counters `(c0, c1)` under a [`Funcs::key_schedule`]: [`Funcs::threefry`],
    /// or [`Funcs::threefry_ks`] where `k2` is given.
    fn threefry_of(&mut self, b: &mut Body, shape: &[u64], ks: &(Val, Val, Option<Val>), c0: &Val, c1: &Val) -> Vec<Val> {
        let t = tensor(shape, "ui32");
        match &ks.2 {
            Some(k2) => {
                let tf = self.threefry_ks(shape);
                b.call(&tf, &[&ks.0, &ks.1, k2, c0, c1], &[t.clone(), t])
            }
            None => {
                let tf = self.threefry(shape);
                b.call(&tf, &[&ks.0, &ks.1, c0, c1], &[t.clone(), t])
            }
        }
    }

    /// `@bits_S(key) -> (y0, y1)`: threefry of each element's row-major flat index (in the
    /// global array, for shard programs).
    pub fn bits(&mut self, shape: &[u64]) -> String {
        let t = tensor(shape, "ui32");
        let key = self.key_ty();
        // no lane in the name: every lane of a packed program shares this one function
        let name = format!("bits_{}{}", shape_tag(shape), self.shard_tag());
        let global = self.shard.clone();
        self.define(&name, &[key], &[t.clone(), t.clone()], |f, b, a| {
            let ks = f.key_schedule(b, &a[0]);
            let (hi, lo) = counters(b, shape, global.as_ref(), &a[0]);
            let y = f.threefry_of(b, shape, &ks, &hi, &lo);
            b.ret(&[&y[0], &y[1]]);
        })
    }

    /// Fast mode: `@block_L_S(key) -> (y0, y1, lane)`: the threefry block of each element's
    /// group `i / L` and its lane `i % L` (`i` the flat index in the global array).
    fn block(&mut self, lanes: u64, shape: &[u64]) -> String {
        let t = tensor(shape, "ui32");
        let key = self.key_ty();
        let name = format!("block{lanes}_{}{}", shape_tag(shape), self.shard_tag());
        let global = self.shard.clone();
        self.define(&name, &[key], &[t.clone(), t.clone(), t.clone()], |f, b, a| {
            let ks = f.key_schedule(b, &a[0]);
            let (hi, lo) = counters(b, shape, global.as_ref(), &a[0]);
            let sh = lanes.trailing_zeros();
            let mask = b.constant(&(lanes - 1).to_string(), &t);
            let lane = b.ew("stablehlo.and", &[&lo, &mask]);
            let s = b.constant(&sh.to_string(), &t);
            let s2 = b.constant(&(32 - sh).to_string(), &t);
            let lo_s = b.ew("stablehlo.shift_right_logical", &[&lo, &s]);
            let hi_l = b.ew("stablehlo.shift_left", &[&hi, &s2]);
            let glo = b.ew("stablehlo.or", &[&lo_s, &hi_l]);
            let ghi = b.ew("stablehlo.shift_right_logical", &[&hi, &s]);
            let y = f.threefry_of(b, shape, &ks, &ghi, &glo);
            b.ret(&[&y[0], &y[1], &lane]);
        })
    }

    /// `@word{w}_S(key) -> tensor<S x ui32>`: each element's random bits of width `w` (8, 16,
    /// 32), zero-extended. JAX mode: `y0 ^ y1` (callers keep the low bits, as JAX does).
    /// Fast mode: lane `i % L` of the block `y0 | y1 << 32`, `L = 64 / w`.
    pub fn word(&mut self, width: u32, shape: &[u64], lane: Option<Lane>) -> String {
        let t = tensor(shape, "ui32");
        let name = format!("word{width}_{}{}", shape_tag(shape), self.mode_tag(lane));
        let fast = self.fast();
        self.define(&name, &[self.key_ty()], std::slice::from_ref(&t), |f, b, a| {
            if !fast {
                let bits = f.bits(shape);
                let y = b.call(&bits, &[&a[0]], &[t.clone(), t.clone()]);
                let x = b.ew("stablehlo.xor", &[&y[0], &y[1]]);
                b.ret(&[&x]);
                return;
            }
            if let Some(Lane { lanes, lane: j }) = lane {
                let bits = f.bits(shape);
                let y = b.call(&bits, &[&a[0]], &[t.clone(), t.clone()]);
                let v = if j < lanes / 2 { &y[0] } else { &y[1] };
                let r = if lanes == 2 {
                    v.clone()
                } else {
                    let sh = b.constant(&((j % (lanes / 2)) * u64::from(width)).to_string(), &t);
                    let x = b.ew("stablehlo.shift_right_logical", &[v, &sh]);
                    let mask = b.constant(&((1u64 << width) - 1).to_string(), &t);
                    b.ew("stablehlo.and", &[&x, &mask])
                };
                b.ret(&[&r]);
                return;
            }
            let lanes = initc_rng::fast_lanes(width);
            let blk = f.block(lanes, shape);
            let y = b.call(&blk, &[&a[0]], &[t.clone(), t.clone(), t.clone()]);
            let half = b.constant(&(lanes / 2).to_string(), &t);
            let low = b.op(
                "stablehlo.compare",
                &[&y[2], &half],
                "comparison_direction = #stablehlo<comparison_direction LT>",
                &tensor(shape, "i1"),
            );
            let v = b.op("stablehlo.select", &[&low, &y[0], &y[1]], "", &t);
            let r = if lanes == 2 {
                v
            } else {
                let m = b.constant(&(lanes / 2 - 1).to_string(), &t);
                let j = b.ew("stablehlo.and", &[&y[2], &m]);
                let w = b.constant(&width.to_string(), &t);
                let sh = b.ew("stablehlo.multiply", &[&j, &w]);
                let x = b.ew("stablehlo.shift_right_logical", &[&v, &sh]);
                let mask = b.constant(&((1u64 << width) - 1).to_string(), &t);
                b.ew("stablehlo.and", &[&x, &mask])
            };
            b.ret(&[&r]);
        })
    }

    /// Fast mode: `@bf16word_S(key) -> tensor<S x ui32>`: each element's random word for a
    /// bf16 draw, [`initc_rng::bf16_draw_bits`] (two elements per block, 7 bits of `y0` each).
    pub fn bf16_word(&mut self, shape: &[u64], lane: Option<Lane>) -> String {
        let t = tensor(shape, "ui32");
        let name = format!("bf16word_{}{}", shape_tag(shape), self.mode_tag(lane));
        self.define(&name, &[self.key_ty()], std::slice::from_ref(&t), |f, b, a| {
            let (y0, sh) = if let Some(Lane { lane: j, .. }) = lane {
                let bits = f.bits(shape);
                let y = b.call(&bits, &[&a[0]], &[t.clone(), t.clone()]);
                (y[0].clone(), b.constant(&(7 * j).to_string(), &t))
            } else {
                let blk = f.block(initc_rng::BF16_DRAW_LANES, shape);
                let y = b.call(&blk, &[&a[0]], &[t.clone(), t.clone(), t.clone()]);
                let seven = b.constant("7", &t);
                (y[0].clone(), b.ew("stablehlo.multiply", &[&y[2], &seven]))
            };
            let x = b.ew("stablehlo.shift_right_logical", &[&y0, &sh]);
            let mask = b.constant("127", &t);
            let x = b.ew("stablehlo.and", &[&x, &mask]);
            let one = b.constant("1", &t);
            let r = b.ew("stablehlo.shift_left", &[&x, &one]);
            b.ret(&[&r]);
        })
    }

    /// `random_bits(key, shape, uint<width>)` inside a body, as a `tensor<S x out>`: 64 bits
    /// are `y0 << 32 | y1` in both modes; narrower widths are [`Funcs::word`] in fast mode and
    /// JAX's `y0 ^ y1` (low bits) otherwise.
    pub fn random_bits(&mut self, b: &mut Body, key: &Val, width: u8, shape: &[u64], out: &str, lane: Option<Lane>) -> Val {
        let t = tensor(shape, "ui32");
        if self.fast() && width < 64 {
            let w = self.word(width.into(), shape, lane);
            let x = b.call(&w, &[key], &[t]).remove(0);
            return if width == 32 { x } else { b.op("stablehlo.convert", &[&x], "", out) };
        }
        let bits = self.bits(shape);
        let y = b.call(&bits, &[key], &[t.clone(), t]);
        match width {
            64 => {
                let h = b.op("stablehlo.convert", &[&y[0]], "", out);
                let l = b.op("stablehlo.convert", &[&y[1]], "", out);
                let c = b.constant("32", out);
                let hs = b.ew("stablehlo.shift_left", &[&h, &c]);
                b.ew("stablehlo.or", &[&hs, &l])
            }
            32 => b.ew("stablehlo.xor", &[&y[0], &y[1]]),
            _ => {
                let x = b.ew("stablehlo.xor", &[&y[0], &y[1]]);
                b.op("stablehlo.convert", &[&x], "", out)
            }
        }
    }

    /// Fast mode: `@box_muller_S(key) -> f32`: [`initc_rng::box_muller`] of each element's
    /// block, lane 0 the cosine, lane 1 the sine.
    pub fn box_muller(&mut self, shape: &[u64], lane: Option<Lane>) -> String {
        let out = tensor(shape, "f32");
        let name = format!("box_muller_{}{}", shape_tag(shape), self.mode_tag(lane));
        self.define(&name, &[self.key_ty()], std::slice::from_ref(&out), |f, b, a| {
            let t = tensor(shape, "ui32");
            if let Some(Lane { lane: j, .. }) = lane {
                let bits = f.bits(shape);
                let y = b.call(&bits, &[&a[0]], &[t.clone(), t.clone()]);
                let [cz, sz, r] = box_muller_parts(b, shape, &y[0], &y[1]);
                let z = b.ew("stablehlo.multiply", &[&r, if j == 0 { &cz } else { &sz }]);
                b.ret(&[&z]);
                return;
            }
            let blk = f.block(2, shape);
            let y = b.call(&blk, &[&a[0]], &[t.clone(), t.clone(), t.clone()]);
            let [cz, sz, r] = box_muller_parts(b, shape, &y[0], &y[1]);
            let zero = b.constant("0", &t);
            let first = b.op(
                "stablehlo.compare",
                &[&y[2], &zero],
                "comparison_direction = #stablehlo<comparison_direction EQ>",
                &tensor(shape, "i1"),
            );
            let z = b.op("stablehlo.select", &[&first, &cz, &sz], "", &out);
            let z = b.ew("stablehlo.multiply", &[&r, &z]);
            b.ret(&[&z]);
        })
    }

    /// `@fold_in(key, data) -> key`: threefry of the counter `[0, data]`.
    pub fn fold_in(&mut self) -> String {
        let key = tensor(&[2], "ui32");
        let s = tensor(&[], "ui32");
        self.define("fold_in", &[key.clone(), s.clone()], std::slice::from_ref(&key), |f, b, a| {
            let (k0, k1) = key_words(b, &a[0]);
            let zero = b.constant("0", &s);
            let tf = f.threefry(&[]);
            let y = b.call(&tf, &[&k0, &k1, &zero, &a[1]], &[s.clone(), s.clone()]);
            let one = tensor(&[1], "ui32");
            let y0 = b.op("stablehlo.reshape", &[&y[0]], "", &one);
            let y1 = b.op("stablehlo.reshape", &[&y[1]], "", &one);
            let k = b.op("stablehlo.concatenate", &[&y0, &y1], "dimension = 0 : i64", &key);
            b.ret(&[&k]);
        })
    }

    /// `@unit_DT_S(key)`: floats in [0, 1) from the mantissa bits (docs/RNG_SPEC.md §4).
    fn unit(&mut self, dt: DType, shape: &[u64], lane: Option<Lane>) -> String {
        let out = tensor(shape, elem(dt));
        let name = format!("unit_{}_{}{}", elem(dt), shape_tag(shape), self.mode_tag(lane));
        self.define(&name, &[self.key_ty()], std::slice::from_ref(&out), |f, b, a| {
            let t32 = tensor(shape, "ui32");
            let mut y = Vec::new();
            if dt == DType::F64 || !f.fast() {
                let bits = f.bits(shape);
                y = b.call(&bits, &[&a[0]], &[t32.clone(), t32.clone()]);
            }
            let fbits = match dt {
                DType::F64 => {
                    let t64 = tensor(shape, "ui64");
                    let h = b.op("stablehlo.convert", &[&y[0]], "", &t64);
                    let l = b.op("stablehlo.convert", &[&y[1]], "", &t64);
                    let c32 = b.constant("32", &t64);
                    let hs = b.ew("stablehlo.shift_left", &[&h, &c32]);
                    let x = b.ew("stablehlo.or", &[&hs, &l]);
                    mantissa(b, &x, "12", "4607182418800017408") // 0x3FF0000000000000
                }
                _ => {
                    let x = if f.fast() {
                        let w = if dt == DType::BF16 {
                            f.bf16_word(shape, lane)
                        } else {
                            f.word(if dt == DType::F32 { 32 } else { 16 }, shape, lane)
                        };
                        b.call(&w, &[&a[0]], std::slice::from_ref(&t32)).remove(0)
                    } else {
                        b.ew("stablehlo.xor", &[&y[0], &y[1]])
                    };
                    match dt {
                        DType::BF16 => {
                            let x8 = b.op("stablehlo.convert", &[&x], "", &tensor(shape, "ui8"));
                            let x16 = b.op("stablehlo.convert", &[&x8], "", &tensor(shape, "ui16"));
                            mantissa(b, &x16, "1", "16256") // 0x3F80
                        }
                        DType::F16 => {
                            let x16 = b.op("stablehlo.convert", &[&x], "", &tensor(shape, "ui16"));
                            mantissa(b, &x16, "6", "15360") // 0x3C00
                        }
                        _ => mantissa(b, &x, "9", "1065353216"), // 0x3F800000
                    }
                }
            };
            let fl = b.op("stablehlo.bitcast_convert", &[&fbits], "", &out);
            let one = b.constant(&float_literal(dt, 1.0), &out);
            let r = b.ew("stablehlo.subtract", &[&fl, &one]);
            b.ret(&[&r]);
        })
    }

    /// `max(lo, unit * scale + lo)` inside a body (the shared tail of every distribution).
    #[allow(clippy::too_many_arguments)]
    fn affine_unit(&mut self, b: &mut Body, dt: DType, shape: &[u64], key: &Val, lo: &Val, scale: &Val, lane: Option<Lane>) -> Val {
        let out = tensor(shape, elem(dt));
        let unit = self.unit(dt, shape, lane);
        let u = b.call(&unit, &[key], std::slice::from_ref(&out)).remove(0);
        let lo_b = b.splat(lo, &out);
        let sc_b = b.splat(scale, &out);
        let p = b.ew("stablehlo.multiply", &[&u, &sc_b]);
        let s = b.ew("stablehlo.add", &[&p, &lo_b]);
        b.ew("stablehlo.maximum", &[&lo_b, &s])
    }

    /// `@uniform_DT_S(key, lo, scale)`: `jax.random.uniform` with `scale = hi - lo` in dtype.
    pub fn uniform(&mut self, dt: DType, shape: &[u64], lane: Option<Lane>) -> String {
        let out = tensor(shape, elem(dt));
        let s = tensor(&[], elem(dt));
        let name = format!("uniform_{}_{}{}", elem(dt), shape_tag(shape), self.mode_tag(lane));
        self.define(&name, &[self.key_ty(), s.clone(), s], &[out], |f, b, a| {
            let r = f.affine_unit(b, dt, shape, &a[0], &a[1], &a[2], lane);
            b.ret(&[&r]);
        })
    }

    /// `@normal_DT_S(key)`: `sqrt2 * erf_inv(uniform(nextafter(-1, 0), 1))`.
    pub fn normal(&mut self, dt: DType, shape: &[u64], lane: Option<Lane>) -> String {
        let out = tensor(shape, elem(dt));
        let name = format!("normal_{}_{}{}", elem(dt), shape_tag(shape), self.mode_tag(lane));
        self.define(&name, &[self.key_ty()], std::slice::from_ref(&out), |f, b, a| {
            if f.fast() && dt == DType::F32 {
                let bm = f.box_muller(shape, lane);
                let z = b.call(&bm, &[&a[0]], std::slice::from_ref(&out)).remove(0);
                b.ret(&[&z]);
                return;
            }
            let e = f.normal_erf_inv_body(b, dt, shape, &a[0], lane);
            let c = b.constant(&normal_consts(dt).2, &out);
            let z = b.ew("stablehlo.multiply", &[&c, &e]);
            b.ret(&[&z]);
        })
    }

    /// `@normal_erf_inv_DT_S(key)`: a normal draw before its `sqrt2` factor, for
    /// `normal * c`, which XLA rewrites into `erf_inv(u) * (sqrt2 * c)` when `c` is constant
    /// (shard programs take `c` at run time, so they spell the rewrite out).
    pub fn normal_erf_inv(&mut self, dt: DType, shape: &[u64], lane: Option<Lane>) -> String {
        let out = tensor(shape, elem(dt));
        let name = format!("normal_erf_inv_{}_{}{}", elem(dt), shape_tag(shape), self.mode_tag(lane));
        self.define(&name, &[self.key_ty()], std::slice::from_ref(&out), |f, b, a| {
            let e = f.normal_erf_inv_body(b, dt, shape, &a[0], lane);
            b.ret(&[&e]);
        })
    }

    fn normal_erf_inv_body(&mut self, b: &mut Body, dt: DType, shape: &[u64], key: &Val, lane: Option<Lane>) -> Val {
        let s = tensor(&[], elem(dt));
        let (lo, scale, _) = normal_consts(dt);
        let lo = b.constant(&lo, &s);
        let scale = b.constant(&scale, &s);
        let u = self.affine_unit(b, dt, shape, key, &lo, &scale, lane);
        b.ew("chlo.erf_inv", &[&u])
    }

    /// `@truncated_normal_DT_S(key, a, scale, clamp_lo, clamp_hi)` (docs/RNG_SPEC.md §6, host bounds).
    pub fn truncated_normal(&mut self, dt: DType, shape: &[u64], lane: Option<Lane>) -> String {
        let out = tensor(shape, elem(dt));
        let s = tensor(&[], elem(dt));
        let name = format!("truncated_normal_{}_{}{}", elem(dt), shape_tag(shape), self.mode_tag(lane));
        self.define(&name, &[self.key_ty(), s.clone(), s.clone(), s.clone(), s], std::slice::from_ref(&out), |f, b, a| {
            let u = f.affine_unit(b, dt, shape, &a[0], &a[1], &a[2], lane);
            let e = b.ew("chlo.erf_inv", &[&u]);
            let c = b.constant(&normal_consts(dt).2, &out);
            let z = b.ew("stablehlo.multiply", &[&c, &e]);
            let lo = b.splat(&a[3], &out);
            let hi = b.splat(&a[4], &out);
            let r = b.op("stablehlo.clamp", &[&lo, &z, &hi], "", &out);
            b.ret(&[&r]);
        })
    }
}

/// Threefry-2x32's 20 rounds on counters `(c0, c1)` of type `t` with key schedule `ks`
/// (`k0, k1, k0 ^ k1 ^ 0x1BD11BDA`, scalars broadcast to `t`).
fn threefry_rounds(b: &mut Body, t: &str, ks: [&Val; 3], c0: &Val, c1: &Val) -> [Val; 2] {
    let ks: Vec<Val> = ks.iter().map(|k| b.splat(k, t)).collect();
    let mut x0 = b.ew("stablehlo.add", &[c0, &ks[0]]);
    let mut x1 = b.ew("stablehlo.add", &[c1, &ks[1]]);
    const R: [[u32; 4]; 2] = [[13, 15, 26, 6], [17, 29, 16, 24]];
    for g in 0..5u32 {
        for r in R[(g % 2) as usize] {
            x0 = b.ew("stablehlo.add", &[&x0, &x1]);
            let l = b.constant(&r.to_string(), t);
            let rr = b.constant(&(32 - r).to_string(), t);
            let hi = b.ew("stablehlo.shift_left", &[&x1, &l]);
            let lo = b.ew("stablehlo.shift_right_logical", &[&x1, &rr]);
            let rot = b.ew("stablehlo.or", &[&hi, &lo]);
            x1 = b.ew("stablehlo.xor", &[&rot, &x0]);
        }
        x0 = b.ew("stablehlo.add", &[&x0, &ks[((g + 1) % 3) as usize]]);
        x1 = b.ew("stablehlo.add", &[&x1, &ks[((g + 2) % 3) as usize]]);
        let gi = b.constant(&(g + 1).to_string(), t);
        x1 = b.ew("stablehlo.add", &[&x1, &gi]);
    }
    [x0, x1]
}

/// The two u32 words of a `tensor<2xui32>` key as scalars.
pub(crate) fn key_words(b: &mut Body, key: &Val) -> (Val, Val) {
    let one = tensor(&[1], "ui32");
    let s = tensor(&[], "ui32");
    let w0 = b.op(
        "stablehlo.slice",
        &[key],
        &format!("start_indices = {}, limit_indices = {}, strides = {}", i64_array([0]), i64_array([1]), i64_array([1])),
        &one,
    );
    let w1 = b.op(
        "stablehlo.slice",
        &[key],
        &format!("start_indices = {}, limit_indices = {}, strides = {}", i64_array([1]), i64_array([2]), i64_array([1])),
        &one,
    );
    (b.op("stablehlo.reshape", &[&w0], "", &s), b.op("stablehlo.reshape", &[&w1], "", &s))
}

/// Fast mode's f32 Box-Muller pieces of blocks `(y0, y1)`: `[r cos theta, r sin theta]`'s
/// unit parts and `r` (the op sequence of [`initc_rng::box_muller`]).
pub(crate) fn box_muller_parts(b: &mut Body, shape: &[u64], y0: &Val, y1: &Val) -> [Val; 3] {
    let t = tensor(shape, "ui32");
    let f = tensor(shape, "f32");
    let fc = |b: &mut Body, x: f32| b.constant(&format!("0x{:08X}", x.to_bits()), &f);
    let uc = |b: &mut Body, x: u32| b.constant(&x.to_string(), &t);
    let c8 = uc(b, 8);
    let t0 = b.ew("stablehlo.shift_right_logical", &[y0, &c8]);
    let one = uc(b, 1);
    let t0 = b.ew("stablehlo.add", &[&t0, &one]);
    let f0 = b.op("stablehlo.convert", &[&t0], "", &f);
    let e24 = fc(b, f32::from_bits(0x3380_0000));
    let u1 = b.ew("stablehlo.multiply", &[&f0, &e24]);
    let l = b.ew("stablehlo.log", &[&u1]);
    let m2 = fc(b, -2.0);
    let l = b.ew("stablehlo.multiply", &[&m2, &l]);
    let r = b.ew("stablehlo.sqrt", &[&l]);
    let c30 = uc(b, 30);
    let q = b.ew("stablehlo.shift_right_logical", &[y1, &c30]);
    let t1 = b.ew("stablehlo.shift_right_logical", &[y1, &c8]);
    let m22 = uc(b, 0x3F_FFFF);
    let t1 = b.ew("stablehlo.and", &[&t1, &m22]);
    let f1 = b.op("stablehlo.convert", &[&t1], "", &f);
    let e22 = fc(b, f32::from_bits(0x3480_0000));
    let d = b.ew("stablehlo.multiply", &[&f1, &e22]);
    let half = fc(b, 0.5);
    let d = b.ew("stablehlo.subtract", &[&d, &half]);
    let hp = fc(b, std::f32::consts::FRAC_PI_2);
    let a = b.ew("stablehlo.multiply", &[&d, &hp]);
    let a2 = b.ew("stablehlo.multiply", &[&a, &a]);
    let horner = |b: &mut Body, k: &[f32; 4]| {
        let mut p = fc(b, k[3]);
        for j in (0..3).rev() {
            let m = b.ew("stablehlo.multiply", &[&p, &a2]);
            let c = fc(b, k[j]);
            p = b.ew("stablehlo.add", &[&m, &c]);
        }
        let m = b.ew("stablehlo.multiply", &[&p, &a2]);
        let one = fc(b, 1.0);
        b.ew("stablehlo.add", &[&m, &one])
    };
    let ps = horner(b, &initc_rng::BM_SIN);
    let s = b.ew("stablehlo.multiply", &[&a, &ps]);
    let c = horner(b, &initc_rng::BM_COS);
    let h = fc(b, std::f32::consts::FRAC_1_SQRT_2);
    let sc = b.ew("stablehlo.add", &[&s, &c]);
    let sn = b.ew("stablehlo.multiply", &[&sc, &h]);
    let cs = b.ew("stablehlo.subtract", &[&c, &s]);
    let cs = b.ew("stablehlo.multiply", &[&cs, &h]);
    let nsn = b.ew("stablehlo.negate", &[&sn]);
    let ncs = b.ew("stablehlo.negate", &[&cs]);
    let pred = tensor(shape, "i1");
    let is = |b: &mut Body, k: u32| {
        let c = uc(b, k);
        b.op("stablehlo.compare", &[&q, &c], "comparison_direction = #stablehlo<comparison_direction EQ>", &pred)
    };
    let (q0, q1, q2) = (is(b, 0), is(b, 1), is(b, 2));
    let pick = |b: &mut Body, v: [&Val; 4]| {
        let x = b.op("stablehlo.select", &[&q2, v[2], v[3]], "", &f);
        let x = b.op("stablehlo.select", &[&q1, v[1], &x], "", &f);
        b.op("stablehlo.select", &[&q0, v[0], &x], "", &f)
    };
    let cz = pick(b, [&cs, &nsn, &ncs, &sn]);
    let sz = pick(b, [&sn, &cs, &nsn, &ncs]);
    [cz, sz, r]
}

/// Fast mode draws a truncated normal as the Box-Muller normal when both bounds lie beyond
/// its range (f32 only; see [`initc_rng::TruncBounds::wide`]).
pub(crate) fn fast_truncation_is_vacuous(fast: bool, dt: DType, lower: f64, upper: f64) -> bool {
    fast && dt == DType::F32 && initc_rng::TruncBounds::new(lower, upper).wide()
}

/// Per-element counters `(hi, lo)`: the u32 form for shards of arrays of at most 2^32
/// elements, else JAX's u64 flat index split in two.
fn counters(b: &mut Body, shape: &[u64], global: Option<&Global>, key: &Val) -> (Val, Val) {
    match global {
        Some(g) if !g.wide => shard_counters_u32(b, shape, g, key),
        _ => counters_u64(b, shape, global, key),
    }
}

/// The global array a shard program computes a piece of.
#[derive(Clone, Debug)]
pub(crate) struct Global {
    pub strides: Vec<u64>,
    /// More than 2^32 elements: counters are u64.
    pub wide: bool,
}

/// Counters as JAX computes them: u64 flat index (plus the shard's base), split into hi/lo.
fn counters_u64(b: &mut Body, shape: &[u64], global: Option<&Global>, key: &Val) -> (Val, Val) {
    let t = tensor(shape, "ui32");
    let t64 = tensor(shape, "ui64");
    let mut flat: Option<Val> = None;
    let mut stride = 1u64;
    for d in (0..shape.len()).rev() {
        if let Some(g) = global {
            stride = g.strides[d];
        }
        let io = b.op("stablehlo.iota", &[], &format!("iota_dimension = {d} : i64"), &t64);
        let term = if stride == 1 {
            io
        } else {
            let c = b.constant(&stride.to_string(), &t64);
            b.ew("stablehlo.multiply", &[&io, &c])
        };
        flat = Some(match flat {
            None => term,
            Some(acc) => b.ew("stablehlo.add", &[&term, &acc]),
        });
        stride = stride.saturating_mul(shape[d]);
    }
    let mut flat = flat.unwrap_or_else(|| b.constant("0", &t64));
    if global.is_some() {
        let base = shard_base(b, key);
        let base = b.splat(&base, &t64);
        flat = b.ew("stablehlo.add", &[&flat, &base]);
    }
    let c32 = b.constant("32", &t64);
    let hi64 = b.ew("stablehlo.shift_right_logical", &[&flat, &c32]);
    let hi = b.op("stablehlo.convert", &[&hi64], "", &t);
    let lo = b.op("stablehlo.convert", &[&flat], "", &t);
    (hi, lo)
}

/// Counters of a shard of an array of at most 2^32 elements: every flat index fits in u32,
/// so the hi word is 0 and the lo word is computed in u32 (the same values as
/// [`counters_u64`], with none of the 64-bit integer work that GPUs emulate).
fn shard_counters_u32(b: &mut Body, shape: &[u64], g: &Global, key: &Val) -> (Val, Val) {
    let t = tensor(shape, "ui32");
    let one = tensor(&[1], "ui32");
    let s = tensor(&[], "ui32");
    let base = b.op(
        "stablehlo.slice",
        &[key],
        &format!("start_indices = {}, limit_indices = {}, strides = {}", i64_array([3]), i64_array([4]), i64_array([1])),
        &one,
    );
    let base = b.op("stablehlo.reshape", &[&base], "", &s);
    let mut flat = b.splat(&base, &t);
    for d in 0..shape.len() {
        let io = b.op("stablehlo.iota", &[], &format!("iota_dimension = {d} : i64"), &t);
        let term = if g.strides[d] == 1 {
            io
        } else {
            let c = b.constant(&g.strides[d].to_string(), &t);
            b.ew("stablehlo.multiply", &[&io, &c])
        };
        flat = b.ew("stablehlo.add", &[&flat, &term]);
    }
    (b.constant("0", &t), flat)
}

/// The shard's counter base, words 2 and 3 of a shard-mode key, as a `tensor<ui64>`.
fn shard_base(b: &mut Body, key: &Val) -> Val {
    let one = tensor(&[1], "ui32");
    let s = tensor(&[], "ui32");
    let s64 = tensor(&[], "ui64");
    let word = |b: &mut Body, i: u64| {
        let w = b.op(
            "stablehlo.slice",
            &[key],
            &format!("start_indices = {}, limit_indices = {}, strides = {}", i64_array([i]), i64_array([i + 1]), i64_array([1])),
            &one,
        );
        let w = b.op("stablehlo.reshape", &[&w], "", &s);
        b.op("stablehlo.convert", &[&w], "", &s64)
    };
    let hi = word(b, 2);
    let lo = word(b, 3);
    let c32 = b.constant("32", &s64);
    let hs = b.ew("stablehlo.shift_left", &[&hi, &c32]);
    b.ew("stablehlo.or", &[&hs, &lo])
}

/// `(x >> shift) | one_bits` in x's integer type.
fn mantissa(b: &mut Body, x: &Val, shift: &str, one_bits: &str) -> Val {
    let sh = b.constant(shift, &x.ty);
    let one = b.constant(one_bits, &x.ty);
    let s = b.ew("stablehlo.shift_right_logical", &[x, &sh]);
    b.ew("stablehlo.or", &[&s, &one])
}

fn half(dt: DType) -> Option<Half> {
    match dt {
        DType::BF16 => Some(Half::BF16),
        DType::F16 => Some(Half::F16),
        _ => None,
    }
}

/// An exact dense literal of `x` rounded to `dt` (hex bit pattern for floats).
pub(crate) fn float_literal(dt: DType, x: f64) -> String {
    match (dt, half(dt)) {
        (_, Some(h)) => format!("0x{:04X}", h.from_f64(x)),
        (DType::F64, _) => format!("0x{:016X}", x.to_bits()),
        _ => format!("0x{:08X}", (x as f32).to_bits()),
    }
}

/// A literal from bits already in `dt`'s format.
pub(crate) fn bits_literal(dt: DType, bits: u64) -> String {
    match dt {
        DType::BF16 | DType::F16 => format!("0x{bits:04X}"),
        DType::F64 => format!("0x{bits:016X}"),
        _ => format!("0x{bits:08X}"),
    }
}

/// Normal's `lo = nextafter(-1, 0)`, `scale = 1 - lo` and `sqrt(2)`, all in `dt`.
fn normal_consts(dt: DType) -> (String, String, String) {
    match half(dt) {
        Some(h) => {
            let lo = h.from_f32(-1.0) - 1;
            let scale = h.from_f32(1.0 - h.to_f32(lo));
            let sqrt2 = h.from_f64(std::f64::consts::SQRT_2);
            (bits_literal(dt, lo.into()), bits_literal(dt, scale.into()), bits_literal(dt, sqrt2.into()))
        }
        None => {
            let lo = f32::from_bits(0xBF7F_FFFF);
            (
                bits_literal(dt, 0xBF7F_FFFF),
                bits_literal(dt, (1.0 - lo).to_bits().into()),
                bits_literal(dt, initc_rng::SQRT2_F32.to_bits().into()),
            )
        }
    }
}

/// Host constants of a uniform draw: `lo` and `scale = hi - lo`, rounded to `dt`, as bits in
/// `dt`'s format.
pub(crate) fn uniform_bits(dt: DType, min: f64, max: f64) -> (u64, u64) {
    match (dt, half(dt)) {
        (_, Some(h)) => {
            let (lo, hi) = (h.from_f64(min), h.from_f64(max));
            let scale = h.from_f32(h.to_f32(hi) - h.to_f32(lo));
            (lo.into(), scale.into())
        }
        (DType::F64, _) => (min.to_bits(), (max - min).to_bits()),
        _ => {
            let (lo, hi) = (min as f32, max as f32);
            (lo.to_bits().into(), (hi - lo).to_bits().into())
        }
    }
}

/// [`uniform_bits`] as literals.
pub(crate) fn uniform_consts(dt: DType, min: f64, max: f64) -> (String, String) {
    let (lo, scale) = uniform_bits(dt, min, max);
    (bits_literal(dt, lo), bits_literal(dt, scale))
}

/// Host constants of a truncated normal draw: `a`, `scale = b - a`, clamp lo and hi, as bits
/// in `dt`'s format.
pub(crate) fn truncated_bits(dt: DType, lower: f64, upper: f64) -> [u64; 4] {
    match half(dt) {
        Some(h) => {
            let t = initc_rng::HalfTruncBounds::new(h, lower, upper);
            [t.a, t.scale, t.lo, t.hi].map(u64::from)
        }
        None => {
            let t = initc_rng::TruncBounds::new(lower, upper);
            [t.a, t.b - t.a, t.lo, t.hi].map(|x| x.to_bits().into())
        }
    }
}

/// [`truncated_bits`] as literals.
pub(crate) fn truncated_consts(dt: DType, lower: f64, upper: f64) -> [String; 4] {
    truncated_bits(dt, lower, upper).map(|b| bits_literal(dt, b))
}
