//! The StableHLO printer of shard programs: the only place their text is written.
//!
//! `@main(%arg0: tensor<Sxui32>, %table...) -> tensor<local shape>` reads everything that
//! varies between parameters and devices from `%arg0`, the static words. Each [`Inst`] prints
//! as a fixed sequence of generic-form ops; the random draws call the private functions of
//! `rng.rs`, each emitted once. No locations: equal programs print equal text.

use std::fmt::Write;

use initc_ir::{CmpDir, DType};

use super::{Draw, Id, Inst, Lane, PAIRS, ShardProg, Ty};
use crate::emit::{binary_name, compare_attr, unary_name};
use crate::rng::Funcs;
use crate::text::{Body, Val, elem, i64_array, tensor};

fn mlir_ty(t: &Ty) -> String {
    tensor(&t.shape, elem(t.dtype))
}

/// `k` launches of one program in one execute: a new `@main` takes the launches' static words
/// in groups of `fuse` launches (one vector per group, `tensor<g*S x ui32>`, launch `i` of a
/// group reading words `i*S .. (i+1)*S`), then each launch's table arguments, calls the program
/// (the private `@shard_main`) once per launch and returns the `k` shards, in order.
///
/// A group's shared static vector is what lets XLA:GPU fuse its element-wise loops into one
/// multi-output kernel (sibling fusion needs a shared operand): a group is one kernel launch.
/// Groups stay apart, as wider kernels ran slower (8 bf16 loops in one kernel: 16.5 ms for
/// the 8B model on an H200, against 13.1 ms with 4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Batched<'a> {
    pub prog: &'a ShardProg,
    /// Launches per group of shared static words ([`batch_groups`]).
    pub groups: Vec<usize>,
}

impl<'a> Batched<'a> {
    pub fn new(prog: &'a ShardProg, k: usize, fuse: usize) -> Batched<'a> {
        Batched { prog, groups: batch_groups(k, fuse) }
    }

    pub fn launches(&self) -> usize {
        self.groups.iter().sum()
    }

    /// The StableHLO text: the program itself for one launch.
    pub fn print(&self) -> String {
        let p = self.prog;
        let k = self.launches();
        if k == 1 {
            return p.print();
        }
        let words = p.words() as u64;
        let statics = tensor(&[words], "ui32");
        let table = tensor(&[PAIRS], "ui32");
        let tables = p.tables();
        let result = mlir_ty(&Ty::new(&p.shape, p.dtype));
        let mut types = vec![statics.clone()];
        types.extend((0..tables).map(|_| table.clone()));
        let mut params: Vec<String> =
            self.groups.iter().enumerate().map(|(g, &n)| format!("%statics{g}: tensor<{}xui32>", words * n as u64)).collect();
        params.extend((0..k).flat_map(|b| (1..=tables).map(move |i| format!("%b{b}_{i}: {}", tensor(&[PAIRS], "ui32")))));
        let mut text = header();
        let _ = writeln!(text, "  func.func public @main({}) -> ({}) {{", params.join(", "), vec![result.as_str(); k].join(", "));
        let mut b = 0usize;
        for (g, &n) in self.groups.iter().enumerate() {
            for i in 0..n as u64 {
                let _ = writeln!(
                    text,
                    "    %s{b} = \"stablehlo.slice\"(%statics{g}) {{start_indices = {}, limit_indices = {}, strides = {}}} : (tensor<{}xui32>) -> {statics}",
                    i64_array([i * words]),
                    i64_array([(i + 1) * words]),
                    i64_array([1]),
                    words * n as u64,
                );
                let mut names = vec![format!("%s{b}")];
                names.extend((1..=tables).map(|i| format!("%b{b}_{i}")));
                let _ = writeln!(text, "    %r{b} = func.call @shard_main({}) : ({}) -> ({result})", names.join(", "), types.join(", "));
                b += 1;
            }
        }
        let rs: Vec<String> = (0..k).map(|b| format!("%r{b}")).collect();
        let _ = writeln!(text, "    func.return {} : {}", rs.join(", "), vec![result.as_str(); k].join(", "));
        text.push_str("  }\n");
        p.print_funcs(&mut text, "private @shard_main");
        text
    }
}

/// The sizes of the groups of `fuse` launches (the last one smaller) that a batch of `k`
/// launches passes its static words in ([`Batched`]).
pub fn batch_groups(k: usize, fuse: usize) -> Vec<usize> {
    let fuse = fuse.max(1);
    (0..k.div_ceil(fuse)).map(|g| fuse.min(k - g * fuse)).collect()
}

fn header() -> String {
    "module @shard attributes {mhlo.num_partitions = 1 : i32, mhlo.num_replicas = 1 : i32} {\n".to_string()
}

impl ShardProg {
    /// The StableHLO text (generic form) of one launch.
    pub fn print(&self) -> String {
        let mut text = header();
        self.print_funcs(&mut text, "public @main");
        text
    }

