//! The files capability: the one folder a channel may write into, within its quotas.
//!
//! It owns the file-name check (plain names only: no folders, no `..`, no hidden
//! files), the atomic write (a temporary name, then a rename, so a reader never
//! sees half a message) and the folder's quotas, `files_max_bytes` and
//! `files_max_count` of `[channels.NAME.limits]`. What the folder holds is
//! counted once at load and kept up to date with every write; when a write would
//! go over a quota the folder is counted again (at most once a second, so a
//! plugin at its quota cannot make the host list a large folder over and over),
//! because whoever consumes the files may have taken some away.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest file name a plugin may use.
pub(crate) const MAX_FILE_NAME: usize = 200;
/// How often a folder at its quota is counted again.
const RECOUNT_EVERY: Duration = Duration::from_secs(1);

/// The granted folder of one channel and what it holds.
pub(crate) struct FilesCapability {
    folder: PathBuf,
    channel: String,
    max_bytes: u64,
    max_count: u64,
    usage: Mutex<Usage>,
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    bytes: u64,
    count: u64,
    counted_at: Instant,
}

impl FilesCapability {
    /// Create the folder if needed and count what it holds.
    pub(crate) fn new(folder: PathBuf, channel: &str, max_bytes: u64, max_count: u32) -> Result<Self, String> {
        std::fs::create_dir_all(&folder).map_err(|err| format!("grants.files {}: {err}", folder.display()))?;
        let usage = count(&folder).map_err(|err| format!("grants.files {}: {err}", folder.display()))?;
        Ok(FilesCapability { folder, channel: channel.to_string(), max_bytes, max_count: u64::from(max_count), usage: Mutex::new(usage) })
    }

    /// Write `contents` to `name` in the folder, replacing a file of that name,
    /// unless that takes the folder over a quota.
    pub(crate) fn write(&self, name: &str, contents: &[u8]) -> Result<(), String> {
        check_file_name(name)?;
        let replaced = std::fs::metadata(self.folder.join(name)).ok().filter(|m| m.is_file()).map(|m| m.len());
        let added_bytes = contents.len() as u64;
        let added_count = u64::from(replaced.is_none());
        {
            let mut usage = self.usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let over = |usage: &Usage| self.over_quota(name, usage, usage.bytes.saturating_sub(replaced.unwrap_or(0)) + added_bytes, usage.count + added_count);
            if over(&usage).is_some() && usage.counted_at.elapsed() >= RECOUNT_EVERY {
                if let Ok(recounted) = count(&self.folder) {
                    *usage = recounted;
                }
            }
            if let Some(why) = over(&usage) {
                return Err(why);
            }
            usage.bytes = usage.bytes.saturating_sub(replaced.unwrap_or(0)) + added_bytes;
            usage.count += added_count;
        }
        let written = write_atomically(&self.folder, name, contents);
        if written.is_err() {
            let mut usage = self.usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            usage.bytes = usage.bytes.saturating_sub(added_bytes) + replaced.unwrap_or(0);
            usage.count -= added_count.min(usage.count);
        }
        written
    }

    /// Why the folder cannot hold `bytes` in `count` files after writing `name`, if it cannot.
    fn over_quota(&self, name: &str, usage: &Usage, bytes: u64, count: u64) -> Option<String> {
        let (folder, limits) = (self.folder.display(), format!("[channels.{}.limits]", self.channel));
        if count > self.max_count {
            Some(format!("cannot write `{name}`: {folder} holds {} files, the quota of {limits} files_max_count = {}", usage.count, self.max_count))
        } else if bytes > self.max_bytes {
            Some(format!(
                "cannot write `{name}`: {folder} would hold {bytes} bytes (now {}), over the quota of {limits} files_max_bytes = {}",
                usage.bytes, self.max_bytes
            ))
        } else {
            None
        }
    }
}

/// Files and bytes in `folder` (temporary files of writes under way included).
fn count(folder: &Path) -> std::io::Result<Usage> {
    let mut usage = Usage { bytes: 0, count: 0, counted_at: Instant::now() };
    for entry in std::fs::read_dir(folder)? {
        let metadata = entry?.metadata()?;
        if metadata.is_file() {
            usage.bytes += metadata.len();
            usage.count += 1;
        }
    }
    Ok(usage)
}

/// A plain file name: no separators, no `..`, no hidden files.
fn check_file_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_FILE_NAME
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'));
    if valid {
        Ok(())
    } else {
        let shown: String = name.chars().take(MAX_FILE_NAME).collect();
        Err(format!("`{shown}` is not a plain file name (letters, digits, . _ - @ +; no folders; at most {MAX_FILE_NAME} bytes)"))
    }
}

/// Write through a temporary file and rename, so a reader never sees half a message.
fn write_atomically(folder: &Path, name: &str, contents: &[u8]) -> Result<(), String> {
    let temporary = folder.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, contents)
        .and_then(|()| std::fs::rename(&temporary, folder.join(name)))
        .map_err(|err| {
            let _ = std::fs::remove_file(&temporary);
            format!("cannot write `{name}`: {err}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_plain() {
        for good in ["msg-1.eml", "a_b.json", "x@y+z.eml"] {
            assert!(check_file_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../etc/passwd", "a/b", ".hidden", "a\\b", "ü.eml", &"x".repeat(201)] {
            assert!(check_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quotas_count_files_already_there_and_replacements_once() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("old.txt"), [0u8; 100]).expect("seed");
        let files = FilesCapability::new(dir.path().to_path_buf(), "demo", 300, 3).expect("capability");
        files.write("a", &[1; 100]).expect("200 of 300 bytes");
        files.write("a", &[1; 150]).expect("a replacement counts its new size only");
        let err = files.write("b", &[1; 51]).expect_err("301 bytes");
        assert!(err.contains("files_max_bytes = 300") && err.contains("[channels.demo.limits]"), "{err}");
        files.write("b", &[1; 50]).expect("exactly 300 bytes");
        let err = files.write("c", &[]).expect_err("a fourth file");
        assert!(err.contains("files_max_count = 3"), "{err}");
        assert!(!dir.path().join("c").exists() && !dir.path().join("b").metadata().is_ok_and(|m| m.len() != 50));
    }
}
