//! The layering of ARCHITECTURE.md ("Layering"), checked on the source tree the way
//! rust-analyzer's tidy test checks its own: every file under src/ opens with a `//!`
//! header; only `store/` names sled and only `plugin/` names wasmtime; a stage imports
//! only itself and earlier stages (`crate::NAME`, `use crate::{..}` and `super::` paths,
//! comments and string literals aside).

use std::path::{Path, PathBuf};

/// The stages, earliest first: each may import only the ones before it. The same list,
/// in the same order, is ARCHITECTURE.md's "Layering" line and lib.rs's `pub mod` list.
const STAGES: &[&str] = &[
    "domain", "metrics", "store", "ingest", "plugin", "bundles", "predict", "profile", "population", "basket", "rules",
    "plan", "feedback", "dispatch", "report", "api", "config", "schedule", "daemon", "generate",
];

/// Above every stage: the crate root and the binaries, which may import any stage.
const TOP: &[&str] = &["lib", "main", "remote", "bin"];

#[test]
fn every_source_file_opens_with_a_module_header() {
    let missing: Vec<String> =
        source_files().into_iter().filter(|(_, text)| !text.trim_start().starts_with("//!")).map(|(path, _)| format!("src/{}", path.display())).collect();
    assert!(missing.is_empty(), "files without a `//!` header saying what they own:\n{}", missing.join("\n"));
}

#[test]
fn only_store_names_sled_and_only_plugin_names_wasmtime() {
    let problems = named_outside(&source_files(), &[("sled", "store"), ("wasmtime", "plugin")]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_stage_imports_only_earlier_stages() {
    let problems = back_imports(&source_files());
    assert!(problems.is_empty(), "imports against the stage order of ARCHITECTURE.md:\n{}", problems.join("\n"));
}

#[test]
fn the_stage_list_is_the_one_of_architecture_md_and_lib_rs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let line = STAGES.join(" < ");
    assert!(architecture.contains(&line), "ARCHITECTURE.md should state the stage order as `{line}`");
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let declared: Vec<&str> = lib.lines().filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';')).collect();
    assert_eq!(declared, STAGES, "lib.rs should declare the stages in the stage order");
    let mut on_disk: Vec<String> = std::fs::read_dir(root.join("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".rs").to_string())
        .filter(|name| !TOP.contains(&name.as_str()))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = STAGES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every module under src/ has its place in the stage order");
}

/// The checks see through comments and strings: these would fail them if they did not.
#[test]
fn the_checks_fail_on_violations() {
    let file = |path: &str, text: &str| vec![(PathBuf::from(path), text.to_string())];
    // a back import in each spelling, and one in an inline test module
    for text in [
        "//! x\nuse crate::daemon::DaemonRequest;\n",
        "//! x\nuse crate::{domain::Day, config::Config};\n",
        "//! x\nfn f() { let _ = crate::api::router; }\n",
        "//! x\nuse super::daemon::run;\n",
    ] {
        assert_eq!(back_imports(&file("plan/mod.rs", text)).len(), 1, "{text}");
    }
    assert_eq!(back_imports(&file("plan/offer.rs", "//! x\nmod tests {\n    use super::super::super::api::Api;\n}\n")).len(), 1);
    assert_eq!(back_imports(&file("plan/offer.rs", "//! x\nuse crate::{store::{Store, model::Member}, dispatch};\n")).len(), 1);
    assert_eq!(back_imports(&file("plan/offer.rs", "//! x\nuse crate::nowhere::X;\n")).len(), 1, "a module outside the list");
    // earlier stages, the stage itself, and paths inside comments or strings are fine
    for text in [
        "//! crate::daemon\nuse crate::{domain::Day, store::{Store, model::Member}, rules};\nuse super::base::MemberBase;\n",
        "//! x\n// use crate::daemon::run;\nconst S: &str = \"crate::api\";\nconst R: &str = r#\"crate::\"api\"#;\nfn f<'a>(c: &'a char) -> bool { *c == '\"' }\n",
        "//! x\nmod tests {\n    use super::*;\n    use super::super::offer::pick;\n}\n",
    ] {
        assert_eq!(back_imports(&file("plan/messages.rs", text)), Vec::<String>::new(), "{text}");
    }
    let named = |path: &str, text: &str| named_outside(&file(path, text), &[("sled", "store"), ("wasmtime", "plugin")]).len();
    assert_eq!(named("dispatch/mod.rs", "//! x\nfn f(e: sled::Error) {}\n"), 1);
    assert_eq!(named("api/mod.rs", "//! x\nuse wasmtime::Engine;\n"), 1);
    assert_eq!(named("dispatch/mod.rs", "//! no sled here\nconst P: &str = \"data/rekindle.sled\";\n"), 0);
    assert_eq!(named("store/mod.rs", "//! x\nfn f(e: sled::Error) {}\n"), 0);
}

/// Every .rs file under src/, as (path relative to src/, text).
fn source_files() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.strip_prefix(root).unwrap().to_path_buf(), text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    assert!(out.len() > 50, "found only {} files under {}", out.len(), root.display());
    out
}

/// `word` used as a name (outside comments and strings) in a file outside `owner/`.
fn named_outside(files: &[(PathBuf, String)], rules: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        let code = code_only(text);
        for &(word, owner) in rules {
            if path.starts_with(owner) {
                continue;
            }
            for (i, _) in code.match_indices(word) {
                let before = code[..i].chars().next_back();
                let after = code[i + word.len()..].chars().next();
                if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
                    out.push(format!("src/{}:{}: names {word}, which only src/{owner}/ may", path.display(), line_of(&code, i)));
                }
            }
        }
    }
    out
}

