//! `initc._native`: the Python binding (PyO3, abi3 for CPython ≥ 3.11).
//!
//! API boundary: [`PyTracer`] wraps [`initc_frontend::Tracer`] (values are the `u32` indices of
//! IR nodes), [`Program`] wraps a verified [`initc_ir::Module`] (text/protobuf files, the
//! parameter table, and the CPU engine writing any rectangle of a parameter into a caller's
//! buffer). Every Rust error becomes an `initc.InitcError`; nothing here panics on bad input.
//! The Python package (`python/initc`) builds the user-facing API on top of this.

mod device;

use std::sync::Arc;

use initc_frontend::{FanMode, Init, Nonlinearity, TraceError, Tracer};
use initc_ir::{BinaryOp, CmpDir, DType, Module, RngMode, Type, UnaryOp, Value};
use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

create_exception!(_native, InitcError, PyException, "An error reported by initc (tracing, IR files, the CPU engine).");

pub(crate) fn err(e: impl std::fmt::Display) -> PyErr {
    InitcError::new_err(e.to_string())
}

fn dtype(name: &str) -> PyResult<DType> {
    DType::from_name(name).ok_or_else(|| err(format!("unknown dtype `{name}` (f32 bf16 f16 f64 u8 u16 u32 u64 i32 bool)")))
}

fn ty(dt: &str, shape: Vec<u64>) -> PyResult<Type> {
    Ok(Type::new(dtype(dt)?, shape))
}

/// An initializer from `{"kind": ..., args}` (the model.toml spelling; defaults as torch's).
fn init_of(spec: &Bound<'_, PyDict>) -> PyResult<Init> {
    let kind: String = spec.get_item("kind")?.ok_or_else(|| err("initializer needs `kind`"))?.extract()?;
    let f = |name: &str, default: f64| -> PyResult<f64> { spec.get_item(name)?.map_or(Ok(default), |v| v.extract()) };
    let s = |name: &str, default: &str| -> PyResult<String> { spec.get_item(name)?.map_or(Ok(default.to_string()), |v| v.extract()) };
    let kaiming = || -> PyResult<(f64, FanMode, Nonlinearity)> {
        let mode = s("mode", "fan_in")?;
        let nl = s("nonlinearity", "leaky_relu")?;
        let mode = FanMode::from_name(&mode).ok_or_else(|| err(format!("unknown fan mode `{mode}`")))?;
        let nonlinearity = Nonlinearity::from_name(&nl).ok_or_else(|| err(format!("unknown nonlinearity `{nl}`")))?;
        Ok((f("a", 0.0)?, mode, nonlinearity))
    };
    Ok(match kind.as_str() {
        "zeros" => Init::ZEROS,
        "ones" => Init::ONES,
        "constant" => Init::Constant(f("value", 0.0)?),
        "uniform" => Init::Uniform { a: f("a", 0.0)?, b: f("b", 1.0)? },
        "normal" => Init::Normal { mean: f("mean", 0.0)?, std: f("std", 1.0)? },
        "trunc_normal" => Init::TruncNormal { mean: f("mean", 0.0)?, std: f("std", 1.0)?, a: f("a", -2.0)?, b: f("b", 2.0)? },
        "xavier_uniform" => Init::XavierUniform { gain: f("gain", 1.0)? },
        "xavier_normal" => Init::XavierNormal { gain: f("gain", 1.0)? },
        "kaiming_uniform" => {
            let (a, mode, nonlinearity) = kaiming()?;
            Init::KaimingUniform { a, mode, nonlinearity }
        }
        "kaiming_normal" => {
            let (a, mode, nonlinearity) = kaiming()?;
            Init::KaimingNormal { a, mode, nonlinearity }
        }
        other => return Err(err(format!("unknown initializer kind `{other}`"))),
    })
}

fn named<T>(kind: &str, name: &str, f: impl Fn(&str) -> Option<T>) -> PyResult<T> {
    f(name).ok_or_else(|| err(format!("unknown {kind} `{name}`")))
}

/// The tracer: builds an init program. Values are node indices (`int`).
#[pyclass(name = "Tracer", module = "initc._native", unsendable)]
pub struct PyTracer {
    t: Option<Tracer>,
    /// One past the largest value handed out: inputs are checked against it, because the
    /// tracer indexes its arena with them (an unknown index must be an error, not a panic).
    count: u32,
}

