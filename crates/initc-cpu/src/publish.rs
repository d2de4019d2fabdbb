//! Publishing an output directory in one step (Orbax's discipline: write elsewhere, then one
//! rename makes it visible).
//!
//! [`Staged::begin`] takes an advisory lock `.NAME.lock` beside the target `NAME` (a second
//! writer fails at once), removes what killed runs left (`.NAME.initc-tmp-*`: nobody else can
//! own one while we hold the lock), checks that an existing target may be replaced, and makes
//! a fresh directory `.NAME.initc-tmp-PID-RAND` beside it. The caller writes there;
//! [`Staged::commit`] fsyncs every file and directory in it, swaps it with the target in one
//! `renameat2(RENAME_EXCHANGE)` (a plain `rename` when there is no target yet), fsyncs the
//! parent, and only then removes the old contents. A reader sees the old directory or the new
//! one, whole; a crash at any point leaves one of them at the target and leftovers that the
//! next run removes. Dropping an uncommitted `Staged` removes its directory.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::fault::{Point, hit};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {reason}", path.display())]
    Refused { path: PathBuf, reason: String },
    #[error("{}: {source} (the output is staged beside its target, then swapped in: initc needs write access to the parent directory)", path.display())]
    Beside { path: PathBuf, source: io::Error },
    #[error("{} is being written by another initc process (lock {} is held); wait for it to finish or choose another output", path.display(), lock.display())]
    Busy { path: PathBuf, lock: PathBuf },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> PublishError + '_ {
    move |source| PublishError::Io { path: path.to_path_buf(), source }
}

/// Decides whether an existing target directory may be replaced: `Err(reason)` if not.
pub type Replaceable = fn(&Path) -> Result<(), String>;

/// A directory being written beside its target, published by [`Staged::commit`].
pub struct Staged {
    target: PathBuf,
    tmp: PathBuf,
    _lock: File,
    done: bool,
}

/// The file-name prefix of this target's temporary directories and files.
fn tmp_prefix(name: &std::ffi::OsStr) -> OsString {
    let mut p = OsString::from(".");
    p.push(name);
    p.push(".initc-tmp-");
    p
}

/// `target` with symlinks and `..` resolved where it exists, else its parent resolved (and
/// created): the lock and the temporary directory must sit on the target's filesystem.
fn resolve(target: &Path) -> Result<(PathBuf, OsString), PublishError> {
    let refused = |reason: &str| PublishError::Refused { path: target.to_path_buf(), reason: reason.into() };
    let abs = if std::fs::symlink_metadata(target).is_ok() {
        target.canonicalize().map_err(io_at(target))?
    } else {
        let name = target.file_name().ok_or_else(|| refused("has no file name"))?;
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        parent.canonicalize().map_err(io_at(parent))?.join(name)
    };
    let name = abs.file_name().ok_or_else(|| refused("is a filesystem root"))?.to_os_string();
    Ok((abs, name))
}

impl Staged {
    /// Locks `target`, removes leftovers of killed runs, and creates the staging directory.
    /// An existing target must be a directory that `replaceable` accepts.
    pub fn begin(target: &Path, replaceable: Replaceable) -> Result<Staged, PublishError> {
        let (abs, name) = resolve(target)?;
        let parent = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut lock_name = OsString::from(".");
        lock_name.push(&name);
        lock_name.push(".lock");
        let lock_path = parent.join(lock_name);
        let beside = |p: &Path| {
            let p = p.to_path_buf();
            move |source| PublishError::Beside { path: p, source }
        };
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(beside(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(PublishError::Busy { path: target.to_path_buf(), lock: lock_path }),
            Err(std::fs::TryLockError::Error(e)) => return Err(PublishError::Io { path: lock_path, source: e }),
        }
        remove_leftovers(&parent, &name)?;
        match std::fs::metadata(&abs) {
            Ok(md) if !md.is_dir() => {
                return Err(PublishError::Refused { path: target.to_path_buf(), reason: "is not a directory".into() });
            }
            Ok(_) => replaceable(&abs).map_err(|reason| PublishError::Refused { path: target.to_path_buf(), reason })?,
            Err(_) => {}
        }
        hit(Point::Create).map_err(io_at(&parent))?;
        let mut prefix = tmp_prefix(&name);
        prefix.push(format!("{}-", std::process::id()));
        let tmp = tempfile::Builder::new().prefix(&prefix).tempdir_in(&parent).map_err(beside(&parent))?.keep();
        let s = Staged { target: abs, tmp, _lock: lock, done: false };
        s.set_mode()?;
        Ok(s)
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The published directory's permissions: the old one's, else 0755 (a temporary directory
    /// is created 0700).
    fn set_mode(&self) -> Result<(), PublishError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&self.target).map_or(0o755, |m| m.permissions().mode() & 0o7777);
            std::fs::set_permissions(&self.tmp, std::fs::Permissions::from_mode(mode)).map_err(io_at(&self.tmp))?;
        }
        Ok(())
    }

