//! Crash and I/O-error injection (SQLite's discipline): `initc run` over an existing older
//! checkpoint is killed (SIGKILL) or gets ENOSPC/EIO at every create, write, fsync, rename and
//! remove step (`INITC_FAULT`, crates/initc-cpu/src/fault.rs). After each, a checker hashes
//! every tensor against manifest.json and asserts the directory holds exactly the old
//! checkpoint or exactly the new one; the next run succeeds and leaves nothing behind.
//! Also: concurrent runs into one directory, and directories a run must not replace.
//! Scratch directories are on tmpfs where there is one (fsync costs nothing there); the lock
//! and refusal tests use the system's temporary directory.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn initc(args: &[&str], fault: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_initc"));
    c.args(args).current_dir(root()).env("NO_COLOR", "1").env_remove("INITC_FAULT");
    if let Some(f) = fault {
        c.env("INITC_FAULT", f);
    }
    c.output().expect("run initc")
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Checks that `dir` is one complete checkpoint: exactly the files its manifest names (plus
/// manifest.json and, when sharded, the index), every tensor's bytes hashing to the manifest's
/// SHA-256, no tensor missing or extra. Returns its digest.
fn check(dir: &Path) -> Result<String, String> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).map_err(|e| format!("manifest.json: {e}"))?)
            .map_err(|e| e.to_string())?;
    let files: Vec<String> =
        manifest["files"].as_array().ok_or("no files")?.iter().map(|f| f.as_str().unwrap_or_default().to_string()).collect();
    let mut expected: BTreeSet<String> = files.iter().cloned().collect();
    expected.insert("manifest.json".into());
    if files.len() > 1 {
        expected.insert("model.safetensors.index.json".into());
    }
    let present: BTreeSet<String> =
        std::fs::read_dir(dir).map_err(|e| e.to_string())?.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    if present != expected {
        return Err(format!("files {present:?}, manifest names {expected:?}"));
    }
    let mut tensors = std::collections::BTreeMap::new();
    for f in &files {
        let bytes = std::fs::read(dir.join(f)).map_err(|e| e.to_string())?;
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| format!("{f}: {e}"))?;
        for (k, v) in header.as_object().ok_or("header")? {
            if k == "__metadata__" {
                continue;
            }
            let (a, b) = (v["data_offsets"][0].as_u64().unwrap() as usize, v["data_offsets"][1].as_u64().unwrap() as usize);
            let data = bytes.get(8 + n + a..8 + n + b).ok_or(format!("{f}: {k} truncated"))?;
            tensors.insert(k.clone(), hex(&Sha256::digest(data)));
        }
    }
    let params = manifest["params"].as_array().ok_or("no params")?;
    if params.len() != tensors.len() {
        return Err(format!("{} tensors in the files, {} in the manifest", tensors.len(), params.len()));
    }
    let mut all = Sha256::new();
    for p in params {
        let fqn = p["fqn"].as_str().unwrap_or_default();
        let sha = p["sha256"].as_str().unwrap_or_default();
        if tensors.get(fqn).map(String::as_str) != Some(sha) {
            return Err(format!("{fqn}: bytes do not match the manifest"));
        }
        let raw: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&sha[2 * i..2 * i + 2], 16).unwrap()).collect();
        all.update(raw);
    }
    let digest = hex(&all.finalize());
    if manifest["digest"].as_str() != Some(digest.as_str()) {
        return Err("the manifest's digest is not over its tensors".into());
    }
    Ok(digest)
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A scratch directory on tmpfs where there is one (fsync is free there; the checks are the
/// same), else in the system's temporary directory.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(t) = tempfile::tempdir_in(shm)
    {
        return t;
    }
    tempfile::tempdir().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Names in `parent` other than the checkpoint `ck` and its lock file.
fn leftovers(parent: &Path) -> Vec<String> {
    std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "ck" && n != ".ck.lock" && n != "ref-old" && n != "ref-new")
        .collect()
}

