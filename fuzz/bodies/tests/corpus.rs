//! Replays every committed corpus input of every fuzz target (`fuzz/corpus/<target>/`) through
//! the target's body on the stable toolchain, so that a regression on a known input, a crash
//! found by fuzzing included, fails the ordinary test run without nightly or libFuzzer.

use std::path::Path;

#[test]
fn every_committed_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let corpus = meshwork_fuzz_bodies::corpus(&root).expect("the corpus directory is readable");
    let mut failures = Vec::new();
    for (name, body) in meshwork_fuzz_bodies::TARGETS {
        let files = &corpus[name];
        assert!(!files.is_empty(), "fuzz/corpus/{name}/ has no seed input");
        for file in files {
            let data = std::fs::read(file).expect("corpus file is readable");
            if std::panic::catch_unwind(|| body(&data)).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that fail their target: {failures:?}");
}

#[test]
fn every_target_has_a_libfuzzer_entry_point() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz_targets");
    for (name, _) in meshwork_fuzz_bodies::TARGETS {
        let source = std::fs::read_to_string(dir.join(format!("{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{name}.rs: {e}"));
        assert!(
            source.contains(&format!("meshwork_fuzz_bodies::{name}(")),
            "fuzz/fuzz_targets/{name}.rs does not call meshwork_fuzz_bodies::{name}"
        );
    }
}
