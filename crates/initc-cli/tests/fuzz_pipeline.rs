//! Fuzzing past the parsers (proptest on stable, standing in for a cargo-fuzz target): mutated
//! model.toml files, text IR and protobuf IR go through every stage that accepts them —
//! tracing, sharding on the file's mesh and on others, verification, the text and protobuf
//! round trips, the shard plan, the CPU engine on a few elements of each device's shard,
//! StableHLO lowering (both partitioners) and shard programs. Nothing may panic, overflow the
//! stack or hang, and what one stage accepts the next must accept or refuse with an error.
//!
//! Corpus: `examples/` (the small ones), `tests/errors/`, `tests/golden/ir/` (small ones) and
//! `tests/fuzz/`. Cases per target: `INITC_FUZZ_CASES` (default 96, a few seconds in CI; raise it
//! to fuzz for longer, e.g. `INITC_FUZZ_CASES=20000 cargo test --release -p initc-cli --test
//! fuzz_pipeline`).

use std::path::{Path, PathBuf};

use initc_ir::{Mesh, Module, Uneven};
use initc_shard::{Builtin, Region};
use proptest::prelude::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const SMALL_EXAMPLES: &[&str] = &["gpt2_tiny", "llama3_tiny", "llama3_tiny_sharded", "mlp", "mlp_sharded"];

fn read_dir(dir: &str, ext: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

fn toml_corpus() -> Vec<(String, Vec<u8>)> {
    let mut c: Vec<_> =
        read_dir("examples", "toml").into_iter().filter(|(n, _)| SMALL_EXAMPLES.iter().any(|s| n == &format!("{s}.toml"))).collect();
    c.extend(read_dir("tests/errors", "toml"));
    c.extend(read_dir("tests/fuzz", "toml"));
    c
}

fn ir_corpus() -> Vec<(String, Vec<u8>)> {
    let mut c: Vec<_> =
        read_dir("tests/golden/ir", "ir").into_iter().filter(|(n, _)| SMALL_EXAMPLES.iter().any(|s| n == &format!("{s}.ir"))).collect();
    c.extend(read_dir("tests/fuzz", "ir"));
    c
}

/// Bytes and tokens a mutation inserts or writes over.
const TOKENS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "7",
    "-",
    ".",
    "\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    "=",
    "%",
    ":",
    "x",
    "\n",
    " ",
    "_",
    "*",
    "4294967296",
    "-1",
    "1e308",
    "nan",
    "inf",
    "f64",
    "bf16",
    "u32",
    "key",
    "pad",
    "fsdp",
    "tp",
    "\"fast\"",
    "[[shard]]",
    "[mesh]",
    "model.",
    "layers.{0..3}",
    "\\u{0}",
    "65537",
    "18446744073709551615",
];

