//! Sharding-invariance of the CPU engine, property-tested: random shapes × random meshes
//! (1–64 devices, 1–3 axes) × random specs (even and padded) → every device's shard,
//! reassembled, equals the unsharded tensor bit for bit, and the digest equals the one
//! `write_checkpoint` records. Also: a device checkpoint holds exactly its regions.

use initc_cpu::{WriteOptions, verify_shardings, write_checkpoint};
use initc_frontend::{Init, Tracer};
use initc_ir::{DType, Mesh, Module, Sharding, Type, Uneven};
use proptest::prelude::*;

/// Four parameters of random shapes with different initializers and dtypes (the normal one
/// exercises the FMA-contracted form, the last one shape ops).
fn module(shapes: &[Vec<u64>]) -> Module {
    let mut t = Tracer::new("p");
    t.param("n", Type::new(DType::F32, shapes[0].clone()), &[], &Init::Normal { mean: 0.5, std: 0.1 }).unwrap();
    t.param("tn", Type::new(DType::BF16, shapes[1].clone()), &[], &Init::TruncNormal { mean: 0.0, std: 0.02, a: -0.04, b: 0.04 }).unwrap();
    t.param("u", Type::new(DType::F16, shapes[2].clone()), &[], &Init::Uniform { a: -1.0, b: 2.0 }).unwrap();
    let s = &shapes[3];
    let k = t.param_key("x").unwrap();
    let rev: Vec<u64> = s.iter().rev().copied().collect();
    let u = t.uniform(k, &Type::new(DType::F32, rev), 0.0, 1.0).unwrap();
    let perm: Vec<u32> = (0..s.len() as u32).rev().collect();
    let ut = t.transpose(u, &perm).unwrap();
    t.param("x", Type::new(DType::F32, s.clone()), &[], &Init::ZEROS).unwrap();
    t.assign("x", ut).unwrap();
    t.finish().unwrap()
}

/// A mesh (1–3 axes, ≤ 64 devices) and, per parameter, each axis sent to a random dim or none.
fn sharded(m: &Module, sizes: &[u64], targets: &[Vec<usize>], pad: bool) -> Module {
    let names = ["x", "y", "z"];
    let mesh = Mesh::new(sizes.iter().enumerate().map(|(i, &s)| (names[i], s)), if pad { Uneven::Pad } else { Uneven::Error }).unwrap();
    let mut out = m.clone();
    for (p, t) in out.params.iter_mut().zip(targets) {
        let rank = p.ty.rank();
        let mut dims = vec![vec![]; rank];
        for (a, &d) in t.iter().enumerate().take(sizes.len()) {
            if d < rank {
                dims[d].push(names[a].to_string());
            }
        }
        let s = Sharding { dims };
        // Under `uneven = error` an indivisible choice is replicated instead.
        p.sharding = Some(if s.check(&mesh, &p.ty).is_ok() { s } else { Sharding::replicated(rank) });
    }
    out.mesh = Some(mesh);
    initc_ir::verify(&out).unwrap();
    out
}

fn shapes() -> impl Strategy<Value = Vec<Vec<u64>>> {
    prop::collection::vec(prop::collection::vec(1u64..=20, 1..=3), 4)
}

fn mesh_sizes() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(1u64..=8, 1..=3).prop_filter("at most 64 devices", |s| s.iter().product::<u64>() <= 64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_mesh_reassembles_to_the_unsharded_bits(
        shapes in shapes(),
        meshes in prop::collection::vec((mesh_sizes(), prop::collection::vec(prop::collection::vec(0usize..4, 3), 4), any::<bool>()), 1..=3),
        seed in any::<u64>(),
    ) {
        let m = module(&shapes);
        let variants: Vec<Module> = meshes.iter().map(|(sizes, targets, pad)| sharded(&m, sizes, targets, *pad)).collect();
        let out = verify_shardings(&m, &variants, seed, &|_| {}).unwrap();
        for o in &out.meshes {
            prop_assert!(o.mismatch.is_none(), "{}: {:?}", o.mesh, o.mismatch);
            prop_assert_eq!(o.digest, out.digest, "{}", o.mesh);
        }
        prop_assert!(out.passed());
        let dir = tempfile::tempdir().unwrap();
        let w = write_checkpoint(&m, seed, dir.path(), &WriteOptions::default(), &|_| {}).unwrap();
        prop_assert_eq!(w.digest, out.digest, "verify's digest is the manifest's");
    }
}

