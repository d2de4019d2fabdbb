//! MLIR through melior: parse the emitted text with the `func` dialect loaded and StableHLO,
//! CHLO and Shardy as unregistered dialects (melior has none of them), verify its structure,
//! and print it (with FQN locations) or write bytecode. MLIR checks SSA and types; XLA is the
//! judge of StableHLO semantics (tools/oracle).

use melior::Context;
use melior::dialect::DialectHandle;
use melior::ir::Module;
use melior::ir::operation::{OperationLike, OperationPrintingFlags};

use crate::LowerError;

fn with_module<T>(text: &str, f: impl FnOnce(&Module) -> Result<T, LowerError>) -> Result<T, LowerError> {
    let ctx = Context::new();
    ctx.set_allow_unregistered_dialects(true);
    DialectHandle::func().load_dialect(&ctx);
    let diags = std::cell::RefCell::new(Vec::new());
    let id = ctx.attach_diagnostic_handler(|d| {
        diags.borrow_mut().push(format!("{}: {d}", d.location()));
        true
    });
    let result = match Module::parse(&ctx, text) {
        None => Err(LowerError::Mlir(diags.borrow().join("\n"))),
        Some(m) if !m.as_operation().verify() => Err(LowerError::Mlir(format!("verification failed: {}", diags.borrow().join("\n")))),
        Some(m) => f(&m),
    };
    ctx.detach_diagnostic_handler(id);
    result
}

/// MLIR's own printing of the module, locations (parameter FQNs) included.
pub(crate) fn print(text: &str) -> Result<String, LowerError> {
    with_module(text, |m| {
        let flags = OperationPrintingFlags::new().enable_debug_info(true, false);
        m.as_operation().to_string_with_flags(flags).map_err(|e| LowerError::Mlir(e.to_string()))
    })
}

/// MLIR bytecode of the module (`.mlirbc`), accepted wherever the text is.
pub(crate) fn bytecode(text: &str) -> Result<Vec<u8>, LowerError> {
    with_module(text, |m| Ok(m.as_operation().write_bytecode()))
}
