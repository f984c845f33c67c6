//! The storage folder (`--storage.path`): opened once at start, before anything else runs, and written only
//! through [`write_atomic`].
//!
//! Why each step exists:
//! - **Created 0700, probed, locked at start.** A folder that cannot be written would otherwise be found out
//!   at the first alert transition, long after the service manager declared the start a success; a second
//!   process on the same folder (a double start, a shared volume) would tear the other's files. Both are
//!   refused at once with one line naming the folder and the reason. The lock is an exclusive `flock` on
//!   `<folder>/.lock`, held by [`Storage`] for the life of the process and released by the kernel however the
//!   process ends, so a crash never leaves a stale lock behind.
//! - **One writer for every state file.** Unique temp name per process and write, mode 0600 (the files hold
//!   alert labels, e-mail bodies and silence authors), fsync of the file, rename, fsync of the folder; the temp
//!   file is removed when any step fails, so a full disk leaves nothing behind.
//! - **Quarantine instead of refusal.** A state file that cannot be parsed is moved aside to
//!   `<name>.corrupt-<UTC time>` (kept for whoever investigates), logged at error level, counted in
//!   `dbwatch_state_file_corruptions_total{file}`, and that part starts empty: a monitoring daemon that refuses
//!   to start because of its own bookkeeping pages nobody at all.
//!
//! This module knows nothing of what the files hold; the rules engine and the notifier parse them.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use prometheus::{IntCounterVec, Opts, Registry};

/// The lock file inside the storage folder.
pub const LOCK_FILE: &str = ".lock";
/// State files are readable by the daemon's user only.
const FILE_MODE: u32 = 0o600;
/// A folder dbwatch creates is private to its user.
const FOLDER_MODE: u32 = 0o700;

/// Why the storage folder cannot be used; each renders as the one line the daemon prints before exiting.
///
/// The reason is not a `source`: it is already in the message, and error reporters that print the chain would
/// repeat it.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("storage folder {}: cannot be created: {reason}", path.display())]
    Create { path: PathBuf, reason: io::Error },
    #[error("storage folder {}: is not writable: {reason}", path.display())]
    NotWritable { path: PathBuf, reason: io::Error },
    #[error(
        "storage folder {}: is in use by another dbwatch process (lock {} is held)",
        path.display(),
        path.join(LOCK_FILE).display()
    )]
    Locked { path: PathBuf },
}

/// The opened storage folder. Holding it holds the folder's lock; drop it only when the process is done with
/// the folder.
#[derive(Debug)]
pub struct Storage {
    path: PathBuf,
    /// Never read: the open file description is what holds the `flock`.
    _lock: File,
}

impl Storage {
    /// Creates the folder if needed (0700), proves it writable and durable with a probe file, and takes its
    /// lock. Stale temp files of an earlier process that died mid-write are removed once the lock is held,
    /// since nobody else can be writing then.
    pub fn open(path: &Path) -> Result<Storage, OpenError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(FOLDER_MODE)
            .create(path)
            .map_err(|reason| OpenError::Create {
                path: path.to_owned(),
                reason,
            })?;
        let not_writable = |reason| OpenError::NotWritable {
            path: path.to_owned(),
            reason,
        };
        probe(path).map_err(not_writable)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(path.join(LOCK_FILE))
            .map_err(not_writable)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::Locked {
                    path: path.to_owned(),
                })
            }
            Err(std::fs::TryLockError::Error(reason)) => {
                return Err(not_writable(io::Error::new(
                    reason.kind(),
                    format!("cannot lock {}: {reason}", path.join(LOCK_FILE).display()),
                )))
            }
        }
        remove_stale_temp_files(path);
        Ok(Storage {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes, fsyncs and removes a uniquely named file, then fsyncs the folder: the same steps a state write takes.
fn probe(dir: &Path) -> io::Result<()> {
    let (path, mut file) = create_unique(dir, "write-probe")?;
    let written = file.write_all(b"dbwatch\n").and_then(|()| file.sync_all());
    drop(file);
    let removed = std::fs::remove_file(&path);
    written?;
    removed?;
    sync_folder(dir)
}

/// Removes `.<name>.<pid>.<n>.tmp` files: only a process that died between creating and renaming one leaves it.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with('.') && name.ends_with(".tmp") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a temp file left by an earlier run")
                }
                Err(error) => {
                    tracing::warn!(file = %entry.path().display(), error = %error, "cannot remove a stale temp file")
                }
            }
        }
    }
}

