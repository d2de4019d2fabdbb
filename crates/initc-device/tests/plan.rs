//! Shard-program planning (no accelerator needed): executables are shared across identical
//! layers and devices, and every program is well-formed MLIR.

use initc_device::DevicePlan;

fn llama(n_layers: u32, mesh: &str) -> initc_ir::Module {
    let src = format!(
        "[model]\npreset = \"llama3\"\ndim = 4096\nn_layers = {n_layers}\nn_heads = 32\nn_kv_heads = 8\nvocab_size = 128256\nmultiple_of = 1024\nffn_dim_multiplier = 1.3\nnorm_eps = 1e-5\ndepth_init = true\n[rng]\nseed = 0\n{mesh}"
    );
    let t = initc_frontend::trace_toml("llama", &src, "llama.toml").unwrap();
    t.sharded("llama.toml", &src).unwrap()
}

#[test]
fn programs_do_not_grow_with_the_number_of_layers() {
    let p32 = DevicePlan::new(&llama(32, ""), &[0]).unwrap();
    let p80 = DevicePlan::new(&llama(80, ""), &[0]).unwrap();
    let summaries = |p: &DevicePlan| p.programs.iter().map(|x| x.summary.clone()).collect::<Vec<_>>();
    assert_eq!(summaries(&p32), summaries(&p80));
    assert!(p32.programs.len() <= 10, "{:#?}", summaries(&p32));
    assert_eq!(p32.devices[0].launches.len(), 291);
    assert_eq!(p80.devices[0].launches.len(), 723);
}

#[test]
fn devices_of_an_even_mesh_share_programs() {
    let m = llama(2, "[mesh]\nfsdp = 4\n[sharding]\nrules = \"fsdp\"\n");
    let one = DevicePlan::new(&m, &[0]).unwrap();
    let all = DevicePlan::new(&m, &[0, 1, 2, 3]).unwrap();
    assert_eq!(one.programs.len(), all.programs.len());
    // Device 3 of fsdp=4 starts a quarter of the way into dim 0 of a dim-0-sharded weight.
    let l = &all.devices[3].launches[1];
    let global = &m.params[l.param].ty.shape;
    assert_eq!(l.region.offset[0], 3 * global[0] / 4, "{}", m.params[l.param].fqn);
}

#[test]
fn an_unknown_mesh_device_is_refused() {
    let m = llama(2, "[mesh]\nfsdp = 4\n[sharding]\nrules = \"fsdp\"\n");
    let e = DevicePlan::new(&m, &[4]).unwrap_err().to_string();
    assert!(e.contains("mesh device 4") && e.contains("has 4"), "{e}");
}

#[test]
fn every_program_is_valid_mlir() {
    for ex in ["mlp", "llama3_tiny_sharded", "gpt2_tiny"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(format!("{ex}.toml"));
        let src = std::fs::read_to_string(&path).unwrap();
        let m = initc_frontend::trace_toml(ex, &src, ex).unwrap().sharded(ex, &src).unwrap();
        let n = m.mesh.as_ref().map_or(1, |x| x.devices());
        let plan = DevicePlan::new(&m, &(0..n).collect::<Vec<_>>()).unwrap();
        for p in &plan.programs {
            initc_stablehlo::check_text(&p.text).unwrap_or_else(|e| panic!("{ex}: {}: {e}\n{}", p.summary, p.text));
        }
    }
}

