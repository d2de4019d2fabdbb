//! Initializers named in model.toml: `init = "zeros"` or `init = { kind = "...", args... }`.

use std::ops::Range;

use toml::Spanned;

use crate::error::{Result, SpanError};
use crate::init::{Distribution, FanMode, Init, Nonlinearity};
use crate::pattern::suggest;
use crate::schema::InitValue;

/// An initializer kind and its arguments with defaults (`None` = required).
type KindArgs = (&'static str, &'static [(&'static str, Option<Arg>)]);

/// Every initializer kind and its arguments with defaults (`None` = required).
const KINDS: &[KindArgs] = &[
    ("zeros", &[]),
    ("ones", &[]),
    ("constant", &[("value", None)]),
    ("uniform", &[("a", Some(Arg::F(0.0))), ("b", Some(Arg::F(1.0)))]),
    ("normal", &[("mean", Some(Arg::F(0.0))), ("std", Some(Arg::F(1.0)))]),
    ("trunc_normal", &[("mean", Some(Arg::F(0.0))), ("std", Some(Arg::F(1.0))), ("a", Some(Arg::F(-2.0))), ("b", Some(Arg::F(2.0)))]),
    ("xavier_uniform", &[("gain", Some(Arg::F(1.0)))]),
    ("xavier_normal", &[("gain", Some(Arg::F(1.0)))]),
    ("kaiming_uniform", KAIMING),
    ("kaiming_normal", KAIMING),
    ("lecun_normal", AXES),
    ("lecun_uniform", AXES),
    ("glorot_normal", AXES),
    ("glorot_uniform", AXES),
    ("he_normal", AXES),
    ("he_uniform", AXES),
    (
        "variance_scaling",
        &[("scale", None), ("mode", None), ("distribution", None), ("in_axis", Some(Arg::I(-2))), ("out_axis", Some(Arg::I(-1)))],
    ),
    ("flax_embed", &[]),
    ("flax_normal", &[("stddev", Some(Arg::F(0.01)))]),
    ("flax_truncated_normal", &[("stddev", Some(Arg::F(0.01))), ("lower", Some(Arg::F(-2.0))), ("upper", Some(Arg::F(2.0)))]),
];
const KAIMING: &[(&str, Option<Arg>)] =
    &[("a", Some(Arg::F(0.0))), ("mode", Some(Arg::S("fan_in"))), ("nonlinearity", Some(Arg::S("leaky_relu")))];
const AXES: &[(&str, Option<Arg>)] = &[("in_axis", Some(Arg::I(-2))), ("out_axis", Some(Arg::I(-1)))];

#[derive(Clone, Copy, Debug)]
enum Arg {
    F(f64),
    I(i64),
    /// A default string; strings given in model.toml are read by [`Args::s`].
    S(&'static str),
    /// A string given in model.toml.
    Given,
}

/// Names of every initializer kind (for `--help` and hints).
pub fn kind_names() -> Vec<&'static str> {
    KINDS.iter().map(|(k, _)| *k).collect()
}

struct Args<'a> {
    span: Range<usize>,
    kind: &'a str,
    table: Option<&'a toml::Table>,
    spec: &'static [(&'static str, Option<Arg>)],
}

impl<'a> Args<'a> {
    fn raw(&self, name: &str) -> Result<Arg> {
        let default = self.spec.iter().find(|(n, _)| *n == name).and_then(|(_, d)| *d);
        match self.table.and_then(|t| t.get(name)) {
            None => default.ok_or_else(|| SpanError::invalid(self.span.clone(), name, format!("{} needs `{name}`", self.kind))),
            Some(toml::Value::Float(f)) => Ok(Arg::F(*f)),
            Some(toml::Value::Integer(i)) => Ok(Arg::I(*i)),
            Some(toml::Value::String(_)) => Ok(Arg::Given),
            Some(other) => {
                Err(SpanError::invalid(self.span.clone(), name, format!("expected a number or string, found {}", other.type_str())))
            }
        }
    }

    fn f(&self, name: &str) -> Result<f64> {
        match self.raw(name)? {
            Arg::F(f) => Ok(f),
            Arg::I(i) => Ok(i as f64),
            Arg::S(_) | Arg::Given => Err(SpanError::invalid(self.span.clone(), name, "expected a number")),
        }
    }

    fn i(&self, name: &str) -> Result<i64> {
        match self.raw(name)? {
            Arg::I(i) => Ok(i),
            _ => Err(SpanError::invalid(self.span.clone(), name, "expected an integer")),
        }
    }

    /// A string argument as written (so errors can quote it), else its default.
    fn s(&self, name: &str) -> Result<&'a str> {
        if let Some(toml::Value::String(s)) = self.table.and_then(|t| t.get(name)) {
            return Ok(s.as_str());
        }
        match self.raw(name)? {
            Arg::S(s) => Ok(s),
            _ => Err(SpanError::invalid(self.span.clone(), name, "expected a string")),
        }
    }

    fn mode(&self) -> Result<FanMode> {
        let s = self.s("mode")?;
        FanMode::from_name(s)
            .ok_or_else(|| SpanError::invalid(self.span.clone(), "mode", format!("`{s}` is not fan_in, fan_out or fan_avg")))
    }
}

