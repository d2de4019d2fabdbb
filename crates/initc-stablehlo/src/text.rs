//! A small builder for MLIR text: SSA values with their types, generic-form StableHLO/CHLO ops
//! and `func.func` bodies. The text is parsed back by MLIR (see `crate::mlir`), which checks
//! its structure and prints it (or writes bytecode).

use std::fmt::Write;

use initc_ir::DType;

/// An SSA value and its MLIR type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Val {
    pub name: String,
    pub ty: String,
}

/// MLIR element type of a dtype.
pub(crate) fn elem(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        DType::F64 => "f64",
        DType::U8 => "ui8",
        DType::U16 => "ui16",
        DType::U32 => "ui32",
        DType::U64 => "ui64",
        DType::I32 => "i32",
        DType::Bool => "i1",
        DType::Key => "ui32",
    }
}

/// `tensor<4x8xf32>`, `tensor<f32>`.
pub(crate) fn tensor(shape: &[u64], elem: &str) -> String {
    let mut s = String::from("tensor<");
    for d in shape {
        let _ = write!(s, "{d}x");
    }
    s.push_str(elem);
    s.push('>');
    s
}

/// `4096x4096` or `s` (scalar), for function names.
pub(crate) fn shape_tag(shape: &[u64]) -> String {
    if shape.is_empty() {
        return "s".into();
    }
    shape.iter().map(u64::to_string).collect::<Vec<_>>().join("x")
}

/// `array<i64: 1, 0>`.
pub(crate) fn i64_array(xs: impl IntoIterator<Item = u64>) -> String {
    let v: Vec<String> = xs.into_iter().map(|x| x.to_string()).collect();
    if v.is_empty() { "array<i64>".into() } else { format!("array<i64: {}>", v.join(", ")) }
}

/// One function body under construction.
pub(crate) struct Body {
    pub lines: Vec<String>,
    next: usize,
    /// ` loc("fqn")` appended to ops while set.
    pub loc: Option<String>,
}

impl Body {
    /// A body whose ops are located at `loc` until it is changed.
    pub fn new(loc: &str) -> Body {
        Body { lines: Vec::new(), next: 0, loc: Some(loc.to_string()) }
    }

    fn fresh(&mut self) -> String {
        let n = format!("%{}", self.next);
        self.next += 1;
        n
    }

    fn loc_suffix(&self) -> String {
        self.loc.as_ref().map(|l| format!(" loc({})", quote(l))).unwrap_or_default()
    }

    /// A generic-form op with one result: `%n = "name"(ops) {attrs} : (types) -> ty`.
    pub fn op(&mut self, name: &str, operands: &[&Val], attrs: &str, ty: &str) -> Val {
        let r = self.fresh();
        let ops: Vec<&str> = operands.iter().map(|v| v.name.as_str()).collect();
        let tys: Vec<&str> = operands.iter().map(|v| v.ty.as_str()).collect();
        let attrs = if attrs.is_empty() { String::new() } else { format!(" {{{attrs}}}") };
        let loc = self.loc_suffix();
        self.lines.push(format!("{r} = \"{name}\"({}){attrs} : ({}) -> {ty}{loc}", ops.join(", "), tys.join(", ")));
        Val { name: r, ty: ty.to_string() }
    }

    /// `stablehlo.constant` holding `literal` (a dense element, e.g. `0x3F800000` or `7`).
    pub fn constant(&mut self, literal: &str, ty: &str) -> Val {
        self.op("stablehlo.constant", &[], &format!("value = dense<{literal}> : {ty}"), ty)
    }

    /// Elementwise op whose result type is its first operand's.
    pub fn ew(&mut self, name: &str, operands: &[&Val]) -> Val {
        let ty = operands[0].ty.clone();
        self.op(name, operands, "", &ty)
    }

    /// A scalar broadcast to `ty` (a tensor type of any rank).
    pub fn splat(&mut self, scalar: &Val, ty: &str) -> Val {
        self.op("stablehlo.broadcast_in_dim", &[scalar], "broadcast_dimensions = array<i64>", ty)
    }

    /// `func.call @callee(args)` with `results` result types.
    pub fn call(&mut self, callee: &str, args: &[&Val], results: &[String]) -> Vec<Val> {
        let r = self.fresh();
        let ops: Vec<&str> = args.iter().map(|v| v.name.as_str()).collect();
        let tys: Vec<&str> = args.iter().map(|v| v.ty.as_str()).collect();
        let loc = self.loc_suffix();
        let (lhs, outs) = if results.len() == 1 {
            (r.clone(), vec![Val { name: r, ty: results[0].clone() }])
        } else {
            (
                format!("{r}:{}", results.len()),
                results.iter().enumerate().map(|(i, t)| Val { name: format!("{r}#{i}"), ty: t.clone() }).collect(),
            )
        };
        self.lines.push(format!("{lhs} = func.call @{callee}({}) : ({}) -> ({}){loc}", ops.join(", "), tys.join(", "), results.join(", ")));
        outs
    }

    pub fn ret(&mut self, vals: &[&Val]) {
        let names: Vec<&str> = vals.iter().map(|v| v.name.as_str()).collect();
        let tys: Vec<&str> = vals.iter().map(|v| v.ty.as_str()).collect();
        let loc = self.loc_suffix();
        if vals.is_empty() {
            self.lines.push(format!("func.return{loc}"));
        } else {
            self.lines.push(format!("func.return {} : {}{loc}", names.join(", "), tys.join(", ")));
        }
    }
}

/// A function's argument values `%argN` for the given types.
pub(crate) fn args(types: &[String]) -> Vec<Val> {
    types.iter().enumerate().map(|(i, t)| Val { name: format!("%arg{i}"), ty: t.clone() }).collect()
}

/// `func.func private @name(args) -> (results) { body }`.
pub(crate) fn private_func(name: &str, arg_types: &[String], results: &[String], body: &Body) -> String {
    let loc = format!("loc({})", quote(name));
    let a: Vec<String> = arg_types.iter().enumerate().map(|(i, t)| format!("%arg{i}: {t} {loc}")).collect();
    let mut s = format!("  func.func private @{name}({}) -> ({}) {{\n", a.join(", "), results.join(", "));
    for l in &body.lines {
        let _ = writeln!(s, "    {l}");
    }
    let _ = writeln!(s, "  }} {loc}");
    s
}

/// A double-quoted MLIR string literal.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
