//! Shard geometry, property-tested over random shapes × meshes (1–64 devices, 1–3 axes) ×
//! specs, even and padded: the distinct replica groups' regions tile each tensor exactly,
//! replicas hold identical regions, and the plan's per-device bytes are the sum of the
//! device's local shapes.

use initc_ir::{DType, Mesh, Module, Op, Sharding, Type, Uneven};
use initc_shard::{Plan, Region, device_region, padded_local_shape, replicas, replication};
use proptest::prelude::*;

/// A mesh of 1–3 axes with at most 64 devices, and a spec for a tensor of `rank` built by
/// sending each axis to a random dimension (or nowhere) in a random order.
fn mesh_and_spec(rank: usize) -> impl Strategy<Value = (Mesh, Sharding)> {
    let sizes = prop::collection::vec(1u64..=8, 1..=3).prop_filter("at most 64 devices", |s| s.iter().product::<u64>() <= 64);
    (sizes, any::<bool>()).prop_flat_map(move |(sizes, pad)| {
        let n = sizes.len();
        let targets = prop::collection::vec(0..=rank, n);
        let order = Just((0..n).collect::<Vec<usize>>()).prop_shuffle();
        (Just(sizes), Just(pad), targets, order).prop_map(move |(sizes, pad, targets, order)| {
            let names = ["x", "y", "z"];
            let mesh =
                Mesh::new(sizes.iter().enumerate().map(|(i, &s)| (names[i], s)), if pad { Uneven::Pad } else { Uneven::Error }).unwrap();
            let mut dims = vec![vec![]; rank];
            for &a in &order {
                if targets[a] < rank {
                    dims[targets[a]].push(names[a].to_string());
                }
            }
            (mesh, Sharding { dims })
        })
    })
}

fn case() -> impl Strategy<Value = (Vec<u64>, Mesh, Sharding)> {
    prop::collection::vec(1u64..=24, 1..=3)
        .prop_flat_map(|shape| {
            let rank = shape.len();
            (Just(shape), mesh_and_spec(rank))
        })
        .prop_map(|(shape, (mesh, s))| (shape, mesh, s))
}

fn flat(shape: &[u64], idx: &[u64]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (i, n)| acc * n + i) as usize
}

