//! The sharding pass on traced presets: the built-in rule sets give torchtitan's layouts,
//! logical rules follow Flax's `logical_to_mesh_axes`, precedence is [[shard]] > logical >
//! built-in, and errors name the rule, the parameter and the dimension.

use initc_ir::{Mesh, Module};
use initc_shard::{Builtin, LogicalRule, Rule, RuleRef, Rules, shard};

fn llama_tiny() -> Module {
    let src = "[model]\npreset = \"llama3\"\ndim = 64\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\nvocab_size = 96\nmultiple_of = 16\n";
    initc_frontend::trace_toml("t.toml", src, "t").unwrap().module
}

/// `fqn → sharding` text for the parameters of layer 0 and the top level.
fn layout(m: &Module) -> Vec<(String, String)> {
    m.params.iter().filter(|p| !p.fqn.starts_with("layers.1.")).map(|p| (p.fqn.clone(), p.sharding.as_ref().unwrap().to_string())).collect()
}

fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn builtin_tp_is_torchtitans_plan() {
    let mut m = llama_tiny();
    let r = shard(&mut m, &"tp=2".parse().unwrap(), &Rules { builtin: Some(Builtin::Tp), ..Default::default() }).unwrap();
    assert!(r.unmatched(&m).is_empty());
    assert_eq!(
        layout(&m),
        expect(&[
            ("tok_embeddings.weight", "[{tp},{}]"),
            ("layers.0.attention.wq.weight", "[{tp},{}]"),
            ("layers.0.attention.wk.weight", "[{tp},{}]"),
            ("layers.0.attention.wv.weight", "[{tp},{}]"),
            ("layers.0.attention.wo.weight", "[{},{tp}]"),
            ("layers.0.feed_forward.w1.weight", "[{tp},{}]"),
            ("layers.0.feed_forward.w2.weight", "[{},{tp}]"),
            ("layers.0.feed_forward.w3.weight", "[{tp},{}]"),
            ("layers.0.attention_norm.weight", "[{}]"),
            ("layers.0.ffn_norm.weight", "[{}]"),
            ("norm.weight", "[{}]"),
            ("output.weight", "[{tp},{}]"),
        ])
    );
}

#[test]
fn builtin_fsdp_splits_dim_0_of_everything_and_fsdp_tp_composes_minor() {
    let mut m = llama_tiny();
    shard(&mut m, &"fsdp=4".parse().unwrap(), &Rules { builtin: Some(Builtin::Fsdp), ..Default::default() }).unwrap();
    assert!(m.params.iter().all(|p| p.sharding.as_ref().unwrap().dims[0] == ["fsdp"]));
    assert!(m.params.iter().all(|p| p.sharding.as_ref().unwrap().dims[1..].iter().all(Vec::is_empty)));

    let mut m = llama_tiny();
    shard(&mut m, &"dp=2,fsdp=2,tp=2".parse().unwrap(), &Rules { builtin: Some(Builtin::FsdpTp), ..Default::default() }).unwrap();
    let l = layout(&m);
    assert_eq!(l[0], ("tok_embeddings.weight".into(), "[{tp,fsdp},{}]".into()));
    assert_eq!(l[4], ("layers.0.attention.wo.weight".into(), "[{fsdp},{tp}]".into()));
    assert_eq!(l[8], ("layers.0.attention_norm.weight".into(), "[{fsdp}]".into()));

    // On a mesh without `tp`, fsdp+tp degrades to fsdp (the issue's `--mesh fsdp=8`).
    let mut a = llama_tiny();
    let mut b = llama_tiny();
    shard(&mut a, &"fsdp=4".parse().unwrap(), &Rules { builtin: Some(Builtin::FsdpTp), ..Default::default() }).unwrap();
    shard(&mut b, &"fsdp=4".parse().unwrap(), &Rules { builtin: Some(Builtin::Fsdp), ..Default::default() }).unwrap();
    assert_eq!(a, b);
}

