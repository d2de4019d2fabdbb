//! Golden tests. Re-bless with `INITC_BLESS=1 cargo test`; CI fails on any diff.
//! - every `examples/*.toml` → `tests/golden/ir/<stem>.ir` (text IR, sharded when the file
//!   has a `[mesh]`), and it round-trips
//!   through the parser exactly;
//! - every `tests/errors/*.toml` → `tests/errors/<stem>.err` (the error's one-line form),
//!   from tracing or from sharding on the file's own `[mesh]`.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bless() -> bool {
    std::env::var_os("INITC_BLESS").is_some()
}

fn check_golden(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if bless() {
        fs::write(path, actual).expect("write golden");
        return;
    }
    match fs::read_to_string(path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => {
            let line = expected
                .lines()
                .zip(actual.lines())
                .position(|(a, b)| a != b)
                .map_or(expected.lines().count().min(actual.lines().count()), |i| i);
            failures.push(format!(
                "{}: differs from line {} (expected {:?}, got {:?})",
                path.display(),
                line + 1,
                expected.lines().nth(line),
                actual.lines().nth(line)
            ));
        }
        Err(_) => failures.push(format!("{}: missing golden (run with INITC_BLESS=1)", path.display())),
    }
}

fn tomls(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    v.sort();
    v
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string().trim_start_matches("crates/initc-frontend/../../").to_string()
}

#[test]
fn examples_match_golden_ir_and_round_trip() {
    let mut failures = Vec::new();
    let examples = tomls(&root().join("examples"));
    assert!(examples.len() >= 8, "expected the shipped examples, found {}", examples.len());
    for path in examples {
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let src = fs::read_to_string(&path).unwrap();
        let traced = initc_frontend::trace_toml(&rel(&path), &src, &stem).unwrap_or_else(|e| panic!("{e}"));
        let module = traced.sharded(&rel(&path), &src).unwrap_or_else(|e| panic!("{e}"));
        let text = module.to_string();
        let reparsed = initc_ir::parse(&text).unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(reparsed, module, "{stem}: parse(print(m)) != m");
        assert_eq!(reparsed.to_string(), text, "{stem}: print(parse(t)) != t");
        check_golden(&root().join("tests/golden/ir").join(format!("{stem}.ir")), &text, &mut failures);
    }
    assert!(failures.is_empty(), "golden IR mismatches:\n{}", failures.join("\n"));
}

#[test]
fn every_golden_ir_parses_and_round_trips() {
    let dir = root().join("tests/golden/ir");
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let text = fs::read_to_string(&p).unwrap();
        let m = initc_ir::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(m.to_string(), text, "{}", p.display());
        n += 1;
    }
    assert!(n >= 8);
}

#[test]
fn each_error_class_has_its_message() {
    let mut failures = Vec::new();
    let cases = tomls(&root().join("tests/errors"));
    assert!(cases.len() >= 15, "found {} error cases", cases.len());
    for path in cases {
        let src = fs::read_to_string(&path).unwrap();
        let err = match initc_frontend::trace_toml(&rel(&path), &src, "m").map(|t| t.sharded(&rel(&path), &src)) {
            Ok(Ok(_)) => {
                failures.push(format!("{}: traced and sharded without error", path.display()));
                continue;
            }
            Ok(Err(initc_frontend::ShardFailure::Config(e))) => *e,
            Err(e) => e,
            Ok(Err(e)) => {
                failures.push(format!("{}: error without a file location: {e}", path.display()));
                continue;
            }
        };
        assert!(err.span.end <= src.len(), "{}: span outside the file", path.display());
        check_golden(&path.with_extension("err"), &format!("{err}\n"), &mut failures);
    }
    assert!(failures.is_empty(), "error message mismatches:\n{}", failures.join("\n"));
}