impl PyTracer {
    fn t(&mut self) -> PyResult<&mut Tracer> {
        self.t.as_mut().ok_or_else(|| err("this Tracer is finished"))
    }
    fn tr(&self) -> PyResult<&Tracer> {
        self.t.as_ref().ok_or_else(|| err("this Tracer is finished"))
    }
    /// Checks that every input is a value of this tracer.
    fn known(&self, xs: &[u32]) -> PyResult<()> {
        match xs.iter().find(|&&x| x >= self.count) {
            Some(x) => Err(err(format!("%{x} is not a value of this tracer"))),
            None => Ok(()),
        }
    }
    fn seen(&mut self, r: PyResult<u32>) -> PyResult<u32> {
        let v = r?;
        self.count = self.count.max(v + 1);
        Ok(v)
    }
}

fn v(r: Result<Value, TraceError>) -> PyResult<u32> {
    r.map(|x| x.0).map_err(err)
}

#[pymethods]
impl PyTracer {
    #[new]
    fn new(name: &str) -> PyTracer {
        PyTracer { t: Some(Tracer::new(name)), count: 1 }
    }

    fn set_seed(&mut self, seed: u64) -> PyResult<()> {
        self.t()?.set_seed(seed);
        Ok(())
    }

    fn set_rng_mode(&mut self, mode: &str) -> PyResult<()> {
        let m = named("rng mode", mode, RngMode::from_name)?;
        self.t()?.set_rng_mode(m);
        Ok(())
    }

    fn root_key(&self) -> PyResult<u32> {
        Ok(self.tr()?.root_key().0)
    }

    #[pyo3(signature = (fqn, dtype, shape, init, axes = Vec::new()))]
    fn param(&mut self, fqn: &str, dtype: &str, shape: Vec<u64>, init: &Bound<'_, PyDict>, axes: Vec<String>) -> PyResult<u32> {
        let (ty, init) = (ty(dtype, shape)?, init_of(init)?);
        let axes: Vec<&str> = axes.iter().map(String::as_str).collect();
        let r = v(self.t()?.param(fqn, ty, &axes, &init));
        self.seen(r)
    }

    #[pyo3(signature = (fqn, dtype, shape, init, key = None))]
    fn init_value(&mut self, fqn: &str, dtype: &str, shape: Vec<u64>, init: &Bound<'_, PyDict>, key: Option<u32>) -> PyResult<u32> {
        if let Some(k) = key {
            self.known(&[k])?;
        }
        let (ty, init) = (ty(dtype, shape)?, init_of(init)?);
        let r = v(self.t()?.init_value(fqn, &ty, &init, key.map(Value)));
        self.seen(r)
    }

    fn assign(&mut self, fqn: &str, x: u32) -> PyResult<()> {
        self.known(&[x])?;
        self.t()?.assign(fqn, Value(x)).map_err(err)
    }

    fn param_key(&mut self, fqn: &str) -> PyResult<u32> {
        let r = v(self.t()?.param_key(fqn));
        self.seen(r)
    }

    fn fold_in(&mut self, key: u32, data: u32) -> PyResult<u32> {
        self.known(&[key])?;
        let r = v(self.t()?.fold_in(Value(key), data));
        self.seen(r)
    }

    fn split(&mut self, key: u32, count: u64) -> PyResult<u32> {
        self.known(&[key])?;
        let r = v(self.t()?.split(Value(key), count));
        self.seen(r)
    }

    fn key_at(&mut self, keys: u32, i: u64) -> PyResult<u32> {
        self.known(&[keys])?;
        let r = v(self.t()?.key_at(Value(keys), i));
        self.seen(r)
    }

    fn random_bits(&mut self, key: u32, width: u8, shape: Vec<u64>) -> PyResult<u32> {
        self.known(&[key])?;
        let r = v(self.t()?.random_bits(Value(key), width, &shape));
        self.seen(r)
    }

    fn uniform(&mut self, key: u32, dtype: &str, shape: Vec<u64>, min: f64, max: f64) -> PyResult<u32> {
        self.known(&[key])?;
        let ty = ty(dtype, shape)?;
        let r = v(self.t()?.uniform(Value(key), &ty, min, max));
        self.seen(r)
    }

