//! A flat copy of every member record (`M`) in a file beside the store
//! (`rekindle.sled` -> `rekindle.members`), which the scans that read every member
//! (profiles export, stats, the planner's member base) read instead of iterating sled:
//! iterating a million sled keys costs about 2 s of CPU, reading the same records from
//! one file a tenth of that.
//!
//! The file is a cache. It carries the store's id and member generation
//! (`\0member-gen`), which every write of member records bumps before it writes; a file
//! of another store (one deleted and created again at the same path restarts the
//! generation) or of another generation is ignored, and the next full scan of sled
//! writes a fresh one (to a temporary file, renamed into place). Format 3 of the store
//! introduced the generation, so no older rekindle can change members behind the file's
//! back; format 4 the id.
//!
//! Layout: the magic line, the store id (32 hex digits), then generation, member count
//! and data length (u64 LE each), then per member `[u32 LE key length][key][u32 LE value
//! length][value]` in key order.

use super::{in_chunks, Store, StoreError};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

const MAGIC: &[u8] = b"rekindle-members 2\n";
const GENERATION: &[u8] = b"\0member-gen";
/// Where the generation, count and length start.
const FIELDS: usize = MAGIC.len() + 32;
const HEADER: usize = FIELDS + 24;
/// Members handed over at a time.
const CHUNK: usize = 16_384;

/// One chunk of members: keys and values as byte ranges of `data`.
struct Chunk {
    data: Vec<u8>,
    spans: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl Store {
    /// Marks every member snapshot stale; called before member records are written.
    pub(crate) fn bump_member_generation(&self) -> Result<(), StoreError> {
        self.db.update_and_fetch(GENERATION, |old| {
            let n = old.and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0) + 1;
            Some(n.to_le_bytes().to_vec())
        })?;
        Ok(())
    }

    pub(super) fn member_generation(&self) -> Result<u64, StoreError> {
        Ok(self.db.get(GENERATION)?.and_then(|b| b.as_ref().try_into().ok()).map(u64::from_le_bytes).unwrap_or(0))
    }

    fn snapshot_path(&self) -> PathBuf {
        self.path.with_extension("members")
    }

    /// Every member record in key order, a chunk of (key, value) pairs at a time: from
    /// the snapshot when it is current, else from sled, writing a fresh snapshot on the
    /// way. The callback sees each member exactly once either way.
    pub(crate) fn member_chunks(&self, mut f: impl FnMut(&[(&[u8], &[u8])]) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let generation = self.member_generation()?;
        if let Some((file, count, length)) = self.open_snapshot(generation) {
            tracing::debug!(members = count, "reading members from the snapshot");
            let read = read_snapshot(file, count, length, &mut f);
            if let Err(e) = &read {
                // a cache: the next scan reads sled and writes it afresh
                tracing::warn!(path = %self.snapshot_path().display(), "removing the member snapshot after a failed read: {e}");
                let _ = std::fs::remove_file(self.snapshot_path());
            }
            return read;
        }
        // from sled; the snapshot is written beside (a failure to write it only costs speed)
        let path = self.snapshot_path();
        let tmp = path.with_extension("members.tmp");
        let mut out = std::fs::File::create(&tmp).ok().map(|file| BufWriter::with_capacity(1 << 20, file));
        if let Some(w) = out.as_mut() {
            if w.write_all(&[0u8; HEADER]).is_err() {
                out = None;
            }
        }
        let (mut count, mut length) = (0u64, 0u64);
        in_chunks(self.scan_members_raw(), |chunk| {
            let pairs: Vec<(&[u8], &[u8])> = chunk.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
            f(&pairs)?;
            if let Some(w) = out.as_mut() {
                for (k, v) in &pairs {
                    let ok = w.write_all(&(k.len() as u32).to_le_bytes()).and_then(|_| w.write_all(k)).and_then(|_| w.write_all(&(v.len() as u32).to_le_bytes())).and_then(|_| w.write_all(v));
                    if ok.is_err() {
                        out = None;
                        break;
                    }
                    length += 8 + k.len() as u64 + v.len() as u64;
                }
                count += pairs.len() as u64;
            }
            Ok(())
        })?;
        if let Some(w) = out {
            let finished = (|| -> std::io::Result<()> {
                let mut file = w.into_inner().map_err(|e| e.into_error())?;
                file.seek(SeekFrom::Start(0))?;
                let mut header = MAGIC.to_vec();
                header.extend_from_slice(self.id.as_bytes());
                for n in [generation, count, length] {
                    header.extend_from_slice(&n.to_le_bytes());
                }
                file.write_all(&header)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)
            })();
            match finished {
                Ok(()) => tracing::debug!(members = count, path = %path.display(), "member snapshot written"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot write the member snapshot (scans stay slower): {e}");
                    let _ = std::fs::remove_file(&tmp);
                }
            }
        } else {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(())
    }

