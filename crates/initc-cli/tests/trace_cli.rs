//! `initc trace` end to end: formats, `-o`, reading IR back, errors and exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn initc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_initc")).args(args).current_dir(root()).env("NO_COLOR", "1").output().expect("run initc")
}

#[test]
fn json_manifest_of_8b_lists_291_tensors_and_8_03e9_elements() {
    let out = initc(&["trace", "examples/llama3_8b.toml", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let params = v["params"].as_array().unwrap();
    assert_eq!(params.len(), 291);
    assert_eq!(v["num_tensors"], 291);
    assert_eq!(v["total_params"], 8_030_261_248u64);
    assert_eq!(v["total_bytes"], 8_030_261_248u64 * 4);
    assert_eq!(params[0]["fqn"], "tok_embeddings.weight");
    assert_eq!(params[0]["shape"], serde_json::json!([128256, 4096]));
    assert_eq!(params[0]["dtype"], "f32");
    assert_eq!(params[0]["init"], "normal(mean=0.0, std=1.0)");
    assert_eq!(params[290]["fqn"], "output.weight");
    assert_eq!(params[5]["fqn"], "layers.0.feed_forward.w1.weight");
    assert_eq!(params[5]["shape"], serde_json::json!([14336, 4096]));
}

#[test]
fn text_and_proto_outputs_read_back_to_the_same_ir() {
    let dir = tempfile::tempdir().unwrap();
    for example in ["mlp", "mlp_sharded", "llama3_tiny_sharded"] {
        let src = format!("examples/{example}.toml");
        let txt = dir.path().join(format!("{example}.txt"));
        let pb = dir.path().join(format!("{example}.pb"));
        for (fmt, p) in [("text", &txt), ("proto", &pb)] {
            let out = initc(&["trace", &src, "--format", fmt, "-o", p.to_str().unwrap()]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(out.stdout.is_empty());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&txt).unwrap().permissions().mode() & 0o777,
                0o644,
                "written files are 0644, not the temp file's 0600"
            );
        }
        let direct = initc(&["trace", &src]).stdout;
        assert_eq!(initc(&["trace", txt.to_str().unwrap()]).stdout, direct);
        assert_eq!(initc(&["trace", pb.to_str().unwrap()]).stdout, direct, "{example}: protobuf keeps mesh and shardings");
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            std::fs::read_to_string(root().join(format!("tests/golden/ir/{example}.ir"))).unwrap()
        );
    }
    // An IR file with a mesh re-shards with --mesh and --rules.
    let pb = dir.path().join("llama3_tiny_sharded.pb");
    let re = String::from_utf8(initc(&["trace", pb.to_str().unwrap(), "--mesh", "tp=4", "--rules", "tp"]).stdout).unwrap();
    assert!(re.contains("mesh [tp=4]\n") && re.contains("\"output.weight\" : f32[1000,256] = %57, axes=[vocab,embed], init=\"trunc_normal(mean=0.0, std=0.0625, a=-0.1875, b=0.1875)\", sharding=[{tp},{}]"), "{re}");
    let e = initc(&["trace", pb.to_str().unwrap(), "--mesh", "tp=4"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("needs --rules"));
    let seeded = String::from_utf8(initc(&["trace", "examples/mlp.toml", "--seed", "18446744073709551615"]).stdout).unwrap();
    assert!(seeded.starts_with("module \"mlp\" seed=18446744073709551615\n"));
}

#[test]
fn errors_render_file_line_caret_and_hint_with_exit_code_1() {
    let out = initc(&["trace", "tests/errors/heads_divide.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("error: `n_heads`: dim = 4096 is not divisible by n_heads = 30"), "{err}");
    assert!(err.contains("tests/errors/heads_divide.toml:4:11"), "{err}");
    assert!(err.contains("n_heads = 30"), "{err}");
    assert!(err.contains("^^"), "{err}");
    assert!(err.contains("hint: torchtitan's head_dim"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn malformed_ir_and_missing_files_are_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ir");
    std::fs::write(&bad, "module \"m\" seed=0\n%0 = seed : key\n%1 = normal %0 : u32[2]\n").unwrap();
    let out = initc(&["trace", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("result type u32[2] is invalid: expected an f32, bf16 or f16 tensor"), "{err}");
    assert!(err.contains("bad.ir:3:6"), "{err}");

    let pb = dir.path().join("junk.pb");
    std::fs::write(&pb, b"\xff\xff\xff").unwrap();
    let out = initc(&["trace", pb.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid initc protobuf"));

    let out = initc(&["trace", "no/such/model.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read no/such/model.toml"));
}

#[test]
fn failed_write_leaves_no_file() {
    let out = initc(&["trace", "examples/mlp.toml", "-o", "/nonexistent-dir/x.ir"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write /nonexistent-dir/x.ir"));
}
