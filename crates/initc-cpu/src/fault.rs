//! Fault points for the crash and I/O-error tests (SQLite's discipline: fail at every step).
//!
//! `INITC_FAULT=ACTION@POINT:N` makes the N-th (1-based) step of kind POINT fail:
//! - ACTION `kill`: the process sends itself SIGKILL (nothing is cleaned up, as after `kill -9`
//!   or a power cut of the process);
//! - ACTION `enospc` / `eio`: the step returns that I/O error (a full disk, a failing device);
//! - ACTION `slow`: the step first sleeps for 3 s (a slow disk: holds a run mid-write so a
//!   test can start a concurrent one).
//!
//! POINT is one of `create` (a file or directory is created), `write` (one `write(2)` of file
//! data), `fsync` (a file or directory is synced), `rename` (the publishing rename or exchange)
//! and `remove` (the old checkpoint is removed after publishing). Without the variable every
//! point is a no-op that reads one atomic counter. `crates/initc-cli/tests/faults.rs` drives it.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A step of the writer that can be made to fail.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Point {
    Create,
    Write,
    Fsync,
    Rename,
    Remove,
}

const POINTS: [(&str, Point); 5] =
    [("create", Point::Create), ("write", Point::Write), ("fsync", Point::Fsync), ("rename", Point::Rename), ("remove", Point::Remove)];

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Action {
    Kill,
    Slow,
    Errno(i32),
}

#[derive(Debug)]
struct Fault {
    action: Action,
    point: Point,
    at: u64,
}

fn parse(s: &str) -> Option<Fault> {
    let (action, rest) = s.split_once('@')?;
    let (point, at) = rest.split_once(':')?;
    let action = match action {
        "kill" => Action::Kill,
        "slow" => Action::Slow,
        "enospc" => Action::Errno(libc::ENOSPC),
        "eio" => Action::Errno(libc::EIO),
        _ => return None,
    };
    let point = POINTS.iter().find(|(n, _)| *n == point)?.1;
    Some(Fault { action, point, at: at.parse().ok().filter(|&n| n > 0)? })
}

fn fault() -> Option<&'static Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    FAULT.get_or_init(|| std::env::var("INITC_FAULT").ok().and_then(|s| parse(&s))).as_ref()
}

static COUNTS: [AtomicU64; 5] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Passes `point` (one step of its kind); fails it when `INITC_FAULT` says so.
pub fn hit(point: Point) -> io::Result<()> {
    let Some(f) = fault() else { return Ok(()) };
    if f.point != point {
        return Ok(());
    }
    let k = COUNTS[point as usize].fetch_add(1, Ordering::SeqCst) + 1;
    if k != f.at {
        return Ok(());
    }
    match f.action {
        Action::Kill => {
            // SAFETY: kill(2) on our own pid with a valid signal has no memory effects.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            std::process::abort()
        }
        Action::Slow => {
            std::thread::sleep(std::time::Duration::from_secs(3));
            Ok(())
        }
        Action::Errno(e) => Err(io::Error::from_raw_os_error(e)),
    }
}

/// A writer whose every `write` is a [`Point::Write`] step.
pub struct Faulty<W>(pub W);

impl<W: io::Write> io::Write for Faulty<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        hit(Point::Write)?;
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let f = parse("kill@rename:2").unwrap();
        assert_eq!((f.action, f.point, f.at), (Action::Kill, Point::Rename, 2));
        assert_eq!(parse("enospc@write:10").unwrap().action, Action::Errno(libc::ENOSPC));
        for bad in ["kill@rename", "kill@rename:0", "boom@write:1", "kill@nowhere:1", ""] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
