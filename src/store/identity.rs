//! The store's identity, and the witness that notices a store which lost its contents.
//!
//! A store gets a random id when it is created (older stores at their first open: format
//! 4). The id is kept in sled (`\0store-id`) and in the header of every file rekindle
//! keeps beside the store (the member snapshot), so a file of another store, or of an
//! earlier store at the same path, is never taken for this one's.
//!
//! sled can lose its contents without an error: a truncated `db`, a removed `snap.*` file
//! on a store a daemon had used, and it opens as an empty (or an older) store that
//! commands would serve as if nothing happened. So the folder also holds a small text
//! file, `rekindle-identity`, written outside sled: the id and high-water marks of what
//! the store held (the member generation, the runs started, whether it had members),
//! raised after each flush that made more durable. At open sled must hold that id and
//! reach those marks, or the store is refused, saying what was lost. The marks only
//! count what a flush made durable, and sled never lowers them, so a crash cannot make
//! a whole store look damaged. Deleting the store's folder deletes the witness with it:
//! that starts afresh, as it should.

use crate::domain::hex;
use super::{Store, StoreError, MEMBER};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The key of the store's id in sled.
pub(super) const STORE_ID: &[u8] = b"\0store-id";
const FILE: &str = "rekindle-identity";
const MAGIC: &str = "rekindle-identity 1";

/// What the store held, as far as a flush made it durable.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Marks {
    /// `\0member-gen`: bumped before every write of member records.
    member_generation: u64,
    /// `\0next-run`: runs ever started.
    runs: u64,
    /// At least one member record (members are never deleted).
    had_members: bool,
}

/// The identity file: the id, and the marks the store reached.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Witness {
    id: String,
    marks: Marks,
}

/// The first 8 bytes of the text's SHA-256, in hex.
fn checksum(text: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(text.as_bytes())[..8])
}

fn file(store: &Path) -> PathBuf {
    store.join(FILE)
}

impl Witness {
    /// The witness in the store's folder; `None` when there is none (or it is garbled,
    /// which is logged: it is rewritten from sled).
    pub(super) fn read(store: &Path) -> Option<Witness> {
        let text = std::fs::read_to_string(file(store)).ok()?;
        let parsed = (|| {
            // the last line sums the others: a damaged witness is rewritten, never believed
            let (body, sum) = text.strip_suffix('\n')?.rsplit_once('\n')?;
            (sum.strip_prefix("sum ")? == checksum(body)).then_some(())?;
            let mut lines = body.lines();
            (lines.next()? == MAGIC).then_some(())?;
            let mut field = |name: &str| lines.next()?.strip_prefix(name)?.strip_prefix(' ').map(str::to_string);
            let id = field("id")?;
            let member_generation = field("member-generation")?.parse().ok()?;
            let runs = field("runs")?.parse().ok()?;
            let had_members = field("had-members")?.parse().ok()?;
            Some(Witness { id, marks: Marks { member_generation, runs, had_members } })
        })();
        if parsed.is_none() {
            tracing::warn!(file = %file(store).display(), "the store's identity file is unreadable; writing it afresh from the store");
        }
        parsed
    }

    /// Writes the witness durably (a temporary file renamed into place).
    fn write(&self, store: &Path) -> std::io::Result<()> {
        let path = file(store);
        let tmp = path.with_extension("tmp");
        let m = &self.marks;
        let body = format!("{MAGIC}\nid {}\nmember-generation {}\nruns {}\nhad-members {}", self.id, m.member_generation, m.runs, m.had_members);
        let text = format!("{body}\nsum {}\n", checksum(&body));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        // the rename itself: without it a power cut can leave the old witness (harmless)
        if let Ok(dir) = std::fs::File::open(store) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Store {
    /// The marks sled's contents reach now.
    fn marks_now(&self, had_members: bool) -> Result<Marks, StoreError> {
        let runs = self.db.get(super::outbox::NEXT_RUN)?.and_then(|b| b.as_ref().try_into().ok()).map_or(0, u64::from_be_bytes);
        let had_members = had_members || self.db.scan_prefix([MEMBER]).next().transpose()?.is_some();
        Ok(Marks { member_generation: self.member_generation()?, runs, had_members })
    }

    /// Refuses a store whose sled files no longer hold what the witness says they held.
    /// Runs before anything is written at open (an emptied store would otherwise get a
    /// fresh format marker).
    pub(super) fn check_witness(&self, witness: &Witness) -> Result<(), StoreError> {
        let lost = |what: String| Err(StoreError::LostData { path: self.path.clone(), what });
        let Some(id) = self.db.get(STORE_ID)? else {
            return lost(format!("its identity file ({FILE}) names store {}, but sled's files hold no store at all", witness.id));
        };
        if hex(&id) != witness.id {
            return Err(StoreError::Damaged {
                path: self.path.clone(),
                what: format!("its identity file ({FILE}) names store {}, sled's files store {}: the folder mixes files of two stores", witness.id, hex(&id)),
            });
        }
        let (was, now) = (witness.marks, self.marks_now(false)?);
        if now.member_generation < was.member_generation {
            return lost(format!("members were written at generation {}, sled's files are back at generation {}", was.member_generation, now.member_generation));
        }
        if now.runs < was.runs {
            return lost(format!("{} runs were started, sled's files know of {}", was.runs, now.runs));
        }
        if was.had_members && !now.had_members {
            return lost("it had members, sled's files hold none".into());
        }
        Ok(())
    }

    /// The store's id, created with the store (or by the format-4 upgrade).
    pub(super) fn load_id(&self) -> Result<String, StoreError> {
        match self.db.get(STORE_ID)? {
            Some(id) => Ok(hex(&id)),
            None => Err(StoreError::LostData { path: self.path.clone(), what: "its format says it has an identity, but sled's files hold none".into() }),
        }
    }

    /// Writes a fresh id into a store that has none (a new store, or an older format).
    pub(super) fn create_id(&self) -> Result<(), StoreError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| StoreError::Sled(sled::Error::Io(std::io::Error::other(e.to_string()))))?;
        self.db.insert(STORE_ID, &id[..])?;
        Ok(())
    }