#[derive(Clone, Debug)]
enum Mutation {
    Write(prop::sample::Index, usize),
    Insert(prop::sample::Index, usize),
    Delete(prop::sample::Index, usize),
    DuplicateLine(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let tok = 0..TOKENS.len();
    prop_oneof![
        (any::<prop::sample::Index>(), tok.clone()).prop_map(|(i, t)| Mutation::Write(i, t)),
        (any::<prop::sample::Index>(), tok).prop_map(|(i, t)| Mutation::Insert(i, t)),
        (any::<prop::sample::Index>(), 1..8usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<prop::sample::Index>().prop_map(Mutation::DuplicateLine),
    ]
}

fn mutate(src: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut b = src.to_vec();
    for m in muts {
        let at = |i: &prop::sample::Index, b: &[u8]| if b.is_empty() { 0 } else { i.index(b.len()) };
        match m {
            Mutation::Write(i, t) => {
                let p = at(i, &b);
                let t = TOKENS[*t].as_bytes();
                let end = (p + t.len()).min(b.len());
                b.splice(p..end, t.iter().copied());
            }
            Mutation::Insert(i, t) => {
                let p = at(i, &b);
                b.splice(p..p, TOKENS[*t].bytes());
            }
            Mutation::Delete(i, n) => {
                let p = at(i, &b);
                b.drain(p..(p + n).min(b.len()));
            }
            Mutation::DuplicateLine(i) => {
                let p = at(i, &b);
                let start = b[..p].iter().rposition(|&c| c == b'\n').map_or(0, |s| s + 1);
                let end = b[p..].iter().position(|&c| c == b'\n').map_or(b.len(), |e| p + e + 1);
                let line = b[start..end].to_vec();
                b.splice(end..end, line);
            }
        }
    }
    b
}

/// Other meshes to shard on (with a built-in rule set, padding allowed), or none.
fn remesh() -> impl Strategy<Value = Option<(Mesh, Builtin)>> {
    let meshes = ["fsdp=2", "tp=2", "fsdp=2,tp=2", "fsdp=3", "tp=3,fsdp=2"];
    let rules = ["fsdp", "tp", "fsdp+tp"];
    prop::option::of((0..meshes.len(), 0..rules.len())).prop_map(move |c| {
        c.map(|(m, r)| {
            let mut mesh: Mesh = meshes[m].parse().unwrap();
            mesh.uneven = Uneven::Pad;
            (mesh, initc_frontend::builtin(rules[r]).unwrap())
        })
    })
}

/// Every stage after reading, on a verified module. Panics (the property fails) only where one
/// stage accepted what the next crashes on, or a round trip changes the module.
fn downstream(m: &Module) {
    initc_ir::verify(m).expect("modules handed out are verified");
    let text = m.to_string();
    let back = initc_ir::parse(&text).unwrap_or_else(|e| panic!("printed IR does not parse back: {e}\n{text}"));
    assert_eq!(&back, m, "text round trip");
    let pb = initc_proto::decode(&initc_proto::encode(m)).expect("protobuf round trip decodes");
    assert_eq!(&pb, m, "protobuf round trip");
    if m.params.len() > 400 {
        return;
    }
    let _ = initc_shard::Plan::new(m);
    let ev = initc_cpu::Evaluator::new(m, 11);
    let devices = m.mesh.as_ref().map_or(1, |x| x.devices());
    for p in &m.params {
        for d in [0, devices - 1] {
            let region = match (&m.mesh, &p.sharding) {
                (Some(mesh), Some(s)) => initc_shard::device_region(mesh, s, &p.ty.shape, d),
                _ => Region::full(&p.ty.shape),
            };
            // A corner of the region: at most 3 per dimension.
            let corner = Region { offset: region.offset.clone(), shape: region.shape.iter().map(|&n| n.min(3)).collect() };
            let mut bytes = 0u64;
            initc_cpu::materialize(&ev, p.value, &p.ty.shape, &corner, |b: &[u8]| {
                bytes += b.len() as u64;
                Ok::<(), ()>(())
            })
            .unwrap();
            assert_eq!(bytes, corner.numel() * p.ty.dtype.size_bytes(), "{}", p.fqn);
        }
    }
    for partitioner in [initc_stablehlo::Partitioner::Shardy, initc_stablehlo::Partitioner::Gspmd] {
        if let Ok(l) = initc_stablehlo::lower(m, &initc_stablehlo::Options { partitioner }) {
            l.text().expect("a lowered module prints");
        }
    }
    if let Ok(plan) = initc_device::DevicePlan::new(m, &[0]) {
        for p in 0..plan.programs.len().min(4) {
            let _ = plan.executable_text(p, 1);
        }
    }
}

fn reshard(m: &Module, remesh: &Option<(Mesh, Builtin)>) -> Option<Module> {
    let (mesh, builtin) = remesh.as_ref()?;
    let mut m = m.clone();
    m.mesh = None;
    for p in &mut m.params {
        p.sharding = None;
    }
    let rules = initc_shard::Rules { builtin: Some(*builtin), ..Default::default() };
    initc_shard::shard(&mut m, mesh, &rules).ok()?;
    Some(m)
}

fn cases() -> u32 {
    std::env::var("INITC_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(96)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn model_toml(which in any::<prop::sample::Index>(), muts in prop::collection::vec(mutation(), 0..4), other in remesh()) {
        let corpus = toml_corpus();
        let (name, src) = &corpus[which.index(corpus.len())];
        let Ok(text) = String::from_utf8(mutate(src, &muts)) else { return Ok(()) };
        let traced = match initc_frontend::trace_toml(name, &text, "m") {
            Ok(t) => t,
            Err(e) => {
                prop_assert!(e.span.end <= text.len());
                let _ = e.to_string();
                return Ok(());
            }
        };
        downstream(&traced.module);
        let mut sharded = traced.module.clone();
        if let Ok(Some(_)) = traced.shard.apply(&mut sharded, None, None, None, Some((name, &text))) {
            downstream(&sharded);
        }
        if let Some((mesh, builtin)) = &other {
            let mut m = traced.module.clone();
            if traced.shard.apply(&mut m, Some(mesh), Some(*builtin), Some(Uneven::Pad), Some((name, &text))).is_ok() {
                downstream(&m);
            }
        }
    }

    #[test]
    fn text_ir(which in any::<prop::sample::Index>(), muts in prop::collection::vec(mutation(), 0..4), other in remesh()) {
        let corpus = ir_corpus();
        let (_, src) = &corpus[which.index(corpus.len())];
        let Ok(text) = String::from_utf8(mutate(src, &muts)) else { return Ok(()) };
        let Ok(m) = initc_ir::parse(&text) else { return Ok(()) };
        downstream(&m);
        if let Some(r) = reshard(&m, &other) {
            downstream(&r);
        }
    }

    #[test]
    fn protobuf_ir(which in any::<prop::sample::Index>(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4), cut in prop::option::of(any::<prop::sample::Index>())) {
        let corpus = ir_corpus();
        let (_, src) = &corpus[which.index(corpus.len())];
        let m = initc_ir::parse(std::str::from_utf8(src).unwrap()).unwrap();
        let mut bytes = initc_proto::encode(&m);
        for (i, x) in &flips {
            let i = i.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len() + 1));
        }
        if let Ok(m) = initc_proto::decode(&bytes) {
            downstream(&m);
        }
    }
}

#[test]
fn the_corpus_reads_and_runs_unmutated() {
    // Guards the corpus itself: every example and tests/fuzz file is valid and goes all the way.
    for (name, src) in toml_corpus().into_iter().filter(|(n, _)| !n.contains("errors")) {
        let text = String::from_utf8(src).unwrap();
        if let Ok(t) = initc_frontend::trace_toml(&name, &text, "m") {
            downstream(&t.module);
        }
    }
    for name in ["padded_fast.toml", "llama_small.toml", "hf_tied.toml"] {
        let text = std::fs::read_to_string(root().join("tests/fuzz").join(name)).unwrap();
        let t = initc_frontend::trace_toml(name, &text, "m").unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut m = t.module.clone();
        t.shard.apply(&mut m, None, None, None, Some((name, &text))).unwrap();
        downstream(&m);
    }
    for (name, src) in ir_corpus() {
        let m = initc_ir::parse(std::str::from_utf8(&src).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        downstream(&m);
    }
}
