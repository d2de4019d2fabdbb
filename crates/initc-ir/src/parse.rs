//! The text format parser (grammar in [`crate::print`]). Each node is checked as it is read,
//! so an error points at the line and column where the problem is.

use crate::module::{Module, Param};
use crate::op::{BinaryOp, CmpDir, F64, Op, UnaryOp, Value};
use crate::sharding::{Mesh, MeshError, Sharding, Uneven};
use crate::types::{DType, Type};
use crate::verify::{NodeError, VerifyError, check_node, verify};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("expected {expected}, found {found}")]
    Expected { expected: &'static str, found: String },
    #[error("unknown op `{0}`")]
    UnknownOp(String),
    #[error("unknown element type `{0}` (one of f32, bf16, f16, f64, u8, u16, u32, u64, i32, bool, key)")]
    UnknownDType(String),
    #[error("nodes must be numbered in order: expected %{expected}, found %{found}")]
    Numbering { expected: u32, found: u32 },
    #[error("number `{0}` is out of range")]
    Range(String),
    #[error("unterminated string")]
    Unterminated,
    #[error("missing `module` header line")]
    MissingHeader,
    #[error("{0}")]
    Mesh(MeshError),
    #[error("{0}")]
    Node(#[from] NodeError),
    #[error("{0}")]
    Verify(#[from] VerifyError),
}

/// A parse error at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{line}:{col}: {kind}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    /// Boxed: keeps `Result<_, ParseError>` small on the parser's hot paths.
    pub kind: Box<ParseErrorKind>,
}

/// Parses and verifies a module.
pub fn parse(text: &str) -> Result<Module, ParseError> {
    let mut m: Option<Module> = None;
    let mut last_line = 0;
    let mut param_lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        last_line = line_no;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut c = Cursor::new(raw, line_no);
        match m.as_mut() {
            None => m = Some(c.header()?),
            Some(m) => {
                let n = m.params.len();
                c.statement(m)?;
                if m.params.len() > n {
                    param_lines.push(line_no);
                }
            }
        }
        c.end()?;
    }
    let m = m.ok_or_else(|| ParseError { line: last_line.max(1), col: 1, kind: Box::new(ParseErrorKind::MissingHeader) })?;
    verify(&m).map_err(|e| {
        // Point at the offending `param` line where the error names one.
        let line = m.params.iter().zip(&param_lines).rev().find(|(p, _)| e.to_string().contains(&format!("`{}`", p.fqn))).map(|(_, &l)| l);
        ParseError { line: line.unwrap_or(last_line.max(1)), col: 1, kind: Box::new(e.into()) }
    })?;
    Ok(m)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Val(u32),
    Num(String),
    Str(String),
    Punct(char),
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Val(v) => format!("`%{v}`"),
        Tok::Num(s) => format!("number `{s}`"),
        Tok::Str(s) => format!("string {}", crate::print::quote(s)),
        Tok::Punct(c) => format!("`{c}`"),
        Tok::End => "end of line".into(),
    }
}

struct Cursor<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    _src: &'a str,
}