    /// Flushes sled, then raises the witness to the marks read before the flush (so
    /// durable now; a write racing the flush is counted by the next one). A witness that
    /// is behind only means a loss since then would go unnoticed, so a failure to write
    /// it is logged, not returned.
    pub(super) fn flush_and_witness(&self) -> Result<(), StoreError> {
        let witness = || self.witness.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let had_members = witness().as_ref().is_some_and(|w| w.marks.had_members);
        let marks = self.marks_now(had_members)?;
        self.db.flush()?;
        let mut written = witness();
        // flushes that ran side by side each made their marks durable: keep the highest
        let marks = match written.as_ref().filter(|w| w.id == self.id) {
            Some(w) if w.marks.reach(&marks) => return Ok(()),
            Some(w) => w.marks.highest(&marks),
            None => marks,
        };
        let raised = Witness { id: self.id.clone(), marks };
        match raised.write(&self.path) {
            Ok(()) => *written = Some(raised),
            Err(e) => tracing::warn!(path = %file(&self.path).display(), "cannot write the store's identity file (a later loss of data would go unnoticed): {e}"),
        }
        Ok(())
    }
}

impl Marks {
    /// Whether these marks are at or past `other` in every count.
    fn reach(&self, other: &Marks) -> bool {
        self.member_generation >= other.member_generation && self.runs >= other.runs && self.had_members >= other.had_members
    }

    fn highest(&self, other: &Marks) -> Marks {
        Marks {
            member_generation: self.member_generation.max(other.member_generation),
            runs: self.runs.max(other.runs),
            had_members: self.had_members || other.had_members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::Member;
    use crate::store::{encode, key, FORMAT_KEY};

    /// A store at `path` with `n` members written through the store's own paths.
    fn store_with_members(path: &Path, n: usize) -> Store {
        let store = Store::open(path, 16).unwrap();
        store.bump_member_generation().unwrap();
        for i in 0..n {
            store.db.insert(key(MEMBER, &format!("m{i:04}")), encode(&Member::default())).unwrap();
        }
        store.flush().unwrap();
        store
    }

    fn member_count(store: &Store) -> usize {
        let mut n = 0;
        store
            .member_chunks(|c| {
                n += c.len();
                Ok(())
            })
            .unwrap();
        n
    }

    fn sled_files(path: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).filter(|p| p.file_name().is_some_and(|n| n != FILE)).collect()
    }

    #[test]
    fn a_store_created_again_at_the_same_path_ignores_the_old_member_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sled");
        let old = store_with_members(&path, 300);
        assert_eq!(member_count(&old), 300, "the first scan writes the snapshot");
        drop(old);
        std::fs::remove_dir_all(&path).unwrap();
        // the same writes again: the same generation, beside the old snapshot
        let new = store_with_members(&path, 200);
        assert_eq!(member_count(&new), 200);
    }