#[test]
fn logical_rules_follow_flax_order_and_skip_used_axes() {
    let mut m = llama_tiny();
    let lr = |l: &str, a: &[&str]| LogicalRule { logical: l.into(), axes: a.iter().map(|s| s.to_string()).collect() };
    // `embed` comes first and takes `x`; `heads` wants `x` too, so it stays replicated.
    let rules = Rules { logical: vec![lr("embed", &["x"]), lr("heads", &["x", "y"]), lr("mlp", &["y"])], ..Default::default() };
    let r = shard(&mut m, &"x=2,y=2".parse().unwrap(), &rules).unwrap();
    let get = |f: &str| m.param(f).unwrap().sharding.as_ref().unwrap().to_string();
    assert_eq!(get("layers.0.attention.wq.weight"), "[{},{x}]");
    assert_eq!(get("layers.0.feed_forward.w1.weight"), "[{y},{x}]");
    assert_eq!(get("norm.weight"), "[{x}]");
    // kv_heads and vocab are named by no rule, but their `embed` dim is: matched.
    assert_eq!(get("layers.0.attention.wk.weight"), "[{},{x}]");
    assert!(r.unmatched(&m).is_empty());
    assert_eq!(r.matched_by[0], Some(RuleRef::Logical(0)));
}

#[test]
fn explicit_rules_win_then_logical_then_builtin_and_unmatched_are_reported() {
    let mut m = llama_tiny();
    let rules = Rules {
        shard: vec![Rule { pattern: "output.weight".into(), spec: vec![vec!["fsdp".into(), "tp".into()]] }],
        logical: vec![LogicalRule { logical: "mlp".into(), axes: vec![] }],
        builtin: Some(Builtin::FsdpTp),
    };
    let r = shard(&mut m, &"fsdp=2,tp=2".parse().unwrap(), &rules).unwrap();
    let get = |f: &str| m.param(f).unwrap().sharding.as_ref().unwrap().to_string();
    assert_eq!(get("output.weight"), "[{fsdp,tp},{}]");
    assert_eq!(get("layers.0.feed_forward.w1.weight"), "[{},{}]", "mlp pinned replicated by the logical rule");
    assert_eq!(get("layers.0.attention.wq.weight"), "[{tp,fsdp},{}]");
    assert_eq!(r.shard_rule_hits(&rules), vec![1]);

    let mut m = llama_tiny();
    let only = Rules { shard: vec![Rule { pattern: "*.wq.weight".into(), spec: vec![vec!["x".into()]] }], ..Default::default() };
    let r = shard(&mut m, &"x=2".parse::<Mesh>().unwrap(), &only).unwrap();
    assert_eq!(r.unmatched(&m).len(), m.params.len() - 2);
    assert_eq!(m.param("norm.weight").unwrap().sharding.as_ref().unwrap().to_string(), "[{}]");
}

#[test]
fn errors_name_rule_parameter_and_dimension_and_leave_the_module_unchanged() {
    let m0 = llama_tiny();
    let mut m = m0.clone();
    let e = shard(&mut m, &"fsdp=5".parse().unwrap(), &Rules { builtin: Some(Builtin::Fsdp), ..Default::default() }).unwrap_err();
    assert_eq!(e.to_string(), "built-in rule set `fsdp`, parameter `tok_embeddings.weight`: dim 0 (size 96) is not divisible by fsdp = 5");
    assert_eq!(m, m0);
    let rules =
        Rules { shard: vec![Rule { pattern: "layers.*".into(), spec: vec![vec![], vec!["a".into(), "b".into()]] }], ..Default::default() };
    let e = shard(&mut m, &"a=3,b=2".parse().unwrap(), &rules).unwrap_err();
    assert_eq!(
        e.to_string(),
        "[[shard]] #1 (match = \"layers.*\"), parameter `layers.0.attention.wq.weight`: dim 1 (size 64) is not divisible by a×b = 6"
    );
    let e = shard(&mut m, &"a=2".parse().unwrap(), &rules).unwrap_err();
    assert_eq!(e.to_string(), "[[shard]] #1 (match = \"layers.*\"): dim 1: `b` is not an axis of mesh a=2");
    let e = shard(&mut m, &"a=2,b=2".parse().unwrap(), &rules).unwrap_err();
    assert_eq!(
        e.to_string(),
        "[[shard]] #1 (match = \"layers.*\"), parameter `layers.0.attention_norm.weight`: 2 spec entries for a rank-1 parameter"
    );
    assert_eq!(m, m0);
}