impl<'a> Cursor<'a> {
    fn new(src: &'a str, line: usize) -> Cursor<'a> {
        Cursor { chars: src.chars().collect(), pos: 0, line, _src: src }
    }

    fn err(&self, col: usize, kind: ParseErrorKind) -> ParseError {
        ParseError { line: self.line, col: col + 1, kind: Box::new(kind) }
    }

    fn skip_ws(&mut self) {
        while self.pos < self.chars.len() && self.chars[self.pos].is_whitespace() {
            self.pos += 1;
        }
    }

    /// Reads the next token; returns it with its 0-based column.
    fn next(&mut self) -> Result<(Tok, usize), ParseError> {
        self.skip_ws();
        let start = self.pos;
        let Some(&c) = self.chars.get(self.pos) else { return Ok((Tok::End, start)) };
        let take_while = |s: &mut Self, f: fn(char) -> bool| {
            let b = s.pos;
            while s.pos < s.chars.len() && f(s.chars[s.pos]) {
                s.pos += 1;
            }
            s.chars[b..s.pos].iter().collect::<String>()
        };
        let tok = if c == '%' {
            self.pos += 1;
            let digits = take_while(self, |c| c.is_ascii_digit());
            let v = digits.parse::<u32>().map_err(|_| {
                self.err(start, ParseErrorKind::Expected { expected: "a value number after `%`", found: format!("`%{digits}`") })
            })?;
            Tok::Val(v)
        } else if c == '"' {
            self.pos += 1;
            Tok::Str(self.string(start)?)
        } else if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' {
            Tok::Num(take_while(self, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.')))
        } else if c.is_alphabetic() || c == '_' {
            Tok::Ident(take_while(self, |c| c.is_alphanumeric() || c == '_'))
        } else {
            self.pos += 1;
            Tok::Punct(c)
        };
        Ok((tok, start))
    }

    fn string(&mut self, start: usize) -> Result<String, ParseError> {
        let mut s = String::new();
        loop {
            let Some(&c) = self.chars.get(self.pos) else { return Err(self.err(start, ParseErrorKind::Unterminated)) };
            self.pos += 1;
            match c {
                '"' => return Ok(s),
                '\\' => {
                    let Some(&e) = self.chars.get(self.pos) else { return Err(self.err(start, ParseErrorKind::Unterminated)) };
                    self.pos += 1;
                    match e {
                        '"' | '\\' => s.push(e),
                        'u' => s.push(self.unicode_escape(start)?),
                        _ => {
                            return Err(self.err(
                                self.pos - 2,
                                ParseErrorKind::Expected { expected: "`\\\"`, `\\\\` or `\\u{..}`", found: format!("`\\{e}`") },
                            ));
                        }
                    }
                }
                c => s.push(c),
            }
        }
    }

    fn unicode_escape(&mut self, start: usize) -> Result<char, ParseError> {
        let rest: String = self.chars[self.pos..].iter().collect();
        let bad = || ParseErrorKind::Expected { expected: "`\\u{hex}`", found: "a malformed escape".into() };
        let close = rest.find('}').filter(|_| rest.starts_with('{')).ok_or_else(|| self.err(start, bad()))?;
        let ch = u32::from_str_radix(&rest[1..close], 16).ok().and_then(char::from_u32).ok_or_else(|| self.err(start, bad()))?;
        self.pos += rest[..=close].chars().count();
        Ok(ch)
    }

    fn expect_punct(&mut self, p: char, what: &'static str) -> Result<(), ParseError> {
        match self.next()? {
            (Tok::Punct(c), _) if c == p => Ok(()),
            (t, col) => Err(self.err(col, ParseErrorKind::Expected { expected: what, found: describe(&t) })),
        }
    }

    fn ident(&mut self, what: &'static str) -> Result<(String, usize), ParseError> {
        match self.next()? {
            (Tok::Ident(s), col) => Ok((s, col)),
            (t, col) => Err(self.err(col, ParseErrorKind::Expected { expected: what, found: describe(&t) })),
        }
    }

    fn keyword(&mut self, kw: &'static str) -> Result<(), ParseError> {
        match self.next()? {
            (Tok::Ident(s), _) if s == kw => Ok(()),
            (t, col) => Err(self.err(col, ParseErrorKind::Expected { expected: kw, found: describe(&t) })),
        }
    }

    /// `name=` before an attribute value.
    fn attr(&mut self, name: &'static str) -> Result<(), ParseError> {
        self.keyword(name)?;
        self.expect_punct('=', "`=`")
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.next()? {
            (Tok::Val(v), _) => Ok(Value(v)),
            (t, col) => Err(self.err(col, ParseErrorKind::Expected { expected: "a value `%N`", found: describe(&t) })),
        }
    }

    fn string_tok(&mut self, what: &'static str) -> Result<String, ParseError> {
        match self.next()? {
            (Tok::Str(s), _) => Ok(s),
            (t, col) => Err(self.err(col, ParseErrorKind::Expected { expected: what, found: describe(&t) })),
        }
    }

    fn number(&mut self, what: &'static str) -> Result<(String, usize), ParseError> {
        match self.next()? {
            (Tok::Num(s), col) => Ok((s, col)),
            (Tok::Ident(s), col) if matches!(s.as_str(), "inf" | "NaN") => Ok((s, col)),
            (t, col) => Err(self.err(col, ParseErrorKind::Expected { expected: what, found: describe(&t) })),
        }
    }

    fn uint<T: std::str::FromStr>(&mut self, what: &'static str) -> Result<T, ParseError> {
        let (s, col) = self.number(what)?;
        let parsed = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok().and_then(|v| v.to_string().parse().ok()),
            None => s.parse().ok(),
        };
        parsed.ok_or_else(|| self.err(col, ParseErrorKind::Range(s)))
    }

    fn float(&mut self, what: &'static str) -> Result<F64, ParseError> {
        let (s, col) = self.number(what)?;
        s.parse::<f64>().map(F64::new).map_err(|_| self.err(col, ParseErrorKind::Expected { expected: what, found: format!("`{s}`") }))
    }

    fn uint_list<T: std::str::FromStr>(&mut self) -> Result<Vec<T>, ParseError> {
        self.expect_punct('[', "`[`")?;
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            if self.chars.get(self.pos) == Some(&']') {
                self.pos += 1;
                return Ok(out);
            }
            if !out.is_empty() {
                self.expect_punct(',', "`,` or `]`")?;
            }
            out.push(self.uint("an unsigned integer")?);
        }
    }