#[test]
fn batches_run_every_launch_once_with_an_executable_of_its_program() {
    // 8B on one device, and a 2-layer model on a padded tp=3 mesh (which has empty shards)
    let cases = [(llama(32, ""), vec![0]), (llama(2, "[mesh]\ntp = 3\n[sharding]\nrules = \"tp\"\nuneven = \"pad\"\n"), vec![0, 1, 2])];
    for (m, devices) in cases {
        let plan = DevicePlan::new(&m, &devices).unwrap();
        for max in [Some(1), Some(4), Some(16), None] {
            let (per_device, wanted) = plan.batches(max);
            assert_eq!(per_device.len(), devices.len());
            for (dl, batches) in plan.devices.iter().zip(&per_device) {
                let mut seen = vec![0u32; dl.launches.len()];
                for b in batches {
                    let (program, k) = wanted[b.executable];
                    assert!(
                        k == b.launches.len() && (1..=max.unwrap_or_else(|| plan.programs[program].default_batch())).contains(&k),
                        "batch of {} on an executable for {k}",
                        b.launches.len()
                    );
                    for &l in &b.launches {
                        assert_eq!(dl.launches[l].program, program);
                        seen[l] += 1;
                    }
                }
                for (l, launch) in dl.launches.iter().enumerate() {
                    // empty shards run no program
                    assert_eq!(seen[l], u32::from(launch.region.numel() > 0), "launch {l} of device {}", dl.mesh_device);
                }
            }
            let distinct: std::collections::HashSet<_> = wanted.iter().collect();
            assert_eq!(distinct.len(), wanted.len(), "one executable per (program, batch size)");
        }
        if devices.len() == 1 {
            // the 8B model: 7 programs (wq and wo share one); its 32 identical layers fill batches
            // of 4 exactly: 16 (wq, wo) + 16 (wk, wv) + 16 (w1, w3) + 8 (w2) + 17 (65 norms) + 2
            let (per_device, wanted) = plan.batches(Some(4));
            assert_eq!(plan.programs.len(), 7);
            assert_eq!(per_device[0].len(), 75);
            assert!(wanted.len() <= 2 * plan.programs.len());
            // by default: 2 random launches per execute, and the 65 norms (fills, no key) in 64 + 1
            let (per_device, wanted) = plan.batches(None);
            assert_eq!(per_device[0].len(), 32 + 32 + 32 + 16 + 1 + 1 + 2);
            let fills: Vec<usize> = per_device[0]
                .iter()
                .filter(|b| !plan.programs[wanted[b.executable].0].ir.slots.iter().any(|s| matches!(s, initc_stablehlo::Slot::Key(_))))
                .map(|b| b.launches.len())
                .collect();
            assert_eq!(fills, vec![64, 1]);
        }
    }
}

/// The 8B-shaped llama with `n_layers` layers in `dtype` and RNG `mode`, planned for one device.
/// `dtype = "jax16"` is the bf16 model written with JAX's own 16-bit draws (`normal : bf16[..]`,
/// the IR of a frontend reproducing `jax.random.*(..., dtype=bfloat16)`): the f32 IR with every
/// f32 type made bf16. Initializers never emit such draws (they draw in f32 and convert).
fn llama_plan(n_layers: u32, dtype: &str, mode: &str) -> (initc_ir::Module, DevicePlan) {
    if dtype == "jax16" {
        let (m, _) = llama_plan(n_layers, "f32", mode);
        let m = initc_ir::parse(&m.to_string().replace("f32[", "bf16[")).unwrap();
        let plan = DevicePlan::new(&m, &[0]).unwrap();
        return (m, plan);
    }
    let src = format!(
        "[model]\npreset = \"llama3\"\ndtype = \"{dtype}\"\ndim = 4096\nn_layers = {n_layers}\nn_heads = 32\nn_kv_heads = 8\nvocab_size = 128256\nmultiple_of = 1024\nffn_dim_multiplier = 1.3\nnorm_eps = 1e-5\ndepth_init = true\n[rng]\nseed = 7\nmode = \"{mode}\"\n"
    );
    let m = initc_frontend::trace_toml("llama", &src, "llama.toml").unwrap().sharded("llama.toml", &src).unwrap();
    let plan = DevicePlan::new(&m, &[0]).unwrap();
    (m, plan)
}

#[test]
fn bf16_launches_share_a_few_pair_tables() {
    // fast-mode JAX 16-bit draws: each launch takes one table (its draw's pair table with `* std` applied);
    // equal specs mean equal tables, and the 32 layers need far fewer tables than launches
    // (one upload per distinct spec)
    let (m, plan) = llama_plan(32, "jax16", "fast");
    let ev = initc_cpu::Evaluator::new(&m, m.seed);
    let mut tables: std::collections::HashMap<initc_device::TableSpec, Vec<u32>> = std::collections::HashMap::new();
    let mut uses = 0;
    for l in &plan.devices[0].launches {
        for spec in initc_device::table_specs(&ev, l) {
            uses += 1;
            let t = spec.build().unwrap();
            assert_eq!(tables.entry(spec).or_insert_with(|| t.clone()), &t);
        }
    }
    assert!(uses > 200, "{uses} table arguments");
    assert!(tables.len() < uses / 4, "{} distinct tables for {uses} uses", tables.len());
}