    #[test]
    fn a_store_whose_sled_files_were_emptied_is_refused() {
        for damage in ["remove the files", "truncate db"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.sled");
            drop(store_with_members(&path, 50));
            for f in sled_files(&path) {
                match damage {
                    "remove the files" if f.is_file() => std::fs::remove_file(&f).unwrap(),
                    "truncate db" if f.ends_with("db") => std::fs::File::options().write(true).open(&f).unwrap().set_len(0).unwrap(),
                    _ => {}
                }
            }
            let err = Store::open(&path, 16).err().unwrap_or_else(|| panic!("{damage}: opened"));
            assert!(matches!(err, StoreError::LostData { .. }), "{damage}: {err}");
            assert!(err.to_string().contains("hold no store at all") && err.to_string().contains("backup"), "{damage}: {err}");
            assert!(Store::open(&path, 16).is_err(), "{damage}: still refused, nothing was written");
        }
    }

    #[test]
    fn a_store_whose_members_vanished_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sled");
        let store = store_with_members(&path, 50);
        // sled lost the members but kept the rest (the generation with them)
        for k in store.db.scan_prefix([MEMBER]).keys() {
            store.db.remove(k.unwrap()).unwrap();
        }
        store.db.flush().unwrap();
        drop(store);
        let err = Store::open(&path, 16).err().expect("refused");
        assert!(err.to_string().contains("it had members, sled's files hold none"), "{err}");
    }

    #[test]
    fn a_store_whose_sled_files_went_back_in_time_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sled");
        let backup = dir.path().join("backup");
        drop(store_with_members(&path, 10));
        std::fs::create_dir(&backup).unwrap();
        for f in sled_files(&path).iter().filter(|f| f.is_file()) {
            std::fs::copy(f, backup.join(f.file_name().unwrap())).unwrap();
        }
        let store = Store::open(&path, 16).unwrap();
        store.bump_member_generation().unwrap();
        store.next_run_id().unwrap();
        store.flush().unwrap();
        drop(store);
        // sled's files as they were before the last writes; the identity file saw those
        for f in sled_files(&path).iter().filter(|f| f.is_file()) {
            std::fs::remove_file(f).unwrap();
        }
        for f in std::fs::read_dir(&backup).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, path.join(f.file_name().unwrap())).unwrap();
        }
        let err = Store::open(&path, 16).err().expect("refused");
        assert!(err.to_string().contains("back at generation"), "{err}");
        // restored on purpose: deleting the identity file accepts them
        std::fs::remove_file(path.join(FILE)).unwrap();
        assert_eq!(member_count(&Store::open(&path, 16).unwrap()), 10);
    }

    #[test]
    fn a_missing_or_garbled_identity_file_is_written_again_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sled");
        let id = store_with_members(&path, 5).id.clone();
        let written = std::fs::read_to_string(path.join(FILE)).unwrap();
        assert!(written.starts_with(&format!("{MAGIC}\nid {id}\n")) && written.contains("had-members true"), "{written}");
        // removed; garbled; a whole-looking file whose id lost a digit
        for damage in [String::new(), "rekindle-identity 1\nid zz\nmember-generation x\n".into(), written.replacen(&id, &id[1..], 1)] {
            if damage.is_empty() {
                std::fs::remove_file(path.join(FILE)).unwrap();
            } else {
                std::fs::write(path.join(FILE), damage).unwrap();
            }
            let store = Store::open(&path, 16).unwrap();
            assert_eq!(store.id, id);
            assert_eq!(std::fs::read_to_string(path.join(FILE)).unwrap(), written);
        }
    }

    #[test]
    fn a_folder_holding_the_identity_file_of_another_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.sled"), dir.path().join("b.sled"));
        drop(store_with_members(&a, 5));
        drop(store_with_members(&b, 5));
        std::fs::copy(b.join(FILE), a.join(FILE)).unwrap();
        let err = Store::open(&a, 16).err().expect("refused");
        assert!(matches!(err, StoreError::Damaged { .. }) && err.to_string().contains("mixes files of two stores"), "{err}");
    }

    #[test]
    fn a_format_3_store_gets_an_identity_at_its_first_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sled");
        let store = store_with_members(&path, 5);
        store.db.remove(STORE_ID).unwrap();
        store.db.insert(FORMAT_KEY, b"rekindle-store 3".as_slice()).unwrap();
        store.db.flush().unwrap();
        drop(store);
        std::fs::remove_file(path.join(FILE)).unwrap();
        let store = Store::open(&path, 16).unwrap();
        assert_eq!(store.id.len(), 32);
        assert_eq!(member_count(&store), 5);
        assert_eq!(&store.db.get(FORMAT_KEY).unwrap().unwrap()[..], format!("rekindle-store {}", super::super::FORMAT_VERSION).as_bytes());
        assert!(std::fs::read_to_string(path.join(FILE)).unwrap().contains(&store.id));
        let id = store.id.clone();
        drop(store);
        assert_eq!(Store::open(&path, 16).unwrap().id, id, "the id stays");
    }
}