    /// Makes the staged directory the target, durably; the old target is removed after.
    pub fn commit(mut self) -> Result<(), PublishError> {
        sync_tree(&self.tmp)?;
        let parent = self.target.parent().unwrap_or(Path::new("/")).to_path_buf();
        hit(Point::Rename).map_err(io_at(&self.target))?;
        let exchanged = if std::fs::symlink_metadata(&self.target).is_ok() {
            exchange(&self.tmp, &self.target).map_err(io_at(&self.target))?;
            true
        } else {
            std::fs::rename(&self.tmp, &self.target).map_err(io_at(&self.target))?;
            false
        };
        self.done = true;
        sync_dir(&parent)?;
        if exchanged {
            // The old checkpoint now sits at the temporary name; a crash here leaves it for the
            // next run to remove.
            hit(Point::Remove).map_err(io_at(&self.tmp))?;
            std::fs::remove_dir_all(&self.tmp).map_err(io_at(&self.tmp))?;
            sync_dir(&parent)?;
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Removes `.NAME.initc-tmp-*` in `parent` (called with the lock held, so they are dead runs').
fn remove_leftovers(parent: &Path, name: &std::ffi::OsStr) -> Result<(), PublishError> {
    let prefix = tmp_prefix(name);
    let prefix = prefix.as_encoded_bytes();
    for e in std::fs::read_dir(parent).map_err(io_at(parent))?.flatten() {
        if !e.file_name().as_encoded_bytes().starts_with(prefix) {
            continue;
        }
        let p = e.path();
        let r = if e.file_type().is_ok_and(|t| t.is_dir()) { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(PublishError::Io { path: p, source: e }),
            _ => {}
        }
    }
    Ok(())
}

/// fsync of a directory (its entries: names created or renamed in it).
pub fn sync_dir(dir: &Path) -> Result<(), PublishError> {
    hit(Point::Fsync).map_err(io_at(dir))?;
    File::open(dir).and_then(|f| f.sync_all()).map_err(io_at(dir))
}

/// fsyncs every directory under `root`, deepest first, then `root` (files are synced by
/// whoever wrote them).
fn sync_tree(root: &Path) -> Result<(), PublishError> {
    for e in std::fs::read_dir(root).map_err(io_at(root))?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            sync_tree(&e.path())?;
        }
    }
    sync_dir(root)
}

/// Swaps two paths atomically (Linux `renameat2(RENAME_EXCHANGE)`). Where the kernel or the
/// filesystem lacks it, the target is first renamed aside: a reader may then briefly find no
/// target, but never a mix.
fn exchange(new: &Path, target: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
        let (a, b) = (c(new)?, c(target)?);
        // SAFETY: both are NUL-terminated paths that outlive the call.
        let r =
            unsafe { libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) {
            return Err(e);
        }
    }
    exchange_by_renames(new, target)
}

/// Without an exchange: target -> aside, new -> target, aside -> new's name (removed later).
fn exchange_by_renames(new: &Path, target: &Path) -> io::Result<()> {
    let mut aside = new.as_os_str().to_os_string();
    aside.push(".old");
    let aside = PathBuf::from(aside);
    std::fs::rename(target, &aside)?;
    if let Err(e) = std::fs::rename(new, target) {
        // Put the old target back where readers look for it.
        let _ = std::fs::rename(&aside, target);
        return Err(e);
    }
    std::fs::rename(&aside, new)
}

/// Writes one output file atomically: a temporary file beside it (`.NAME.initc-tmp-PID-*`),
/// fsynced, renamed over `path`, then the directory fsynced. Temporary files of processes that
/// no longer exist are removed first.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    use std::io::Write;
    let name = path.file_name().ok_or_else(|| PublishError::Refused { path: path.into(), reason: "has no file name".into() })?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    remove_dead_temp_files(dir, name);
    let mut prefix = tmp_prefix(name);
    prefix.push(format!("{}-", std::process::id()));
    hit(Point::Create).map_err(io_at(path))?;
    let tmp = tempfile::Builder::new().prefix(&prefix).tempfile_in(dir).map_err(io_at(path))?;
    crate::fault::Faulty(tmp.as_file()).write_all(bytes).map_err(io_at(path))?;
    hit(Point::Fsync).map_err(io_at(path))?;
    tmp.as_file().sync_all().map_err(io_at(path))?;
    #[cfg(unix)]
    {
        // Temp files are created 0600; an output file is an ordinary 0644 file.
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io_at(path))?;
    }
    hit(Point::Rename).map_err(io_at(path))?;
    tmp.persist(path).map_err(|e| PublishError::Io { path: path.into(), source: e.error })?;
    sync_dir(dir)
}

/// Removes `.NAME.initc-tmp-PID-*` files whose PID is not a running process.
fn remove_dead_temp_files(dir: &Path, name: &std::ffi::OsStr) {
    let prefix = tmp_prefix(name);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let file = e.file_name();
        let Some(rest) = file.as_encoded_bytes().strip_prefix(prefix.as_encoded_bytes()) else { continue };
        let pid = std::str::from_utf8(rest).ok().and_then(|r| r.split('-').next()).and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| p > 0 && !alive(p)) && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill(pid, 0) only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rename_fallback_swaps_the_two_directories() {
        let t = tempfile::tempdir().unwrap();
        let (new, target) = (t.path().join("new"), t.path().join("target"));
        for (d, f) in [(&new, "n"), (&target, "o")] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join(f), f).unwrap();
        }
        exchange_by_renames(&new, &target).unwrap();
        assert!(target.join("n").is_file() && new.join("o").is_file());
        exchange(&new, &target).unwrap();
        assert!(target.join("o").is_file() && new.join("n").is_file());
        // The second rename fails (the new directory is gone): the target is put back.
        std::fs::remove_dir_all(&new).unwrap();
        assert!(exchange_by_renames(&new, &target).is_err());
        assert!(target.join("o").is_file());
    }
}