#[test]
fn a_device_checkpoint_holds_its_regions_with_offsets() {
    let m = module(&[vec![8, 6], vec![5], vec![4, 4, 2], vec![6, 3]]);
    let s = sharded(&m, &[2, 2], &[vec![0, 1], vec![0, 3], vec![2, 0], vec![3, 3]], true);
    let dir = tempfile::tempdir().unwrap();
    let w = write_checkpoint(&s, 5, dir.path(), &WriteOptions { device: Some(3), ..Default::default() }, &|_| {}).unwrap();
    let mesh = s.mesh.as_ref().unwrap();
    for (p, wp) in s.params.iter().zip(&w.params) {
        let r = initc_shard::device_region(mesh, p.sharding.as_ref().unwrap(), &p.ty.shape, 3);
        assert_eq!((&wp.offset, &wp.shape), (&r.offset, &r.shape), "{}", p.fqn);
    }
    assert_eq!(w.params[0].shape, vec![4, 3]);
    assert_eq!(w.params[1].shape, vec![2], "5 rows over x=2, padded: device x=1 holds 2");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["device"], 3);
    assert_eq!(manifest["coords"], serde_json::json!([1, 1]));
    assert_eq!(manifest["params"][0]["offset"], serde_json::json!([4, 3]));
    assert!(manifest.get("digest").is_none(), "a device manifest has a shard_digest, not the model digest");
    let e = write_checkpoint(&s, 5, dir.path(), &WriteOptions { device: Some(4), ..Default::default() }, &|_| {}).unwrap_err();
    assert_eq!(e.to_string(), "device 4 does not exist: mesh x=2,y=2 has devices 0..4");
    let e = write_checkpoint(&m, 5, dir.path(), &WriteOptions { device: Some(0), ..Default::default() }, &|_| {}).unwrap_err();
    assert!(e.to_string().contains("need a sharded module"), "{e}");
}

/// `DIR/device-K` for every device of `s`'s mesh, written and published as one set.
fn write_set(s: &Module, seed: u64, dir: &std::path::Path) -> Vec<[u8; 32]> {
    let ev = initc_cpu::Evaluator::new(s, seed);
    let fill = |p: &initc_ir::Param, r: &initc_cpu::Region, sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>| {
        initc_cpu::materialize(&ev, p.value, &p.ty.shape, r, sink)
    };
    // What readers see: each device's manifest (or none).
    let visible =
        || -> Vec<Option<Vec<u8>>> { (0..8).map(|d| std::fs::read(dir.join(format!("device-{d}/manifest.json"))).ok()).collect() };
    let before = visible();
    let set = initc_cpu::DeviceSet::begin(dir).unwrap();
    let mut digests = vec![];
    for d in 0..s.mesh.as_ref().unwrap().devices() {
        digests.push(set.write(s, seed, &WriteOptions { device: Some(d), ..Default::default() }, &|_| {}, &fill).unwrap().digest);
        assert_eq!(visible(), before, "device {d} became visible before the set was published");
    }
    set.commit().unwrap();
    digests
}

#[test]
fn device_sets_are_published_together_and_replace_other_meshes_sets() {
    let m = module(&[vec![8, 6], vec![5], vec![4, 4, 2], vec![6, 3]]);
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("out");
    // Six devices, then two: the four devices of the old mesh must not survive beside the new.
    let six = sharded(&m, &[3, 2], &[vec![0, 1], vec![0, 3], vec![2, 0], vec![3, 3]], true);
    let first = write_set(&six, 1, &dir);
    let names = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&dir), ["device-0", "device-1", "device-2", "device-3", "device-4", "device-5"]);
    for (k, d) in first.iter().enumerate() {
        let man: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("device-{k}/manifest.json"))).unwrap()).unwrap();
        assert_eq!(man["shard_digest"], initc_cpu::hex(d));
    }
    let two = sharded(&m, &[2], &[vec![0], vec![0], vec![2], vec![3]], true);
    write_set(&two, 2, &dir);
    assert_eq!(names(&dir), ["device-0", "device-1"]);
    assert_eq!(names(t.path()), [".out.lock", "out"]);
    // A directory holding anything else is refused before anything is written.
    std::fs::write(dir.join("notes.txt"), b"x").unwrap();
    let e = initc_cpu::DeviceSet::begin(&dir).err().unwrap().to_string();
    assert!(e.contains("notes.txt"), "{e}");
}