    /// The program as function `name` (`public @main`, `private @shard_main`), its private
    /// functions and the module's closing brace.
    fn print_funcs(&self, text: &mut String, name: &str) {
        let mut private = Vec::new();
        self.print_func(text, name, &mut private);
        // a concatenated parameter's pieces: `@piece{i}`, each with its own draws' functions
        // (equal functions, e.g. of pieces with equal counters, printed once)
        for (i, f) in self.funcs.iter().enumerate() {
            f.print_func(text, &format!("private @piece{i}"), &mut private);
        }
        for f in private {
            text.push_str(&f);
        }
        text.push_str("}\n");
    }

    /// The program as function `name`; its private functions are added to `private` (each
    /// text once).
    fn print_func(&self, text: &mut String, name: &str, private: &mut Vec<String>) {
        let mut p = Printer { prog: self, body: Body::new("shard"), funcs: Funcs::shard(&self.counters, self.rng), vals: Vec::new() };
        p.body.loc = None;
        let arg0 = Val { name: "%arg0".into(), ty: tensor(&[self.words() as u64], "ui32") };
        for d in &self.defs {
            let v = p.def(&arg0, &d.inst, &d.ty);
            p.vals.push(v);
        }
        let out = p.vals[self.result.index()].clone();
        p.body.ret(&[&out]);
        let tables: String = (0..self.tables()).map(|i| format!(", %arg{}: {}", 1 + i, tensor(&[PAIRS], "ui32"))).collect();
        let _ = writeln!(text, "  func.func {name}(%arg0: {}{tables}) -> ({}) {{", arg0.ty, out.ty);
        for l in &p.body.lines {
            let _ = writeln!(text, "    {l}");
        }
        text.push_str("  }\n");
        for f in std::mem::take(&mut p.funcs.text) {
            if !private.contains(&f) {
                private.push(f);
            }
        }
    }
}

struct Printer<'a> {
    prog: &'a ShardProg,
    body: Body,
    funcs: Funcs,
    /// Per definition, its MLIR value.
    vals: Vec<Val>,
}