    fn normal(&mut self, key: u32, dtype: &str, shape: Vec<u64>) -> PyResult<u32> {
        self.known(&[key])?;
        let ty = ty(dtype, shape)?;
        let r = v(self.t()?.normal(Value(key), &ty));
        self.seen(r)
    }

    fn truncated_normal(&mut self, key: u32, dtype: &str, shape: Vec<u64>, lower: f64, upper: f64) -> PyResult<u32> {
        self.known(&[key])?;
        let ty = ty(dtype, shape)?;
        let r = v(self.t()?.truncated_normal(Value(key), &ty, lower, upper));
        self.seen(r)
    }

    fn full(&mut self, dtype: &str, shape: Vec<u64>, value: f64) -> PyResult<u32> {
        let ty = ty(dtype, shape)?;
        let r = v(self.t()?.full(&ty, value));
        self.seen(r)
    }

    fn iota(&mut self, dtype: &str, shape: Vec<u64>, dim: u32) -> PyResult<u32> {
        let ty = ty(dtype, shape)?;
        let r = v(self.t()?.iota(&ty, dim));
        self.seen(r)
    }

    fn unary(&mut self, op: &str, x: u32) -> PyResult<u32> {
        self.known(&[x])?;
        let op = named("unary op", op, UnaryOp::from_name)?;
        let r = v(self.t()?.unary(op, Value(x)));
        self.seen(r)
    }

    fn binary(&mut self, op: &str, a: u32, b: u32) -> PyResult<u32> {
        self.known(&[a, b])?;
        let op = named("binary op", op, BinaryOp::from_name)?;
        let r = v(self.t()?.binary(op, Value(a), Value(b)));
        self.seen(r)
    }

    fn compare(&mut self, dir: &str, a: u32, b: u32) -> PyResult<u32> {
        self.known(&[a, b])?;
        let dir = named("comparison", dir, CmpDir::from_name)?;
        let r = v(self.t()?.compare(dir, Value(a), Value(b)));
        self.seen(r)
    }

    fn select(&mut self, pred: u32, on_true: u32, on_false: u32) -> PyResult<u32> {
        self.known(&[pred, on_true, on_false])?;
        let r = v(self.t()?.select(Value(pred), Value(on_true), Value(on_false)));
        self.seen(r)
    }

    fn convert(&mut self, x: u32, dtype: &str) -> PyResult<u32> {
        self.known(&[x])?;
        let d = self::dtype(dtype)?;
        let r = v(self.t()?.convert(Value(x), d));
        self.seen(r)
    }

    fn broadcast(&mut self, x: u32, shape: Vec<u64>, dims: Vec<u32>) -> PyResult<u32> {
        self.known(&[x])?;
        let r = v(self.t()?.broadcast(Value(x), &shape, &dims));
        self.seen(r)
    }

    fn reshape(&mut self, x: u32, shape: Vec<u64>) -> PyResult<u32> {
        self.known(&[x])?;
        let r = v(self.t()?.reshape(Value(x), &shape));
        self.seen(r)
    }

    fn transpose(&mut self, x: u32, perm: Vec<u32>) -> PyResult<u32> {
        self.known(&[x])?;
        let r = v(self.t()?.transpose(Value(x), &perm));
        self.seen(r)
    }

    fn slice(&mut self, x: u32, start: Vec<u64>, limit: Vec<u64>) -> PyResult<u32> {
        self.known(&[x])?;
        let r = v(self.t()?.slice(Value(x), &start, &limit));
        self.seen(r)
    }

    fn concat(&mut self, xs: Vec<u32>, dim: u32) -> PyResult<u32> {
        self.known(&xs)?;
        let xs: Vec<Value> = xs.into_iter().map(Value).collect();
        let r = v(self.t()?.concat(&xs, dim));
        self.seen(r)
    }

    /// `(dtype, shape)` of a value.
    fn type_of(&self, x: u32) -> PyResult<(String, Vec<u64>)> {
        self.known(&[x])?;
        let t = self.tr()?;
        let ty = t.ty(Value(x));
        Ok((ty.dtype.name().to_string(), ty.shape.clone()))
    }

    /// Compacts and verifies the module; the tracer cannot be used afterwards.
    fn finish(&mut self) -> PyResult<Program> {
        let t = self.t.take().ok_or_else(|| err("this Tracer is finished"))?;
        Ok(Program { m: Arc::new(t.finish().map_err(err)?) })
    }
}

