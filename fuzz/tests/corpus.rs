//! Runs every fuzz target over its committed corpus (`fuzz/corpus/<target>/`) and the
//! inputs that once crashed it (`fuzz/crashes/<target>/`): none may panic again.

use std::panic;
use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_survives_its_corpus_and_past_crashes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    for target in ferrokube_fuzz::TARGETS {
        let corpus = inputs(&root.join("corpus").join(target.name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{} has no inputs: every target keeps at least its seeds",
            target.name
        );
        let crashes = inputs(&root.join("crashes").join(target.name));
        for file in corpus.iter().chain(&crashes) {
            let data = std::fs::read(file).expect("a readable corpus file");
            if panic::catch_unwind(|| (target.run)(&data)).is_err() {
                failures.push(format!("{}: {}", target.name, file.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "inputs that panic:\n{}",
        failures.join("\n")
    );
}
