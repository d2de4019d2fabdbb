//! Model presets: torchtitan Llama3 (v0.2.2 names and `init_weights`), Hugging Face GPT-2 and
//! Hugging Face Llama (`_init_weights` with `initializer_range`).

use std::ops::Range;

use toml::Spanned;

use crate::ctx::{ModelCtx, pos_or};
use crate::error::{Result, SpanError};
use crate::init::Init;
use crate::pattern::suggest;
use crate::schema::ModelSection;

const LLAMA3_KEYS: &[&str] = &[
    "dim",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "vocab_size",
    "multiple_of",
    "ffn_dim_multiplier",
    "norm_eps",
    "depth_init",
    "torchtitan",
    "enable_weight_tying",
];
const GPT2_KEYS: &[&str] =
    &["vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "n_inner", "layer_norm_epsilon", "initializer_range"];
const HF_LLAMA_KEYS: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "rms_norm_eps",
    "initializer_range",
    "tie_word_embeddings",
];
pub const PRESETS: &[&str] = &["llama3", "gpt2", "hf_llama"];

/// Every preset-specific key that is set, with its span.
fn set_keys(m: &ModelSection) -> Vec<(&'static str, Range<usize>)> {
    fn s<T>(out: &mut Vec<(&'static str, Range<usize>)>, k: &'static str, v: &Option<Spanned<T>>) {
        if let Some(v) = v {
            out.push((k, v.span()));
        }
    }
    let mut o = Vec::new();
    s(&mut o, "dim", &m.dim);
    s(&mut o, "n_layers", &m.n_layers);
    s(&mut o, "n_heads", &m.n_heads);
    s(&mut o, "n_kv_heads", &m.n_kv_heads);
    s(&mut o, "vocab_size", &m.vocab_size);
    s(&mut o, "multiple_of", &m.multiple_of);
    s(&mut o, "ffn_dim_multiplier", &m.ffn_dim_multiplier);
    s(&mut o, "norm_eps", &m.norm_eps);
    s(&mut o, "depth_init", &m.depth_init);
    s(&mut o, "torchtitan", &m.torchtitan);
    s(&mut o, "enable_weight_tying", &m.enable_weight_tying);
    s(&mut o, "n_embd", &m.n_embd);
    s(&mut o, "n_layer", &m.n_layer);
    s(&mut o, "n_head", &m.n_head);
    s(&mut o, "n_positions", &m.n_positions);
    s(&mut o, "n_inner", &m.n_inner);
    s(&mut o, "layer_norm_epsilon", &m.layer_norm_epsilon);
    s(&mut o, "initializer_range", &m.initializer_range);
    s(&mut o, "hidden_size", &m.hidden_size);
    s(&mut o, "intermediate_size", &m.intermediate_size);
    s(&mut o, "num_hidden_layers", &m.num_hidden_layers);
    s(&mut o, "num_attention_heads", &m.num_attention_heads);
    s(&mut o, "num_key_value_heads", &m.num_key_value_heads);
    s(&mut o, "rms_norm_eps", &m.rms_norm_eps);
    s(&mut o, "tie_word_embeddings", &m.tie_word_embeddings);
    o
}

fn check_keys(m: &ModelSection, preset: &str, allowed: &[&str]) -> Result<()> {
    if let Some((k, span)) = set_keys(m).into_iter().find(|(k, _)| !allowed.contains(k)) {
        let e = SpanError {
            span,
            kind: crate::error::ConfigErrorKind::UnknownKey { key: k.into(), context: format!("[model] of preset `{preset}`") },
            hint: None,
        };
        let hint = match suggest(k, allowed.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? {preset} takes {}", allowed.join(", ")),
            None => format!("{preset} takes {}", allowed.join(", ")),
        };
        return Err(e.hint(hint));
    }
    Ok(())
}

/// The generic form takes no preset keys.
pub(crate) fn reject_preset_keys(m: &ModelSection) -> Result<()> {
    check_keys(m, "(none)", &[])
        .map_err(|e| e.hint("preset keys need `preset = \"...\"`; without a preset describe the model with [[module]] tables"))
}

pub(crate) fn build_preset(cx: &mut ModelCtx, preset: &Spanned<String>, m: &ModelSection) -> Result<()> {
    match preset.get_ref().as_str() {
        "llama3" => {
            check_keys(m, "llama3", LLAMA3_KEYS)?;
            llama3(cx, m)
        }
        "gpt2" => {
            check_keys(m, "gpt2", GPT2_KEYS)?;
            gpt2(cx, m)
        }
        "hf_llama" => {
            check_keys(m, "hf_llama", HF_LLAMA_KEYS)?;
            hf_llama(cx, m)
        }
        other => {
            let e = SpanError::invalid(preset.span(), "preset", format!("unknown preset `{other}`"));
            Err(match suggest(other, PRESETS.iter().copied()) {
                Some(s) => e.hint(format!("did you mean `{s}`? presets: {}", PRESETS.join(", "))),
                None => e.hint(format!("presets: {}; or omit `preset` and list [[module]] tables", PRESETS.join(", "))),
            })
        }
    }
}

fn divides(span: Range<usize>, key: &str, a: u64, a_name: &str, b: u64, b_name: &str) -> Result<()> {
    if !b.is_multiple_of(a) {
        return Err(SpanError::invalid(span, key, format!("{b_name} = {b} is not divisible by {a_name} = {a}")));
    }
    Ok(())
}

fn span_of<T>(v: &Option<Spanned<T>>, fallback: &Range<usize>) -> Range<usize> {
    v.as_ref().map_or(fallback.clone(), |v| v.span())
}

fn positive_float(v: &Option<Spanned<f64>>, key: &str, default: f64) -> Result<f64> {
    match v {
        None => Ok(default),
        Some(x) if *x.get_ref() > 0.0 && x.get_ref().is_finite() => Ok(*x.get_ref()),
        Some(x) => Err(SpanError::invalid(x.span(), key, format!("must be a positive number, got {}", x.get_ref()))),
    }
}

/// The most layers a preset builds (real models have at most a few hundred): far more would
/// only exhaust memory while tracing.
pub const MAX_LAYERS: u64 = 1 << 16;

fn layers(v: &Option<Spanned<i64>>, key: &str, default: u64) -> Result<u64> {
    let n = pos_or(v, key, default)?;
    if n > MAX_LAYERS {
        let span = v.as_ref().map(|v| v.span()).unwrap_or_default();
        return Err(SpanError::invalid(span, key, format!("{n} layers are above the limit of {MAX_LAYERS}")));
    }
    Ok(n)
}

/// torchtitan's FFN width: `multiple_of * ceil(int(ffn_dim_multiplier * int(2 * 4 * dim / 3)) / multiple_of)`.
pub fn llama3_ffn_dim(dim: u64, multiple_of: u64, ffn_dim_multiplier: Option<f64>) -> u64 {
    let mut hidden = (2.0 * (4 * dim) as f64 / 3.0) as u64;
    if let Some(m) = ffn_dim_multiplier {
        hidden = (m * hidden as f64) as u64;
    }
    multiple_of * hidden.div_ceil(multiple_of)
}

/// torchtitan v0.2.2 `Transformer.init_weights` (defaults of `TransformerModelArgs`).
fn llama3(cx: &mut ModelCtx, m: &ModelSection) -> Result<()> {
    let s = cx.span.clone();
    let dim = pos_or(&m.dim, "dim", 4096)?;
    let n_layers = layers(&m.n_layers, "n_layers", 32)?;
    let n_heads = pos_or(&m.n_heads, "n_heads", 32)?;
    let n_kv_heads = pos_or(&m.n_kv_heads, "n_kv_heads", n_heads)?;
    let vocab = pos_or(&m.vocab_size, "vocab_size", 128256)?;
    let multiple_of = pos_or(&m.multiple_of, "multiple_of", 256)?;
    let ffn_mult = m.ffn_dim_multiplier.as_ref().map(|_| positive_float(&m.ffn_dim_multiplier, "ffn_dim_multiplier", 1.0)).transpose()?;
    positive_float(&m.norm_eps, "norm_eps", 1e-5)?;
    let depth_init = m.depth_init.as_ref().is_none_or(|d| *d.get_ref());
    divides(span_of(&m.n_heads, &s), "n_heads", n_heads, "n_heads", dim, "dim")
        .map_err(|e| e.hint("torchtitan's head_dim is dim // n_heads; choose n_heads dividing dim"))?;
    divides(span_of(&m.n_kv_heads, &s), "n_kv_heads", n_kv_heads, "n_kv_heads", n_heads, "n_heads")
        .map_err(|e| e.hint("grouped-query attention repeats each KV head n_heads / n_kv_heads times"))?;
    let hd = dim / n_heads;
    let ffn = llama3_ffn_dim(dim, multiple_of, ffn_mult);
    let tn = |std: f64| Init::TruncNormal { mean: 0.0, std, a: -2.0, b: 2.0 };
    if llama3_version(m)? == "0.3.0" {
        if let Some(d) = &m.depth_init {
            return Err(SpanError::invalid(d.span(), "depth_init", "torchtitan 0.3.0 always scales wo/w2/w3 by depth")
                .hint("remove `depth_init`, or set torchtitan = \"0.2.2\""));
        }
        let tie = m.enable_weight_tying.as_ref().is_some_and(|t| *t.get_ref());
        return llama3_v030(cx, Llama3Dims { dim, n_layers, n_heads, n_kv_heads, vocab, hd, ffn }, tie);
    }
    if let Some(t) = &m.enable_weight_tying {
        return Err(
            SpanError::invalid(t.span(), "enable_weight_tying", "torchtitan 0.2.2 has no weight tying").hint("set torchtitan = \"0.3.0\"")
        );
    }
    cx.param("tok_embeddings.weight", &[vocab, dim], &["vocab", "embed"], Init::Normal { mean: 0.0, std: 1.0 })?;
    for l in 0..n_layers {
        let std = if depth_init { 0.02 / (2.0 * (l + 1) as f64).powf(0.5) } else { 0.02 / (2.0 * n_layers as f64).powf(0.5) };
        let p = format!("layers.{l}.");
        cx.param(&format!("{p}attention.wq.weight"), &[n_heads * hd, dim], &["heads", "embed"], tn(0.02))?;
        cx.param(&format!("{p}attention.wk.weight"), &[n_kv_heads * hd, dim], &["kv_heads", "embed"], tn(0.02))?;
        cx.param(&format!("{p}attention.wv.weight"), &[n_kv_heads * hd, dim], &["kv_heads", "embed"], tn(0.02))?;
        cx.param(&format!("{p}attention.wo.weight"), &[dim, n_heads * hd], &["embed", "heads"], tn(std))?;
        cx.param(&format!("{p}feed_forward.w1.weight"), &[ffn, dim], &["mlp", "embed"], tn(0.02))?;
        cx.param(&format!("{p}feed_forward.w2.weight"), &[dim, ffn], &["embed", "mlp"], tn(std))?;
        cx.param(&format!("{p}feed_forward.w3.weight"), &[ffn, dim], &["mlp", "embed"], tn(std))?;
        cx.param(&format!("{p}attention_norm.weight"), &[dim], &["embed"], Init::ONES)?;
        cx.param(&format!("{p}ffn_norm.weight"), &[dim], &["embed"], Init::ONES)?;
    }
    cx.param("norm.weight", &[dim], &["embed"], Init::ONES)?;
    let d = (dim as f64).powf(-0.5);
    cx.param("output.weight", &[vocab, dim], &["vocab", "embed"], Init::TruncNormal { mean: 0.0, std: d, a: -3.0 * d, b: 3.0 * d })
}

/// The torchtitan releases the llama3 preset follows (`torchtitan = "..."`), the default first.
pub const LLAMA3_TORCHTITAN: &[&str] = &["0.2.2", "0.3.0"];

fn llama3_version(m: &ModelSection) -> Result<&'static str> {
    let Some(v) = &m.torchtitan else { return Ok(LLAMA3_TORCHTITAN[0]) };
    LLAMA3_TORCHTITAN.iter().copied().find(|k| k == v.get_ref()).ok_or_else(|| {
        SpanError::invalid(v.span(), "torchtitan", format!("unknown torchtitan release `{}`", v.get_ref()))
            .hint(format!("the llama3 preset follows torchtitan {}", LLAMA3_TORCHTITAN.join(" or ")))
    })
}