/// Runs `new` (args after `--out ck`) over a copy of the old checkpoint with the fault at
/// every step of `point` until a run completes without reaching it. Returns how many steps
/// there were.
fn every_step(t: &Path, old: &[&str], new: &[&str], action: &str, point: &str) -> u64 {
    let (ref_old, ref_new, ck) = (t.join("ref-old"), t.join("ref-new"), t.join("ck"));
    let cks = ck.to_str().unwrap();
    let run = |extra: &[&str], fault: Option<&str>| {
        let mut a = vec!["run", "examples/mlp.toml", "--out", cks];
        a.extend_from_slice(extra);
        initc(&a, fault)
    };
    if !ref_old.exists() {
        ok(&run(old, None));
        std::fs::rename(&ck, &ref_old).unwrap();
        ok(&run(new, None));
        std::fs::rename(&ck, &ref_new).unwrap();
    }
    let (d_old, d_new) = (check(&ref_old).unwrap(), check(&ref_new).unwrap());
    assert_ne!(d_old, d_new);
    for n in 1.. {
        copy_dir(&ref_old, &ck);
        let spec = format!("{action}@{point}:{n}");
        let o = run(new, Some(&spec));
        let got = check(&ck).unwrap_or_else(|e| panic!("{spec}: not one whole checkpoint: {e}"));
        if o.status.success() {
            assert_eq!(got, d_new, "{spec}");
            assert!(leftovers(t).is_empty(), "{spec}: {:?}", leftovers(t));
            return n - 1;
        }
        if action == "kill" {
            assert_eq!(o.status.signal(), Some(9), "{spec}: {}", String::from_utf8_lossy(&o.stderr));
        } else {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.code() == Some(1) && err.contains("error: writing the checkpoint failed"), "{spec}: {err}");
            assert!(err.contains(if action == "enospc" { "No space left on device" } else { "Input/output error" }), "{spec}: {err}");
        }
        assert!(got == d_old || got == d_new, "{spec}: digest of neither run");
        // The next run recognises and removes the leftovers.
        ok(&run(new, None));
        assert_eq!(check(&ck).unwrap(), d_new, "{spec}: rerun");
        assert!(leftovers(t).is_empty(), "{spec}: rerun left {:?}", leftovers(t));
    }
    unreachable!()
}

fn all_points(old: &[&str], new: &[&str]) {
    let t = scratch();
    for action in ["kill", "enospc", "eio"] {
        let steps: Vec<u64> =
            ["create", "write", "fsync", "rename", "remove"].iter().map(|p| every_step(t.path(), old, new, action, p)).collect();
        // Each step kind was reached: files and directories created, written, synced (files,
        // the staging directory and the parent after the exchange), one exchange, one removal.
        assert!(steps.iter().all(|&s| s >= 1), "{action}: {steps:?}");
        assert!(steps[2] >= steps[0] + 2, "{action}: fsyncs {steps:?}");
        assert_eq!(steps[3..], [1, 1], "{action}");
    }
}

#[test]
fn single_file_over_sharded_at_every_step() {
    // Old: seed 1 in 5 KB shards + index; new: seed 2, one file. No old shard may survive.
    all_points(&["--seed", "1", "--max-shard-size", "5KB"], &["--seed", "2"]);
}

#[test]
fn sharded_over_single_file_at_every_step() {
    all_points(&["--seed", "1"], &["--seed", "2", "--max-shard-size", "5KB", "--threads", "1"]);
}

#[test]
fn a_killed_first_run_leaves_nothing_that_looks_finished() {
    let t = scratch();
    let ck = t.path().join("ck");
    for spec in ["kill@write:2", "kill@fsync:2", "kill@rename:1"] {
        let o = initc(&["run", "examples/mlp.toml", "--out", ck.to_str().unwrap()], Some(spec));
        assert_eq!(o.status.signal(), Some(9), "{spec}");
        assert!(!ck.exists(), "{spec} left {ck:?}");
    }
    ok(&initc(&["run", "examples/mlp.toml", "--out", ck.to_str().unwrap()], None));
    check(&ck).unwrap();
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
}

