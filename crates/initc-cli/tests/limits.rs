//! Bounded resources: every input that used to abort, overflow the stack, read forever or spawn
//! threads for minutes is refused quickly with an error naming the limit (README "Limits").

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn initc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_initc")).args(args).current_dir(root()).env("NO_COLOR", "1").output().expect("run initc")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs initc and expects a clean exit `code` within `secs`, with `needle` on stderr.
fn fails(args: &[&str], code: i32, needle: &str, secs: u64) -> String {
    let t = Instant::now();
    let o = initc(args);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: expected `{needle}` in: {err}");
    assert!(t.elapsed() < Duration::from_secs(secs), "{args:?} took {:?}", t.elapsed());
    err
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn layer_counts_are_bounded_in_every_preset() {
    let t = tempfile::tempdir().unwrap();
    for (preset, key) in [("llama3", "n_layers"), ("gpt2", "n_layer"), ("hf_llama", "num_hidden_layers")] {
        let f = write(t.path(), &format!("{preset}.toml"), &format!("[model]\npreset = \"{preset}\"\n{key} = 4294967296\n"));
        let err = fails(&["trace", &f, "--format", "json"], 1, "4294967296 layers are above the limit of 65536", 10);
        assert!(err.contains(&format!("`{key}`")) && err.contains(":3:"), "{err}");
    }
    // 2^20 layers grew to 9.7 GB while tracing; 65,536 is the most a preset builds.
    let f = write(t.path(), "mid.toml", "[model]\npreset = \"llama3\"\nn_layers = 1048576\n");
    fails(&["trace", &f], 1, "1048576 layers are above the limit of 65536", 10);
}

#[test]
fn range_products_and_parameter_counts_are_bounded() {
    let t = tempfile::tempdir().unwrap();
    let f =
        write(t.path(), "m.toml", "[model]\n[[module]]\nname = \"a.{0..1023}.b{0..2047}\"\ntype = \"layernorm\"\nnormalized_shape = 4\n");
    fails(&["trace", &f], 1, "expands to more than 1048576 names", 10);
}

/// `%1 = fold_in ...`, then `depth` negations of a normal.
fn chain(depth: usize) -> String {
    let mut s = String::from("module \"deep\" seed=0\n%0 = seed : key\n%1 = fold_in %0, 0x1 : key\n%2 = normal %1 : f32[4]\n");
    for i in 0..depth {
        s += &format!("%{} = neg %{} : f32[4]\n", i + 3, i + 2);
    }
    s += &format!("param \"w\" : f32[4] = %{}, axes=[], init=\"deep\"\n", depth + 2);
    s
}

#[test]
fn ir_depth_is_bounded_and_the_limit_itself_runs() {
    let t = tempfile::tempdir().unwrap();
    let deep = write(t.path(), "deep.ir", &chain(10_000));
    let out = t.path().join("out");
    fails(&["run", &deep, "--out", out.to_str().unwrap()], 1, "depth 513 is above the limit of 512", 20);
    assert!(!out.exists());
    fails(&["verify", &deep, "--mesh", "x=2", "--rules", "fsdp"], 1, "above the limit of 512", 20);
    fails(&["lower", &deep], 1, "above the limit of 512", 20);
    // At the limit (seed, fold_in, normal and 509 negations: depth 512) the CPU engine's
    // recursion fits its worker threads' stacks.
    let ok = write(t.path(), "ok.ir", &chain(509));
    let o = initc(&["run", &ok, "--out", out.to_str().unwrap(), "--threads", "2"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let neg = initc(&["run", &write(t.path(), "odd.ir", &chain(1)), "--out", t.path().join("o2").to_str().unwrap()]);
    assert!(neg.status.success());
    // 509 negations are one negation, so the two checkpoints hold the same tensor.
    let read = |d: &str| std::fs::read(t.path().join(d).join("model.safetensors")).unwrap();
    assert_eq!(read("out"), read("o2"));
}

#[test]
fn shared_operands_cannot_make_evaluation_exponential() {
    // 60 levels of `add %k, %k`: 2^60 visits on demand; refused up front.
    let mut s = String::from("module \"dag\" seed=0\n%0 = seed : key\n%1 = fold_in %0, 0x1 : key\n%2 = normal %1 : f32[4]\n");
    for i in 0..60 {
        s += &format!("%{} = add %{}, %{} : f32[4]\n", i + 3, i + 2, i + 2);
    }
    s += "param \"w\" : f32[4] = %62, axes=[], init=\"dag\"\n";
    let t = tempfile::tempdir().unwrap();
    let f = write(t.path(), "dag.ir", &s);
    fails(&["run", &f, "--out", t.path().join("o").to_str().unwrap()], 1, "visits more than 65536 nodes", 10);
}

#[test]
fn rank_names_and_element_counts_are_bounded() {
    let t = tempfile::tempdir().unwrap();
    let ones = vec!["1"; 33].join(",");
    let f = write(
        t.path(),
        "rank.ir",
        &format!("module \"r\" seed=0\n%0 = full 0.0 : f32[{ones}]\nparam \"w\" : f32[{ones}] = %0, axes=[], init=\"zeros\"\n"),
    );
    fails(&["trace", &f], 1, "rank 33 is above the limit of 32", 10);
    let f =
        write(t.path(), "rank.toml", &format!("[model]\n[[module]]\nname = \"n\"\ntype = \"layernorm\"\nnormalized_shape = [{ones}]\n"));
    fails(&["trace", &f], 1, "has rank 33 (at most 32)", 10);
    for (name, shown) in [("a\\u{0}b", "\\0"), ("a\\u{a}b", "\\n")] {
        let f = write(
            t.path(),
            "name.ir",
            &format!("module \"r\" seed=0\n%0 = full 0.0 : f32[2]\nparam \"{name}\" : f32[2] = %0, axes=[], init=\"zeros\"\n"),
        );
        let err = fails(&["trace", &f], 1, "control character", 10);
        assert!(err.contains(shown), "{err}");
    }
    let f = write(t.path(), "name.toml", "[model]\n[[module]]\nname = \"a\\nb\"\ntype = \"layernorm\"\nnormalized_shape = 4\n");
    fails(&["trace", &f], 1, "control character", 10);
    let f = write(
        t.path(),
        "huge.ir",
        "module \"r\" seed=0\n%0 = full 0.0 : f32[2251799813685249]\nparam \"w\" : f32[2251799813685249] = %0, axes=[], init=\"zeros\"\n",
    );
    fails(&["trace", &f], 1, "above the limit of 2^50", 10);
}

#[test]
fn inputs_are_bounded_and_empty_ones_refused() {
    let t = tempfile::tempdir().unwrap();
    fails(&["trace", "/dev/zero"], 1, "larger than the input limit of 256 MiB", 30);
    fails(&["trace", &write(t.path(), "empty.pb", "")], 1, "is empty", 10);
    fails(&["trace", &write(t.path(), "empty.ir", "")], 1, "is empty", 10);
}

#[test]
fn thread_counts_are_capped() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o");
    for n in ["100000", "18446744073709551615", "0"] {
        fails(&["run", "examples/mlp.toml", "--out", out.to_str().unwrap(), "--threads", n], 2, "per core", 10);
    }
    fails(&["verify", "examples/mlp.toml", "--mesh", "x=2", "--threads", "100000"], 2, "per core", 10);
}

#[test]
fn the_sharded_writer_keeps_one_file_open() {
    // 200 tensors, one file each, under a limit of 24 open files.
    let t = tempfile::tempdir().unwrap();
    let f =
        write(t.path(), "many.toml", "[model]\n[[module]]\nname = \"l.{0..99}\"\ntype = \"linear\"\nin_features = 4\nout_features = 4\n");
    let out = t.path().join("out");
    let cmd = format!("ulimit -n 24 && exec {} run {f} --out {} --max-shard-size 1", env!("CARGO_BIN_EXE_initc"), out.display());
    let o = Command::new("sh").args(["-c", &cmd]).current_dir(root()).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let shards = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with("-of-00200.safetensors"))
        .count();
    assert_eq!(shards, 200);
}

#[test]
fn huge_shard_sizes_mean_one_file() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o");
    let o = initc(&["run", "examples/mlp.toml", "--out", out.to_str().unwrap(), "--max-shard-size", "18446744073709551615"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(out.join("model.safetensors").is_file());
    fails(
        &["run", "examples/mlp.toml", "--out", out.to_str().unwrap(), "--max-shard-size", "18446744073709551616"],
        2,
        "above 2^64-1 bytes",
        10,
    );
    fails(&["run", "examples/mlp.toml", "--out", out.to_str().unwrap(), "--max-shard-size", "0"], 2, "at least 1 byte", 10);
}

#[test]
fn axis_names_must_be_words_the_text_ir_can_read_back() {
    // Found by the pipeline fuzzer: protobuf carried an axis name `emb{d` that the text printer
    // wrote and its parser could not read.
    let t = tempfile::tempdir().unwrap();
    let mut m =
        initc_ir::parse("module \"a\" seed=0\n%0 = full 0.0 : f32[2]\nparam \"w\" : f32[2] = %0, axes=[embed], init=\"zeros\"\n").unwrap();
    m.params[0].axes[0] = "emb{d".into();
    let pb = t.path().join("a.pb");
    std::fs::write(&pb, initc_proto::encode(&m)).unwrap();
    fails(&["trace", pb.to_str().unwrap()], 1, "axis name \"emb{d\" is not a word", 10);
    let f = write(
        t.path(),
        "a.toml",
        "[model]\n[[module]]\nname = \"fc\"\ntype = \"linear\"\nin_features = 2\nout_features = 2\naxes = [\"out\", \"in put\"]\n",
    );
    fails(&["trace", &f], 1, "\"in put\" is not an axis name", 10);
}