struct Llama3Dims {
    dim: u64,
    n_layers: u64,
    n_heads: u64,
    n_kv_heads: u64,
    vocab: u64,
    hd: u64,
    ffn: u64,
}

/// torchtitan 0.3.0 `Llama3Model.init_states` (`models/llama3/__init__.py`): attention is one
/// fused `qkv_linear.wqkv` whose rows are interleaved per KV group (q heads, then k, then v;
/// `_fused_qkv_param_init`), the head is `lm_head`, depth-scaled std always, and with
/// `enable_weight_tying` `tok_embeddings.weight` is `lm_head.weight` (lm_head's init).
fn llama3_v030(cx: &mut ModelCtx, d: Llama3Dims, tie: bool) -> Result<()> {
    let tn = |std: f64| Init::TruncNormal { mean: 0.0, std, a: -2.0, b: 2.0 };
    let s = (d.dim as f64).powf(-0.5);
    let head = Init::TruncNormal { mean: 0.0, std: s, a: -3.0 * s, b: 3.0 * s };
    let emb = if tie { head.clone() } else { Init::Normal { mean: 0.0, std: 1.0 } };
    cx.param("tok_embeddings.weight", &[d.vocab, d.dim], &["vocab", "embed"], emb)?;
    for l in 0..d.n_layers {
        let std = 0.02 / (2.0 * (l + 1) as f64).powf(0.5);
        let p = format!("layers.{l}.");
        fused_qkv(cx, &format!("{p}attention.qkv_linear.wqkv.weight"), &d, tn(0.02))?;
        cx.param(&format!("{p}attention.wo.weight"), &[d.dim, d.n_heads * d.hd], &["embed", "heads"], tn(std))?;
        cx.param(&format!("{p}feed_forward.w1.weight"), &[d.ffn, d.dim], &["mlp", "embed"], tn(0.02))?;
        cx.param(&format!("{p}feed_forward.w2.weight"), &[d.dim, d.ffn], &["embed", "mlp"], tn(std))?;
        cx.param(&format!("{p}feed_forward.w3.weight"), &[d.ffn, d.dim], &["mlp", "embed"], tn(std))?;
        cx.param(&format!("{p}attention_norm.weight"), &[d.dim], &["embed"], Init::ONES)?;
        cx.param(&format!("{p}ffn_norm.weight"), &[d.dim], &["embed"], Init::ONES)?;
    }
    cx.param("norm.weight", &[d.dim], &["embed"], Init::ONES)?;
    if !tie {
        cx.param("lm_head.weight", &[d.vocab, d.dim], &["vocab", "embed"], head)?;
    }
    Ok(())
}