#[test]
fn a_held_lock_fails_a_second_run_at_once() {
    let t = tempfile::tempdir().unwrap();
    let ck = t.path().join("ck");
    ok(&initc(&["run", "examples/mlp.toml", "--out", ck.to_str().unwrap()], None));
    let before = check(&ck).unwrap();
    let lock = std::fs::File::open(t.path().join(".ck.lock")).unwrap();
    lock.lock().unwrap();
    let start = std::time::Instant::now();
    let o = initc(&["run", "examples/mlp.toml", "--out", ck.to_str().unwrap(), "--seed", "9"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is being written by another initc process") && err.contains(".ck.lock"), "{err}");
    assert!(start.elapsed().as_secs() < 5);
    assert_eq!(check(&ck).unwrap(), before);
    drop(lock);
    ok(&initc(&["run", "examples/mlp.toml", "--out", ck.to_str().unwrap(), "--seed", "9"], None));
    assert_ne!(check(&ck).unwrap(), before);
}

#[test]
fn a_concurrent_run_fails_fast_and_the_first_one_wins() {
    let t = scratch();
    let ck = t.path().join("ck");
    let cks = ck.to_str().unwrap();
    ok(&initc(&["run", "examples/mlp.toml", "--out", cks, "--seed", "1"], None));
    let old = check(&ck).unwrap();
    // The first run stalls for 3 s on its first write, holding the lock.
    let first = Command::new(env!("CARGO_BIN_EXE_initc"))
        .args(["run", "examples/mlp.toml", "--out", cks, "--seed", "2"])
        .current_dir(root())
        .env("INITC_FAULT", "slow@write:1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let staging = || std::fs::read_dir(t.path()).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with(".ck.initc-tmp-"));
    let start = std::time::Instant::now();
    while !staging() {
        assert!(start.elapsed().as_secs() < 20, "the first run never started writing");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let t0 = std::time::Instant::now();
    let second = initc(&["run", "examples/mlp.toml", "--out", cks, "--seed", "3"], None);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("is being written by another initc process"), "{err}");
    assert!(t0.elapsed().as_millis() < 2500, "the second run waited {:?}", t0.elapsed());
    let first = first.wait_with_output().unwrap();
    ok(&first);
    let new = check(&ck).unwrap();
    assert_ne!(new, old);
    assert_eq!(format!("digest {new}\n"), String::from_utf8_lossy(&first.stdout));
}

#[test]
fn racing_runs_never_mix() {
    let t = scratch();
    let ck = t.path().join("ck");
    let cks = ck.to_str().unwrap();
    for trial in 0..10 {
        let spawn = |seed: &str| {
            Command::new(env!("CARGO_BIN_EXE_initc"))
                .args(["run", "examples/mlp.toml", "--out", cks, "--seed", seed])
                .current_dir(root())
                .env_remove("INITC_FAULT")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn("1"), spawn("2"));
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let mut winners = vec![];
        for o in [&a, &b] {
            if o.status.success() {
                winners.push(String::from_utf8_lossy(&o.stdout).trim().trim_start_matches("digest ").to_string());
            } else {
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(err.contains("is being written by another initc process"), "trial {trial}: {err}");
            }
        }
        assert!(!winners.is_empty(), "trial {trial}");
        let got = check(&ck).unwrap_or_else(|e| panic!("trial {trial}: {e}"));
        assert!(winners.contains(&got), "trial {trial}: {got} not in {winners:?}");
    }
}

#[test]
fn directories_that_are_not_checkpoints_are_left_alone() {
    let t = tempfile::tempdir().unwrap();
    // manifest.json as a directory: refused before anything is written.
    let ck = t.path().join("ck");
    std::fs::create_dir_all(ck.join("manifest.json")).unwrap();
    let o = initc(&["run", "examples/mlp.toml", "--out", ck.to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("manifest.json (not a file)") && err.contains("give a new or empty one"), "{err}");
    let names: Vec<_> = std::fs::read_dir(&ck).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["manifest.json"]);
    // A directory with someone else's files.
    let mine = t.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), b"keep me").unwrap();
    let o = initc(&["run", "examples/mlp.toml", "--out", mine.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("notes.txt"));
    assert_eq!(std::fs::read(mine.join("notes.txt")).unwrap(), b"keep me");
    // An older version's leftovers (`.model.safetensors.*.partial`) are recognised and go.
    let old = t.path().join("old");
    ok(&initc(&["run", "examples/mlp.toml", "--out", old.to_str().unwrap()], None));
    std::fs::write(old.join(".model.safetensors.XYZ.partial"), vec![0u8; 1000]).unwrap();
    ok(&initc(&["run", "examples/mlp.toml", "--out", old.to_str().unwrap()], None));
    check(&old).unwrap();
    // A symlinked output directory: the link stays, its target is replaced.
    let real = t.path().join("real");
    ok(&initc(&["run", "examples/mlp.toml", "--out", real.to_str().unwrap()], None));
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    ok(&initc(&["run", "examples/mlp.toml", "--out", link.to_str().unwrap(), "--seed", "3"], None));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(check(&link).unwrap(), check(&real).unwrap());
}

#[test]
fn a_device_checkpoint_is_published_the_same_way() {
    let t = scratch();
    let ck = t.path().join("ck");
    let cks = ck.to_str().unwrap();
    let args = |seed: &'static str| ["run", "examples/mlp_sharded.toml", "--device", "1", "--out", cks, "--seed", seed];
    ok(&initc(&args("1"), None));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(ck.join("manifest.json")).unwrap()).unwrap();
    let old = m["shard_digest"].clone();
    for point in ["write", "rename", "remove"] {
        let o = initc(&args("2"), Some(&format!("kill@{point}:1")));
        assert_eq!(o.status.signal(), Some(9));
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(ck.join("manifest.json")).unwrap()).unwrap();
        assert!(point == "remove" || m["shard_digest"] == old, "{point}");
    }
    ok(&initc(&args("2"), None));
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
}

