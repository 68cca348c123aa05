//! Embeds the demo page into the server, as `FILES` in
//! `$OUT_DIR/demo_files.rs` (see `src/http/demo.rs`): every file under the
//! repository's `client-js/demo/`, and under `lib/` the browser's share of
//! the JavaScript SDK straight from `client-js/src/` with its WebAssembly
//! hasher (`client-js/wasm/upcache_hash.wasm`) — the package's sources,
//! not a copy of them. A missing directory embeds nothing: `/demo/` then
//! answers 404.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let js = manifest.join("../client-js");
    let dir = js.join("demo");
    println!("cargo:rerun-if-changed=build.rs");
    // Cargo watches a directory's whole tree for changes; a path that does
    // not exist makes it run this script on every build, so that the page
    // is picked up as soon as it appears.
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    if dir.is_dir() {
        collect(&dir, "", &mut files);
        sdk(&js, &mut files);
    }
    files.sort();
    let mut out = String::from(
        "/// The demo page's files: path under `/demo/`, contents.\n\
         pub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in &files {
        let path = path.canonicalize().expect("an embedded file exists");
        writeln!(
            out,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .expect("writing to a string");
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("demo_files.rs");
    std::fs::write(dest, out).expect("write demo_files.rs");
}

/// The SDK's browser modules and its hasher, as `lib/…`: what the demo
/// page imports.
fn sdk(js: &Path, out: &mut Vec<(String, PathBuf)>) {
    let src = js.join("src");
    let wasm = js.join("wasm/upcache_hash.wasm");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed={}", wasm.display());
    if let Ok(entries) = std::fs::read_dir(&src) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Node's own modules and the type declarations are not for browsers.
            if name.ends_with(".js") && name != "node.js" && name != "hash-worker-node.js" {
                out.push((format!("lib/{name}"), entry.path()));
            }
        }
    }
    if wasm.is_file() {
        out.push(("lib/upcache_hash.wasm".into(), wasm));
    }
}

/// Files under `dir`, named by their path relative to the demo directory;
/// hidden files and `node_modules` are left out.
fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "node_modules" {
            continue;
        }
        let path = entry.path();
        let rel = format!("{prefix}{name}");
        if path.is_dir() {
            collect(&path, &format!("{rel}/"), out);
        } else if path.is_file() {
            out.push((rel, path));
        }
    }
}