/// A verified init program (an `initc_ir::Module`).
#[pyclass(module = "initc._native", frozen)]
#[derive(Clone)]
pub struct Program {
    pub(crate) m: Arc<Module>,
}

fn is_proto(path: &str) -> bool {
    path.ends_with(".pb")
}

#[pymethods]
impl Program {
    /// Reads `.pb` (protobuf) or text IR (any other extension), and verifies it.
    #[staticmethod]
    fn load(path: &str) -> PyResult<Program> {
        let bytes = std::fs::read(path).map_err(|e| err(format!("{path}: {e}")))?;
        if is_proto(path) {
            return Program::from_proto(&bytes);
        }
        let text = String::from_utf8(bytes).map_err(|e| err(format!("{path}: {e}")))?;
        Program::from_text(&text).map_err(|e| err(format!("{path}: {e}")))
    }

    #[staticmethod]
    fn from_text(text: &str) -> PyResult<Program> {
        let m = initc_ir::parse(text).map_err(err)?;
        initc_ir::verify(&m).map_err(err)?;
        Ok(Program { m: Arc::new(m) })
    }

    #[staticmethod]
    fn from_proto(data: &[u8]) -> PyResult<Program> {
        Ok(Program { m: Arc::new(initc_proto::decode(data).map_err(err)?) })
    }

    /// Traces a model.toml (`source` is its text; `path` names it in errors and gives the
    /// default model name), unsharded.
    #[staticmethod]
    #[pyo3(signature = (source, path = "model.toml"))]
    fn from_toml(source: &str, path: &str) -> PyResult<Program> {
        let stem = std::path::Path::new(path).file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        let t = initc_frontend::trace_toml(path, source, stem).map_err(err)?;
        Ok(Program { m: Arc::new(t.module) })
    }

    /// Writes protobuf for `.pb`, text IR otherwise.
    fn save(&self, path: &str) -> PyResult<()> {
        let bytes = if is_proto(path) { initc_proto::encode(&self.m) } else { self.m.to_string().into_bytes() };
        std::fs::write(path, bytes).map_err(|e| err(format!("{path}: {e}")))
    }

    fn text(&self) -> String {
        self.m.to_string()
    }