/// Every path of a file that reaches a stage later than the file's own.
fn back_imports(files: &[(PathBuf, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        let module = module_path(path);
        if TOP.contains(&module[0].as_str()) {
            continue;
        }
        let Some(rank) = STAGES.iter().position(|s| *s == module[0]) else {
            out.push(format!("src/{}: the module {} has no place in the stage order", path.display(), module[0]));
            continue;
        };
        for (at, target) in stage_paths(&code_only(text), &module) {
            match STAGES.iter().position(|s| *s == target) {
                Some(r) if r <= rank => {}
                Some(_) => out.push(format!("src/{}:{}: {} imports {target}, a later stage", path.display(), line_of(text, at), module[0])),
                None => out.push(format!("src/{}:{}: {} imports crate::{target}, which is no stage", path.display(), line_of(text, at), module[0])),
            }
        }
    }
    out
}

/// The module path of a file: `plan/offer.rs` is plan::offer, `plan/mod.rs` is plan.
fn module_path(path: &Path) -> Vec<String> {
    let mut parts: Vec<String> = path.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if parts.len() > 1 && parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The top-level module each `crate::` or `super::` path of `code` reaches, with the
/// byte offset of the path. `super` counts from the inline module (`mod tests { .. }`)
/// the path sits in.
fn stage_paths(code: &str, module: &[String]) -> Vec<(usize, String)> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    // the inline modules open around the cursor, with the brace depth each opened at
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'{' {
            depth += 1;
            i += 1;
            continue;
        }
        if c == b'}' {
            depth = depth.saturating_sub(1);
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            i += 1;
            continue;
        }
        if !is_ident(c as char) || (i > 0 && (is_ident(bytes[i - 1] as char) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let word_end = ident_end(bytes, i);
        let word = &code[i..word_end];
        if word == "mod" {
            let name_start = skip_space(bytes, word_end);
            let name_end = ident_end(bytes, name_start);
            let brace = skip_space(bytes, name_end);
            if name_end > name_start && bytes.get(brace) == Some(&b'{') {
                inline.push((code[name_start..name_end].to_string(), depth));
            }
            i = name_end.max(word_end);
            continue;
        }
        if word != "crate" && word != "super" {
            i = word_end;
            continue;
        }
        let start = i;
        let mut base: Vec<String> = if word == "crate" {
            Vec::new()
        } else {
            let mut here: Vec<String> = module.to_vec();
            here.extend(inline.iter().map(|(name, _)| name.clone()));
            here.pop();
            here
        };
        let mut j = word_end;
        // further `::super` segments
        while code[j..].starts_with("::super") && !bytes.get(j + 7).is_some_and(|b| is_ident(*b as char)) {
            base.pop();
            j += 7;
        }
        if !code[j..].starts_with("::") {
            i = j;
            continue;
        }
        j += 2;
        if let Some(stage) = base.first() {
            out.push((start, stage.clone()));
        } else if bytes.get(j) == Some(&b'{') {
            for item in group_heads(code, j) {
                if item != "self" && item != "*" {
                    out.push((start, item));
                }
            }
        } else {
            let end = ident_end(bytes, j);
            if end > j {
                out.push((start, code[j..end].to_string()));
            }
        }
        i = j;
    }
    out
}

/// The first segment of each item of the `{ .. }` group opening at `open`.
fn group_heads(code: &str, open: usize) -> Vec<String> {
    let bytes = code.as_bytes();
    let mut heads = Vec::new();
    let (mut depth, mut at_item) = (0, true);
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                depth += 1;
                at_item = depth == 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => at_item = true,
            b'*' if depth == 1 && at_item => {
                heads.push("*".to_string());
                at_item = false;
            }
            c if depth == 1 && at_item && is_ident(c as char) => {
                let end = ident_end(bytes, i);
                heads.push(code[i..end].to_string());
                at_item = false;
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

/// The text with comments, string literals and char literals blanked out (newlines
/// kept, so offsets and line numbers stay those of the file).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    // a blanked character keeps its length in bytes, so offsets stay those of the file
    let blank = |out: &mut String, c: char| {
        if c == '\n' {
            out.push('\n');
        } else {
            out.extend(std::iter::repeat_n(' ', c.len_utf8()));
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    blank(&mut out, chars[i]);
                    blank(&mut out, chars[i + 1]);
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    blank(&mut out, chars[i]);
                    blank(&mut out, chars[i + 1]);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !raw_prefix_taken(&chars, i) {
            // a raw string: r"..", r#".."#
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            let mut k = j + 1;
            while k < chars.len() && !(chars[k] == '"' && (0..hashes).all(|h| chars.get(k + 1 + h) == Some(&'#'))) {
                k += 1;
            }
            let end = (k + 1 + hashes).min(chars.len());
            for &ch in &chars[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            if i < chars.len() {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // a char literal ('x', '\n', '\u{..}'), not a lifetime
            let mut j = i + 1;
            if chars[j] == '\\' {
                j += 1;
            }
            j += 1;
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            let end = (j + 1).min(chars.len());
            for &ch in &chars[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether the `r` at `i` is part of a longer name (`br".."` still starts a raw string).
fn raw_prefix_taken(chars: &[char], i: usize) -> bool {
    match i.checked_sub(1).map(|p| chars[p]) {
        Some('b') => i >= 2 && is_ident(chars[i - 2]),
        Some(p) => is_ident(p),
        None => false,
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn ident_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && is_ident(bytes[i] as char) {
        i += 1;
    }
    i
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}
