//! The documentation stays true to the tree: every path the source map in
//! `docs/internals.md` names exists, every source file is in it, and every
//! relative link of README.md and docs/ points at a file of the repository.
//! No server needed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The paths the map's code block names: the first word of each line.
fn mapped() -> Vec<String> {
    let text = fs::read_to_string(root().join("docs/internals.md")).expect("docs/internals.md");
    let map = text
        .split("## Source map")
        .nth(1)
        .expect("a Source map section");
    let block = map.split("```").nth(1).expect("a code block in the map");
    block
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn rust_files(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root()).expect("inside the repository");
            out.insert(rel.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn every_mapped_path_exists() {
    let paths = mapped();
    assert!(paths.len() > 50, "the map names {} paths", paths.len());
    let gone: Vec<&String> = paths.iter().filter(|p| !root().join(p).exists()).collect();
    assert!(
        gone.is_empty(),
        "docs/internals.md names missing files: {gone:?}"
    );
}

#[test]
fn every_source_file_is_mapped() {
    let paths: BTreeSet<String> = mapped().into_iter().collect();
    let mut files = BTreeSet::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("crates/listingstats-core/src"), &mut files);
    let missing: Vec<&String> = files.difference(&paths).collect();
    assert!(
        missing.is_empty(),
        "source files missing from docs/internals.md: {missing:?}"
    );
}

#[test]
fn every_relative_link_of_the_docs_resolves_inside_the_repository() {
    let mut docs = vec![root().join("README.md"), root().join("BENCHMARKS.md")];
    for entry in fs::read_dir(root().join("docs")).expect("docs/") {
        let path = entry.expect("an entry").path();
        // The pages, not their pictures (docs/img/).
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    let repo = root().canonicalize().expect("the repository");
    let mut broken = Vec::new();
    for doc in &docs {
        let text = fs::read_to_string(doc).expect("a document");
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let path = doc.parent().expect("a folder").join(target);
            match path.canonicalize() {
                Ok(p) if p.starts_with(&repo) => {}
                _ => broken.push(format!("{}: {target}", doc.display())),
            }
        }
        assert!(
            !text.contains("../shared"),
            "{} points outside the repository",
            doc.display()
        );
    }
    assert!(broken.is_empty(), "links that do not resolve: {broken:?}");
}

/// Module state is never dropped at exit (`resident!` in src/redis/mod.rs):
/// a `thread_local!` of the module may only hold `Cell`s (nothing to drop),
/// since Redis's main thread runs thread-local destructors inside `exit()`,
/// where one touching another thread-local or Redis aborts the process.
#[test]
fn module_state_is_never_dropped_at_exit() {
    let mut files = BTreeSet::new();
    rust_files(&root().join("src"), &mut files);
    let mut bad = Vec::new();
    for file in &files {
        let text = fs::read_to_string(root().join(file)).expect("a source file");
        for (at, _) in text.match_indices("thread_local! {") {
            let block = &text[at..];
            let block = &block[..block.find("\n}").unwrap_or(block.len())];
            for line in block.lines() {
                let Some(rest) = line.trim().strip_prefix("static ") else {
                    continue;
                };
                let ty = rest.split_once(": ").map_or("", |(_, t)| t);
                if !ty.starts_with("Cell<")
                    && !ty.starts_with("std::cell::Cell<")
                    && !ty.starts_with("std::mem::ManuallyDrop<")
                {
                    bad.push(format!("{file}: {}", line.trim()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "thread-locals with a destructor (declare them with resident!): {bad:?}"
    );
}
