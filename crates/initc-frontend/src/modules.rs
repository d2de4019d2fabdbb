//! The generic form: `[[module]]` tables of PyTorch module types with their default inits,
//! names expanded by `{a..b}` repetition.

use std::ops::Range;

use toml::Spanned;

use crate::ctx::{ModelCtx, pos_or};
use crate::error::{Result, SpanError};
use crate::init::{Init, torch_fans};
use crate::initspec::parse_init;
use crate::pattern::{expand_ranges, suggest};
use crate::schema::{IntOrList, ModuleSection, dtype_of, positive};
use initc_ir::Type;

pub const MODULE_TYPES: &[&str] = &["linear", "embedding", "layernorm", "rmsnorm", "conv1d", "conv2d"];

/// Keys each module type accepts beyond `name`, `type`, `dtype`, `axes`, `weight_init`, `bias_init`.
fn accepted(kind: &str) -> &'static [&'static str] {
    match kind {
        "linear" => &["in_features", "out_features", "bias"],
        "embedding" => &["num_embeddings", "embedding_dim", "padding_idx"],
        "layernorm" => &["normalized_shape", "elementwise_affine", "bias"],
        "rmsnorm" => &["normalized_shape", "elementwise_affine"],
        _ => &["in_channels", "out_channels", "kernel_size", "groups", "bias"],
    }
}

fn set_keys(m: &ModuleSection) -> Vec<(&'static str, Range<usize>)> {
    let mut o = Vec::new();
    macro_rules! k { ($($f:ident),*) => { $( if let Some(v) = &m.$f { o.push((stringify!($f), v.span())); } )* } }
    k!(
        in_features,
        out_features,
        bias,
        num_embeddings,
        embedding_dim,
        padding_idx,
        normalized_shape,
        elementwise_affine,
        in_channels,
        out_channels,
        kernel_size,
        groups
    );
    o
}

fn required(v: &Option<Spanned<i64>>, key: &str, span: &Range<usize>, kind: &str) -> Result<u64> {
    match v {
        Some(v) => positive(v, key),
        None => Err(SpanError::invalid(span.clone(), key, format!("a `{kind}` module needs `{key}`"))),
    }
}

fn int_list(v: &Spanned<IntOrList>, key: &str, rank: usize) -> Result<Vec<u64>> {
    let xs = match v.get_ref() {
        IntOrList::One(x) => vec![*x; rank.max(1)],
        IntOrList::Many(xs) => xs.clone(),
    };
    if rank > 0 && xs.len() != rank {
        return Err(SpanError::invalid(v.span(), key, format!("needs {rank} entries, got {}", xs.len())));
    }
    if xs.is_empty() {
        return Err(SpanError::invalid(v.span(), key, "must not be empty"));
    }
    xs.iter()
        .map(|&x| {
            if x > 0 && x <= 1 << 32 {
                Ok(x as u64)
            } else {
                Err(SpanError::invalid(v.span(), key, format!("entries must be positive integers, got {x}")))
            }
        })
        .collect()
}

