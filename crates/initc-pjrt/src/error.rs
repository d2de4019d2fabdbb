use std::path::PathBuf;

/// `PJRT_Error_Code` (absl status codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
    Other(i32),
}

impl ErrorCode {
    pub fn from_raw(c: i32) -> ErrorCode {
        use ErrorCode::*;
        match c {
            1 => Cancelled,
            2 => Unknown,
            3 => InvalidArgument,
            4 => DeadlineExceeded,
            5 => NotFound,
            6 => AlreadyExists,
            7 => PermissionDenied,
            8 => ResourceExhausted,
            9 => FailedPrecondition,
            10 => Aborted,
            11 => OutOfRange,
            12 => Unimplemented,
            13 => Internal,
            14 => Unavailable,
            15 => DataLoss,
            16 => Unauthenticated,
            c => Other(c),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PjrtError {
    #[error("{call} failed ({code:?}): {message}")]
    Call { call: &'static str, code: ErrorCode, message: String },
    #[error("cannot load PJRT plugin {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error(
        "PJRT plugin {path} implements PJRT C API {major}.{minor}; initc supports {supported_major}.{supported_min}–{supported_major}.x (its binding is sized to {supported_major}.{header_minor})"
    )]
    Version { path: PathBuf, major: i32, minor: i32, supported_major: i32, supported_min: i32, header_minor: i32 },
    #[error("PJRT plugin {path} has no {call} (its function table has {slots} slots)")]
    Missing { path: PathBuf, call: &'static str, slots: usize },
    #[error("{0}")]
    Usage(String),
}
