//! Classifying apiserver errors as client-go's `apierrors.Is*` do, so every component
//! decides retry, ignore or fail from the same reading of a status.

/// The HTTP status code of an apiserver error, if it is one.
pub fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// The `reason` of an apiserver error status (`NotFound`, `AlreadyExists`, `Expired`, …).
pub fn reason(e: &kube::Error) -> Option<&str> {
    match e {
        kube::Error::Api(s) => Some(s.reason.as_str()),
        _ => None,
    }
}

/// 404: the object (or its namespace) is gone.
pub fn is_not_found(e: &kube::Error) -> bool {
    code(e) == Some(404)
}

/// 409: the object already exists, or the write carried a stale resourceVersion.
pub fn is_conflict(e: &kube::Error) -> bool {
    code(e) == Some(409)
}

/// 409 with reason `AlreadyExists`: a create of a name that is taken.
pub fn is_already_exists(e: &kube::Error) -> bool {
    is_conflict(e) && reason(e) == Some("AlreadyExists")
}

/// 410 (`Gone` / `Expired`): a resourceVersion too old to watch or list from.
pub fn is_gone(e: &kube::Error) -> bool {
    code(e) == Some(410)
}

/// 422 (`Invalid`): the object failed validation.
pub fn is_invalid(e: &kube::Error) -> bool {
    code(e) == Some(422)
}

/// 403 because the namespace is terminating (NamespaceLifecycle admission).
pub fn is_namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated"))
}

/// `Ok(())` for not-found, the error otherwise (deleting what is gone succeeded).
pub fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": code, "reason": reason, "message": message,
        }))
        .unwrap();
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn classes() {
        assert!(is_not_found(&api(404, "NotFound", "")));
        assert!(is_conflict(&api(409, "Conflict", "")));
        assert!(!is_already_exists(&api(409, "Conflict", "")));
        assert!(is_already_exists(&api(409, "AlreadyExists", "")));
        assert!(is_invalid(&api(422, "Invalid", "")));
        assert!(is_gone(&api(410, "Expired", "too old resource version")));
        assert!(is_namespace_terminating(&api(
            403,
            "Forbidden",
            "namespace x is being terminated"
        )));
        assert!(!is_namespace_terminating(&api(403, "Forbidden", "no")));
        assert!(ignore_not_found::<()>(Err(api(404, "NotFound", ""))).is_ok());
        assert!(ignore_not_found::<()>(Err(api(500, "InternalError", ""))).is_err());
    }
}