pub(crate) fn build_module(cx: &mut ModelCtx, m: &Spanned<ModuleSection>) -> Result<()> {
    let span = m.span();
    let m = m.get_ref();
    let kind = m.kind.get_ref().as_str();
    if !MODULE_TYPES.contains(&kind) {
        let e = SpanError::invalid(m.kind.span(), "type", format!("unknown module type `{kind}`"));
        return Err(match suggest(kind, MODULE_TYPES.iter().copied()) {
            Some(s) => e.hint(format!("did you mean `{s}`? types: {}", MODULE_TYPES.join(", "))),
            None => e.hint(format!("types: {}", MODULE_TYPES.join(", "))),
        });
    }
    if let Some((k, s)) = set_keys(m).into_iter().find(|(k, _)| !accepted(kind).contains(k)) {
        return Err(SpanError::invalid(s, k, format!("not an argument of a `{kind}` module"))
            .hint(format!("`{kind}` takes {}", accepted(kind).join(", "))));
    }
    let names = expand_ranges(m.name.get_ref()).map_err(|r| SpanError::invalid(m.name.span(), "name", r))?;
    let dtype = m.dtype.as_ref().map(|d| dtype_of(d, "dtype")).transpose()?.unwrap_or(cx.dtype);
    let weight_init = m.weight_init.as_ref().map(parse_init).transpose()?;
    let bias_init = m.bias_init.as_ref().map(parse_init).transpose()?;
    let bias = m.bias.as_ref().is_none_or(|b| *b.get_ref());
    let (w_shape, w_axes, default_w, has_bias): (Vec<u64>, Vec<&str>, Init, bool) = match kind {
        "linear" => {
            let i = required(&m.in_features, "in_features", &span, kind)?;
            let o = required(&m.out_features, "out_features", &span, kind)?;
            (vec![o, i], vec!["out", "in"], Init::torch_linear_weight(), bias)
        }
        "embedding" => {
            let n = required(&m.num_embeddings, "num_embeddings", &span, kind)?;
            let d = required(&m.embedding_dim, "embedding_dim", &span, kind)?;
            if let Some(p) = &m.padding_idx {
                let (pi, n_i) = (*p.get_ref(), n as i64);
                if pi >= n_i || pi < -n_i {
                    return Err(SpanError::invalid(p.span(), "padding_idx", format!("{pi} is out of range for num_embeddings = {n}")));
                }
                return Err(SpanError::invalid(p.span(), "padding_idx", "zeroing the padding row is not supported yet")
                    .hint("override the embedding's init, or drop padding_idx"));
            }
            (vec![n, d], vec!["vocab", "embed"], Init::Normal { mean: 0.0, std: 1.0 }, false)
        }
        "layernorm" | "rmsnorm" => {
            let shape = match &m.normalized_shape {
                Some(v) => int_list(v, "normalized_shape", 0)?,
                None => return Err(SpanError::invalid(span, "normalized_shape", format!("a `{kind}` module needs `normalized_shape`"))),
            };
            if m.elementwise_affine.as_ref().is_some_and(|a| !*a.get_ref()) {
                return Ok(()); // no parameters
            }
            let axes = if shape.len() == 1 { vec!["embed"] } else { vec![] };
            (shape, axes, Init::ONES, kind == "layernorm" && bias)
        }
        _ => {
            let rank = if kind == "conv1d" { 1 } else { 2 };
            let cin = required(&m.in_channels, "in_channels", &span, kind)?;
            let cout = required(&m.out_channels, "out_channels", &span, kind)?;
            let groups = pos_or(&m.groups, "groups", 1)?;
            let k = match &m.kernel_size {
                Some(v) => int_list(v, "kernel_size", rank)?,
                None => return Err(SpanError::invalid(span, "kernel_size", format!("a `{kind}` module needs `kernel_size`"))),
            };
            if cin % groups != 0 || cout % groups != 0 {
                let s = m.groups.as_ref().map_or(span.clone(), |g| g.span());
                return Err(SpanError::invalid(
                    s,
                    "groups",
                    format!("in_channels = {cin} and out_channels = {cout} must both be divisible by groups = {groups}"),
                ));
            }
            let mut shape = vec![cout, cin / groups];
            shape.extend(k);
            let axes = if rank == 1 { vec!["out", "in", "kernel"] } else { vec!["out", "in", "kernel_h", "kernel_w"] };
            (shape, axes, Init::torch_linear_weight(), bias)
        }
    };
    let axes: Vec<String> = match &m.axes {
        Some(a) if a.get_ref().len() != w_shape.len() => {
            return Err(SpanError::invalid(
                a.span(),
                "axes",
                format!("{} names for a weight of rank {}", a.get_ref().len(), w_shape.len()),
            ));
        }
        Some(a) => match a.get_ref().iter().find(|n| !initc_ir::limits::is_axis_name(n)) {
            Some(bad) => {
                return Err(SpanError::invalid(
                    a.span(),
                    "axes",
                    format!("{bad:?} is not an axis name (a letter or `_`, then letters, digits or `_`)"),
                ));
            }
            None => a.get_ref().clone(),
        },
        None => w_axes.iter().map(|s| s.to_string()).collect(),
    };
    let axes: Vec<&str> = axes.iter().map(String::as_str).collect();
    let saved = std::mem::replace(&mut cx.span, span);
    for name in names {
        let w_ty = Type::new(dtype, w_shape.clone());
        cx.param_typed(&format!("{name}.weight"), &w_shape, &axes, weight_init.clone().unwrap_or(default_w.clone()), dtype)?;
        if has_bias {
            let default_b = if matches!(kind, "layernorm") { Init::ZEROS } else { Init::torch_bias(torch_fans(&w_ty).map_or(0, |f| f.0)) };
            let b_axes: Vec<&str> = axes.first().map(|a| vec![*a]).unwrap_or_default();
            let b_shape = if kind == "layernorm" { w_shape.clone() } else { vec![w_shape[0]] };
            let b_axes = if b_shape.len() == 1 { b_axes } else { vec![] };
            cx.param_typed(&format!("{name}.bias"), &b_shape, &b_axes, bias_init.clone().unwrap_or(default_b), dtype)?;
        }
    }
    cx.span = saved;
    Ok(())
}
