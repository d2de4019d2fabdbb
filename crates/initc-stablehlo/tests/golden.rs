//! Golden StableHLO: `tests/golden/stablehlo/<case>.mlir` is MLIR's printing of what initc
//! emits for small models (re-bless with `INITC_BLESS=1 cargo test`; CI fails on any diff).
//! XLA, not this test, judges the semantics: tools/oracle/test_stablehlo.py.
//!
//! Each golden holds what it is for: `mlp` the whole module (the random lowering, once); the
//! sharded cases only the module's head and `@main` (the mesh, every argument's and result's
//! sharding, the calls), not the private random functions they share with `mlp`, so one change
//! to the random lowering re-blesses one file. Shard programs have their own filetests
//! (`filetests/`).

use std::path::{Path, PathBuf};

use initc_stablehlo::{Options, Partitioner, lower};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn traced(example: &str) -> initc_ir::Module {
    let path = root().join("examples").join(format!("{example}.toml"));
    let src = std::fs::read_to_string(&path).unwrap();
    let t = initc_frontend::trace_toml(example, &src, example).unwrap();
    t.sharded(example, &src).unwrap()
}

/// The printed module up to the end of `@main` (location aliases, module attributes, `@main`).
fn head_and_main(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.contains("func.func public @main")).expect("a @main");
    let end = (start..lines.len()).find(|&i| lines[i].starts_with("  }")).expect("the end of @main");
    let mut out = lines[..=end].join("\n");
    out.push('\n');
    out
}

