//! Fast mode (packed threefry stream, Box-Muller normals): the layout against a direct
//! per-element spelling of its definition, shard independence, and the distribution.

use initc_rng::*;

const KEY: Key = [0x1234_5678, 0x9ABC_DEF0];

/// The definition, element by element: lane `i % L` of block `g = i / L`, low end first.
fn lane_of(i: u64, width: u32) -> u32 {
    let l = fast_lanes(width);
    let g = i / l;
    let [y0, y1] = threefry2x32(KEY, [(g >> 32) as u32, g as u32]);
    let word = u64::from(y0) | (u64::from(y1) << 32);
    let shift = u64::from(width) * (i % l);
    ((word >> shift) & ((1u64 << width) - 1)) as u32
}

#[test]
fn fast_bits_are_lanes_of_one_block_per_group() {
    for width in [8u32, 16, 32] {
        // an odd start and length so runs begin and end inside groups
        let (start, len) = ((1u64 << 32) - 5, 37usize);
        let mut run = vec![0u32; len];
        bits32(Mode::Fast, width, KEY, Indices::Run { start, len }, &mut run);
        let want: Vec<u32> = (start..start + len as u64).map(|i| lane_of(i, width)).collect();
        assert_eq!(run, want, "width {width}");
        let list: Vec<u64> = vec![start + 3, 7, start + 1, 0, 1 << 40];
        let mut got = vec![0u32; list.len()];
        bits32(Mode::Fast, width, KEY, Indices::List(&list), &mut got);
        assert_eq!(got, list.iter().map(|&i| lane_of(i, width)).collect::<Vec<_>>(), "width {width}");
    }
    // and it is not jax's stream
    let mut jax = vec![0u32; 8];
    let mut fast = vec![0u32; 8];
    bits32(Mode::Jax, 32, KEY, Indices::Run { start: 0, len: 8 }, &mut jax);
    bits32(Mode::Fast, 32, KEY, Indices::Run { start: 0, len: 8 }, &mut fast);
    assert_ne!(jax, fast);
}

#[test]
fn fast_bf16_draws_take_7_bits_of_y0_per_element_two_per_block() {
    // the definition, element by element: group i / 2, bits 7j .. 7j + 7 of y0, as the 8-bit
    // word JAX's bf16 transforms read (`(x & 0xFF) >> 1`)
    let spell = |i: u64| {
        let g = i / 2;
        let [y0, _] = threefry2x32(KEY, [(g >> 32) as u32, g as u32]);
        ((y0 >> (7 * (i % 2))) & 0x7F) << 1
    };
    let (start, len) = ((1u64 << 33) - 3, 21usize);
    let mut run = vec![0u32; len];
    half_draw_bits(Mode::Fast, Half::BF16, KEY, Indices::Run { start, len }, &mut run);
    assert_eq!(run, (start..start + len as u64).map(spell).collect::<Vec<_>>());
    let list: Vec<u64> = vec![start + 1, 6, 0, 1 << 41];
    let mut got = vec![0u32; list.len()];
    half_draw_bits(Mode::Fast, Half::BF16, KEY, Indices::List(&list), &mut got);
    assert_eq!(got, list.iter().map(|&i| spell(i)).collect::<Vec<_>>());
    // f16 keeps 16-bit lanes, four per block
    let mut f16 = vec![0u32; len];
    half_draw_bits(Mode::Fast, Half::F16, KEY, Indices::Run { start, len }, &mut f16);
    assert_eq!(f16, (start..start + len as u64).map(|i| lane_of(i, 16)).collect::<Vec<_>>());
}

