//! Plugin loading without surprises: fake plugins built with the C compiler Rust links with
//! (`cc`). A library planted in `./.venv` is never loaded; `--plugin NAME` is `./NAME`; broken
//! `GetPjrtApi` tables are refused before anything in them is called; `--plugin` with the CPU
//! backend is an error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const FAKE: &str = r#"
#include <stdio.h>
#include <stddef.h>
/* Writes MARK when loaded: shows whether initc ran the library's code at all. */
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARK, "w");
    if (f) { fputs("ran", f); fclose(f); }
}
#if defined(NO_API)
int not_a_plugin(void) { return 0; }
#elif defined(NULL_API)
const void *GetPjrtApi(void) { return NULL; }
#else
/* header (struct_size, extension), version (struct_size, extension, major 0 | minor 117 << 32),
   then function slots, all null: a table nothing can be called in. */
static size_t table[200];
const void *GetPjrtApi(void) {
    table[0] = TABLE_SIZE; table[2] = 24; table[4] = (size_t)117 << 32;
    return table;
}
#endif
"#;

/// Builds the fake plugin `name` in `dir` with `defs`; its constructor writes `dir/mark-<name>`.
fn fake(dir: &Path, name: &str, defs: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, FAKE).unwrap();
    let out = dir.join(name);
    let mark = format!("-DMARK=\"{}\"", dir.join(format!("mark-{name}")).display());
    let mut c = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    c.args(["-shared", "-fPIC", "-o"]).arg(&out).arg(&src).arg(mark).args(defs);
    let o = c.output().expect("a C compiler (cc, which Rust links with)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn initc_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_initc"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("INITC_PJRT_PLUGIN")
        .env_remove("VIRTUAL_ENV")
        .output()
        .expect("run initc")
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_library_planted_in_dot_venv_is_not_loaded() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join(".venv/lib/python3.11/site-packages/jax_plugins/xla_cuda13");
    std::fs::create_dir_all(&dir).unwrap();
    let so = fake(&dir, "xla_cuda_plugin.so", &["-DTABLE_SIZE=1200"]);
    assert!(so.is_file());
    let o = initc_in(t.path(), &["devices"]);
    assert!(!dir.join("mark-xla_cuda_plugin.so").exists(), "initc devices ran code from ./.venv: {}", err(&o));
    if o.status.code() == Some(1) {
        // No other plugin on this machine: the message names the planted one and how to use it.
        let e = err(&o);
        assert!(
            e.contains("./.venv is not searched")
                && e.contains("--plugin ./.venv/lib/python3.11/site-packages/jax_plugins/xla_cuda13/xla_cuda_plugin.so"),
            "{e}"
        );
    }
    // Named explicitly, it is loaded (and refused: its table has no functions).
    let o = initc_in(t.path(), &["devices", "--plugin", so.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(dir.join("mark-xla_cuda_plugin.so").exists());
}

#[test]
fn a_bare_plugin_name_is_a_file_in_the_current_directory() {
    let t = tempfile::tempdir().unwrap();
    fake(t.path(), "fake.so", &["-DNULL_API"]);
    let o = initc_in(t.path(), &["devices", "--plugin", "fake.so"]);
    let e = err(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("./fake.so") && e.contains("GetPjrtApi returned null"), "{e}");
    // A system library's bare name is not looked up on the loader's path.
    let o = initc_in(t.path(), &["devices", "--plugin", "libz.so.1"]);
    let e = err(&o);
    assert!(e.contains("./libz.so.1") && !e.contains("GetPjrtApi"), "{e}");
}

#[test]
fn broken_tables_are_refused_before_they_are_called() {
    let t = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], &str); 4] = [
        ("none.so", &["-DNO_API"], "no GetPjrtApi symbol"),
        ("null.so", &["-DNULL_API"], "GetPjrtApi returned null"),
        ("small.so", &["-DTABLE_SIZE=16"], "implausible PJRT_Api: struct_size 16"),
        ("empty.so", &["-DTABLE_SIZE=1200"], "implausible PJRT_Api: PJRT_Error_Destroy is null"),
    ];
    for (name, defs, needle) in cases {
        let so = fake(t.path(), name, defs);
        let o = initc_in(t.path(), &["devices", "--plugin", so.to_str().unwrap()]);
        let e = err(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {e}");
        assert!(e.contains(needle) && e.contains(so.to_str().unwrap()), "{name}: {e}");
    }
}

#[test]
fn plugin_with_the_cpu_backend_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let model = root().join("examples/mlp.toml");
    let o = initc_in(t.path(), &["run", model.to_str().unwrap(), "--out", "o", "--plugin", "x.so"]);
    let e = err(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("--plugin x.so needs --backend pjrt"), "{e}");
    assert!(!t.path().join("o").exists());
}