#[test]
fn shard_program_exports_are_swapped_whole() {
    let t = scratch();
    let d = t.path().join("export");
    let ds = d.to_str().unwrap();
    let lower =
        |seed: &str, fault: Option<&str>| initc(&["lower", "examples/mlp_sharded.toml", "--shard-programs", ds, "--seed", seed], fault);
    ok(&lower("1", None));
    let old = std::fs::read(d.join("manifest.json")).unwrap();
    for spec in ["kill@fsync:1", "kill@rename:1", "enospc@rename:1"] {
        let o = lower("2", Some(spec));
        assert!(!o.status.success(), "{spec}");
        assert_eq!(std::fs::read(d.join("manifest.json")).unwrap(), old, "{spec}");
    }
    ok(&lower("2", None));
    assert_ne!(std::fs::read(d.join("manifest.json")).unwrap(), old);
    let names: Vec<String> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "{names:?}"); // export and .export.lock
}

#[test]
fn single_file_outputs_remove_dead_runs_temporaries_only() {
    let t = scratch();
    let out = t.path().join("model.mlir");
    // A temporary of a process that no longer exists, and one of a live process (this one).
    let dead = t.path().join(".model.mlir.initc-tmp-2147483646-abc");
    let live = t.path().join(format!(".model.mlir.initc-tmp-{}-xyz", std::process::id()));
    std::fs::write(&dead, b"x").unwrap();
    std::fs::write(&live, b"y").unwrap();
    ok(&initc(&["trace", "examples/mlp.toml", "-o", out.to_str().unwrap()], None));
    assert!(out.is_file() && !dead.exists() && live.exists());
    // Killed before its rename, a write leaves the old file whole.
    let before = std::fs::read(&out).unwrap();
    let o = initc(&["trace", "examples/mlp.toml", "--format", "json", "-o", out.to_str().unwrap()], Some("kill@fsync:1"));
    assert_eq!(o.status.signal(), Some(9));
    assert_eq!(std::fs::read(&out).unwrap(), before);
}

#[test]
fn a_real_file_size_limit_at_every_size_leaves_one_checkpoint() {
    // Not injected: the kernel refuses writes past RLIMIT_FSIZE (EFBIG; SIGXFSZ ignored, which
    // exec keeps), as a full disk refuses them, at whatever byte the limit falls.
    let t = scratch();
    let ck = t.path().join("ck");
    let cks = ck.to_str().unwrap();
    ok(&initc(&["run", "examples/mlp.toml", "--out", cks, "--seed", "1", "--max-shard-size", "5KB"], None));
    let old = check(&ck).unwrap();
    let (mut failed, mut passed) = (0, 0);
    for blocks in [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128] {
        let cmd =
            format!("trap '' XFSZ; ulimit -f {blocks} && exec {} run examples/mlp.toml --out {cks} --seed 2", env!("CARGO_BIN_EXE_initc"));
        let o = Command::new("sh").args(["-c", &cmd]).current_dir(root()).env_remove("INITC_FAULT").output().unwrap();
        let got = check(&ck).unwrap_or_else(|e| panic!("limit {blocks}: {e}"));
        if o.status.success() {
            passed += 1;
            assert_ne!(got, old);
        } else {
            failed += 1;
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("File too large"), "limit {blocks}: {err}");
            assert_eq!(got, old, "limit {blocks}");
        }
        // Back to the old checkpoint for the next size.
        ok(&initc(&["run", "examples/mlp.toml", "--out", cks, "--seed", "1", "--max-shard-size", "5KB"], None));
    }
    assert!(failed > 0 && passed > 0, "{failed} failed, {passed} passed");
}
