//! Compiling plugins, with a cache of compiled code between starts.
//!
//! It owns the step from a .wasm file to a wasmtime `Component`: a core module
//! built with the SDK for wasm32-unknown-unknown is first turned into a
//! component with wit-component (using the component-type section wit-bindgen
//! embedded); then Cranelift compiles it. The compiled artifact is stored as
//! `CACHE_DIR/<sha256 of file and engine settings>.cwasm`, so a restart
//! deserializes instead of recompiling. A stale or corrupt entry is replaced.

use std::hash::{Hash, Hasher};
use std::path::Path;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Turn the bytes of a plugin file into a component's bytes.
pub(crate) fn component_bytes(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if wasmparser::Parser::is_component(bytes) {
        Ok(bytes.to_vec())
    } else if wasmparser::Parser::is_core_wasm(bytes) {
        // Validate first: wit-component assumes a well-formed module and can
        // panic on a truncated one. The panic guard covers what validation misses.
        wasmparser::Validator::new()
            .validate_all(bytes)
            .map_err(|err| format!("an invalid core wasm module: {err}"))?;
        let encoded = std::panic::catch_unwind(|| {
            wit_component::ComponentEncoder::default()
                .module(bytes)
                .and_then(|encoder| encoder.validate(true).encode())
        });
        match encoded {
            Ok(Ok(component)) => Ok(component),
            Ok(Err(err)) => Err(format!("a core wasm module that cannot become a rekindle plugin component: {err:#}")),
            Err(_) => Err("a core wasm module that wit-component could not read".to_string()),
        }
    } else {
        Err("not a WebAssembly file (no wasm header)".to_string())
    }
}

/// Compile `bytes`, through the cache when `cache_dir` is set.
pub(crate) fn compile(engine: &Engine, bytes: &[u8], cache_dir: Option<&Path>) -> Result<Component, String> {
    let Some(cache_dir) = cache_dir else {
        let component = component_bytes(bytes)?;
        return Component::new(engine, &component).map_err(|err| format!("invalid component: {err:#}"));
    };
    let entry = cache_dir.join(format!("{}.cwasm", cache_key(engine, bytes)));
    // Read into memory rather than mmap the file: an entry replaced or
    // truncated by another process must not pull code out from under us.
    if let Ok(compiled) = std::fs::read(&entry) {
        // SAFETY: the file is one this function wrote with `precompile_component`
        // for an engine with the same settings (the key covers them); wasmtime
        // also checks its header and refuses an incompatible artifact.
        if let Ok(component) = unsafe { Component::deserialize(engine, &compiled) } {
            return Ok(component);
        }
    }
    let component = component_bytes(bytes)?;
    let compiled = engine
        .precompile_component(&component)
        .map_err(|err| format!("invalid component: {err:#}"))?;
    store_entry(cache_dir, &entry, &compiled);
    // SAFETY: `compiled` was just produced by `precompile_component` on this engine.
    unsafe { Component::deserialize(engine, &compiled) }.map_err(|err| format!("cannot load compiled code: {err:#}"))
}

/// Best effort: a cache that cannot be written only costs a recompile.
fn store_entry(cache_dir: &Path, entry: &Path, compiled: &[u8]) {
    let temporary = entry.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::create_dir_all(cache_dir)
        .and_then(|()| std::fs::write(&temporary, compiled))
        .and_then(|()| std::fs::rename(&temporary, entry));
    if let Err(err) = written {
        tracing::warn!(cache = %cache_dir.display(), %err, "cannot store compiled plugin code");
    }
}

fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let mut digest = Sha256::new();
    digest.update(bytes);
    digest.update(settings.finish().to_le_bytes());
    digest.update(env!("CARGO_PKG_VERSION").as_bytes());
    digest.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
}
