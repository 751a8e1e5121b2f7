//! Classifying apiserver errors as client-go's `apierrors.Is*` do.

/// The HTTP status code of an apiserver error, if it is one.
pub fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// 404: the object (or its namespace) is gone.
pub fn is_not_found(e: &kube::Error) -> bool {
    code(e) == Some(404)
}

/// 409: already exists, or a stale resourceVersion.
pub fn is_conflict(e: &kube::Error) -> bool {
    code(e) == Some(409)
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
