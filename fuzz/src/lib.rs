//! Fuzz targets for every ferrokube parser that takes outside input (issue 16, "hostile
//! input"). Each target is a `fn(&[u8])` that must never panic, whatever the bytes; where a
//! parser has a printer, the target also checks that what parses prints and parses back to
//! the same value. The same functions run under libFuzzer (`hack/fuzz.sh`, the
//! `ferrokube-fuzz` binary) and as a regression test over `fuzz/corpus/` and
//! `fuzz/crashes/` (`tests/corpus.rs`).

pub mod targets;

/// A fuzz target: its name (the directory name under `corpus/` and `crashes/`) and entry.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// What it feeds the bytes to.
    pub run: fn(&[u8]),
}

/// Every target, in the order `hack/fuzz.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "quantity",
        run: targets::quantity::fuzz,
    },
    Target {
        name: "duration",
        run: targets::duration::fuzz,
    },
    Target {
        name: "cron",
        run: targets::cron::fuzz,
    },
    Target {
        name: "labels",
        run: targets::labels::fuzz,
    },
    Target {
        name: "component_config",
        run: targets::component_config::fuzz,
    },
    Target {
        name: "static_pod",
        run: targets::static_pod::fuzz,
    },
    Target {
        name: "cri_log",
        run: targets::cri_log::fuzz,
    },
    Target {
        name: "dns_message",
        run: targets::dns_message::fuzz,
    },
    Target {
        name: "resolv_conf",
        run: targets::resolv_conf::fuzz,
    },
    Target {
        name: "netfilter_output",
        run: targets::netfilter_output::fuzz,
    },
    Target {
        name: "csr",
        run: targets::csr::fuzz,
    },
    Target {
        name: "kubeconfig",
        run: targets::kubeconfig::fuzz,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The input as text the way a parser of strings sees it (invalid UTF-8 replaced, since the
/// callers decode it so or reject it before the parser).
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}
