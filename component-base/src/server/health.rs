//! `/healthz`, `/livez` and `/readyz` with named checks, in the format of upstream's
//! k8s.io/apiserver healthz package: `ok`; `?verbose` lists `[+]name ok`; a failure answers
//! 500 listing `[-]name failed: reason withheld`; `?exclude=name` skips a check; and
//! `/healthz/<name>` runs one check.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// One named check: `Ok` when healthy, `Err(reason)` otherwise (the reason is logged, not
/// served, as upstream withholds it).
pub type CheckFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The ordered checks behind one endpoint.
#[derive(Clone, Default)]
pub struct CheckSet {
    checks: Arc<RwLock<Vec<(String, CheckFn)>>>,
}

impl CheckSet {
    /// A set with upstream's always-present `ping` and `log` checks.
    pub fn with_defaults() -> Self {
        let set = CheckSet::default();
        set.add("ping", || Ok(()));
        set.add("log", || Ok(()));
        set
    }

    /// Adds (or replaces) the check `name`.
    pub fn add(&self, name: &str, check: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
        let mut checks = self.checks.write().unwrap_or_else(|p| p.into_inner());
        let check: CheckFn = Arc::new(check);
        match checks.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = check,
            None => checks.push((name.to_string(), check)),
        }
    }

    /// Names of the checks, in order.
    pub fn names(&self) -> Vec<String> {
        let checks = self.checks.read().unwrap_or_else(|p| p.into_inner());
        checks.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Runs every check and renders the answer for endpoint `endpoint` (e.g. `healthz`).
    pub fn evaluate(
        &self,
        endpoint: &str,
        verbose: bool,
        exclude: &HashSet<String>,
    ) -> (u16, String) {
        let checks = self
            .checks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = String::new();
        let mut failed = Vec::new();
        for (name, check) in &checks {
            if exclude.contains(name) {
                out.push_str(&format!("[+]{name} excluded: ok\n"));
                continue;
            }
            match check() {
                Ok(()) => out.push_str(&format!("[+]{name} ok\n")),
                Err(reason) => {
                    out.push_str(&format!("[-]{name} failed: reason withheld\n"));
                    failed.push(format!("{name}: {reason}"));
                }
            }
        }
        if !failed.is_empty() {
            tracing::info!(endpoint, failed = %failed.join("; "), "Health check failed");
            return (500, format!("{out}{endpoint} check failed\n"));
        }
        if verbose {
            (200, format!("{out}{endpoint} check passed\n"))
        } else {
            (200, "ok".into())
        }
    }

    /// Runs the single check `name`; `None` when there is no such check.
    pub fn evaluate_one(&self, name: &str) -> Option<(u16, String)> {
        let checks = self.checks.read().unwrap_or_else(|p| p.into_inner());
        let (_, check) = checks.iter().find(|(n, _)| n == name)?;
        Some(match check() {
            Ok(()) => (200, "ok".into()),
            Err(reason) => (500, format!("internal server error: {reason}\n")),
        })
    }
}

/// The three health endpoints of a component.
#[derive(Clone)]
pub struct Health {
    /// `/healthz`.
    pub healthz: CheckSet,
    /// `/livez`.
    pub livez: CheckSet,
    /// `/readyz`.
    pub readyz: CheckSet,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            healthz: CheckSet::with_defaults(),
            livez: CheckSet::with_defaults(),
            readyz: CheckSet::with_defaults(),
        }
    }
}

impl Health {
    /// Adds `check` under `name` to all three endpoints.
    pub fn add_everywhere(
        &self,
        name: &str,
        check: impl Fn() -> Result<(), String> + Send + Sync + Clone + 'static,
    ) {
        self.healthz.add(name, check.clone());
        self.livez.add(name, check.clone());
        self.readyz.add(name, check);
    }

    /// Adds upstream's `shutdown` readiness check: failing once `token` is cancelled, so load
    /// balancers stop sending traffic while the component drains.
    pub fn add_shutdown_check(&self, token: tokio_util::sync::CancellationToken) {
        self.readyz.add("shutdown", move || {
            if token.is_cancelled() {
                Err("process is shutting down".into())
            } else {
                Ok(())
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_set_answers_ok_or_verbose_listing() {
        let set = CheckSet::with_defaults();
        assert_eq!(
            set.evaluate("healthz", false, &HashSet::new()),
            (200, "ok".into())
        );
        assert_eq!(
            set.evaluate("healthz", true, &HashSet::new()),
            (200, "[+]ping ok\n[+]log ok\nhealthz check passed\n".into())
        );
    }

    #[test]
    fn failing_check_answers_500_with_reason_withheld_and_can_be_excluded() {
        let set = CheckSet::with_defaults();
        set.add("leaderElection", || Err("lease expired".into()));
        let (code, body) = set.evaluate("readyz", false, &HashSet::new());
        assert_eq!(code, 500);
        assert_eq!(body, "[+]ping ok\n[+]log ok\n[-]leaderElection failed: reason withheld\nreadyz check failed\n");
        let exclude = HashSet::from(["leaderElection".to_string()]);
        assert_eq!(set.evaluate("readyz", false, &exclude).0, 200);
        assert_eq!(set.evaluate_one("leaderElection").unwrap().0, 500);
        assert_eq!(set.evaluate_one("ping").unwrap(), (200, "ok".into()));
        assert!(set.evaluate_one("nope").is_none());
    }

    #[test]
    fn shutdown_check_fails_after_cancel() {
        let health = Health::default();
        let token = tokio_util::sync::CancellationToken::new();
        health.add_shutdown_check(token.clone());
        assert_eq!(
            health.readyz.evaluate("readyz", false, &HashSet::new()).0,
            200
        );
        token.cancel();
        assert_eq!(
            health.readyz.evaluate("readyz", false, &HashSet::new()).0,
            500
        );
        assert_eq!(
            health.livez.evaluate("livez", false, &HashSet::new()).0,
            200
        );
    }
}