/// Writes per process, so temp names never repeat within one.
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Creates `.<name>.<pid>.<n>.tmp` with `create_new`, so two writers can never share a temp file; a name left
/// over by an earlier process with the same pid is skipped.
fn create_unique(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..16 {
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{name}.{pid}.{n}.tmp"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temp file name")))
}

/// Replaces `dir/name` with `bytes` atomically and durably: after a crash the file is either the old one or the
/// new one, never a torn one, and once this returns `Ok` the new one survives a power loss.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let (temp, mut file) = create_unique(dir, name)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            std::fs::rename(&temp, dir.join(name))
        });
    if let Err(error) = written {
        // Nothing may be left behind on a full disk; the original file is untouched.
        let _ = std::fs::remove_file(&temp);
        return Err(error);
    }
    sync_folder(dir)
}

/// Makes a rename in `dir` durable. A filesystem that cannot fsync a folder at all (EINVAL) gives what it can;
/// any other failure is reported, since the write may then not survive a crash.
fn sync_folder(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|folder| folder.sync_all()) {
        Err(error) if error.raw_os_error() == Some(22) => Ok(()),
        other => other,
    }
}

/// Reads `dir/name` and parses it with `parse`. `Ok(None)` when the file does not exist, or when it could not
/// be parsed: then it has been moved aside (see [`quarantine`]) and the caller starts that part empty. Only a
/// failure to read the file at all is an error: that is not corruption, and the file must not be overwritten.
pub fn load<T, E: Display>(
    dir: &Path,
    name: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, E>,
) -> io::Result<Option<T>> {
    let bytes = match std::fs::read(dir.join(name)) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    match parse(&bytes) {
        Ok(value) => Ok(Some(value)),
        Err(reason) => {
            quarantine(dir, name, &reason);
            Ok(None)
        }
    }
}

/// Moves a corrupt `dir/name` aside to `name.corrupt-<UTC %Y%m%dT%H%M%SZ>` (with `-<n>` if that is taken),
/// logs it at error level and counts it. Returns where it went; `None` if it could not be moved, which is
/// logged too: the caller still starts empty, and the next save replaces the file.
pub fn quarantine(dir: &Path, name: &str, reason: &dyn Display) -> Option<PathBuf> {
    count_corruption(name);
    let path = dir.join(name);
    let stamp = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .format("%Y%m%dT%H%M%SZ");
    let base = format!("{name}.corrupt-{stamp}");
    let mut aside = dir.join(&base);
    let mut n = 1u32;
    // The folder's lock makes this check-then-rename safe: no other dbwatch writes here.
    while aside.symlink_metadata().is_ok() {
        aside = dir.join(format!("{base}-{n}"));
        n += 1;
    }
    match std::fs::rename(&path, &aside).and_then(|()| sync_folder(dir)) {
        Ok(()) => {
            tracing::error!(
                file = %path.display(),
                kept_as = %aside.display(),
                reason = %reason,
                "state file is corrupt; moved aside, starting with that state empty"
            );
            Some(aside)
        }
        Err(error) => {
            tracing::error!(
                file = %path.display(),
                reason = %reason,
                error = %error,
                "state file is corrupt and cannot be moved aside; starting with that state empty"
            );
            None
        }
    }
}

/// The corruption counter, once registered; counts from before the registration wait in `EARLY`.
static CORRUPTIONS: OnceLock<IntCounterVec> = OnceLock::new();
static EARLY: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn count_corruption(name: &str) {
    match CORRUPTIONS.get() {
        Some(counter) => counter.with_label_values(&[name]).inc(),
        None => {
            *EARLY
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(name.to_owned())
                .or_default() += 1
        }
    }
}

