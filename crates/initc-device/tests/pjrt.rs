//! On an accelerator (a PJRT plugin found as `initc devices` finds it): small models against the
//! CPU engine, and every mesh device's shards against the unsharded run on the same device, bit
//! for bit. Without a plugin (CI) each test says so and passes without checking anything.

use initc_device::{Materializer, to_host, verify};
use initc_ir::RngMode;
use initc_pjrt::{Client, CompileOptions, Plugin};

fn client() -> Option<Client> {
    let found = initc_pjrt::discover(None);
    let Some((path, _)) = found.found else {
        eprintln!("SKIPPED: no PJRT plugin ({})", found.not_found_message().lines().next().unwrap_or(""));
        return None;
    };
    Some(Client::new(Plugin::load(&path).expect("plugin loads")).expect("client"))
}

fn model(ex: &str, mesh: Option<&str>) -> initc_ir::Module {
    // INITC_ROOT: the repository, where the test binary runs away from its build tree.
    let root = std::env::var_os("INITC_ROOT")
        .map_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."), std::path::PathBuf::from);
    let path = root.join("examples").join(format!("{ex}.toml"));
    let mut src = std::fs::read_to_string(&path).unwrap();
    if let Some(m) = mesh {
        // leading [model] keys go into the existing table, the other tables at the end
        let (keys, rest) = match m.strip_prefix("[model]\n") {
            Some(x) => x.find("\n[").map_or((x, ""), |i| (&x[..=i], &x[i + 1..])),
            None => ("", m),
        };
        src = src.replacen("[model]\n", &format!("[model]\n{keys}"), 1);
        src.push_str(rest);
    }
    initc_frontend::trace_toml(ex, &src, ex).unwrap().sharded(ex, &src).unwrap()
}

#[test]
fn small_models_match_the_cpu_engine() {
    let Some(client) = client() else { return };
    for (ex, rng) in
        ["llama3_tiny", "llama3_tiny@bf16", "gpt2_tiny", "mlp"].into_iter().flat_map(|e| [(e, RngMode::Jax), (e, RngMode::Fast)])
    {
        let mut m = match ex.split_once('@') {
            // the model in another dtype: bf16 draws pack 2 values per block (one pair-table lookup)
            Some((e, dt)) => model(e, Some(&format!("[model]\ndtype = \"{dt}\"\n"))),
            None => model(ex, None),
        };
        m.rng = rng;
        let mat = Materializer::new(&m, client.clone(), &[0], &CompileOptions::portable()).unwrap();
        for seed in [0, 2u64.pow(32) + 5, 0] {
            let r = mat.run(seed).unwrap();
            let checks = verify(&m, seed, &r.devices).unwrap();
            let bad: Vec<_> = checks.iter().filter(|c| c.failing > 0).collect();
            assert!(bad.is_empty(), "{ex} rng={} seed {seed}: {bad:#?}", rng.name());
            eprintln!(
                "{ex} rng={} seed {seed}: {} shards, max {} ULP",
                rng.name(),
                checks.len(),
                checks.iter().map(|c| c.max_ulp).max().unwrap_or(0)
            );
        }
    }
}

/// Each mesh device's shards, materialized alone on device 0, equal the matching slices of the
/// unsharded run on the same device (the contract, on the accelerator), padded meshes included.
#[test]
fn shards_are_slices_of_the_unsharded_run() {
    let Some(client) = client() else { return };
    // bf16 in fast mode: two values per block from one pair-table lookup
    for (dtype, rng) in [("", RngMode::Jax), ("", RngMode::Fast), ("[model]\ndtype = \"bf16\"\n", RngMode::Fast)] {
        let mut whole = model("llama3_tiny", Some(dtype));
        whole.rng = rng;
        let full = Materializer::new(&whole, client.clone(), &[0], &CompileOptions::portable()).unwrap().run(7).unwrap();
        let full_bytes: Vec<Vec<u8>> = full.devices[0].shards.iter().map(|s| to_host(s).unwrap()).collect();
        for mesh in [
            "[mesh]\nfsdp = 4\n[sharding]\nrules = \"fsdp\"\n",
            "[mesh]\nfsdp = 2\ntp = 2\n[sharding]\nrules = \"fsdp+tp\"\n",
            "[mesh]\ntp = 3\n[sharding]\nrules = \"tp\"\nuneven = \"pad\"\n",
        ] {
            let mut m = model("llama3_tiny", Some(&format!("{dtype}{mesh}")));
            m.rng = rng;
            let n = m.mesh.as_ref().unwrap().devices();
            for dev in 0..n {
                let r = Materializer::new(&m, client.clone(), &[dev], &CompileOptions::portable()).unwrap().run(7).unwrap();
                for s in &r.devices[0].shards {
                    let got = to_host(s).unwrap();
                    let global = &m.params[s.param].ty.shape;
                    let want = slice(&full_bytes[s.param], global, &s.offset, &s.shape, s.dtype.size_bytes() as usize);
                    assert!(got == want, "rng={} {dtype}: {mesh}: device {dev}: {} differs from the unsharded run", rng.name(), s.fqn);
                }
            }
        }
    }
}

/// Row-major bytes of `[offset, offset+shape)` of an array of `global` shape.
fn slice(bytes: &[u8], global: &[u64], offset: &[u64], shape: &[u64], es: usize) -> Vec<u8> {
    let strides = initc_cpu::strides(global);
    let n: u64 = shape.iter().product();
    let mut out = Vec::with_capacity(n as usize * es);
    for i in 0..n {
        let (mut rem, mut flat) = (i, 0);
        for d in (0..shape.len()).rev() {
            flat += (rem % shape[d] + offset[d]) * strides[d];
            rem /= shape[d];
        }
        let f = flat as usize * es;
        out.extend_from_slice(&bytes[f..f + es]);
    }
    out
}