#[test]
fn a_bf16_chain_is_one_lookup_in_its_table() {
    // `normal * std` of a JAX 16-bit draw in fast mode: the program's only argument besides its static
    // words is the chain's table, and element 2g + j of the CPU engine's parameter is half j of
    // table[y0 & 0x3FFF], y0 the first word of group g's threefry block under the param's key
    let (m, plan) = llama_plan(2, "jax16", "fast");
    let ev = initc_cpu::Evaluator::new(&m, m.seed);
    let mut chains = 0;
    for l in &plan.devices[0].launches {
        let p = &m.params[l.param];
        let Some((draw, chain)) = initc_stablehlo::table_chain(&m, p.value) else { continue };
        chains += 1;
        let prog = &plan.programs[l.program];
        assert!(prog.ir.slots.iter().all(|s| !matches!(s, initc_stablehlo::Slot::Scalar(_))), "{}: {:?}", p.fqn, prog.ir.slots);
        let specs = initc_device::table_specs(&ev, l);
        assert_eq!(specs.len(), 1, "{}", p.fqn);
        assert_eq!(specs[0].ops.len(), chain.len());
        let table = specs[0].build().unwrap();
        let key = match m.node(draw).op {
            initc_ir::Op::TruncatedNormal { key, .. } | initc_ir::Op::Normal { key } | initc_ir::Op::Uniform { key, .. } => ev.key(key),
            _ => unreachable!(),
        };
        let start = 3 * 4096 + 2; // a few rows in, group-aligned
        let got = match ev.eval(p.value, &initc_cpu::Idx::Run { start, len: 64 }) {
            initc_cpu::Buf::Half(_, v) => v,
            other => panic!("{}: {other:?}", p.fqn),
        };
        for (i, &x) in got.iter().enumerate() {
            let e = start + i as u64;
            let g = e / 2;
            let [y0, _] = initc_rng::threefry2x32(key, [(g >> 32) as u32, g as u32]);
            let entry = table[(y0 & 0x3FFF) as usize];
            assert_eq!(x, (entry >> (16 * (e % 2))) as u16, "{} element {e}", p.fqn);
        }
    }
    assert!(chains >= 14, "{chains} chains");
}

#[test]
fn launch_scalars_reach_the_kernel_unchanged() {
    // XLA:GPU runs arithmetic on a scalar that feeds a random op's kernel as a kernel of its own
    // (~2 us a launch), so in random programs every rank-0 value is a reshape or same-width
    // bitcast of a static word (constant fills are one kernel either way: the XLA dump shows
    // the scalar's convert fused into the fill)
    for (dtype, mode) in [("bf16", "fast"), ("jax16", "fast"), ("f32", "fast"), ("f32", "jax"), ("bf16", "jax")] {
        let (_, plan) = llama_plan(2, dtype, mode);
        let random: Vec<_> =
            plan.programs.iter().filter(|p| p.ir.slots.iter().any(|s| matches!(s, initc_stablehlo::Slot::Key(_)))).collect();
        assert!(random.len() >= 5, "{dtype} {mode}: {} random programs", random.len());
        for p in random {
            for line in p.text.lines() {
                let Some((lhs, ty)) = line.rsplit_once(") -> ") else { continue };
                let scalar =
                    ["ui8", "ui16", "ui32", "ui64", "i32", "bf16", "f16", "f32"].iter().any(|e| ty.trim() == format!("tensor<{e}>"));
                if !scalar || !lhs.contains("\"stablehlo.") {
                    continue;
                }
                let op = lhs.split('"').nth(1).unwrap_or("");
                let same_width = op == "stablehlo.bitcast_convert"
                    && lhs.ends_with("tensor<ui32>")
                    && (ty.trim() == "tensor<f32>" || ty.trim() == "tensor<i32>");
                assert!(op == "stablehlo.reshape" || same_width, "{dtype} {mode} {}: {line}", p.summary);
            }
        }
    }
}