#[test]
fn fast_normal_pairs_come_from_one_block_and_any_piece_equals_the_whole() {
    let n = 4099;
    let mut whole = vec![0f32; n];
    normal_f32(Mode::Fast, KEY, Indices::Run { start: 0, len: n }, &mut whole);
    for i in [0usize, 1, 2, 3, 1000, 4097, 4098] {
        let g = (i / 2) as u64;
        let [y0, y1] = threefry2x32(KEY, [0, g as u32]);
        assert_eq!(whole[i].to_bits(), box_muller(y0, y1)[i % 2].to_bits(), "element {i}");
    }
    let mut tail = vec![0f32; 13];
    normal_f32(Mode::Fast, KEY, Indices::Run { start: 987, len: 13 }, &mut tail);
    assert_eq!(tail.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), whole[987..1000].iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    let idx: Vec<u64> = vec![5, 4, 4098, 33];
    let mut some = vec![0f32; idx.len()];
    normal_f32(Mode::Fast, KEY, Indices::List(&idx), &mut some);
    for (j, &i) in idx.iter().enumerate() {
        assert_eq!(some[j].to_bits(), whole[i as usize].to_bits());
    }
}

/// Standard normal CDF (Abramowitz-Stegun 7.1.26 is not enough near the tails; use erf).
fn phi(x: f64) -> f64 {
    0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

#[test]
fn fast_normal_is_standard_normal() {
    let n = 1 << 21;
    let mut z = vec![0f32; n];
    normal_f32(Mode::Fast, KEY, Indices::Run { start: 0, len: n }, &mut z);
    let mean = z.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let var = z.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n as f64;
    assert!(mean.abs() < 4.0 / (n as f64).sqrt(), "mean {mean}");
    assert!((var - 1.0).abs() < 0.005, "variance {var}");
    assert!(z.iter().all(|x| x.abs() <= BOX_MULLER_MAX), "|z| bounded by sqrt(-2 ln 2^-24)");
    // Kolmogorov-Smirnov distance to the normal CDF: 1.63/sqrt(n) is the 1 % critical value.
    let mut s: Vec<f64> = z.iter().map(|&x| f64::from(x)).collect();
    s.sort_by(f64::total_cmp);
    let d = s
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = phi(x);
            (f - i as f64 / n as f64).abs().max((f - (i + 1) as f64 / n as f64).abs())
        })
        .fold(0.0, f64::max);
    assert!(d < 1.63 / (n as f64).sqrt(), "KS distance {d}");
    // lanes are not correlated: Pearson correlation of (z[2g], z[2g+1])
    let c: f64 = z.chunks(2).map(|p| f64::from(p[0]) * f64::from(p[1])).sum::<f64>() / (n / 2) as f64;
    assert!(c.abs() < 5.0 / ((n / 2) as f64).sqrt(), "lane correlation {c}");
}

#[test]
fn fast_wide_truncated_normal_is_the_normal_and_narrow_ones_stay_inverse_cdf() {
    let n = 1000;
    let mut z = vec![0f32; n];
    let mut t = vec![0f32; n];
    normal_f32(Mode::Fast, KEY, Indices::Run { start: 0, len: n }, &mut z);
    truncated_normal_f32(Mode::Fast, KEY, Indices::Run { start: 0, len: n }, &TruncBounds::new(-100.0, 100.0), &mut t);
    assert_eq!(z, t);
    let narrow = TruncBounds::new(-2.0, 2.0);
    assert!(!narrow.wide());
    truncated_normal_f32(Mode::Fast, KEY, Indices::Run { start: 0, len: n }, &narrow, &mut t);
    assert!(t.iter().all(|x| x.abs() < 2.0));
    // inverse CDF of the packed 32-bit lanes
    let mut u = vec![0f32; n];
    uniform_f32(Mode::Fast, KEY, Indices::Run { start: 0, len: n }, f64::from(narrow.a), f64::from(narrow.b), &mut u);
    for i in 0..n {
        let want = (SQRT2_F32 * xla_cpu::erf_inv(u[i])).max(narrow.lo).min(narrow.hi);
        assert_eq!(t[i].to_bits(), want.to_bits(), "element {i}");
    }
}

