//! The libFuzzer driver: one binary for every target, chosen by `FERROKUBE_FUZZ_TARGET`
//! (hack/fuzz.sh sets it), so the instrumented workspace is built and linked once.
#![no_main]

use std::sync::OnceLock;

fn selected() -> fn(&[u8]) {
    static RUN: OnceLock<fn(&[u8])> = OnceLock::new();
    *RUN.get_or_init(|| {
        let name = std::env::var("FERROKUBE_FUZZ_TARGET").unwrap_or_default();
        match ferrokube_fuzz::target(&name) {
            Some(t) => t.run,
            None => {
                let names: Vec<_> = ferrokube_fuzz::TARGETS.iter().map(|t| t.name).collect();
                eprintln!("FERROKUBE_FUZZ_TARGET={name:?}: not one of {names:?}");
                std::process::exit(2);
            }
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| selected()(data));
