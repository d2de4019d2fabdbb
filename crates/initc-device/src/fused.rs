//! Parameters whose program is a row-major reshape of a concatenation (torchtitan 0.3.0's fused
//! `wqkv`). Shard programs compute a row slice of such a parameter directly (one program that
//! calls each part's own program on the rectangles the slice needs and concatenates them: see
//! `initc_stablehlo::sp`); this module is the fallback for what they reject (a region that is
//! not a row slice, a part that is not element-wise): each concatenated part becomes a
//! parameter of its own (the same IR value, so the same bits) and an assembly program
//! ([`initc_stablehlo::assembly_program`]) puts them together on the device and slices out the
//! requested region.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use initc_ir::{Module, Param};
use initc_pjrt::{Buffer, Client, CompileOptions, Executable};
use initc_shard::Region;
use initc_stablehlo::{Assembly, Concat, Lowerer, assembly_program, concat_parts};

use crate::DeviceError;
use crate::runtime::{Materializer, Shard};

/// A parameter made from parts: their indices in the split module, and how they assemble.
#[derive(Clone, Debug)]
pub struct Fused {
    pub parts: Vec<usize>,
    pub assembly: Assembly,
}

/// Per parameter, whether its program is a (reshaped) concatenation.
pub fn concatenated(m: &Module) -> Vec<bool> {
    m.params.iter().map(|p| concat_parts(m, p.value).is_some()).collect()
}

/// The module with the parts of every concatenated parameter that shard programs cannot
/// compute whole appended as parameters (`FQN#part0`, ...), and per original parameter its
/// [`Fused`] description (`None` for the others, which shard programs compute directly).
/// Modules with a mesh are returned unchanged.
pub fn split_fused(m: &Module) -> (Module, Vec<Option<Fused>>) {
    let lowerer = Lowerer::new(m);
    let cat = concatenated(m);
    split_where(m, |p| cat[p] && lowerer.lower(p, &Region::full(&m.params[p].ty.shape)).is_err())
}

/// [`split_fused`] for the concatenated parameters `split` accepts.
fn split_where(m: &Module, split: impl Fn(usize) -> bool) -> (Module, Vec<Option<Fused>>) {
    let mut out = m.clone();
    if m.mesh.is_some() {
        return (out, vec![None; m.params.len()]);
    }
    let fused = m
        .params
        .iter()
        .enumerate()
        .map(|(q, p)| {
            if !split(q) {
                return None;
            }
            let Concat { parts, dim, shape: concat } = concat_parts(m, p.value)?;
            let mut idx = Vec::with_capacity(parts.len());
            let mut shapes = Vec::with_capacity(parts.len());
            for (i, (own, view)) in parts.into_iter().enumerate() {
                idx.push(out.params.len());
                shapes.push((m.ty(own).shape.clone(), view));
                out.params.push(Param {
                    fqn: format!("{}#part{i}", p.fqn),
                    value: own,
                    ty: m.ty(own).clone(),
                    axes: Vec::new(),
                    init: p.init.clone(),
                    sharding: None,
                });
            }
            Some(Fused {
                parts: idx,
                assembly: Assembly { dtype: p.ty.dtype, parts: shapes, dim: dim as u32, concat, shape: p.ty.shape.clone() },
            })
        })
        .collect();
    (out, fused)
}

/// What [`materialize_regions`] made: per request list, its shards in request order.
pub struct RegionRun {
    pub devices: Vec<Vec<Shard>>,
    /// Planning and XLA compiles (shard programs and assembly programs).
    pub compile: Duration,
    /// Static words and tables.
    pub load: Duration,
    /// From the seed to every requested buffer ready (assembly included).
    pub run: Duration,
    /// Distinct executables (shard programs and assembly programs), and how many of them the
    /// persistent cache (`INITC_COMPILE_CACHE`) served instead of XLA.
    pub executables: usize,
    pub cache_hits: usize,
}

