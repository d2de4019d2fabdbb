//! model.toml's schema: the tables serde reads it into, each value with its span, and the
//! small readers of typed values ([`positive`], [`dtype_of`]) every builder shares.

use std::fmt;
use std::marker::PhantomData;

use initc_ir::DType;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use toml::Spanned;

use crate::error::{Result, SpanError};
use crate::pattern::suggest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Root {
    pub model: Spanned<ModelSection>,
    pub rng: Option<RngSection>,
    #[serde(default, rename = "override")]
    pub overrides: Vec<OverrideSection>,
    #[serde(default, rename = "module")]
    pub modules: Vec<Spanned<ModuleSection>>,
    pub mesh: Option<Spanned<Ordered<i64>>>,
    pub sharding: Option<ShardingSection>,
    #[serde(default)]
    pub shard: Vec<ShardSection>,
    pub logical_rules: Option<Ordered<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RngSection {
    pub seed: Option<Spanned<i64>>,
    pub mode: Option<Spanned<String>>,
}

type SInt = Option<Spanned<i64>>;
type SFloat = Option<Spanned<f64>>;
type SBool = Option<Spanned<bool>>;

/// `[model]`: the preset selector and every preset's arguments (each preset checks that only
/// its own are present, so a misplaced key gets a precise error).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelSection {
    pub preset: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub dtype: Option<Spanned<String>>,
    // llama3 (torchtitan ModelArgs)
    pub dim: SInt,
    pub n_layers: SInt,
    pub n_heads: SInt,
    pub n_kv_heads: SInt,
    pub vocab_size: SInt,
    pub multiple_of: SInt,
    pub ffn_dim_multiplier: SFloat,
    pub norm_eps: SFloat,
    pub depth_init: SBool,
    /// llama3: the torchtitan release whose layout and init to follow (`0.2.2` or `0.3.0`).
    pub torchtitan: Option<Spanned<String>>,
    /// llama3 with torchtitan 0.3.0: `tok_embeddings` and `lm_head` share one weight.
    pub enable_weight_tying: SBool,
    // gpt2 (HF GPT2Config)
    pub n_embd: SInt,
    pub n_layer: SInt,
    pub n_head: SInt,
    pub n_positions: SInt,
    pub n_inner: SInt,
    pub layer_norm_epsilon: SFloat,
    pub initializer_range: SFloat,
    // hf_llama (HF LlamaConfig)
    pub hidden_size: SInt,
    pub intermediate_size: SInt,
    pub num_hidden_layers: SInt,
    pub num_attention_heads: SInt,
    pub num_key_value_heads: SInt,
    pub rms_norm_eps: SFloat,
    pub tie_word_embeddings: SBool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverrideSection {
    #[serde(rename = "match")]
    pub pattern: Spanned<String>,
    pub init: Option<Spanned<InitValue>>,
    pub dtype: Option<Spanned<String>>,
}

/// `init = "zeros"` or `init = { kind = "normal", std = 0.02 }`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum InitValue {
    Name(String),
    Table(toml::Table),
}

/// One `[[module]]` of the generic form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModuleSection {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub dtype: Option<Spanned<String>>,
    pub in_features: SInt,
    pub out_features: SInt,
    pub bias: SBool,
    pub num_embeddings: SInt,
    pub embedding_dim: SInt,
    pub padding_idx: SInt,
    pub normalized_shape: Option<Spanned<IntOrList>>,
    pub elementwise_affine: SBool,
    pub in_channels: SInt,
    pub out_channels: SInt,
    pub kernel_size: Option<Spanned<IntOrList>>,
    pub groups: SInt,
    pub weight_init: Option<Spanned<InitValue>>,
    pub bias_init: Option<Spanned<InitValue>>,
    pub axes: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum IntOrList {
    One(i64),
    Many(Vec<i64>),
}

/// A positive integer argument, at most 2^32 (so shapes multiply without overflow surprises).
pub(crate) fn positive(v: &Spanned<i64>, key: &str) -> Result<u64> {
    let x = *v.get_ref();
    if x <= 0 {
        return Err(SpanError::invalid(v.span(), key, format!("must be a positive integer, got {x}")));
    }
    if x > 1 << 32 {
        return Err(SpanError::invalid(v.span(), key, format!("{x} is too large (at most 2^32)")));
    }
    Ok(x as u64)
}

pub(crate) fn dtype_of(v: &Spanned<String>, key: &str) -> Result<DType> {
    let name = v.get_ref().as_str();
    match DType::from_name(name) {
        Some(d) if d.is_float() => Ok(d),
        _ => {
            let floats = ["f32", "bf16", "f16", "f64"];
            let e = SpanError::invalid(v.span(), key, format!("`{name}` is not a parameter dtype"));
            Err(match suggest(name, floats) {
                Some(s) => e.hint(format!("did you mean `{s}`? (one of f32, bf16, f16, f64)")),
                None => e.hint("one of f32, bf16, f16, f64"),
            })
        }
    }
}

/// A TOML table read in file order (mesh axis order matters), with each value's span.
#[derive(Debug)]
pub(crate) struct Ordered<V>(pub Vec<(String, Spanned<V>)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> std::result::Result<Ordered<V>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, Spanned<V>>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShardingSection {
    pub rules: Option<Spanned<String>>,
    pub uneven: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShardSection {
    #[serde(rename = "match")]
    pub pattern: Spanned<String>,
    pub spec: Spanned<Vec<Spanned<toml::Value>>>,
}