    fn ty(&mut self) -> Result<Type, ParseError> {
        let (name, col) = self.ident("a type such as `f32[4,8]` or `key`")?;
        let dtype = DType::from_name(&name).ok_or_else(|| self.err(col, ParseErrorKind::UnknownDType(name.clone())))?;
        self.skip_ws();
        if dtype == DType::Key && self.chars.get(self.pos) != Some(&'[') {
            return Ok(Type::key());
        }
        Ok(Type::new(dtype, self.uint_list::<u64>()?))
    }

    fn end(&mut self) -> Result<(), ParseError> {
        match self.next()? {
            (Tok::End, _) => Ok(()),
            (t, col) => Err(self.err(col, ParseErrorKind::Expected { expected: "end of line", found: describe(&t) })),
        }
    }

    fn header(&mut self) -> Result<Module, ParseError> {
        let (kw, col) = self.ident("`module`")?;
        if kw != "module" {
            return Err(self.err(col, ParseErrorKind::MissingHeader));
        }
        let name = self.string_tok("a quoted module name")?;
        self.attr("seed")?;
        let seed = self.uint("a u64 seed")?;
        let mut rng = crate::RngMode::Jax;
        let save = self.pos;
        match self.next()? {
            (Tok::Ident(s), _) if s == "rng" => {
                self.expect_punct('=', "`=`")?;
                let (v, c) = self.ident("`jax` or `fast`")?;
                rng = crate::RngMode::from_name(&v)
                    .ok_or_else(|| self.err(c, ParseErrorKind::Expected { expected: "`jax` or `fast`", found: format!("`{v}`") }))?;
            }
            _ => self.pos = save,
        }
        Ok(Module { name, seed, rng, ..Module::default() })
    }

    fn statement(&mut self, m: &mut Module) -> Result<(), ParseError> {
        self.skip_ws();
        let col = self.pos;
        match self.next()? {
            (Tok::Val(v), _) => self.node(m, v, col),
            (Tok::Ident(s), _) if s == "param" => self.param(m),
            (Tok::Ident(s), _) if s == "mesh" => self.mesh(m, col),
            (t, _) => Err(self.err(col, ParseErrorKind::Expected { expected: "`%N = ...` or `param`", found: describe(&t) })),
        }
    }

    fn node(&mut self, m: &mut Module, v: u32, col: usize) -> Result<(), ParseError> {
        if v as usize != m.nodes.len() {
            return Err(self.err(col, ParseErrorKind::Numbering { expected: m.nodes.len() as u32, found: v }));
        }
        self.expect_punct('=', "`=`")?;
        let (mnemonic, op_col) = self.ident("an op name")?;
        let op = self.op(&mnemonic, op_col)?;
        self.expect_punct(':', "`:` and the result type")?;
        let ty = self.ty()?;
        check_node(&m.nodes, &op, &ty).map_err(|e| self.err(op_col, e.into()))?;
        m.push_node(op, ty);
        Ok(())
    }