#[test]
fn small_models_match_golden_stablehlo() {
    let cases = [("mlp", Partitioner::Shardy), ("llama3_tiny_sharded", Partitioner::Shardy), ("llama3_tiny_sharded", Partitioner::Gspmd)];
    let mut failures = Vec::new();
    for (ex, part) in cases {
        let m = traced(ex);
        let full = lower(&m, &Options { partitioner: part }).unwrap().text().unwrap();
        let text = if ex == "mlp" { full } else { head_and_main(&full) };
        let name = format!("{ex}{}.mlir", if part == Partitioner::Gspmd { "_gspmd" } else { "" });
        let path = root().join("tests/golden/stablehlo").join(&name);
        if std::env::var_os("INITC_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if want == text => {}
            Ok(want) => {
                let line = want.lines().zip(text.lines()).position(|(a, b)| a != b).unwrap_or(0);
                failures.push(format!(
                    "{name}: differs at line {}: expected {:?}, got {:?}",
                    line + 1,
                    want.lines().nth(line),
                    text.lines().nth(line)
                ));
            }
            Err(_) => failures.push(format!("{name}: missing golden (INITC_BLESS=1)")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn main_signature_locations_and_shardings() {
    let m = traced("llama3_tiny_sharded");
    let text = lower(&m, &Options::default()).unwrap().text().unwrap();
    assert!(text.contains("mhlo.num_partitions = 4 : i32"), "{text}");
    assert!(text.contains("sdy.mesh"), "{text}");
    assert!(
        text.contains("func.func public @main(%arg0: tensor<2xui32> {sdy.sharding = #sdy.sharding<@mesh, [{}]>}"),
        "key argument, replicated"
    );
    // output.weight's explicit rule, wq's built-in fsdp+tp layout.
    assert!(text.contains("tensor<1000x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{\"fsdp\", \"tp\"}, {}]>}"), "{text}");
    assert!(text.contains("tensor<256x256xf32> {sdy.sharding = #sdy.sharding<@mesh, [{\"tp\", \"fsdp\"}, {}]>}"), "{text}");
    assert!(text.contains("loc(\"layers.1.feed_forward.w2.weight\")"), "FQN locations");
    // One private function per (distribution, dtype, shape), shared by identical layers.
    assert_eq!(text.matches("func.func private @normal_f32_256x256(").count(), 1);
    assert!(!text.contains("stablehlo.rng"), "no implementation-defined RNG ops");
    // Unsharded: one partition, no mesh, no sharding attributes.
    let plain = lower(&traced("llama3_tiny"), &Options::default()).unwrap().text().unwrap();
    assert!(plain.contains("mhlo.num_partitions = 1 : i32") && !plain.contains("sdy."), "unsharded module");
    // Bytecode is MLIR's (magic `ML\xefR`).
    let bc = lower(&m, &Options::default()).unwrap().bytecode().unwrap();
    assert_eq!(&bc[..4], b"ML\xefR");
}

#[test]
fn module_size_grows_slowly_with_identical_layers() {
    let src =
        |n: u32| format!("[model]\npreset = \"llama3\"\ndim = 256\nn_layers = {n}\nn_heads = 4\nvocab_size = 1000\nmultiple_of = 16\n");
    let size = |n: u32| {
        let t = initc_frontend::trace_toml("l.toml", &src(n), "l").unwrap();
        lower(&t.module, &Options::default()).unwrap().raw().len()
    };
    let (s2, s32) = (size(2), size(32));
    // Functions are shared; each layer adds only its calls and constants in @main.
    let per_layer = (s32 - s2) / 30;
    assert!(per_layer * 10 < s2, "per-layer growth {per_layer} B vs a 2-layer module of {s2} B");
}

#[test]
fn uneven_shardy_is_refused_with_a_hint_and_gspmd_strings_follow_the_mesh() {
    let m = traced("mlp_sharded");
    let e = lower(&m, &Options::default()).unwrap_err();
    assert!(e.to_string().starts_with("parameter `embed.weight`: dim 0 (size 100) is split into 3 padded pieces"), "{e}");
    assert!(e.hint().unwrap().contains("--partitioner gspmd"));
    assert!(lower(&m, &Options { partitioner: Partitioner::Gspmd }).is_ok());

    let mesh: initc_ir::Mesh = "dp=2,fsdp=2,tp=2".parse().unwrap();
    let s = |d: &[&[&str]]| initc_ir::Sharding { dims: d.iter().map(|x| x.iter().map(|a| a.to_string()).collect()).collect() };
    assert_eq!(initc_stablehlo::gspmd(&mesh, &s(&[&[], &[]])), "{replicated}");
    assert_eq!(initc_stablehlo::gspmd(&mesh, &s(&[&["dp", "fsdp", "tp"], &[]])), "{devices=[8,1]<=[8]}");
    assert_eq!(initc_stablehlo::gspmd(&mesh, &s(&[&["tp", "fsdp"], &[]])), "{devices=[4,1,2]<=[2,2,2]T(2,1,0) last_tile_dim_replicate}");
    assert_eq!(initc_stablehlo::gspmd(&mesh, &s(&[&["fsdp"], &["tp"]])), "{devices=[2,2,2]<=[2,2,2]T(1,2,0) last_tile_dim_replicate}");
}

#[test]
fn batched_shard_programs_parse_and_call_the_body_once_per_launch() {
    // a fast-mode program of a JAX 16-bit draw (static words and one table argument) run 3
    // times per execute; the model is llama3_tiny with every f32 type made bf16
    let path = root().join("examples/llama3_tiny.toml");
    let src = std::fs::read_to_string(&path).unwrap();
    let m = initc_frontend::trace_toml("llama3_tiny", &src, "llama3_tiny").unwrap().sharded("llama3_tiny", &src).unwrap();
    let mut m = initc_ir::parse(&m.to_string().replace("f32[", "bf16[")).unwrap();
    m.rng = initc_ir::RngMode::Fast;
    let p = m.params.iter().position(|p| p.fqn.ends_with("attention.wo.weight")).unwrap();
    let sp = initc_stablehlo::shard_program(&m, p, &initc_shard::Region::full(&m.params[p].ty.shape)).unwrap();
    assert!(sp.text().contains("%arg1: tensor<16384xui32>"), "a bf16 draw takes its pair table as an argument");
    let b = initc_stablehlo::Batched::new(&sp.prog, 3, 2).print();
    initc_stablehlo::check_text(&b).unwrap();
    assert_eq!(b.matches("func.call @shard_main(").count(), 3);
    assert!(b.contains("func.func private @shard_main(%arg0"));
    assert!(b.contains("%b2_1: tensor<16384xui32>"));
    // static words in groups of 2 launches: 2 + 1
    let words = sp.words();
    assert!(
        b.contains(&format!("@main(%statics0: tensor<{}xui32>, %statics1: tensor<{words}xui32>,", 2 * words)),
        "{}",
        &b[..b.len().min(3000)]
    );
    assert!(b.contains(&format!("(%statics0) {{start_indices = array<i64: {words}>, limit_indices = array<i64: {}>", 2 * words)));
    assert_eq!(initc_stablehlo::batch_groups(16, 4), vec![4, 4, 4, 4]);
    assert_eq!(initc_stablehlo::batch_groups(6, 4), vec![4, 2]);
    assert_eq!(initc_stablehlo::Batched::new(&sp.prog, 1, 4).print(), sp.text(), "one launch is the program itself");
}

#[test]
fn fast_bf16_parameters_pack_two_f32_draws_per_threefry_block() {
    // a bf16 parameter is an f32 draw converted: in fast mode its program still computes one
    // threefry block per 2 elements (GroupBase(2)) and stores them as one 32-bit word
    let path = root().join("examples/llama3_tiny.toml");
    let src = std::fs::read_to_string(&path).unwrap().replacen("[model]\n", "[model]\ndtype = \"bf16\"\n", 1);
    let mut m = initc_frontend::trace_toml("llama3_tiny", &src, "llama3_tiny").unwrap().sharded("llama3_tiny", &src).unwrap();
    m.rng = initc_ir::RngMode::Fast;
    for fqn in ["layers.0.attention.wo.weight", "output.weight", "tok_embeddings.weight"] {
        let p = m.params.iter().position(|p| p.fqn == fqn).unwrap();
        let sp = initc_stablehlo::shard_program(&m, p, &initc_shard::Region::full(&m.params[p].ty.shape)).unwrap();
        assert_eq!(sp.slots()[0], initc_stablehlo::Slot::GroupBase(2), "{fqn}: {:?}", sp.slots());
        let text = sp.text();
        assert!(text.contains("stablehlo.convert") && text.contains("xui32>) -> tensor<"), "{fqn}");
    }
}