impl Printer<'_> {
    fn v(&self, id: Id) -> Val {
        self.vals[id.index()].clone()
    }

    /// `arg[start .. start + n]` as a `tensor<nxui32>`.
    fn slice(&mut self, arg: &Val, start: usize, n: usize) -> Val {
        let attr = format!(
            "start_indices = {}, limit_indices = {}, strides = {}",
            i64_array([start as u64]),
            i64_array([(start + n) as u64]),
            i64_array([1])
        );
        self.body.op("stablehlo.slice", &[arg], &attr, &tensor(&[n as u64], "ui32"))
    }

    /// Word `i` of a `tensor<2xui32>` as a `tensor<ui64>`.
    fn word_u64(&mut self, w: &Val, i: usize) -> Val {
        let x = self.slice(w, i, 1);
        let x = self.body.op("stablehlo.reshape", &[&x], "", &tensor(&[], "ui32"));
        self.body.op("stablehlo.convert", &[&x], "", &tensor(&[], "ui64"))
    }

    /// A `tensor<2xui32>` (hi, lo) as a `tensor<ui64>`.
    fn u64_of(&mut self, w: &Val) -> Val {
        let hi = self.word_u64(w, 0);
        let lo = self.word_u64(w, 1);
        let c = self.body.constant("32", &tensor(&[], "ui64"));
        let hs = self.body.ew("stablehlo.shift_left", &[&hi, &c]);
        self.body.ew("stablehlo.or", &[&hs, &lo])
    }

    fn def(&mut self, arg0: &Val, inst: &Inst, ty: &Ty) -> Val {
        let out = mlir_ty(ty);
        let shape = &ty.shape;
        match inst {
            Inst::Key { start } => {
                let kw = self.slice(arg0, *start, 2);
                let ks = self.slice(arg0, start + 2, 1);
                let base = self.slice(arg0, 0, 2);
                self.body.op("stablehlo.concatenate", &[&kw, &base, &ks], "dimension = 0 : i64", &out)
            }
            Inst::Scalar { start } => self.scalar(arg0, *start, ty.dtype),
            Inst::Offset { start } => {
                let w = self.slice(arg0, *start, 2);
                self.u64_of(&w)
            }
            Inst::Table { index } => Val { name: format!("%arg{}", 1 + index), ty: out },
            Inst::Splat { x } => self.body.splat(&self.v(*x), &out),
            Inst::Reshape { x } | Inst::ToLocal { x } => self.body.op("stablehlo.reshape", &[&self.v(*x)], "", &out),
            Inst::Draw { draw, key, consts, lane } => {
                let (key, lane) = (self.v(*key), *lane);
                let c: Vec<Val> = consts.iter().map(|&c| self.v(c)).collect();
                let f = match draw {
                    Draw::Uniform => self.funcs.uniform(ty.dtype, shape, lane),
                    Draw::Normal => self.funcs.normal(ty.dtype, shape, lane),
                    Draw::TruncatedNormal => self.funcs.truncated_normal(ty.dtype, shape, lane),
                    Draw::NormalErfInv => self.funcs.normal_erf_inv(ty.dtype, shape, lane),
                    Draw::RandomBits(w) => return self.funcs.random_bits(&mut self.body, &key, *w, shape, &out, lane),
                };
                let mut args = vec![&key];
                args.extend(c.iter());
                self.body.call(&f, &args, &[out]).remove(0)
            }
            Inst::TableLookup { key, table } => {
                let t = tensor(shape, "ui32");
                let f = self.funcs.bits(shape);
                let y = self.body.call(&f, &[&self.v(*key)], &[t.clone(), t.clone()]);
                let m = self.body.constant(&(PAIRS - 1).to_string(), &t);
                let x = self.body.ew("stablehlo.and", &[&y[0], &m]);
                self.lookup(&self.v(*table), &x, shape)
            }
            Inst::PairHalf { pair, lane } => {
                let pair = self.v(*pair);
                let pair = if *lane == 0 {
                    pair
                } else {
                    let s = self.body.constant("16", &tensor(shape, "ui32"));
                    self.body.ew("stablehlo.shift_right_logical", &[&pair, &s])
                };
                let h = self.body.op("stablehlo.convert", &[&pair], "", &tensor(shape, "ui16"));
                self.body.op("stablehlo.bitcast_convert", &[&h], "", &out)
            }
            Inst::Iota { dim, offset, lane } => {
                let t64 = tensor(shape, "ui64");
                let mut io = self.body.op("stablehlo.iota", &[], &format!("iota_dimension = {dim} : i64"), &t64);
                if let Some(Lane { lanes, lane: j }) = *lane
                    && dim + 1 == shape.len()
                {
                    // element index in the last dim = group * L + lane
                    let l = self.body.constant(&lanes.to_string(), &t64);
                    io = self.body.ew("stablehlo.multiply", &[&io, &l]);
                    if j > 0 {
                        let jc = self.body.constant(&j.to_string(), &t64);
                        io = self.body.ew("stablehlo.add", &[&io, &jc]);
                    }
                }
                let off = self.body.splat(&self.v(*offset), &t64);
                let g = self.body.ew("stablehlo.add", &[&io, &off]);
                self.body.op("stablehlo.convert", &[&g], "", &out)
            }
            Inst::Unary { op, x } => self.body.op(unary_name(*op), &[&self.v(*x)], "", &out),
            Inst::Binary { op, a, b } => self.body.op(binary_name(*op), &[&self.v(*a), &self.v(*b)], "", &out),
            Inst::Compare { dir, a, b } => self.body.op("stablehlo.compare", &[&self.v(*a), &self.v(*b)], &compare_attr(*dir), &out),
            Inst::Select { pred, on_true, on_false } => {
                self.body.op("stablehlo.select", &[&self.v(*pred), &self.v(*on_true), &self.v(*on_false)], "", &out)
            }
            Inst::Convert { x } => self.body.op("stablehlo.convert", &[&self.v(*x)], "", &out),
            Inst::Pack { lanes } => self.pack(ty, lanes),
            Inst::Call { func, start, tables } => {
                let callee = &self.prog.funcs[*func];
                let words = self.slice(arg0, *start, callee.words());
                let mut args = vec![words];
                args.extend(tables.iter().map(|&t| self.v(t)));
                let refs: Vec<&Val> = args.iter().collect();
                self.body.call(&format!("piece{func}"), &refs, &[out]).remove(0)
            }
            Inst::View { x } => self.body.op("stablehlo.reshape", &[&self.v(*x)], "", &out),
            Inst::Concat { xs, dim } => {
                let xs: Vec<Val> = xs.iter().map(|&x| self.v(x)).collect();
                let refs: Vec<&Val> = xs.iter().collect();
                self.body.op("stablehlo.concatenate", &refs, &format!("dimension = {dim} : i64"), &out)
            }
            Inst::Unpair { pair } => {
                let pair = self.v(*pair);
                let mut split = self.prog.compute.clone();
                split.push(2);
                let v = self.body.op("stablehlo.bitcast_convert", &[&pair], "", &tensor(&split, elem(ty.dtype)));
                self.body.op("stablehlo.reshape", &[&v], "", &out)
            }
        }
    }

    /// The [`crate::sp::Slot::Scalar`] at `start` as a `tensor<dt>`.
    fn scalar(&mut self, arg0: &Val, start: usize, dt: DType) -> Val {
        let n = if dt.size_bytes() == 8 { 2 } else { 1 };
        let w = self.slice(arg0, start, n);
        let s = tensor(&[], elem(dt));
        let int = match dt.size_bytes() {
            8 => self.u64_of(&w),
            4 => self.body.op("stablehlo.reshape", &[&w], "", &tensor(&[], "ui32")),
            2 => {
                let x = self.body.op("stablehlo.reshape", &[&w], "", &tensor(&[], "ui32"));
                self.body.op("stablehlo.convert", &[&x], "", &tensor(&[], "ui16"))
            }
            _ => {
                let x = self.body.op("stablehlo.reshape", &[&w], "", &tensor(&[], "ui32"));
                self.body.op("stablehlo.convert", &[&x], "", &tensor(&[], "ui8"))
            }
        };
        match dt {
            DType::Bool => {
                let z = self.body.constant("0", &int.ty);
                self.body.op("stablehlo.compare", &[&int, &z], &compare_attr(CmpDir::Ne), &s)
            }
            DType::U8 | DType::U16 | DType::U32 | DType::U64 => int,
            _ => self.body.op("stablehlo.bitcast_convert", &[&int], "", &s),
        }
    }

    /// `table[index]` for a 1-D `table` and a ui32 `index` of shape `shape` (one gather).
    fn lookup(&mut self, table: &Val, index: &Val, shape: &[u64]) -> Val {
        let x = self.body.op("stablehlo.convert", &[index], "", &tensor(shape, "i32"));
        let mut col = shape.to_vec();
        col.push(1);
        let x = self.body.op("stablehlo.reshape", &[&x], "", &tensor(&col, "i32"));
        let attr = format!(
            "dimension_numbers = #stablehlo.gather<collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = {}>, indices_are_sorted = false, slice_sizes = array<i64: 1>",
            shape.len()
        );
        self.body.op("stablehlo.gather", &[table, &x], &attr, &tensor(shape, "ui32"))
    }

    /// Interleaves the lanes of a packed program's result: lane `j` of group `g` is element
    /// `g * L + j`. Each lane's bits go to bits `j*w ..` of a `L*w`-bit word (u64, or u32 for
    /// bf16 pairs), whose bitcast to `L` values of the dtype (little-endian, as on x86 and
    /// GPUs) is reshaped to the local shape.
    fn pack(&mut self, ty: &Ty, lanes: &[Id]) -> Val {
        let dt = ty.dtype;
        let compute = self.prog.compute.clone();
        let w = 8 * dt.size_bytes();
        let uint = format!("ui{w}");
        let tw = tensor(&compute, &format!("ui{}", w * lanes.len() as u64));
        let mut acc: Option<Val> = None;
        for (j, &v) in lanes.iter().enumerate() {
            let v = self.v(v);
            let bits = if matches!(dt, DType::F32 | DType::BF16 | DType::F16 | DType::I32) {
                self.body.op("stablehlo.bitcast_convert", &[&v], "", &tensor(&compute, &uint))
            } else {
                v
            };
            let x = self.body.op("stablehlo.convert", &[&bits], "", &tw);
            let x = if j == 0 {
                x
            } else {
                let sh = self.body.constant(&(j as u64 * w).to_string(), &tw);
                self.body.ew("stablehlo.shift_left", &[&x, &sh])
            };
            acc = Some(match acc {
                None => x,
                Some(a) => self.body.ew("stablehlo.or", &[&a, &x]),
            });
        }
        let acc = acc.unwrap_or_else(|| self.body.constant("0", &tw));
        let mut split = compute;
        split.push(lanes.len() as u64);
        let v = self.body.op("stablehlo.bitcast_convert", &[&acc], "", &tensor(&split, elem(dt)));
        self.body.op("stablehlo.reshape", &[&v], "", &mlir_ty(ty))
    }
}
