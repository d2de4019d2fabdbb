//! CPU engine throughput: f32 `normal(0, 0.02)` and torchtitan's `trunc_normal(0, 0.02, -2, 2)`
//! over N elements, materialized in order into a reused buffer (no disk), best of 3 after a
//! warm-up, with 1 and 2 threads. Prints one JSON line per row for tools/bench_cpu.
//! Run: `cargo bench -p initc-benches --bench cpu_engine [-- N]`.

use initc_benches::time_best_median;
use initc_cpu::{Evaluator, Region, materialize};
use initc_frontend::{Init, Tracer};
use initc_ir::{DType, Type};

fn main() {
    let n: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1 << 26);
    let shape = [n / 4096, 4096];
    for (label, init) in [
        ("normal", Init::Normal { mean: 0.0, std: 0.02 }),
        ("truncated_normal", Init::TruncNormal { mean: 0.0, std: 0.02, a: -2.0, b: 2.0 }),
    ] {
        let mut t = Tracer::new("bench");
        t.param("w", Type::new(DType::F32, shape), &[], &init).expect("traces");
        let m = t.finish().expect("verifies");
        let p = &m.params[0];
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            let ev = Evaluator::new(&m, 0);
            let mut sink = Vec::with_capacity((n * 4) as usize);
            let mut run = || {
                sink.clear();
                pool.install(|| {
                    materialize::<()>(&ev, p.value, &p.ty.shape, &Region::full(&p.ty.shape), |b| {
                        sink.extend_from_slice(b);
                        Ok(())
                    })
                })
                .expect("in-memory sink");
            };
            run(); // warm-up
            let (best, _) = time_best_median(3, &mut run);
            let bytes = (n * 4) as f64;
            println!(
                "{{\"system\":\"initc-cpu\",\"dist\":\"{label}\",\"threads\":{threads},\"elements\":{n},\"seconds\":{best:.6},\"gbps\":{:.4}}}",
                bytes / best / 1e9
            );
        }
    }
}