    fn to_proto<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &initc_proto::encode(&self.m))
    }

    #[getter]
    fn name(&self) -> String {
        self.m.name.clone()
    }

    #[getter]
    fn seed(&self) -> u64 {
        self.m.seed
    }

    #[getter]
    fn rng(&self) -> &'static str {
        self.m.rng.name()
    }

    /// `[(fqn, dtype, shape, init)]` in program order.
    #[getter]
    fn params(&self) -> Vec<(String, String, Vec<u64>, String)> {
        self.m.params.iter().map(|p| (p.fqn.clone(), p.ty.dtype.name().to_string(), p.ty.shape.clone(), p.init.clone())).collect()
    }

    fn __len__(&self) -> usize {
        self.m.params.len()
    }

    fn __repr__(&self) -> String {
        format!("<initc.Program {:?}: {} tensors, {} elements>", self.m.name, self.m.params.len(), self.m.total_elements())
    }

    /// Parameters whose program is a reshape of a concatenation (torchtitan 0.3.0's fused
    /// `wqkv`; their init string names their parts' initializer): the device runtime computes
    /// a row slice of one with one shard program, other regions from its parts assembled on the
    /// device.
    #[getter]
    fn fused(&self) -> Vec<String> {
        let cat = initc_device::concatenated(&self.m);
        self.m.params.iter().zip(cat).filter(|(_, c)| *c).map(|(p, _)| p.fqn.clone()).collect()
    }

    /// Computes the rectangle `offset`/`shape` (default: all) of parameter `fqn` with the CPU
    /// engine for `seed` (default: the program's) and writes its little-endian bytes, row-major,
    /// into `out`: any writable C-contiguous buffer of exactly that many bytes (a uint8 numpy
    /// view of a torch tensor, say). The GIL is released while the engine runs.
    #[pyo3(signature = (fqn, out, seed = None, offset = None, shape = None))]
    fn materialize_into(
        &self,
        py: Python<'_>,
        fqn: &str,
        out: &Bound<'_, PyAny>,
        seed: Option<u64>,
        offset: Option<Vec<u64>>,
        shape: Option<Vec<u64>>,
    ) -> PyResult<()> {
        let p = self.m.param(fqn).ok_or_else(|| err(format!("no parameter named `{fqn}` in program {:?}", self.m.name)))?;
        let global = p.ty.shape.clone();
        let region = region(&global, offset, shape).map_err(|e| err(format!("parameter `{fqn}` {global:?}: {e}")))?;
        let numel: u64 = region.shape.iter().product();
        let need = numel * p.ty.dtype.size_bytes();
        let buf: PyBuffer<u8> = PyBuffer::get(out).map_err(|e| err(format!("parameter `{fqn}`: the output is not a byte buffer ({e})")))?;
        if buf.readonly() || !buf.is_c_contiguous() {
            return Err(err(format!("parameter `{fqn}`: the output buffer must be writable and C-contiguous")));
        }
        if buf.len_bytes() as u64 != need {
            return Err(err(format!(
                "parameter `{fqn}`: the region {:?} of {} needs {need} bytes; the buffer has {}",
                region.shape,
                p.ty.dtype,
                buf.len_bytes()
            )));
        }
        let (value, m, seed) = (p.value, Arc::clone(&self.m), seed.unwrap_or(self.m.seed));
        let addr = buf.buf_ptr() as usize;
        py.detach(move || {
            let ev = initc_cpu::Evaluator::new(&m, seed);
            let mut pos = 0usize;
            let _ = initc_cpu::materialize::<()>(&ev, value, &global, &region, |bytes| {
                let end = (pos + bytes.len()).min(need as usize);
                // SAFETY: `addr` is the start of a writable, C-contiguous buffer of `need` bytes,
                // held alive by `buf` (a PyBuffer keeps its exporter pinned) for this whole call.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), (addr as *mut u8).add(pos), end - pos) };
                pos = end;
                Ok(())
            });
        });
        drop(buf);
        Ok(())
    }
}

fn region(global: &[u64], offset: Option<Vec<u64>>, shape: Option<Vec<u64>>) -> Result<initc_shard::Region, String> {
    let offset = offset.unwrap_or_else(|| vec![0; global.len()]);
    let shape = shape.unwrap_or_else(|| global.iter().zip(&offset).map(|(g, o)| g.saturating_sub(*o)).collect());
    if offset.len() != global.len() || shape.len() != global.len() {
        return Err(format!("offset {offset:?} and shape {shape:?} must have rank {}", global.len()));
    }
    for d in 0..global.len() {
        if offset[d].checked_add(shape[d]).is_none_or(|end| end > global[d]) {
            return Err(format!("the region at {offset:?} of shape {shape:?} leaves the tensor in dim {d}"));
        }
    }
    Ok(initc_shard::Region { offset, shape })
}

/// `initc run --verify`'s comparison of one tensor's little-endian bytes (`got` against `want`,
/// both bytes-like of one length) in dtype `dtype`: `(elements that differ, elements beyond the
/// tolerance)`. f32 passes within 4 ULPs, bf16/f16 within 1, or within 2^-16 of `want`'s largest
/// magnitude; other dtypes must be equal.
#[pyfunction]
fn compare(got: &[u8], want: &[u8], dtype_name: &str) -> PyResult<(u64, u64)> {
    let d = dtype(dtype_name)?;
    if got.len() != want.len() || !(got.len() as u64).is_multiple_of(d.size_bytes()) {
        return Err(err(format!("compare: {} bytes against {} of {dtype_name}", got.len(), want.len())));
    }
    let c = initc_device::compare_bytes(d, got, want);
    Ok((c.differing, c.failing))
}

/// `fold_in` data of a parameter FQN: `u32_be(SHA-256(fqn)[0..4])` (the README's derivation).
#[pyfunction]
fn fqn_fold_data(fqn: &str) -> u32 {
    initc_frontend::fqn_fold_data(fqn)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTracer>()?;
    m.add_class::<Program>()?;
    m.add_class::<device::Runtime>()?;
    m.add_class::<device::DeviceArray>()?;
    m.add_function(wrap_pyfunction!(fqn_fold_data, m)?)?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add("InitcError", m.py().get_type::<InitcError>())?;
    Ok(())
}