/// Resolves an `init` value of model.toml into an [`Init`].
pub(crate) fn parse_init(v: &Spanned<InitValue>) -> Result<Init> {
    let span = v.span();
    let (kind, table) = match v.get_ref() {
        InitValue::Name(n) => (n.as_str(), None),
        InitValue::Table(t) => match t.get("kind") {
            Some(toml::Value::String(k)) => (k.as_str(), Some(t)),
            _ => {
                return Err(SpanError::invalid(span, "init", "an init table needs `kind = \"...\"`")
                    .hint(format!("kinds: {}", kind_names().join(", "))));
            }
        },
    };
    let Some(&(_, spec)) = KINDS.iter().find(|(k, _)| *k == kind) else {
        let e = SpanError::invalid(span, "init", format!("unknown initializer `{kind}`"));
        return Err(match suggest(kind, kind_names()) {
            Some(s) => e.hint(format!("did you mean `{s}`?")),
            None => e.hint(format!("one of {}", kind_names().join(", "))),
        });
    };
    if let Some(t) = table {
        for key in t.keys().filter(|k| *k != "kind") {
            if !spec.iter().any(|(n, _)| n == key) {
                let names: Vec<&str> = spec.iter().map(|(n, _)| *n).collect();
                let takes = if names.is_empty() { "no arguments".to_string() } else { names.join(", ") };
                return Err(SpanError::invalid(span, key, format!("`{kind}` takes {takes}")));
            }
        }
    }
    let a = Args { span: span.clone(), kind, table, spec };
    let vs = |scale: f64, mode: FanMode, distribution: Distribution| -> Result<Init> {
        Ok(Init::VarianceScaling { scale, mode, distribution, in_axis: a.i("in_axis")?, out_axis: a.i("out_axis")? })
    };
    let kaiming = || -> Result<(f64, FanMode, Nonlinearity)> {
        let s = a.s("nonlinearity")?;
        let nl = Nonlinearity::from_name(s).ok_or_else(|| {
            SpanError::invalid(
                span.clone(),
                "nonlinearity",
                format!("`{s}` is not one of linear, conv, sigmoid, tanh, relu, leaky_relu, selu"),
            )
        })?;
        Ok((a.f("a")?, a.mode()?, nl))
    };
    use Distribution::*;
    Ok(match kind {
        "zeros" => Init::ZEROS,
        "ones" => Init::ONES,
        "constant" => Init::Constant(a.f("value")?),
        "uniform" => Init::Uniform { a: a.f("a")?, b: a.f("b")? },
        "normal" => Init::Normal { mean: a.f("mean")?, std: a.f("std")? },
        "trunc_normal" => Init::TruncNormal { mean: a.f("mean")?, std: a.f("std")?, a: a.f("a")?, b: a.f("b")? },
        "xavier_uniform" => Init::XavierUniform { gain: a.f("gain")? },
        "xavier_normal" => Init::XavierNormal { gain: a.f("gain")? },
        "kaiming_uniform" => {
            let (x, mode, nonlinearity) = kaiming()?;
            Init::KaimingUniform { a: x, mode, nonlinearity }
        }
        "kaiming_normal" => {
            let (x, mode, nonlinearity) = kaiming()?;
            Init::KaimingNormal { a: x, mode, nonlinearity }
        }
        "lecun_normal" => vs(1.0, FanMode::FanIn, TruncatedNormal)?,
        "lecun_uniform" => vs(1.0, FanMode::FanIn, Uniform)?,
        "glorot_normal" => vs(1.0, FanMode::FanAvg, TruncatedNormal)?,
        "glorot_uniform" => vs(1.0, FanMode::FanAvg, Uniform)?,
        "he_normal" => vs(2.0, FanMode::FanIn, TruncatedNormal)?,
        "he_uniform" => vs(2.0, FanMode::FanIn, Uniform)?,
        "variance_scaling" => {
            let d = a.s("distribution")?;
            let dist = Distribution::from_name(d).ok_or_else(|| {
                SpanError::invalid(span.clone(), "distribution", format!("`{d}` is not truncated_normal, normal or uniform"))
            })?;
            vs(a.f("scale")?, a.mode()?, dist)?
        }
        "flax_embed" => Init::flax_embed(),
        "flax_normal" => Init::Normal { mean: 0.0, std: a.f("stddev")? },
        "flax_truncated_normal" => Init::FlaxTruncatedNormal { stddev: a.f("stddev")?, lower: a.f("lower")?, upper: a.f("upper")? },
        _ => unreachable!("every kind in KINDS is handled"),
    })
}