/// The fused `wqkv [(H + 2·Hkv)·hd, D]`: q `[H·hd, D]`, k and v `[Hkv·hd, D]` each drawn with
/// `init` from `split(key(wqkv), 3)[0..3]` (several draws in one tensor take `split` in program
/// order, as `initc.torch` keys them), viewed as `[Hkv, ·, hd, D]`, concatenated on dim 1 and
/// flattened. So the capture of torchtitan's module equals this preset bit for bit; the values
/// differ from the 0.2.2 layout's separately keyed wq/wk/wv.
fn fused_qkv(cx: &mut ModelCtx, fqn: &str, d: &Llama3Dims, init: Init) -> Result<()> {
    let rows = (d.n_heads + 2 * d.n_kv_heads) * d.hd;
    cx.param(fqn, &[rows, d.dim], &["qkv", "embed"], init.clone())?;
    if cx.init_overridden(fqn) {
        return Ok(());
    }
    let span = cx.span.clone();
    let e = |e: crate::tracer::TraceError| SpanError::invalid(span.clone(), "init", e.to_string());
    let t = &mut cx.t;
    let dtype = t.ty(t.get(fqn).map_err(e)?).dtype;
    let keys = t.param_key(fqn).and_then(|k| t.split(k, 3)).map_err(e)?;
    let hpk = d.n_heads / d.n_kv_heads;
    let mut parts = Vec::new();
    for (i, (heads, group)) in [(d.n_heads, hpk), (d.n_kv_heads, 1), (d.n_kv_heads, 1)].into_iter().enumerate() {
        let key = t.key_at(keys, i as u64).map_err(e)?;
        let x = t.init_value(fqn, &initc_ir::Type::new(dtype, [heads * d.hd, d.dim]), &init, Some(key)).map_err(e)?;
        parts.push(t.reshape(x, &[d.n_kv_heads, group, d.hd, d.dim]).map_err(e)?);
    }
    let fused = t.concat(&parts, 1).map_err(e)?;
    let flat = t.reshape(fused, &[rows, d.dim]).map_err(e)?;
    t.assign(fqn, flat).map_err(e)
}