fn for_each(r: &Region, mut f: impl FnMut(&[u64])) {
    let n = r.numel();
    let mut idx = vec![0; r.shape.len()];
    for k in 0..n {
        let mut rem = k;
        for d in (0..r.shape.len()).rev() {
            idx[d] = r.offset[d] + rem % r.shape[d];
            rem /= r.shape[d];
        }
        f(&idx);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn replica_groups_tile_the_tensor((shape, mesh, s) in case()) {
        let ty = Type::new(DType::F32, shape.clone());
        if s.check(&mesh, &ty).is_err() {
            // Indivisible under `uneven = error`: the pad policy must accept the same spec.
            prop_assert_eq!(mesh.uneven, Uneven::Error);
            let mut padded = mesh.clone();
            padded.uneven = Uneven::Pad;
            prop_assert!(s.check(&padded, &ty).is_ok());
            return Ok(());
        }
        let total: u64 = shape.iter().product();
        let mut cover = vec![0u32; total as usize];
        let mut groups = 0;
        for d in 0..mesh.devices() {
            let reps = replicas(&mesh, &s, d);
            prop_assert!(reps.contains(&d));
            prop_assert_eq!(reps.len() as u64, replication(&mesh, &s));
            let r = device_region(&mesh, &s, &shape, d);
            for &o in &reps {
                prop_assert_eq!(&device_region(&mesh, &s, &shape, o), &r);
            }
            let local = padded_local_shape(&mesh, &s, &shape);
            prop_assert!(r.shape.iter().zip(&local).all(|(a, b)| a <= b));
            if mesh.uneven == Uneven::Error {
                prop_assert_eq!(&r.shape, &local);
            }
            if reps[0] == d {
                groups += 1;
                for_each(&r, |i| cover[flat(&shape, i)] += 1);
            }
        }
        prop_assert!(cover.iter().all(|&c| c == 1), "every element held by exactly one replica group");
        prop_assert_eq!(groups * replication(&mesh, &s), mesh.devices());
    }

    #[test]
    fn plan_bytes_are_the_sum_of_local_shapes((shape, mesh, s) in case(), bf16 in any::<bool>()) {
        let dtype = if bf16 { DType::BF16 } else { DType::F32 };
        let mut padded = mesh.clone();
        padded.uneven = Uneven::Pad;
        let mut m = Module::new("p");
        let v = m.push_node(Op::Full { value: initc_ir::F64::new(0.0) }, Type::new(dtype, shape.clone()));
        let v2 = m.push_node(Op::Full { value: initc_ir::F64::new(1.0) }, Type::new(DType::F32, vec![shape[0]]));
        m.mesh = Some(padded.clone());
        let s2 = Sharding { dims: vec![s.dims[0].clone()] };
        for (fqn, value, ty, sh) in [("a", v, Type::new(dtype, shape.clone()), s.clone()), ("b", v2, Type::new(DType::F32, vec![shape[0]]), s2)] {
            m.params.push(initc_ir::Param { fqn: fqn.into(), value, ty, axes: vec![], init: String::new(), sharding: Some(sh) });
        }
        initc_ir::verify(&m).unwrap();
        let plan = Plan::new(&m).unwrap();
        prop_assert_eq!(plan.devices.len() as u64, padded.devices());
        for d in &plan.devices {
            let expect: u64 = m.params.iter().map(|p| device_region(&padded, p.sharding.as_ref().unwrap(), &p.ty.shape, d.device).numel() * p.ty.dtype.size_bytes()).sum();
            prop_assert_eq!(d.bytes, expect);
            prop_assert!(d.allocated >= d.bytes);
        }
        let stored: u64 = plan.devices.iter().map(|d| d.bytes).sum();
        let expect_stored: u64 = m.params.iter().map(|p| p.ty.numel().unwrap() * p.ty.dtype.size_bytes() * replication(&padded, p.sharding.as_ref().unwrap())).sum();
        prop_assert_eq!(stored, expect_stored);
    }
}

#[test]
fn device_coordinates_are_row_major_like_jax_mesh() {
    let mesh: Mesh = "dp=2,fsdp=2,tp=2".parse().unwrap();
    assert_eq!(mesh.coords(0), vec![0, 0, 0]);
    assert_eq!(mesh.coords(1), vec![0, 0, 1]);
    assert_eq!(mesh.coords(6), vec![1, 1, 0]);
    // A [8, 4] tensor with dim 0 over (tp, fsdp): tp major, so device (.., f, t) holds rows
    // (2t + f) * 2 .. +2.
    let s = Sharding { dims: vec![vec!["tp".into(), "fsdp".into()], vec![]] };
    let r = device_region(&mesh, &s, &[8, 4], 1); // dp 0, fsdp 0, tp 1
    assert_eq!(r, Region { offset: vec![4, 0], shape: vec![2, 4] });
    assert_eq!(replicas(&mesh, &s, 1), vec![1, 5]);
}

#[test]
fn padded_shards_are_xla_style_with_short_or_empty_tails() {
    let mesh = Mesh::new([("x", 4u64)], Uneven::Pad).unwrap();
    let s = Sharding { dims: vec![vec!["x".into()]] };
    let shapes: Vec<Vec<u64>> = (0..4).map(|d| device_region(&mesh, &s, &[5], d).shape).collect();
    assert_eq!(shapes, vec![vec![2], vec![2], vec![1], vec![0]]);
    assert_eq!(padded_local_shape(&mesh, &s, &[5]), vec![2]);
    let strict = Mesh::new([("x", 4u64)], Uneven::Error).unwrap();
    let e = s.check(&strict, &Type::new(DType::F32, vec![5])).unwrap_err();
    assert_eq!(e.to_string(), "dim 0 (size 5) is not divisible by x = 4");
}

#[test]
fn mesh_spelling_errors_are_specific() {
    let bad = |s: &str| s.parse::<Mesh>().unwrap_err().to_string();
    assert_eq!(bad("fsdp=8,fsdp=2"), "mesh axis `fsdp` appears twice");
    assert_eq!(bad("fsdp=0"), "mesh axis `fsdp` has size 0; sizes are positive integers");
    assert_eq!(bad("fsdp"), "`fsdp` is not `axis=size`; write meshes as `fsdp=8` or `dp=2,fsdp=4,tp=8`");
    assert_eq!(bad("8=fsdp"), "mesh axis name `8` is not an identifier (letters, digits, `_`; not starting with a digit)");
    assert_eq!(bad("tp=two"), "mesh axis `tp` has size two; sizes are positive integers");
    assert_eq!(bad("a=65536,b=65536"), "the mesh has more than 16777216 devices");
    assert_eq!(" fsdp = 4 , tp=2".parse::<Mesh>().unwrap().to_string(), "fsdp=4,tp=2");
}
