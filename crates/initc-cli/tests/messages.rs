//! Messages: no colour codes unless stderr is a terminal; enum errors quote the bad value and
//! list the accepted ones.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn a_redirected_stderr_gets_no_escape_codes() {
    // TERM says colour is possible and NO_COLOR is unset, but stderr is a pipe.
    let o = Command::new(env!("CARGO_BIN_EXE_initc"))
        .args(["trace", "tests/errors/heads_divide.toml"])
        .current_dir(root())
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("error: `n_heads`") && !err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn enum_errors_quote_the_value_and_list_the_choices() {
    for (file, value, choices) in [
        ("bad_nonlinearity", "`gelu`", "linear, conv, sigmoid, tanh, relu, leaky_relu, selu"),
        ("bad_distribution", "`laplace`", "truncated_normal, normal or uniform"),
        ("bad_mode", "`fan_sideways`", "fan_in, fan_out or fan_avg"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_initc"))
            .args(["trace", &format!("tests/errors/{file}.toml")])
            .current_dir(root())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(value) && err.contains(choices) && !err.contains("unrecognized"), "{file}: {err}");
    }
}

#[test]
fn hints_are_notes_under_the_message_with_or_without_a_source_span() {
    // a config error (with a snippet) and a sharding-rule error (without one): both end in a
    // `  = hint: ...` note
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_initc")).args(args).current_dir(root()).env("NO_COLOR", "1").output().unwrap();
        assert_eq!(o.status.code(), Some(1));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let spanned = run(&["trace", "tests/errors/heads_divide.toml"]);
    assert!(spanned.contains("\n  = hint: torchtitan's head_dim"), "{spanned}");
    let plain = run(&["lower", "examples/mlp.toml", "--mesh", "fsdp=4", "--rules", "fsdp"]);
    assert!(plain.starts_with("error: built-in rule set `fsdp`") && plain.contains("\n  = hint: choose axis sizes"), "{plain}");
}