/// Hugging Face `GPT2LMHeadModel` (lm_head is tied to wte and is not a separate tensor).
fn gpt2(cx: &mut ModelCtx, m: &ModelSection) -> Result<()> {
    let s = cx.span.clone();
    let vocab = pos_or(&m.vocab_size, "vocab_size", 50257)?;
    let e = pos_or(&m.n_embd, "n_embd", 768)?;
    let n_layer = layers(&m.n_layer, "n_layer", 12)?;
    let n_head = pos_or(&m.n_head, "n_head", 12)?;
    let n_pos = pos_or(&m.n_positions, "n_positions", 1024)?;
    let inner = pos_or(&m.n_inner, "n_inner", 4 * e)?;
    positive_float(&m.layer_norm_epsilon, "layer_norm_epsilon", 1e-5)?;
    let range = positive_float(&m.initializer_range, "initializer_range", 0.02)?;
    divides(span_of(&m.n_head, &s), "n_head", n_head, "n_head", e, "n_embd")?;
    let normal = |std: f64| Init::Normal { mean: 0.0, std };
    let scaled = range / (2.0 * n_layer as f64).sqrt();
    cx.param("transformer.wte.weight", &[vocab, e], &["vocab", "embed"], normal(range))?;
    cx.param("transformer.wpe.weight", &[n_pos, e], &["position", "embed"], normal(range))?;
    for l in 0..n_layer {
        let p = format!("transformer.h.{l}.");
        let ln = |cx: &mut ModelCtx, name: &str| -> Result<()> {
            cx.param(&format!("{p}{name}.weight"), &[e], &["embed"], Init::ONES)?;
            cx.param(&format!("{p}{name}.bias"), &[e], &["embed"], Init::ZEROS)
        };
        ln(cx, "ln_1")?;
        cx.param(&format!("{p}attn.c_attn.weight"), &[e, 3 * e], &["embed", "qkv"], normal(range))?;
        cx.param(&format!("{p}attn.c_attn.bias"), &[3 * e], &["qkv"], Init::ZEROS)?;
        cx.param(&format!("{p}attn.c_proj.weight"), &[e, e], &["heads", "embed"], normal(scaled))?;
        cx.param(&format!("{p}attn.c_proj.bias"), &[e], &["embed"], Init::ZEROS)?;
        ln(cx, "ln_2")?;
        cx.param(&format!("{p}mlp.c_fc.weight"), &[e, inner], &["embed", "mlp"], normal(range))?;
        cx.param(&format!("{p}mlp.c_fc.bias"), &[inner], &["mlp"], Init::ZEROS)?;
        cx.param(&format!("{p}mlp.c_proj.weight"), &[inner, e], &["mlp", "embed"], normal(scaled))?;
        cx.param(&format!("{p}mlp.c_proj.bias"), &[e], &["embed"], Init::ZEROS)?;
    }
    cx.param("transformer.ln_f.weight", &[e], &["embed"], Init::ONES)?;
    cx.param("transformer.ln_f.bias", &[e], &["embed"], Init::ZEROS)
}

