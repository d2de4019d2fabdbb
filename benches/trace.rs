//! Tracing cost: model.toml → verified IR (and printing it), per example, best/median of 20,
//! plus this process's peak RSS. Target (issue 2): the 405B example < 0.5 s, < 200 MB.
//! Run: `cargo bench -p initc-benches --bench trace`.

use initc_benches::{peak_rss_bytes, time_best_median};

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    println!("{:<14} {:>7} {:>10} {:>12} {:>12} {:>12}", "example", "tensors", "IR nodes", "trace best", "trace med", "+print best");
    for name in ["llama3_8b", "llama3_70b", "llama3_405b", "gpt2"] {
        let path = root.join(format!("examples/{name}.toml"));
        let src = std::fs::read_to_string(&path).expect("example");
        let trace = || initc_frontend::trace_toml(name, &src, name).expect("traces").module;
        let m = trace();
        let (best, med) = time_best_median(20, || {
            std::hint::black_box(trace());
        });
        let (pbest, _) = time_best_median(20, || {
            std::hint::black_box(trace().to_string());
        });
        println!(
            "{:<14} {:>7} {:>10} {:>10.2}ms {:>10.2}ms {:>10.2}ms",
            name,
            m.params.len(),
            m.nodes.len(),
            best * 1e3,
            med * 1e3,
            pbest * 1e3
        );
    }
    println!("peak RSS of the whole run: {:.1} MB", peak_rss_bytes().unwrap_or(0) as f64 / 1e6);
}
