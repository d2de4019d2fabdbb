//! Shard-program filetests, in Cranelift's manner: each `filetests/*.txt` is a header line, a
//! small initc module (IR text) and, after it, the expected output: per parameter, its
//! shard-program IR, its launch data and its StableHLO text. Re-bless with
//! `INITC_BLESS=1 cargo test -p initc-stablehlo --test filetests`; CI fails on any diff.
//!
//! The header: `test shard-program key=value ...` with
//! - `device=K`: the mesh device whose shard is lowered (default 0);
//! - `mesh=AXES`: the module's mesh as its `mesh [...]` line spells it (checked; `none` or
//!   absent: no mesh);
//! - `rng=jax|fast`: the RNG mode (replaces the module's, as `--rng` does);
//! - `dtype=D`: every parameter's dtype (checked);
//! - `batch=K`, `fuse=F` (default 4): print `K` launches per execute ([`initc_stablehlo::Batched`]).
//!
//! Every printed program is also parsed and verified by MLIR.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use initc_stablehlo::{Batched, HostValue, LaunchData, TableDef, shard_program};

/// The line that starts the expected output.
const EXPECTED: &str = "; ==== expected output (INITC_BLESS=1 rewrites everything below) ====";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("filetests")
}

struct Header {
    device: u64,
    mesh: Option<String>,
    rng: Option<initc_ir::RngMode>,
    dtype: Option<initc_ir::DType>,
    batch: usize,
    fuse: usize,
}

fn header(line: &str) -> Result<Header, String> {
    let mut words = line.split_whitespace();
    if (words.next(), words.next()) != (Some("test"), Some("shard-program")) {
        return Err(format!("the first line must be `test shard-program ...`, found {line:?}"));
    }
    let mut h = Header { device: 0, mesh: None, rng: None, dtype: None, batch: 1, fuse: 4 };
    for w in words {
        let (k, v) = w.split_once('=').ok_or_else(|| format!("`{w}` is not key=value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{k}={v}: {e}"));
        match k {
            "device" => h.device = num(v)?,
            "mesh" => h.mesh = (v != "none").then(|| v.to_string()),
            "rng" => h.rng = Some(initc_ir::RngMode::from_name(v).ok_or_else(|| format!("unknown rng mode {v}"))?),
            "dtype" => h.dtype = Some(initc_ir::DType::from_name(v).ok_or_else(|| format!("unknown dtype {v}"))?),
            "batch" => h.batch = num(v)? as usize,
            "fuse" => h.fuse = num(v)? as usize,
            _ => return Err(format!("unknown header key `{k}`")),
        }
    }
    Ok(h)
}

fn launch_data(d: &LaunchData) -> String {
    let mut s = String::new();
    for (i, v) in d.values.iter().enumerate() {
        let v = match v {
            HostValue::Scalar(x) => format!("scalar {x}"),
            HostValue::NormalFactor(x) => format!("sqrt2 * {x}"),
            HostValue::Bits(b) => format!("bits 0x{b:x}"),
        };
        let _ = writeln!(s, "value{i} = {v}");
    }
    for (i, k) in d.keys.iter().enumerate() {
        let _ = writeln!(s, "key{i} = {k}");
    }
    for (i, TableDef { draw, chain }) in d.tables.iter().enumerate() {
        let _ = writeln!(s, "table{i} = {draw:?} then {chain:?}");
    }
    for (i, p) in d.pieces.iter().enumerate() {
        let _ = writeln!(s, "piece{i} = {:?} offset={:?} shape={:?}", p.global, p.region.offset, p.region.shape);
        for line in launch_data(&p.data).lines() {
            let _ = writeln!(s, "  {line}");
        }
    }
    s
}

/// The expected output of the module `src` under header `h`.
fn run(h: &Header, src: &str) -> Result<String, String> {
    let mut m = initc_ir::parse(src).map_err(|e| format!("module: {e}"))?;
    if let Some(r) = h.rng {
        m.rng = r;
    }
    let mesh = m.mesh.as_ref().map(|x| x.to_string());
    if mesh != h.mesh {
        return Err(format!("the header says mesh={:?}, the module has {mesh:?}", h.mesh));
    }
    let mut out = String::new();
    for (i, p) in m.params.iter().enumerate() {
        if let Some(dt) = h.dtype
            && p.ty.dtype != dt
        {
            return Err(format!("the header says dtype={}, parameter `{}` is {}", dt.name(), p.fqn, p.ty.dtype.name()));
        }
        let region = match (&m.mesh, &p.sharding) {
            (Some(mesh), Some(s)) => initc_shard::device_region(mesh, s, &p.ty.shape, h.device),
            _ => initc_shard::Region::full(&p.ty.shape),
        };
        let sp = shard_program(&m, i, &region).map_err(|e| format!("`{}`: {e}", p.fqn))?;
        let text = Batched::new(&sp.prog, h.batch, h.fuse).print();
        initc_stablehlo::check_text(&text).map_err(|e| format!("`{}`: MLIR rejects the program: {e}", p.fqn))?;
        let _ = writeln!(out, "; ---- {} offset={:?} shape={:?}: {}", p.fqn, region.offset, region.shape, sp.summary);
        let _ = writeln!(out, "; shard-program");
        out.push_str(&sp.prog.to_string());
        let _ = writeln!(out, "; launch");
        out.push_str(&launch_data(&sp.data));
        let _ =
            writeln!(out, "; stablehlo{}", if h.batch > 1 { format!(" x{} launches, fuse={}", h.batch, h.fuse) } else { String::new() });
        out.push_str(&text);
    }
    Ok(out)
}