    fn op(&mut self, mnemonic: &str, col: usize) -> Result<Op, ParseError> {
        if let Some(op) = UnaryOp::from_name(mnemonic) {
            return Ok(Op::Unary { op, x: self.value()? });
        }
        if let Some(op) = BinaryOp::from_name(mnemonic) {
            let a = self.value()?;
            self.expect_punct(',', "`,`")?;
            return Ok(Op::Binary { op, a, b: self.value()? });
        }
        let op = match mnemonic {
            "seed" => Op::Seed,
            "fold_in" => {
                let key = self.value()?;
                self.expect_punct(',', "`,`")?;
                Op::FoldIn { key, data: self.uint("a u32")? }
            }
            "split" => {
                let key = self.value()?;
                self.expect_punct(',', "`,`")?;
                Op::Split { key, count: self.uint("a count")? }
            }
            "random_bits" => {
                let key = self.value()?;
                self.expect_punct(',', "`,`")?;
                Op::RandomBits { key, width: self.uint("a bit width")? }
            }
            "uniform" => {
                let key = self.value()?;
                self.expect_punct(',', "`,`")?;
                self.attr("min")?;
                let min = self.float("a float")?;
                self.expect_punct(',', "`,`")?;
                self.attr("max")?;
                Op::Uniform { key, min, max: self.float("a float")? }
            }
            "normal" => Op::Normal { key: self.value()? },
            "truncated_normal" => {
                let key = self.value()?;
                self.expect_punct(',', "`,`")?;
                self.attr("lower")?;
                let lower = self.float("a float")?;
                self.expect_punct(',', "`,`")?;
                self.attr("upper")?;
                Op::TruncatedNormal { key, lower, upper: self.float("a float")? }
            }
            "full" => Op::Full { value: self.float("a float")? },
            "iota" => {
                self.attr("dim")?;
                Op::Iota { dim: self.uint("a dimension")? }
            }
            "cmp" => {
                let (d, dcol) = self.ident("a comparison (eq, ne, lt, le, gt, ge)")?;
                let dir = CmpDir::from_name(&d).ok_or_else(|| {
                    self.err(dcol, ParseErrorKind::Expected { expected: "eq, ne, lt, le, gt or ge", found: format!("`{d}`") })
                })?;
                let a = self.value()?;
                self.expect_punct(',', "`,`")?;
                Op::Compare { dir, a, b: self.value()? }
            }
            "select" => {
                let pred = self.value()?;
                self.expect_punct(',', "`,`")?;
                let on_true = self.value()?;
                self.expect_punct(',', "`,`")?;
                Op::Select { pred, on_true, on_false: self.value()? }
            }
            "convert" => Op::Convert { x: self.value()? },
            "reshape" => Op::Reshape { x: self.value()? },
            "broadcast" => {
                let x = self.value()?;
                self.expect_punct(',', "`,`")?;
                self.attr("dims")?;
                Op::Broadcast { x, dims: self.uint_list()? }
            }
            "transpose" => {
                let x = self.value()?;
                self.expect_punct(',', "`,`")?;
                self.attr("perm")?;
                Op::Transpose { x, perm: self.uint_list()? }
            }
            "slice" => {
                let x = self.value()?;
                self.expect_punct(',', "`,`")?;
                self.attr("start")?;
                let start = self.uint_list()?;
                self.expect_punct(',', "`,`")?;
                self.attr("limit")?;
                Op::Slice { x, start, limit: self.uint_list()? }
            }
            "concat" => {
                let mut xs = Vec::new();
                loop {
                    match self.next()? {
                        (Tok::Val(v), _) => xs.push(Value(v)),
                        (Tok::Ident(s), _) if s == "dim" => break,
                        (t, c) => return Err(self.err(c, ParseErrorKind::Expected { expected: "a value or `dim=`", found: describe(&t) })),
                    }
                    self.expect_punct(',', "`,`")?;
                }
                self.expect_punct('=', "`=`")?;
                Op::Concat { xs, dim: self.uint("a dimension")? }
            }
            other => return Err(self.err(col, ParseErrorKind::UnknownOp(other.to_string()))),
        };
        Ok(op)
    }