    /// The snapshot file if it is whole, of this store and of this generation, with its
    /// member count and data length.
    fn open_snapshot(&self, generation: u64) -> Option<(std::fs::File, u64, u64)> {
        let mut file = std::fs::File::open(self.snapshot_path()).ok()?;
        let mut header = [0u8; HEADER];
        file.read_exact(&mut header).ok()?;
        let field = |i: usize| u64::from_le_bytes(header[FIELDS + 8 * i..FIELDS + 8 * (i + 1)].try_into().unwrap_or([0; 8]));
        let length = file.metadata().ok()?.len();
        let ours = header.starts_with(MAGIC) && &header[MAGIC.len()..FIELDS] == self.id.as_bytes();
        if !ours {
            tracing::debug!(path = %self.snapshot_path().display(), "ignoring a member snapshot of another store");
        }
        (ours && field(0) == generation && length == HEADER as u64 + field(2)).then(|| (file, field(1), field(2)))
    }
}

/// Streams the snapshot's members, parsing the next chunk on another thread meanwhile.
/// `length`: the data's length, which no record may run past (a damaged length field
/// must not make it allocate gigabytes).
#[allow(clippy::type_complexity)]
fn read_snapshot(file: std::fs::File, count: u64, length: u64, f: &mut dyn FnMut(&[(&[u8], &[u8])]) -> Result<(), StoreError>) -> Result<(), StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Chunk>>(2);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut r = BufReader::with_capacity(1 << 20, file);
            let (mut left, mut bytes) = (count, length);
            while left > 0 {
                let n = left.min(CHUNK as u64);
                left -= n;
                let chunk = read_chunk(&mut r, n as usize, &mut bytes);
                let failed = chunk.is_err();
                if tx.send(chunk).is_err() || failed {
                    return;
                }
            }
        });
        for chunk in rx {
            let chunk = chunk.map_err(|e| StoreError::Spill(std::io::Error::other(format!("reading the member snapshot: {e}"))))?;
            let pairs: Vec<(&[u8], &[u8])> = chunk.spans.iter().map(|(k, v)| (&chunk.data[k.clone()], &chunk.data[v.clone()])).collect();
            f(&pairs)?;
        }
        Ok(())
    })
}

fn read_chunk(r: &mut impl Read, n: usize, bytes: &mut u64) -> std::io::Result<Chunk> {
    let mut chunk = Chunk { data: Vec::new(), spans: Vec::with_capacity(n) };
    let mut field = |data: &mut Vec<u8>| -> std::io::Result<std::ops::Range<usize>> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len);
        *bytes = bytes.checked_sub(4 + u64::from(len)).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "a record runs past the data"))?;
        let start = data.len();
        data.resize(start + len as usize, 0);
        r.read_exact(&mut data[start..])?;
        Ok(start..data.len())
    };
    for _ in 0..n {
        let k = field(&mut chunk.data)?;
        let v = field(&mut chunk.data)?;
        chunk.spans.push((k, v));
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::Member;

    fn members(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        store
            .member_chunks(|chunk| {
                out.extend(chunk.iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn the_snapshot_serves_scans_until_members_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sled"), 16).unwrap();
        let write = |ids: &[&str]| {
            store.bump_member_generation().unwrap();
            for id in ids {
                let m = Member { name: format!("name of {id}").as_str().into(), ..Default::default() };
                store.db.insert(crate::store::key(crate::store::MEMBER, id), crate::store::encode(&m)).unwrap();
            }
        };
        let ids: Vec<String> = (0..40_000).map(|i| format!("m{i:06}")).collect();
        write(&ids.iter().map(String::as_str).collect::<Vec<_>>());
        let from_sled = members(&store);
        assert_eq!(from_sled.len(), 40_000);
        assert!(store.snapshot_path().exists(), "the first scan writes the snapshot");
        // the snapshot is what the next scan reads: prove it by changing sled behind it
        store.db.insert(crate::store::key(crate::store::MEMBER, "zz-not-seen"), crate::store::encode(&Member::default())).unwrap();
        assert_eq!(members(&store), from_sled, "the snapshot, not sled");
        // a write through the store's own paths bumps the generation: sled again
        write(&["m000001", "new"]);
        let fresh = members(&store);
        assert_eq!(fresh.len(), 40_002);
        assert!(fresh.iter().any(|(k, _)| k.ends_with(b"new")));
        assert_eq!(members(&store), fresh, "the rewritten snapshot");
        // a damaged file is ignored
        let path = store.snapshot_path();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(members(&store), fresh);
    }
}