#[test]
fn filetests() {
    let bless = std::env::var_os("INITC_BLESS").is_some();
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for e in std::fs::read_dir(dir()).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "txt") {
            files.insert(path.file_name().unwrap().to_string_lossy().into_owned(), path);
        }
    }
    assert!(files.len() >= 6, "filetests/ holds {} files", files.len());
    let mut failures = Vec::new();
    for (name, path) in &files {
        let content = std::fs::read_to_string(path).unwrap();
        let (input, want) = match content.split_once(&format!("{EXPECTED}\n")) {
            Some((i, w)) => (i.to_string(), Some(w.to_string())),
            None => (content.clone(), None),
        };
        let (first, module) = input.split_once('\n').unwrap_or((&input, ""));
        let got = match header(first).and_then(|h| run(&h, module)) {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if bless {
            std::fs::write(path, format!("{input}{EXPECTED}\n{got}")).unwrap();
            continue;
        }
        match want {
            Some(want) if want == got => {}
            Some(want) => {
                let line = want.lines().zip(got.lines()).position(|(a, b)| a != b).unwrap_or(want.lines().count().min(got.lines().count()));
                failures.push(format!(
                    "{name}: expected output differs at its line {}: expected {:?}, got {:?}",
                    line + 1,
                    want.lines().nth(line),
                    got.lines().nth(line)
                ));
            }
            None => failures.push(format!("{name}: no expected output (INITC_BLESS=1)")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_verifier_names_what_is_wrong() {
    use initc_stablehlo::sp::{Def, Id, Inst, Ty, VerifyError, verify};
    let m = initc_ir::parse(
        "module \"v\" seed=0\n%0 = seed : key\n%1 = normal %0 : f32[2,4]\nparam \"w\" : f32[2,4] = %1, axes=[embed,mlp], init=\"normal\"\n",
    )
    .unwrap();
    let good = shard_program(&m, 0, &initc_shard::Region::full(&[2, 4])).unwrap().prog;
    verify(&good).unwrap();
    let draw = good.defs.iter().position(|d| matches!(d.inst, Inst::Draw { .. })).unwrap();
    let key = good.defs.iter().position(|d| matches!(d.inst, Inst::Key { .. })).unwrap();

    // an operand used before its definition
    let mut p = good.clone();
    p.defs.swap(key, draw);
    if let Inst::Draw { key: k, .. } = &mut p.defs[key].inst {
        *k = Id(draw as u32);
    }
    assert!(matches!(verify(&p), Err(VerifyError::UseBeforeDef { .. })), "{:?}", verify(&p));

    // a key read from words that are no key slot
    let mut p = good.clone();
    p.defs[key].inst = Inst::Key { start: 0 };
    assert!(matches!(verify(&p), Err(VerifyError::NotASlot { start: 0, expected: "key", .. })), "{:?}", verify(&p));

    // a draw whose type is not the compute shape's
    let mut p = good.clone();
    p.defs[draw].ty = Ty::new(&[3], initc_ir::DType::F32);
    assert!(matches!(verify(&p), Err(VerifyError::ResultType { .. })), "{:?}", verify(&p));

    // a uniform draw without its two constants
    let mut p = good.clone();
    if let Inst::Draw { draw: d, .. } = &mut p.defs[draw].inst {
        *d = initc_stablehlo::sp::Draw::Uniform;
    }
    assert!(matches!(verify(&p), Err(VerifyError::DrawArity { expected: 2, given: 0, .. })), "{:?}", verify(&p));

    // a table that does not exist
    let mut p = good.clone();
    p.defs.push(Def { inst: Inst::Table { index: 0 }, ty: Ty::table() });
    assert!(matches!(verify(&p), Err(VerifyError::NoSuchTable { index: 0, tables: 0, .. })), "{:?}", verify(&p));

    // a result that is not the shard's type
    let mut p = good.clone();
    p.result = Id(key as u32);
    assert!(matches!(verify(&p), Err(VerifyError::ResultType { .. })), "{:?}", verify(&p));
}