/// Registers `dbwatch_state_file_corruptions_total{file}` in `registry`, at 0 for each of `files`. The counter
/// is process-wide (the files are loaded by components that know no registry), so a second registry gets the
/// same counts.
pub fn register_metrics(registry: &Registry, files: &[&str]) -> Result<(), prometheus::Error> {
    let counter = match CORRUPTIONS.get() {
        Some(counter) => counter.clone(),
        None => {
            let counter = IntCounterVec::new(
                Opts::new(
                    "dbwatch_state_file_corruptions_total",
                    "State files found unreadable as data at start, moved aside to <file>.corrupt-<time>",
                ),
                &["file"],
            )?;
            CORRUPTIONS.get_or_init(|| counter).clone()
        }
    };
    registry.register(Box::new(counter.clone()))?;
    for file in files {
        counter.with_label_values(&[file]);
    }
    let early = std::mem::take(&mut *EARLY.lock().unwrap_or_else(PoisonError::into_inner));
    for (file, count) in early {
        counter.with_label_values(&[file.as_str()]).inc_by(count);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn open_creates_a_private_locked_folder_and_a_second_open_is_refused() {
        let root = tempfile::tempdir().expect("temp dir");
        let path = root.path().join("a/b");
        let storage = Storage::open(&path).expect("opened");
        assert_eq!(storage.path(), path);
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        // Only the lock is left: the probe is gone.
        assert_eq!(names(&path), [LOCK_FILE]);
        assert_eq!(mode(&path.join(LOCK_FILE)), 0o600);

        let second = Storage::open(&path).expect_err("locked");
        assert_eq!(
            second.to_string(),
            format!(
                "storage folder {}: is in use by another dbwatch process (lock {}/.lock is held)",
                path.display(),
                path.display()
            )
        );
        drop(storage);
        Storage::open(&path).expect("free again once the first is dropped");
    }

    #[test]
    fn a_folder_that_cannot_be_created_is_named_with_the_reason() {
        let root = tempfile::tempdir().expect("temp dir");
        let file = root.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        let error = Storage::open(&file.join("state")).expect_err("under a file");
        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "storage folder {}: cannot be created: ",
                file.join("state").display()
            )),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn writes_are_private_leave_no_temp_file_and_replace_the_old_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        write_atomic(dir.path(), "s.json", b"one").expect("first");
        write_atomic(dir.path(), "s.json", b"two").expect("second");
        assert_eq!(
            std::fs::read(dir.path().join("s.json")).expect("read"),
            b"two"
        );
        assert_eq!(mode(&dir.path().join("s.json")), 0o600);
        assert_eq!(names(dir.path()), ["s.json"]);

        // A failing write (the target is a folder, so the rename fails) leaves the temp file nowhere.
        std::fs::create_dir(dir.path().join("d")).expect("mkdir");
        std::fs::write(dir.path().join("d/x"), b"x").expect("fill");
        assert!(write_atomic(dir.path(), "d", b"three").is_err());
        assert_eq!(names(dir.path()), ["d", "s.json"]);
    }

    #[test]
    fn stale_temp_files_are_removed_at_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(".alerts.json.1.0.tmp"), b"half").expect("write");
        std::fs::write(dir.path().join("alerts.json"), b"{}").expect("write");
        let _storage = Storage::open(dir.path()).expect("opened");
        assert_eq!(names(dir.path()), [LOCK_FILE, "alerts.json"]);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_with_a_timestamp_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let parse = |bytes: &[u8]| -> Result<u32, String> {
            std::str::from_utf8(bytes)
                .map_err(|error| error.to_string())?
                .trim()
                .parse::<u32>()
                .map_err(|error| error.to_string())
        };
        assert_eq!(load(dir.path(), "n", parse).expect("missing"), None);
        std::fs::write(dir.path().join("n"), b"7\n").expect("write");
        assert_eq!(load(dir.path(), "n", parse).expect("valid"), Some(7));

        for round in 0..2 {
            std::fs::write(dir.path().join("n"), b"not a number").expect("write");
            assert_eq!(load(dir.path(), "n", parse).expect("quarantined"), None);
            let kept: Vec<String> = names(dir.path())
                .into_iter()
                .filter(|name| name.starts_with("n.corrupt-"))
                .collect();
            assert_eq!(kept.len(), round + 1, "{kept:?}");
            for name in &kept {
                // n.corrupt-20261203T120000Z, or with a -1 suffix in the same second.
                let stamp = &name["n.corrupt-".len()..];
                assert_eq!(stamp.as_bytes()[8], b'T', "{name}");
                assert_eq!(stamp.as_bytes()[15], b'Z', "{name}");
                assert_eq!(
                    std::fs::read(dir.path().join(name)).expect("kept"),
                    b"not a number"
                );
            }
        }
        assert!(!dir.path().join("n").exists());
    }
}