/// [`Materializer::for_regions`] and one run for `seed`, for any parameter: regions of
/// concatenated parameters that shard programs reject are made from their parts and assembled
/// on the device ([`split_fused`]); the parts' buffers are freed once assembled.
pub fn materialize_regions(
    m: &Module,
    client: Client,
    targets: Vec<usize>,
    requests: Vec<Vec<(usize, Region)>>,
    options: &CompileOptions,
    max_batch: Option<usize>,
    seed: u64,
) -> Result<RegionRun, DeviceError> {
    let t0 = Instant::now();
    // Which requests shard programs reject (only concatenations fall back to parts).
    let lowerer = Lowerer::new(m);
    let cat = concatenated(m);
    let rejected: Vec<Vec<bool>> = requests
        .iter()
        .map(|list| list.iter().map(|(p, r)| cat.get(*p).copied().unwrap_or(false) && lowerer.lower(*p, r).is_err()).collect())
        .collect();
    let (split, fused) =
        split_where(m, |p| requests.iter().zip(&rejected).any(|(list, rj)| list.iter().zip(rj).any(|((q, _), &no)| *q == p && no)));
    // Per request list, where each requested shard comes from: one launch or several parts.
    enum From {
        Launch(usize),
        Parts(Vec<usize>),
    }
    let mut sources: Vec<Vec<From>> = Vec::with_capacity(requests.len());
    let mut launches: Vec<Vec<(usize, Region)>> = Vec::with_capacity(requests.len());
    for (list, rj) in requests.iter().zip(&rejected) {
        let (mut src, mut ls) = (Vec::with_capacity(list.len()), Vec::with_capacity(list.len()));
        for ((p, region), &no) in list.iter().zip(rj) {
            let f = fused.get(*p).ok_or_else(|| DeviceError::Internal(format!("parameter index {p} out of range")))?;
            match f {
                Some(f) if no => {
                    let first = ls.len();
                    ls.extend(f.parts.iter().map(|&q| (q, Region::full(&split.params[q].ty.shape))));
                    src.push(From::Parts((first..ls.len()).collect()));
                }
                _ => {
                    src.push(From::Launch(ls.len()));
                    ls.push((*p, region.clone()));
                }
            }
        }
        sources.push(src);
        launches.push(ls);
    }
    let mat = Materializer::for_regions(&split, client.clone(), targets, launches, options, max_batch)?;
    // One executable per distinct (assembly, region).
    let mut programs: HashMap<String, usize> = HashMap::new();
    let mut executables: Vec<Executable> = Vec::new();
    let mut which: Vec<Vec<Option<usize>>> = Vec::with_capacity(requests.len());
    let cache = initc_pjrt::CompileCache::from_env(&client);
    let mut assembly_hits = 0;
    for (list, src) in requests.iter().zip(&sources) {
        let mut w = Vec::with_capacity(list.len());
        for ((p, region), s) in list.iter().zip(src) {
            w.push(match s {
                From::Launch(_) => None,
                From::Parts(..) => {
                    let f = fused[*p].as_ref().ok_or_else(|| DeviceError::Internal("a fused parameter lost its parts".into()))?;
                    let text = assembly_program(&f.assembly, &region.offset, &region.shape);
                    let next = executables.len();
                    let e = *programs.entry(text.clone()).or_insert(next);
                    if e == next {
                        let program = format!("assemble `{}`", m.params[*p].fqn);
                        let (exe, hit) = crate::runtime::compile(&client, cache.as_ref(), text.as_bytes(), options)
                            .map_err(|source| DeviceError::Compile { program, source })?;
                        executables.push(exe);
                        assembly_hits += usize::from(hit);
                    }
                    Some(e)
                }
            });
        }
        which.push(w);
    }
    let compile = t0.elapsed().saturating_sub(mat.load_time);
    let load = mat.load_time;
    let run = mat.run(seed)?;
    let t1 = Instant::now();
    let mut devices = Vec::with_capacity(run.devices.len());
    for (((ds, list), src), w) in run.devices.into_iter().zip(&requests).zip(&sources).zip(&which) {
        let device = ds.device.clone();
        let mut made: Vec<Option<Shard>> = ds.shards.into_iter().map(Some).collect();
        let mut out = Vec::with_capacity(list.len());
        for (((p, region), s), exe) in list.iter().zip(src).zip(w) {
            let shard = match (s, exe) {
                (From::Launch(k), _) => made[*k].take().ok_or_else(|| DeviceError::Internal("a shard was taken twice".into()))?,
                (From::Parts(ks), Some(e)) => {
                    let parts: Vec<Shard> = ks
                        .iter()
                        .map(|&k| made[k].take().ok_or_else(|| DeviceError::Internal("a part was taken twice".into())))
                        .collect::<Result<_, _>>()?;
                    let args: Vec<&Buffer> = parts.iter().map(|s| &s.buffer).collect();
                    let mut res = executables[*e].execute_on(&device, &args)?;
                    let buffer = res.pop().ok_or_else(|| DeviceError::Internal("an assembly program returned nothing".into()))?;
                    // The parts' buffers may be dropped now: PJRT frees them after the execute.
                    drop(parts);
                    let param = &m.params[*p];
                    Shard {
                        param: *p,
                        fqn: param.fqn.clone(),
                        offset: region.offset.clone(),
                        shape: region.shape.clone(),
                        dtype: param.ty.dtype,
                        buffer,
                    }
                }
                (From::Parts(..), None) => return Err(DeviceError::Internal("an assembled shard has no program".into())),
            };
            out.push(shard);
        }
        devices.push(out);
    }
    for d in &devices {
        for s in d {
            s.buffer.wait_ready()?;
        }
    }
    Ok(RegionRun {
        devices,
        compile,
        load,
        run: run.elapsed + t1.elapsed(),
        executables: mat.executables() + executables.len(),
        cache_hits: mat.cache_hits + assembly_hits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use initc_ir::Value;

    fn bytes(m: &Module, v: Value) -> Vec<u8> {
        let ev = initc_cpu::Evaluator::new(m, 9);
        let shape = m.ty(v).shape.clone();
        let mut out = Vec::new();
        initc_cpu::materialize::<()>(&ev, v, &shape, &Region::full(&shape), |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        out
    }

    const TITAN: &str = "[model]\npreset = \"llama3\"\ntorchtitan = \"0.3.0\"\ndim = 64\nn_layers = 2\nn_heads = 8\nn_kv_heads = 2\nvocab_size = 128\nmultiple_of = 32\n";
    const WQKV: [&str; 2] = ["layers.0.attention.qkv_linear.wqkv.weight", "layers.1.attention.qkv_linear.wqkv.weight"];

    /// torchtitan 0.3.0's fused wqkv: shard programs compute it whole and in row slices, so
    /// nothing is split; a column slice (not one run of its rows) is what falls back to parts.
    #[test]
    fn only_what_shard_programs_reject_is_split() {
        let m = initc_frontend::trace_toml("t", TITAN, "t.toml").unwrap().module;
        let (_, fused) = split_fused(&m);
        assert!(fused.iter().all(Option::is_none));
        let cat: Vec<&str> = m.params.iter().zip(concatenated(&m)).filter(|(_, c)| *c).map(|(p, _)| p.fqn.as_str()).collect();
        assert_eq!(cat, WQKV);
        let l = Lowerer::new(&m);
        let p = m.params.iter().position(|p| p.fqn == WQKV[0]).unwrap();
        assert!(l.lower(p, &Region { offset: vec![24, 0], shape: vec![24, 64] }).is_ok());
        let err = l.lower(p, &Region { offset: vec![0, 0], shape: vec![96, 32] }).unwrap_err();
        assert!(matches!(err, initc_stablehlo::LowerError::Unsupported(_)), "{err}");
    }

    /// torchtitan 0.3.0's fused wqkv: the CPU engine's value of the parameter is its parts'
    /// values put together as the assembly program does (reshape, concat, reshape).
    #[test]
    fn fused_parameters_are_their_parts_concatenated() {
        let m = initc_frontend::trace_toml("t", TITAN, "t.toml").unwrap().module;
        let (split, fused) = split_where(&m, |_| true);
        let found: Vec<&str> = m.params.iter().zip(&fused).filter(|(_, f)| f.is_some()).map(|(p, _)| p.fqn.as_str()).collect();
        assert_eq!(found, WQKV);
        for (p, f) in m.params.iter().zip(&fused) {
            let Some(f) = f else { continue };
            let a = &f.assembly;
            let w = p.ty.dtype.size_bytes() as usize;
            let d = a.dim as usize;
            let outer: u64 = a.concat[..d].iter().product();
            let inner = a.concat[d + 1..].iter().product::<u64>() as usize * w;
            let parts: Vec<Vec<u8>> = f.parts.iter().map(|&q| bytes(&split, split.params[q].value)).collect();
            let mut host = Vec::new();
            for o in 0..outer as usize {
                for (bytes, (_, view)) in parts.iter().zip(&a.parts) {
                    let chunk = view[d] as usize * inner;
                    host.extend_from_slice(&bytes[o * chunk..(o + 1) * chunk]);
                }
            }
            assert_eq!(host, bytes(&m, p.value), "{}", p.fqn);
        }
    }
}