    fn param(&mut self, m: &mut Module) -> Result<(), ParseError> {
        let fqn = self.string_tok("a quoted parameter name")?;
        self.expect_punct(':', "`:`")?;
        let ty = self.ty()?;
        self.expect_punct('=', "`=`")?;
        let value = self.value()?;
        self.expect_punct(',', "`,`")?;
        self.attr("axes")?;
        self.expect_punct('[', "`[`")?;
        let axes = self.ident_list(']', "an axis name, `,` or `]`")?;
        self.expect_punct(',', "`,`")?;
        self.attr("init")?;
        let init = self.string_tok("a quoted initializer description")?;
        let sharding = match self.next()? {
            (Tok::End, _) => None,
            (Tok::Punct(','), _) => {
                self.attr("sharding")?;
                Some(self.sharding()?)
            }
            (t, c) => {
                return Err(self.err(c, ParseErrorKind::Expected { expected: "`, sharding=[...]` or end of line", found: describe(&t) }));
            }
        };
        m.params.push(Param { fqn, value, ty, axes, init, sharding });
        Ok(())
    }

    /// Comma-separated identifiers up to `close` (the opening bracket already read).
    fn ident_list(&mut self, close: char, expected: &'static str) -> Result<Vec<String>, ParseError> {
        let mut out = Vec::new();
        loop {
            match self.next()? {
                (Tok::Punct(c), _) if c == close => return Ok(out),
                (Tok::Punct(','), _) if !out.is_empty() => {}
                (Tok::Ident(s), _) => out.push(s),
                (t, c) => return Err(self.err(c, ParseErrorKind::Expected { expected, found: describe(&t) })),
            }
        }
    }

    /// `[{tp,fsdp},{}]`
    fn sharding(&mut self) -> Result<Sharding, ParseError> {
        self.expect_punct('[', "`[`")?;
        let mut dims = Vec::new();
        loop {
            match self.next()? {
                (Tok::Punct(']'), _) => return Ok(Sharding { dims }),
                (Tok::Punct(','), _) if !dims.is_empty() => {}
                (Tok::Punct('{'), _) => dims.push(self.ident_list('}', "a mesh axis, `,` or `}`")?),
                (t, c) => return Err(self.err(c, ParseErrorKind::Expected { expected: "`{axes}`, `,` or `]`", found: describe(&t) })),
            }
        }
    }

    /// `mesh [fsdp=4,tp=2]` with an optional ` uneven=pad`.
    fn mesh(&mut self, m: &mut Module, col: usize) -> Result<(), ParseError> {
        if m.mesh.is_some() || !m.nodes.is_empty() || !m.params.is_empty() {
            return Err(
                self.err(col, ParseErrorKind::Expected { expected: "one `mesh` line, right after the header", found: "`mesh`".into() })
            );
        }
        self.expect_punct('[', "`[`")?;
        let mut axes = Vec::new();
        loop {
            match self.next()? {
                (Tok::Punct(']'), _) => break,
                (Tok::Punct(','), _) if !axes.is_empty() => {}
                (Tok::Ident(name), _) => {
                    self.expect_punct('=', "`=`")?;
                    axes.push((name, self.uint::<u64>("an axis size")?));
                }
                (t, c) => return Err(self.err(c, ParseErrorKind::Expected { expected: "`axis=size`, `,` or `]`", found: describe(&t) })),
            }
        }
        let uneven = match self.next()? {
            (Tok::End, _) => Uneven::Error,
            (Tok::Ident(s), _) if s == "uneven" => {
                self.expect_punct('=', "`=`")?;
                let (v, c) = self.ident("`pad` or `error`")?;
                Uneven::from_name(&v)
                    .ok_or_else(|| self.err(c, ParseErrorKind::Expected { expected: "`pad` or `error`", found: format!("`{v}`") }))?
            }
            (t, c) => return Err(self.err(c, ParseErrorKind::Expected { expected: "`uneven=pad` or end of line", found: describe(&t) })),
        };
        let mesh = Mesh::new(axes, uneven).map_err(|e| self.err(col, ParseErrorKind::Mesh(e)))?;
        m.mesh = Some(mesh);
        Ok(())
    }
}
