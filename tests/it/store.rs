//! The store's own files damaged, and the store held by another process, through the real
//! binary (issue 14 items 9 and 10): damage is reported as damage or lost data, naming
//! the file and what to do, never as "in use", never as a panic, and never served as a
//! store with fewer members; a store the daemon holds is reported as in use.

use crate::support::sample_store;
use std::path::{Path, PathBuf};
use std::process::Output;

fn stats(dir: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .current_dir(dir)
        .args(["--db", "store", "stats", "--as-of", "2026-11-01"])
        .output()
        .expect("run rekindle")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// One way to damage the store's files: (what, file name in the store folder, edit).
type Damage = (String, String, Box<dyn Fn(&Path)>);

/// Truncations, overwritten blocks and flipped bytes of sled's files at spread offsets,
/// and removed files: deterministic, so a failure replays.
fn damages(store: &Path) -> Vec<Damage> {
    let mut out: Vec<Damage> = Vec::new();
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut files: Vec<String> = std::fs::read_dir(store).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    for name in files.iter().filter(|n| *n == "db" || *n == "conf" || n.starts_with("snap.")) {
        let size = len(&store.join(name));
        for part in [0, 1, 2, 3] {
            let at = size * part / 4;
            out.push((format!("{name} truncated to {at} bytes"), name.clone(), Box::new(move |p: &Path| std::fs::File::options().write(true).open(p).unwrap().set_len(at).unwrap())));
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ size;
        for i in 0..12u64 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let at = (state >> 16) % size.max(1);
            let (what, bytes): (&str, Vec<u8>) = match i % 3 {
                0 => ("zeroed", vec![0; 4096]),
                1 => ("overwritten with 0xff", vec![0xff; 64]),
                _ => ("with one byte flipped", vec![]),
            };
            out.push((
                format!("{name} {what} at byte {at}"),
                name.clone(),
                Box::new(move |p: &Path| {
                    let mut data = std::fs::read(p).unwrap();
                    let at = at as usize;
                    if bytes.is_empty() {
                        if let Some(b) = data.get_mut(at) {
                            *b ^= 0x5a;
                        }
                    } else {
                        let end = (at + bytes.len()).min(data.len());
                        data[at..end].copy_from_slice(&bytes[..end - at]);
                    }
                    std::fs::write(p, data).unwrap();
                }),
            ));
        }
        out.push((format!("{name} removed"), name.clone(), Box::new(|p: &Path| std::fs::remove_file(p).unwrap())));
    }
    out.push(("conf garbled".into(), "conf".into(), Box::new(|p: &Path| std::fs::write(p, "use_compression: fals\0\n").unwrap())));
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn damaged_store_files_are_reported_as_damage_never_as_in_use_a_panic_or_fewer_members() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    std::fs::create_dir(&base).unwrap();
    drop(sample_store(&base, 300));
    let whole = stats(&base);
    assert!(whole.status.success() && text(&whole).contains("members as of 2026-11-01: 300"), "{}", text(&whole));
    let _ = std::fs::remove_file(base.join("store.members"));
    let (mut served, mut refused) = (0, 0);
    for (what, file, damage) in damages(&base.join("store")) {
        let case = dir.path().join("case");
        let _ = std::fs::remove_dir_all(&case);
        copy_dir(&base, &case);
        damage(&case.join("store").join(&file));
        let out = stats(&case);
        let said = text(&out);
        assert!(!said.contains("panicked") && out.status.code() != Some(101), "{what}: a panic\n{said}");
        assert!(!said.contains("another rekindle process"), "{what}: damage reported as the store being in use\n{said}");
        if out.status.success() {
            assert!(said.contains("members as of 2026-11-01: 300"), "{what}: served a store with members missing\n{said}");
            served += 1;
        } else {
            assert!(said.contains("is damaged") || said.contains("has lost data"), "{what}: {said}");
            assert!(said.contains("restore the store's folder from a backup"), "{what}: says what to do\n{said}");
            refused += 1;
        }
        if what == "conf garbled" {
            assert!(said.contains("is damaged") && said.contains("conf ("), "{what}: names the file\n{said}");
        }
    }
    println!("{served} damaged stores still whole, {refused} refused");
    assert!(refused >= 4, "the damage reached sled: {served} served, {refused} refused");
}

#[test]
fn a_store_the_daemon_holds_is_reported_as_in_use_not_as_damaged() {
    let daemon = crate::public::Daemon::start("");
    let store: PathBuf = daemon.dir.path().join("store");
    assert!(store.join("rekindle-identity").exists(), "the daemon's store has its identity file");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .current_dir(daemon.dir.path())
        .args(["--config", "config.toml", "profiles", "export", "--as-of", "2026-11-01"])
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("is in use by another rekindle process"), "{said}");
    assert!(!said.contains("damaged") && !said.contains("lost data"), "{said}");
}
