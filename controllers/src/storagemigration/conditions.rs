//! The migration's conditions and reasons, as upstream's `util.go`: a condition is added
//! once (when not already True); Succeeded or Failed turn a True Running to False.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::types::{MigrationCondition, StorageVersionMigration};

/// The migration is in progress.
pub const RUNNING: &str = "Running";
/// Every object was rewritten.
pub const SUCCEEDED: &str = "Succeeded";
/// The migration stopped on an error.
pub const FAILED: &str = "Failed";
/// Reason of [`SUCCEEDED`].
pub const REASON_SUCCEEDED: &str = "StorageVersionMigrationSucceeded";
/// Reason of [`RUNNING`].
pub const REASON_RUNNING: &str = "StorageVersionMigrationInProgress";
/// Reason of [`FAILED`].
pub const REASON_FAILED: &str = "StorageVersionMigrationFailed";

/// Whether `svm` has condition `kind` with status True.
pub fn is_true(svm: &StorageVersionMigration, kind: &str) -> bool {
    svm.status
        .conditions
        .iter()
        .any(|c| c.type_ == kind && c.status == "True")
}

/// Whether the migration ended (Succeeded or Failed): nothing more to do.
pub fn is_finished(svm: &StorageVersionMigration) -> bool {
    is_true(svm, SUCCEEDED) || is_true(svm, FAILED)
}

/// `svm` with condition `kind` True (reason, message, `now`) unless it already was; a
/// Succeeded or Failed one sets a True Running to False.
pub fn set(
    mut svm: StorageVersionMigration,
    kind: &str,
    reason: &str,
    message: &str,
    now: Time,
) -> StorageVersionMigration {
    if is_true(&svm, kind) {
        return svm;
    }
    if kind == SUCCEEDED || kind == FAILED {
        if let Some(running) = svm
            .status
            .conditions
            .iter_mut()
            .find(|c| c.type_ == RUNNING && c.status == "True")
        {
            running.status = "False".into();
        }
    }
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    svm.status.conditions.push(MigrationCondition {
        type_: kind.into(),
        status: "True".into(),
        last_update_time: Some(now),
        reason: non_empty(reason),
        message: non_empty(message),
    });
    svm
}

/// Running, as the migrator sets it before rewriting.
pub fn running(svm: StorageVersionMigration, now: Time) -> StorageVersionMigration {
    set(svm, RUNNING, REASON_RUNNING, "", now)
}

/// Succeeded.
pub fn succeeded(svm: StorageVersionMigration, now: Time) -> StorageVersionMigration {
    set(svm, SUCCEEDED, REASON_SUCCEEDED, "", now)
}

/// Failed with `message`.
pub fn failed(svm: StorageVersionMigration, message: &str, now: Time) -> StorageVersionMigration {
    set(svm, FAILED, REASON_FAILED, message, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Time {
        Time("2025-06-01T00:00:00Z".parse().unwrap())
    }

    fn kinds(svm: &StorageVersionMigration) -> Vec<(String, String)> {
        svm.status
            .conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect()
    }

    #[test]
    fn running_then_succeeded() {
        let svm = running(StorageVersionMigration::default(), now());
        assert!(is_true(&svm, RUNNING) && !is_finished(&svm));
        let again = running(svm.clone(), Time("2026-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(again, svm, "a True condition is not added twice");
        let done = succeeded(svm, now());
        assert_eq!(
            kinds(&done),
            [
                ("Running".into(), "False".into()),
                ("Succeeded".into(), "True".into())
            ]
        );
        assert!(is_finished(&done));
        let c = &done.status.conditions[1];
        assert_eq!(c.reason.as_deref(), Some(REASON_SUCCEEDED));
        assert_eq!(c.message, None);
    }

    #[test]
    fn failed_carries_its_message() {
        let svm = failed(
            StorageVersionMigration::default(),
            "resource not found",
            now(),
        );
        assert!(is_finished(&svm));
        let c = &svm.status.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.reason.as_deref(), c.message.as_deref()),
            (FAILED, Some(REASON_FAILED), Some("resource not found"))
        );
    }
}