#[test]
fn fast_half_draws_use_16_bit_lanes() {
    let n = 64;
    let mut fast = vec![0u16; n];
    let mut jax = vec![0u16; n];
    normal_half_bits(Mode::Fast, Half::BF16, KEY, Indices::Run { start: 0, len: n }, &mut fast);
    normal_half_bits(Mode::Jax, Half::BF16, KEY, Indices::Run { start: 0, len: n }, &mut jax);
    assert_ne!(fast, jax);
    // element i of the fast draw is jax's transform of lane i: compare with a one-element
    // jax-mode draw whose bits we cannot choose, through the uniform instead
    let mut uf = vec![0u16; n];
    uniform_half_bits(Mode::Fast, Half::F16, KEY, Indices::Run { start: 0, len: n }, 0.0, 1.0, &mut uf);
    for (i, &b) in uf.iter().enumerate() {
        let want = Half::F16.from_f32(Half::F16.to_f32(((lane_of(i as u64, 16) >> 6) as u16) | 0x3C00) - 1.0);
        assert_eq!(b, want, "element {i}");
    }
}

#[test]
fn a_bf16_group_is_one_pair_table_entry() {
    // fast mode: elements 2g and 2g + 1 are the halves of pair_table[y0 & 0x3FFF] (the one
    // gather per block a shard program does)
    for draw in [HalfDraw::Normal, HalfDraw::TruncatedNormal { lower: -3.0, upper: 2.5 }, HalfDraw::Uniform { min: -0.5, max: 0.25 }] {
        let pairs = bf16_pair_table(draw);
        assert_eq!(pairs.len(), BF16_PAIRS);
        let n = 600;
        let mut got = vec![0u16; n];
        let idx = Indices::Run { start: 1 << 20, len: n };
        match draw {
            HalfDraw::Normal => normal_half_bits(Mode::Fast, Half::BF16, KEY, idx, &mut got),
            HalfDraw::TruncatedNormal { lower, upper } => {
                truncated_normal_half_bits(Mode::Fast, Half::BF16, KEY, idx, lower, upper, &mut got)
            }
            HalfDraw::Uniform { min, max } => uniform_half_bits(Mode::Fast, Half::BF16, KEY, idx, min, max, &mut got),
        }
        for j in (0..n).step_by(2) {
            let g = ((1u64 << 20) + j as u64) / 2;
            let [y0, _] = threefry2x32(KEY, [(g >> 32) as u32, g as u32]);
            let e = pairs[(y0 & 0x3FFF) as usize];
            assert_eq!((got[j], got[j + 1]), (e as u16, (e >> 16) as u16), "{draw:?} group {g}");
        }
    }
}

#[test]
fn bf16_table_is_the_draw_of_its_8_bits() {
    // element i of a bf16 draw is table[bits & 0xFF] in both modes
    for (draw, lower, upper) in [
        (HalfDraw::Normal, 0.0, 0.0),
        (HalfDraw::TruncatedNormal { lower: -2.0, upper: 2.0 }, -2.0, 2.0),
        (HalfDraw::Uniform { min: -0.5, max: 0.25 }, -0.5, 0.25),
    ] {
        let table = bf16_table(draw);
        for mode in [Mode::Jax, Mode::Fast] {
            let n = 512;
            let mut got = vec![0u16; n];
            let idx = Indices::Run { start: 3, len: n };
            match draw {
                HalfDraw::Normal => normal_half_bits(mode, Half::BF16, KEY, idx, &mut got),
                HalfDraw::TruncatedNormal { .. } => truncated_normal_half_bits(mode, Half::BF16, KEY, idx, lower, upper, &mut got),
                HalfDraw::Uniform { .. } => uniform_half_bits(mode, Half::BF16, KEY, idx, lower, upper, &mut got),
            }
            let mut bits = vec![0u32; n];
            half_draw_bits(mode, Half::BF16, KEY, idx, &mut bits);
            for i in 0..n {
                assert_eq!(got[i], table[(bits[i] & 0xFF) as usize], "{draw:?} {mode:?} element {i}");
            }
        }
    }
}
