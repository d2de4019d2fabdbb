//! The shard-program verifier: run after lowering, so that the printer and the device runtime
//! can rely on a well-formed program (every operand defined before its use and of the type its
//! instruction reads, every static-word read naming a slot of its kind).

use initc_ir::DType;

use super::{Draw, Id, Inst, ShardProg, Slot, Ty};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{inst}: operand {operand} is not defined before it")]
    UseBeforeDef { inst: Id, operand: Id },
    #[error("{inst}: operand {operand} has type {found}, expected {expected}")]
    OperandType { inst: Id, operand: Id, expected: Ty, found: Ty },
    #[error("{inst}: result type {found}, expected {expected}")]
    ResultType { inst: Id, expected: Ty, found: Ty },
    #[error("{inst}: no {expected} slot starts at word {start}")]
    NotASlot { inst: Id, start: usize, expected: &'static str },
    #[error("{inst}: table {index} does not exist (the program has {tables})")]
    NoSuchTable { inst: Id, index: usize, tables: usize },
    #[error("{inst}: lane {lane} of {lanes} in a program of {program} lanes")]
    BadLane { inst: Id, lane: u64, lanes: u64, program: u64 },
    #[error("{inst}: a {draw:?} draw takes {expected} constants, given {given}")]
    DrawArity { inst: Id, draw: Draw, expected: usize, given: usize },
    #[error("{inst}: {lanes} lanes packed in a program of {program} lanes")]
    PackArity { inst: Id, lanes: usize, program: u64 },
    #[error("the result {result} is not a definition")]
    NoResult { result: Id },
    #[error("the first slot is {found}, not the shard's counter base")]
    NoBase { found: String },
    #[error("slot {slot}: key {found} where key {expected} comes next")]
    KeyOrder { slot: usize, expected: usize, found: usize },
    #[error("slot {slot}: piece {func} of {funcs} with {words} words (its program has {expected})")]
    BadPiece { slot: usize, func: usize, funcs: usize, words: usize, expected: usize },
    #[error("{inst}: {given} table arguments for a piece of {expected}")]
    CallTables { inst: Id, expected: usize, given: usize },
    #[error("{inst}: {found} is not {expected}")]
    Shape { inst: Id, expected: String, found: Ty },
    #[error("piece {func}: {err}")]
    InPiece { func: usize, err: Box<VerifyError> },
}

