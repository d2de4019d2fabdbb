//! `initc plan`, `initc run --device` and `initc verify` end to end.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn initc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_initc")).args(args).current_dir(root()).env("NO_COLOR", "1").output().expect("run initc")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// (header JSON, data) of a safetensors file.
fn safetensors(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

#[test]
fn plan_of_405b_on_256_devices() {
    let o = initc(&["plan", "examples/llama3_405b.toml", "--mesh", "fsdp=32,tp=8", "--rules", "fsdp+tp"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("mesh fsdp=32,tp=8: 256 devices"), "{out}");
    assert!(out.contains("per device: min 5.906 GiB, max 5.906 GiB, mean 5.906 GiB"), "{out}");
    assert!(out.contains("replication factor 1.000"), "{out}");
    assert!(out.contains("tok_embeddings.weight"), "{out}");

    let o = initc(&["plan", "examples/llama3_405b.toml", "--mesh", "fsdp=32,tp=8", "--rules", "fsdp+tp", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 256);
    let sum: u64 = devices.iter().map(|d| d["bytes"].as_u64().unwrap()).sum();
    // Every weight is split over all 256 devices; the 253 norms ([16384], dim 0 over fsdp)
    // are replicated over tp=8.
    let norms = 253 * 16384 * 4;
    assert_eq!(sum, v["total_bytes"].as_u64().unwrap() + 7 * norms);
    let repl: Vec<u64> = v["params"].as_array().unwrap().iter().map(|p| p["replication"].as_u64().unwrap()).collect();
    assert_eq!(repl.iter().filter(|&&r| r == 8).count(), 253);
    assert_eq!(repl.iter().filter(|&&r| r == 1).count(), 1137 - 253);
    assert_eq!(devices[9]["coords"], serde_json::json!([1, 1]));
}

#[test]
fn plan_reports_replication_and_needs_a_mesh() {
    let o = initc(&["plan", "examples/llama3_tiny.toml", "--mesh", "dp=2,tp=2", "--rules", "tp", "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // tp halves every weight, dp replicates everything twice; norms are replicated on all 4.
    let f = v["replication_factor"].as_f64().unwrap();
    assert!(f > 2.0 && f < 2.1, "{f}");
    let o = initc(&["plan", "examples/llama3_tiny.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("has no mesh: add a [mesh] table or pass --mesh"), "{}", text(&o.stderr));
}

#[test]
fn device_shards_concatenate_to_the_full_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let o = initc(&["run", "examples/llama3_tiny.toml", "--out", full.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (fh, fd) = safetensors(&full.join("model.safetensors"));
    // fsdp=2 × tp=2 from the file's own [mesh]: stitch the 4 devices' row blocks back.
    let mut parts = Vec::new();
    for k in 0..4 {
        let d = dir.path().join(format!("d{k}"));
        let o = initc(&["run", "examples/llama3_tiny_sharded.toml", "--device", &k.to_string(), "--out", d.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(text(&o.stdout).starts_with("shard_digest "), "{}", text(&o.stdout));
        parts.push(safetensors(&d.join("model.safetensors")));
    }
    let name = "layers.0.attention.wq.weight"; // [256,256], sharding [{tp,fsdp},{}]
    let meta = &parts[1].0["__metadata__"];
    assert_eq!(meta["initc.mesh"], "fsdp=2,tp=2");
    assert_eq!(meta["initc.coords"], "0,1");
    assert_eq!(meta[format!("initc.shard.{name}")], "offset=[128,0] global_shape=[256,256]");
    let slice = |h: &serde_json::Value, d: &[u8]| {
        let o = &h[name]["data_offsets"];
        d[o[0].as_u64().unwrap() as usize..o[1].as_u64().unwrap() as usize].to_vec()
    };
    // tp major, fsdp minor: row blocks in order of (tp, fsdp) = devices 0, 2, 1, 3.
    let stitched: Vec<u8> = [0, 2, 1, 3].iter().flat_map(|&k| slice(&parts[k].0, &parts[k].1)).collect();
    assert_eq!(stitched, slice(&fh, &fd));
    assert_eq!(parts[3].0[name]["shape"], serde_json::json!([64, 256]));

    let o = initc(&["run", "examples/llama3_tiny.toml", "--device", "0", "--out", dir.path().join("x").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--device needs a mesh"), "{}", text(&o.stderr));
    let o = initc(&["run", "examples/llama3_tiny_sharded.toml", "--device", "4", "--out", dir.path().join("x").to_str().unwrap()]);
    assert!(text(&o.stderr).contains("--device 4: mesh fsdp=2,tp=2 has devices 0..4"), "{}", text(&o.stderr));
    assert!(!dir.path().join("x").exists(), "nothing written on a bad --device");
}

#[test]
fn verify_prints_one_line_per_mesh_and_the_run_digest() {
    let dir = tempfile::tempdir().unwrap();
    let o = initc(&["run", "examples/gpt2_tiny.toml", "--out", dir.path().to_str().unwrap()]);
    let run_digest = text(&o.stdout);
    let o = initc(&[
        "verify",
        "examples/gpt2_tiny.toml",
        "--rules",
        "fsdp+tp",
        "--mesh",
        "fsdp=4",
        "--mesh",
        "fsdp=2,tp=2",
        "--mesh",
        "dp=2,tp=2",
        "--mesh",
        "tp=3",
        "--uneven",
        "pad",
    ]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[0].starts_with("mesh fsdp=4 (4 devices): ok, 28 parameters"), "{out}");
    assert!(lines[3].starts_with("mesh tp=3 (3 devices): ok"), "{out}");
    assert_eq!(format!("{}\n", lines[4]), run_digest, "verify's digest is initc run's");
    for l in &lines[..4] {
        assert!(l.ends_with(&run_digest.trim()["digest ".len()..]), "{l}");
    }
}

#[test]
fn sharding_errors_point_into_the_file_or_name_the_flag() {
    let o = initc(&["verify", "examples/gpt2_tiny.toml", "--rules", "fsdp+tp", "--mesh", "tp=3"]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains("built-in rule set `fsdp+tp`, parameter `transformer.wte.weight`: dim 0 (size 500) is not divisible by tp = 3"),
        "{e}"
    );
    assert!(e.contains("uneven = \"pad\""), "{e}");
    let o = initc(&["plan", "tests/errors/shard_unknown_axis.toml"]);
    let e = text(&o.stderr);
    assert!(e.contains("shard_unknown_axis.toml:12:9"), "{e}");
    assert!(e.contains("`tp` is not an axis of mesh fsdp=2"), "{e}");
    let o = initc(&["plan", "examples/llama3_tiny.toml", "--mesh", "fsdp=2,fsdp=2"]);
    assert_eq!(o.status.code(), Some(2), "a malformed flag is a usage error");
    assert!(text(&o.stderr).contains("mesh axis `fsdp` appears twice"), "{}", text(&o.stderr));
    let o = initc(&["plan", "examples/llama3_tiny.toml", "--mesh", "fsdp=2", "--rules", "zero3"]);
    assert!(text(&o.stderr).contains("built-in rule sets: fsdp, tp, fsdp+tp"), "{}", text(&o.stderr));
    // A parameter no rule matches is replicated, with a warning naming it.
    let o = initc(&["plan", "examples/gpt2_tiny.toml", "--mesh", "x=2"]);
    assert!(o.status.success());
    assert!(text(&o.stderr).contains("warning: 28 parameter(s) matched no sharding rule and are replicated on every device: transformer.wte.weight, transformer.wpe.weight, "), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains(" and 23 more"), "{}", text(&o.stderr));
}

#[test]
fn shard_program_export_lists_every_launch_and_never_clobbers_other_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("export");
    let d = dir.to_str().unwrap();
    let o = initc(&["lower", "examples/llama3_tiny.toml", "--rng", "fast", "--mesh", "fsdp=2", "--rules", "fsdp", "--shard-programs", d]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let devices = manifest["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    for dev in devices {
        // every parameter's shard is returned by exactly one execute, whose files exist
        let mut fqns: Vec<String> = Vec::new();
        for b in dev["batches"].as_array().unwrap() {
            assert!(dir.join(b["program"].as_str().unwrap()).is_file());
            for s in b["statics"].as_array().unwrap() {
                assert!(dir.join(s.as_str().unwrap()).metadata().unwrap().len() > 0);
            }
            fqns.extend(b["launches"].as_array().unwrap().iter().map(|l| l["fqn"].as_str().unwrap().to_string()));
        }
        fqns.sort();
        let n = fqns.len();
        fqns.dedup();
        assert_eq!(fqns.len(), n, "a shard returned twice");
        assert_eq!(n, 21, "llama3_tiny has 21 parameters");
    }
    // a second export replaces the first; a directory that is not an export is refused
    assert!(initc(&["lower", "examples/llama3_tiny.toml", "--shard-programs", d]).status.success());
    let other = tmp.path().join("notes");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "mine").unwrap();
    let o = initc(&["lower", "examples/llama3_tiny.toml", "--shard-programs", other.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("is not a --shard-programs export"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(other.join("keep.txt")).unwrap(), "mine");
}