/// Hugging Face `LlamaForCausalLM` with the generic `_init_weights`.
fn hf_llama(cx: &mut ModelCtx, m: &ModelSection) -> Result<()> {
    let s = cx.span.clone();
    let vocab = pos_or(&m.vocab_size, "vocab_size", 32000)?;
    let h = pos_or(&m.hidden_size, "hidden_size", 4096)?;
    let inter = pos_or(&m.intermediate_size, "intermediate_size", 11008)?;
    let layers = layers(&m.num_hidden_layers, "num_hidden_layers", 32)?;
    let heads = pos_or(&m.num_attention_heads, "num_attention_heads", 32)?;
    let kv = pos_or(&m.num_key_value_heads, "num_key_value_heads", heads)?;
    positive_float(&m.rms_norm_eps, "rms_norm_eps", 1e-6)?;
    let range = positive_float(&m.initializer_range, "initializer_range", 0.02)?;
    let tie = m.tie_word_embeddings.as_ref().is_some_and(|t| *t.get_ref());
    divides(span_of(&m.num_attention_heads, &s), "num_attention_heads", heads, "num_attention_heads", h, "hidden_size")?;
    divides(span_of(&m.num_key_value_heads, &s), "num_key_value_heads", kv, "num_key_value_heads", heads, "num_attention_heads")?;
    let hd = h / heads;
    let n = Init::Normal { mean: 0.0, std: range };
    cx.param("model.embed_tokens.weight", &[vocab, h], &["vocab", "embed"], n.clone())?;
    for l in 0..layers {
        let p = format!("model.layers.{l}.");
        cx.param(&format!("{p}self_attn.q_proj.weight"), &[heads * hd, h], &["heads", "embed"], n.clone())?;
        cx.param(&format!("{p}self_attn.k_proj.weight"), &[kv * hd, h], &["kv_heads", "embed"], n.clone())?;
        cx.param(&format!("{p}self_attn.v_proj.weight"), &[kv * hd, h], &["kv_heads", "embed"], n.clone())?;
        cx.param(&format!("{p}self_attn.o_proj.weight"), &[h, heads * hd], &["embed", "heads"], n.clone())?;
        cx.param(&format!("{p}mlp.gate_proj.weight"), &[inter, h], &["mlp", "embed"], n.clone())?;
        cx.param(&format!("{p}mlp.up_proj.weight"), &[inter, h], &["mlp", "embed"], n.clone())?;
        cx.param(&format!("{p}mlp.down_proj.weight"), &[h, inter], &["embed", "mlp"], n.clone())?;
        cx.param(&format!("{p}input_layernorm.weight"), &[h], &["embed"], Init::ONES)?;
        cx.param(&format!("{p}post_attention_layernorm.weight"), &[h], &["embed"], Init::ONES)?;
    }
    cx.param("model.norm.weight", &[h], &["embed"], Init::ONES)?;
    if !tie {
        cx.param("lm_head.weight", &[vocab, h], &["vocab", "embed"], n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ffn_dims_match_torchtitan_configs() {
        use super::llama3_ffn_dim as f;
        assert_eq!(f(2048, 256, Some(1.5)), 8192); // 1B
        assert_eq!(f(4096, 1024, Some(1.3)), 14336); // 8B
        assert_eq!(f(8192, 4096, Some(1.3)), 28672); // 70B
        assert_eq!(f(16384, 4096, Some(1.2)), 53248); // 405B
        assert_eq!(f(256, 16, None), 688); // golden/llama_tiny_params.json
        assert_eq!(f(256, 256, None), 768); // torchtitan debugmodel
    }
}
