//! check-layers: the workspace's layering rule, checked from the sources.
//!
//! Every crate of the workspace is read from its roots (`src/lib.rs`, `src/main.rs`,
//! `src/bin/*.rs`) along its `mod` declarations. Each `crate::…`, `super::…` and `self::…`
//! path (in `use` items and in expressions) is an edge from the module it is written in to
//! the deepest module the path names. A circle of such edges is fine when it stays within a
//! parent module and its direct children (a controller's `mod.rs` and its `plan.rs`); any
//! wider circle is printed, edge by edge with file and line, and the check fails.
//!
//! Where `hack/check-layers/layers.txt` declares a crate's layers, an import from a higher
//! layer fails too (the controller manager's machinery imports no controller).
//!
//! Usage: `cargo run -p check-layers [-- <workspace root>]`. Accepted circles are listed in
//! `hack/check-layers/allow-list.txt`.

mod graph;
mod lex;
mod modules;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let allow = match std::fs::read_to_string(root.join("hack/check-layers/allow-list.txt")) {
        Ok(text) => graph::AllowList::parse(&text),
        Err(_) => graph::AllowList::default(),
    };
    let layers = match std::fs::read_to_string(root.join("hack/check-layers/layers.txt")) {
        Ok(text) => graph::Layers::parse(&text),
        Err(_) => graph::Layers::default(),
    };
    let crates = match workspace_members(&root) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("check-layers: {e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for (name, dir) in crates {
        for crate_root in crate_roots(&dir) {
            let tree = match modules::load(&crate_root) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("check-layers: {name}: {e}");
                    failed = true;
                    continue;
                }
            };
            let report = graph::check(&tree);
            let shown = crate_root.strip_prefix(&root).unwrap_or(&crate_root);
            println!(
                "{name} ({}): {} modules, {} import edges, {} circles",
                shown.display(),
                tree.modules.len(),
                report.edges,
                report.circles.len()
            );
            for circle in &report.circles {
                let allowed = allow.allows(&name, circle, &tree);
                println!(
                    "  {} circle over {} modules:",
                    if allowed { "ALLOWED" } else { "FORBIDDEN" },
                    circle.members.len()
                );
                let members: Vec<String> = circle.members.iter().map(|&m| tree.name(m)).collect();
                println!("    modules: {}", members.join(", "));
                println!("    a shortest circle through them:");
                for e in &circle.path {
                    println!(
                        "    {} -> {}   ({}:{})",
                        tree.name(e.from),
                        tree.name(e.to),
                        e.file.strip_prefix(&root).unwrap_or(&e.file).display(),
                        e.line
                    );
                }
                failed |= !allowed;
            }
            for e in layers.violations(&name, &tree) {
                println!(
                    "  FORBIDDEN import from a higher layer: {} -> {}   ({}:{})",
                    tree.name(e.from),
                    tree.name(e.to),
                    e.file.strip_prefix(&root).unwrap_or(&e.file).display(),
                    e.line
                );
                failed = true;
            }
        }
    }
    if failed {
        println!(
            "check-layers: FAILED: an import circle spans more than a parent module and its \
             children, or a module imports from a layer above its own"
        );
        ExitCode::FAILURE
    } else {
        println!("check-layers: ok");
        ExitCode::SUCCESS
    }
}

/// The workspace's member crates (name = directory name, as this workspace spells them).
fn workspace_members(root: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))
        .map_err(|e| format!("{}: {e}", root.join("Cargo.toml").display()))?;
    let start = manifest
        .find("members")
        .ok_or("Cargo.toml: no workspace members")?;
    let open = manifest[start..]
        .find('[')
        .ok_or("Cargo.toml: members is not a list")?
        + start;
    let close = manifest[open..]
        .find(']')
        .ok_or("Cargo.toml: members is not closed")?
        + open;
    Ok(manifest[open + 1..close]
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|m| (m.rsplit('/').next().unwrap_or(m).to_string(), root.join(m)))
        .collect())
}

/// A crate directory's root files: the library, the main binary and `src/bin/*.rs`.
fn crate_roots(dir: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["src/lib.rs", "src/main.rs"]
        .iter()
        .map(|r| dir.join(r))
        .filter(|p| p.is_file())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir.join("src/bin")) {
        let mut bins: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .collect();
        bins.sort();
        roots.extend(bins);
    }
    roots
}
