//! Skipping a test loudly, and recording it so `hack/test.sh` counts it as skipped, never as
//! passed.
//!
//! A skipped test prints `SKIPPED: <reason>` to stderr and appends its name to the file named
//! by `$FERROKUBE_SKIP_LOG` (when set). `FERROKUBE_E2E_REQUIRED=1` turns every skip into a
//! failure, for machines that are expected to have the control-plane binaries.

use std::io::Write;
use std::path::Path;

/// The environment variable naming the skip log file.
pub const SKIP_LOG_ENV: &str = "FERROKUBE_SKIP_LOG";
/// Set to `1` to make skips fail instead.
pub const REQUIRED_ENV: &str = "FERROKUBE_E2E_REQUIRED";

/// Records that `test` is skipped because of `reason`: prints `SKIPPED: <reason>` to stderr
/// and appends `test` to `$FERROKUBE_SKIP_LOG`. Panics instead when `$FERROKUBE_E2E_REQUIRED`
/// is `1`.
pub fn record_skip(test: &str, reason: &str) {
    if std::env::var(REQUIRED_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: cannot run and {REQUIRED_ENV}=1: {reason}");
    }
    let log = std::env::var_os(SKIP_LOG_ENV).filter(|p| !p.is_empty());
    record_skip_to(log.as_deref().map(Path::new), test, reason);
}

/// [`record_skip`] with an explicit skip log (none: only print).
pub fn record_skip_to(log: Option<&Path>, test: &str, reason: &str) {
    eprintln!("SKIPPED: {reason}");
    eprintln!("SKIPPED: test {test} did not run");
    if let Some(path) = log {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            // One write of the whole line: O_APPEND keeps concurrent skips from interleaving.
            .and_then(|mut f| f.write_all(format!("{test}\n").as_bytes()));
        if let Err(err) = appended {
            // The skip must not be miscounted as a pass: fail rather than lose the record.
            panic!("cannot record skip of {test} in {}: {err}", path.display());
        }
    }
}

/// Turns a function's `type_name` into `<test binary>::<libtest name>` of the test it belongs
/// to (unique across binaries): drops closure segments (async test bodies) and the marker
/// function's own name.
pub fn test_name_from_type_name(type_name: &str) -> String {
    let mut segments: Vec<&str> = type_name
        .split("::")
        .filter(|s| !s.starts_with("{{"))
        .collect();
    segments.pop(); // the marker fn
    segments.join("::")
}

/// The name of the enclosing test function, as libtest and nextest print it.
#[macro_export]
macro_rules! test_name {
    () => {{
        fn marker() {}
        $crate::skip::test_name_from_type_name(::std::any::type_name_of_val(&marker))
    }};
}

/// Records a skip for the enclosing test (see [`record_skip`]) and returns from it.
#[macro_export]
macro_rules! skip_test {
    ($($reason:tt)+) => {{
        $crate::skip::record_skip(&$crate::test_name!(), &format!($($reason)+));
        return;
    }};
}

/// Starts a [`crate::TestCluster`], or skips the enclosing test (returning from it) when the
/// control-plane binaries are missing. Any other start failure panics with the cause.
/// `cluster_or_skip!(apiserver_flags = &["--feature-gates=X=true"])` adds kube-apiserver
/// flags.
#[macro_export]
macro_rules! cluster_or_skip {
    () => {
        $crate::cluster_or_skip!(apiserver_flags = &[])
    };
    (apiserver_flags = $flags:expr) => {
        match $crate::TestCluster::start_with_apiserver_flags($flags).await {
            Ok(cluster) => cluster,
            Err($crate::StartError::MissingAssets(missing)) => {
                eprintln!("{missing}");
                $crate::skip_test!("{}", $crate::cluster::skip_reason(&missing))
            }
            Err($crate::StartError::Failed(err)) => panic!("starting test cluster: {err:#}"),
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_drop_crate_closures_and_marker() {
        assert_eq!(
            test_name_from_type_name("leader_election::takeover::{{closure}}::marker"),
            "leader_election::takeover"
        );
        assert_eq!(
            test_name_from_type_name("smoke::health::probes::{{closure}}::{{closure}}::marker"),
            "smoke::health::probes"
        );
    }

    #[test]
    fn macro_names_this_test() {
        assert_eq!(
            crate::test_name!(),
            "e2e::skip::tests::macro_names_this_test"
        );
    }

    #[test]
    fn skips_are_appended_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips");
        record_skip_to(Some(&log), "a::one", "no kube-apiserver");
        record_skip_to(Some(&log), "b::two", "no kube-apiserver");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "a::one\nb::two\n");
    }
}