/// Checks `p`'s invariants.
pub fn verify(p: &ShardProg) -> Result<(), VerifyError> {
    let base = if p.lanes > 1 { Slot::GroupBase(p.lanes) } else { Slot::Base };
    if p.slots.first() != Some(&base) {
        return Err(VerifyError::NoBase { found: p.slots.first().map_or("nothing".into(), Slot::to_string) });
    }
    let mut next_key = 0;
    for (i, s) in p.slots.iter().enumerate() {
        if let Slot::Key(k) = *s {
            if k != next_key {
                return Err(VerifyError::KeyOrder { slot: i, expected: next_key, found: k });
            }
            next_key += 1;
        }
    }
    for (i, s) in p.slots.iter().enumerate() {
        if let Slot::Piece { func, words } = *s {
            let expected = p.funcs.get(func).map_or(usize::MAX, ShardProg::words);
            if words != expected {
                return Err(VerifyError::BadPiece { slot: i, func, funcs: p.funcs.len(), words, expected });
            }
        }
    }
    for (func, f) in p.funcs.iter().enumerate() {
        verify(f).map_err(|err| VerifyError::InPiece { func, err: Box::new(err) })?;
    }
    let compute = |dt| Ty::new(&p.compute, dt);
    for (i, d) in p.defs.iter().enumerate() {
        let inst = Id(i as u32);
        for operand in d.inst.operands() {
            if operand.index() >= i {
                return Err(VerifyError::UseBeforeDef { inst, operand });
            }
        }
        let operand = |operand: Id, expected: &Ty| -> Result<(), VerifyError> {
            let found = p.ty(operand);
            if found != expected {
                return Err(VerifyError::OperandType { inst, operand, expected: expected.clone(), found: found.clone() });
            }
            Ok(())
        };
        let result = |expected: Ty| -> Result<(), VerifyError> {
            if d.ty != expected {
                return Err(VerifyError::ResultType { inst, expected, found: d.ty.clone() });
            }
            Ok(())
        };
        let slot = |start: usize, expected: &'static str, ok: fn(Slot) -> bool| -> Result<Slot, VerifyError> {
            p.slot_at(start).filter(|&s| ok(s)).ok_or(VerifyError::NotASlot { inst, start, expected })
        };
        let lane = |l: &Option<super::Lane>| -> Result<(), VerifyError> {
            match *l {
                None if p.lanes == 1 => Ok(()),
                Some(l) if l.lanes == p.lanes && l.lane < l.lanes => Ok(()),
                _ => {
                    let (lane, lanes) = l.map_or((0, 1), |l| (l.lane, l.lanes));
                    Err(VerifyError::BadLane { inst, lane, lanes, program: p.lanes })
                }
            }
        };
        match &d.inst {
            Inst::Key { start } => {
                slot(*start, "key", |s| matches!(s, Slot::Key(_)))?;
                result(Ty::key())?;
            }
            Inst::Scalar { start } => {
                let Slot::Scalar(dt) = slot(*start, "scalar", |s| matches!(s, Slot::Scalar(_)))? else { unreachable!() };
                result(Ty::scalar(dt))?;
            }
            Inst::Offset { start } => {
                slot(*start, "offset", |s| matches!(s, Slot::Offset(_)))?;
                result(Ty::scalar(DType::U64))?;
            }
            Inst::Table { index } => {
                if *index >= p.tables() {
                    return Err(VerifyError::NoSuchTable { inst, index: *index, tables: p.tables() });
                }
                result(Ty::table())?;
            }
            Inst::Splat { x } | Inst::Reshape { x } => operand(*x, &Ty::scalar(d.ty.dtype))?,
            Inst::Draw { draw, key, consts, lane: l } => {
                operand(*key, &Ty::key())?;
                if consts.len() != draw.consts() {
                    return Err(VerifyError::DrawArity { inst, draw: *draw, expected: draw.consts(), given: consts.len() });
                }
                for &c in consts {
                    operand(c, &Ty::scalar(d.ty.dtype))?;
                }
                lane(l)?;
                result(compute(d.ty.dtype))?;
            }
            Inst::TableLookup { key, table } => {
                operand(*key, &Ty::key())?;
                operand(*table, &Ty::table())?;
                result(compute(DType::U32))?;
            }
            Inst::PairHalf { pair, lane } => {
                operand(*pair, &compute(DType::U32))?;
                if *lane >= 2 || p.lanes != 2 {
                    return Err(VerifyError::BadLane { inst, lane: *lane, lanes: 2, program: p.lanes });
                }
                result(compute(DType::BF16))?;
            }
            Inst::Iota { offset, lane: l, .. } => {
                operand(*offset, &Ty::scalar(DType::U64))?;
                lane(l)?;
                result(compute(d.ty.dtype))?;
            }
            Inst::Unary { x, .. } => operand(*x, &d.ty)?,
            Inst::Binary { a, b, .. } => {
                operand(*a, &d.ty)?;
                operand(*b, &d.ty)?;
            }
            Inst::Compare { a, b, .. } => {
                operand(*b, p.ty(*a))?;
                result(Ty::new(&p.ty(*a).shape, DType::Bool))?;
            }
            Inst::Select { pred, on_true, on_false } => {
                operand(*pred, &Ty::new(&d.ty.shape, DType::Bool))?;
                operand(*on_true, &d.ty)?;
                operand(*on_false, &d.ty)?;
            }
            Inst::Convert { x } => operand(*x, &Ty::new(&d.ty.shape, p.ty(*x).dtype))?,
            Inst::Pack { lanes } => {
                if lanes.len() as u64 != p.lanes || p.lanes < 2 {
                    return Err(VerifyError::PackArity { inst, lanes: lanes.len(), program: p.lanes });
                }
                for &x in lanes {
                    operand(x, &compute(d.ty.dtype))?;
                }
                result(Ty::new(&p.shape, p.dtype))?;
            }
            Inst::Unpair { pair } => {
                operand(*pair, &compute(DType::U32))?;
                result(Ty::new(&p.shape, DType::BF16))?;
            }
            Inst::ToLocal { x } => {
                operand(*x, &compute(d.ty.dtype))?;
                result(Ty::new(&p.shape, d.ty.dtype))?;
            }
            Inst::Call { func, start, tables } => {
                let Slot::Piece { func: f, .. } = slot(*start, "piece", |s| matches!(s, Slot::Piece { .. }))? else { unreachable!() };
                if f != *func {
                    return Err(VerifyError::NotASlot { inst, start: *start, expected: "piece of this function" });
                }
                let callee = &p.funcs[f];
                if tables.len() != callee.tables() {
                    return Err(VerifyError::CallTables { inst, expected: callee.tables(), given: tables.len() });
                }
                for &t in tables {
                    operand(t, &Ty::table())?;
                }
                result(Ty::new(&callee.shape, callee.dtype))?;
            }
            Inst::View { x } => {
                let x_ty = p.ty(*x);
                if x_ty.numel() != d.ty.numel() || x_ty.dtype != d.ty.dtype {
                    return Err(VerifyError::Shape { inst, expected: format!("a reshape of {x_ty}"), found: d.ty.clone() });
                }
            }
            Inst::Concat { xs, dim } => {
                // every operand: the result's rank, dtype and extents but along `dim`
                let rank = d.ty.shape.len();
                let mut n = 0;
                for &x in xs {
                    let t = p.ty(x);
                    let fits = t.shape.len() == rank
                        && *dim < rank
                        && t.dtype == d.ty.dtype
                        && (0..rank).all(|k| k == *dim || t.shape[k] == d.ty.shape[k]);
                    if !fits {
                        let mut expected = d.ty.shape.clone();
                        if let Some(e) = expected.get_mut(*dim) {
                            *e = t.shape.get(*dim).copied().unwrap_or(0);
                        }
                        return Err(VerifyError::OperandType {
                            inst,
                            operand: x,
                            expected: Ty::new(&expected, d.ty.dtype),
                            found: t.clone(),
                        });
                    }
                    n += t.shape[*dim];
                }
                let mut shape = d.ty.shape.clone();
                if let Some(e) = shape.get_mut(*dim) {
                    *e = n;
                }
                result(Ty::new(&shape, d.ty.dtype))?;
            }
        }
    }
    let Some(r) = p.defs.get(p.result.index()) else {
        return Err(VerifyError::NoResult { result: p.result });
    };
    let expected = Ty::new(&p.shape, p.dtype);
    if r.ty != expected {
        return Err(VerifyError::ResultType { inst: p.result, expected, found: r.ty.clone() });
    }
    Ok(())
}
