//! `initc run` end to end: single file and HF-style shards carry the same bytes, manifest
//! hashes match the files, seeds change values, bad output paths fail cleanly.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn initc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_initc")).args(args).current_dir(root()).env("NO_COLOR", "1").output().expect("run initc")
}

/// (name → raw bytes) of every tensor in a safetensors file.
fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out: Vec<(String, Vec<u8>)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let o = &v["data_offsets"];
            let (a, b) = (o[0].as_u64().unwrap() as usize, o[1].as_u64().unwrap() as usize);
            (k.clone(), data[a..b].to_vec())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn sharded_and_single_checkpoints_hold_the_same_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let (one, many) = (dir.path().join("one"), dir.path().join("many"));
    let o1 = initc(&["run", "examples/gpt2_tiny.toml", "--out", one.to_str().unwrap()]);
    assert!(o1.status.success(), "{}", String::from_utf8_lossy(&o1.stderr));
    let o2 = initc(&["run", "examples/gpt2_tiny.toml", "--out", many.to_str().unwrap(), "--max-shard-size", "40KB", "--threads", "1"]);
    assert!(o2.status.success(), "{}", String::from_utf8_lossy(&o2.stderr));
    assert_eq!(o1.stdout, o2.stdout, "same digest line");
    assert!(String::from_utf8_lossy(&o1.stdout).starts_with("digest "));

    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(many.join("model.safetensors.index.json")).unwrap()).unwrap();
    let files: std::collections::BTreeSet<String> =
        index["weight_map"].as_object().unwrap().values().map(|v| v.as_str().unwrap().to_string()).collect();
    assert!(files.len() >= 3, "{files:?}");
    assert!(files.iter().all(|f| f.starts_with("model-") && f.ends_with(&format!("-of-{:05}.safetensors", files.len()))));
    let mut sharded: Vec<(String, Vec<u8>)> = files.iter().flat_map(|f| tensors(&many.join(f))).collect();
    sharded.sort();
    assert_eq!(sharded, tensors(&one.join("model.safetensors")));

    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(one.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["params"].as_array().unwrap().len(), 28);
    assert_eq!(manifest["seed"], 7);
    assert_eq!(format!("digest {}\n", manifest["digest"].as_str().unwrap()), String::from_utf8_lossy(&o1.stdout));
    // No temporary files left behind.
    let leftovers: Vec<_> =
        std::fs::read_dir(&one).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with('.')).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn seed_flag_changes_values_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let a = initc(&["run", "examples/gpt2_tiny.toml", "--out", dir.path().join("a").to_str().unwrap(), "--seed", "8"]);
    let b = initc(&["run", "examples/gpt2_tiny.toml", "--out", dir.path().join("b").to_str().unwrap()]);
    assert!(a.status.success() && b.status.success());
    assert_ne!(a.stdout, b.stdout);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("a/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["seed"], 8);
}

#[test]
fn unwritable_output_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = initc(&["run", "examples/gpt2_tiny.toml", "--out", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writing the checkpoint failed") && err.contains("a-file"), "{err}");
    let out = initc(&["run", "examples/gpt2_tiny.toml", "--out", "/proc/initc-cannot-write"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("initc needs write access to the parent directory"));
    let out = initc(&["run", "examples/gpt2_tiny.toml", "--out", dir.path().to_str().unwrap(), "--max-shard-size", "12XB"]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown size unit"));
}
