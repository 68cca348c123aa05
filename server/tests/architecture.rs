//! The layering of the server crate stays true: a module names only modules
//! of lower layers (or its own), read from the sources' `crate::` paths.
//!
//! ```text
//!   http                     the front end
//!   cache                    the service: /v1 entries and tus files, the owners of uploads
//!   inputs                   publishing and finding stored inputs
//!   upload                   the upload service: receiving bytes
//!   commit, ops              group commit; running operations
//!   error                    the domain error
//!   store                    sled schema and blob files
//!   config, clock, metrics, notify  leaves
//! ```
//!
//! Modules of one layer may name each other (entries and tus files are two
//! owners that share the service composition); `FORBIDDEN` adds pairs that
//! point down but must not meet.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Layers, lowest first.
const LAYERS: &[&[&str]] = &[
    &["config", "clock", "metrics", "notify"],
    &["store"],
    &["error"],
    &["commit", "ops"],
    &["upload"],
    &["inputs"],
    &["cache"],
    &["http"],
];

/// `(from, to)`: pairs forbidden although they point down.
const FORBIDDEN: &[(&str, &str)] = &[
    // The front end speaks to the domain, never to storage.
    ("http", "store"),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the source tree") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`upload` for
/// `src/upload/receive.rs`, `error` for `src/error.rs`); `None` for lib.rs.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib").then_some(name)
}

/// Every top-level module named by a `crate::` path in `text`.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

#[test]
fn modules_name_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut edges = BTreeSet::new();
    for file in &files {
        let Some(from) = module_of(&src, file) else {
            continue;
        };
        assert!(
            layer_of(&from).is_some(),
            "module {from} ({}) has no layer: add it to LAYERS",
            file.display()
        );
        let text = std::fs::read_to_string(file).expect("read a source file");
        for to in named(&text) {
            if to != from && layer_of(&to).is_some() {
                edges.insert((from.clone(), to, file.clone()));
            }
        }
    }
    let mut wrong = Vec::new();
    for (from, to, file) in &edges {
        let (lf, lt) = (layer_of(from).unwrap(), layer_of(to).unwrap());
        let forbidden = FORBIDDEN.contains(&(from.as_str(), to.as_str()));
        if !forbidden && (lt < lf || (lt == lf && LAYERS[lf].len() > 1)) {
            continue;
        }
        wrong.push(format!("{from} names {to} ({})", file.display()));
    }
    assert!(
        wrong.is_empty(),
        "layers point one way; these name a layer above their own, or a forbidden one:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_reader_sees_crate_paths() {
    assert_eq!(
        named("use crate::store::meta::X; let y = crate::error::E; // crate::http"),
        ["error", "http", "store"].map(String::from).into()
    );
}
