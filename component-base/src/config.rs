//! Strict loading of component-config files (KubeletConfiguration, KubeProxyConfiguration,
//! KubeSchedulerConfiguration): a wrong `apiVersion`/`kind`, an unknown field or a value of
//! the wrong type is an error naming the file and the field, as upstream's strict decoding.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Why a component-config file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read config file {path:?}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not YAML/JSON.
    #[error("failed to parse config file {path:?}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// `apiVersion` or `kind` is missing or not what the component reads.
    #[error("config file {path:?}: {message}")]
    TypeMeta {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A field is unknown or has a bad value.
    #[error("config file {path:?}: strict decoding error: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field by its path (e.g. `profiles[0].plugins`).
        message: String,
    },
}

/// Reads `path` as one of the accepted `(apiVersion, kind)` pairs into `T`, strictly. `T`
/// should be `#[serde(deny_unknown_fields)]` all the way down and carry `apiVersion`/`kind`
/// fields of its own.
pub fn load_strict<T: DeserializeOwned>(
    path: &Path,
    accepted: &[(&str, &str)],
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_strict(path, &text, accepted)
}

/// [`load_strict`] over text already read; `path` is only used in messages.
pub fn parse_strict<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    accepted: &[(&str, &str)],
) -> Result<T, ConfigError> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    check_type_meta(path, &value, accepted)?;
    serde_path_to_error::deserialize(value).map_err(|err| ConfigError::Field {
        path: path.to_path_buf(),
        message: field_message(&err.path().to_string(), &err.inner().to_string()),
    })
}

fn check_type_meta(
    path: &Path,
    value: &serde_yaml::Value,
    accepted: &[(&str, &str)],
) -> Result<(), ConfigError> {
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let wanted = accepted
        .iter()
        .map(|(a, k)| format!("{a}, Kind={k}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let bad = |message: String| ConfigError::TypeMeta {
        path: path.to_path_buf(),
        message,
    };
    if api_version.is_empty() {
        return Err(bad(format!(
            "field \"apiVersion\" is missing; expected {wanted}"
        )));
    }
    if kind.is_empty() {
        return Err(bad(format!("field \"kind\" is missing; expected {wanted}")));
    }
    if !accepted
        .iter()
        .any(|(a, k)| *a == api_version && *k == kind)
    {
        return Err(bad(format!(
            "no kind \"{kind}\" is registered for version \"{api_version}\" here; expected {wanted}"
        )));
    }
    Ok(())
}

/// Turns serde's message into upstream's wording, with the full field path.
fn field_message(parent: &str, inner: &str) -> String {
    let join = |name: &str| {
        if parent.is_empty() || parent == "." {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        }
    };
    // serde_path_to_error's path already ends in the unknown field's own name.
    if let Some(rest) = inner.strip_prefix("unknown field `") {
        if let Some((name, _)) = rest.split_once('`') {
            let full = if parent.ends_with(name) {
                parent.to_string()
            } else {
                join(name)
            };
            return format!("unknown field \"{full}\"");
        }
    }
    if parent.is_empty() || parent == "." {
        inner.to_string()
    } else {
        format!("field \"{parent}\": {inner}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Cfg {
        #[allow(dead_code)]
        api_version: String,
        #[allow(dead_code)]
        kind: String,
        #[serde(default)]
        profiles: Vec<Profile>,
        #[serde(default)]
        qps: Option<f32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Profile {
        scheduler_name: String,
    }

    const ACCEPTED: &[(&str, &str)] = &[(
        "kubescheduler.config.k8s.io/v1",
        "KubeSchedulerConfiguration",
    )];

    fn parse(text: &str) -> Result<Cfg, ConfigError> {
        parse_strict(Path::new("/etc/cfg.yaml"), text, ACCEPTED)
    }

    #[test]
    fn accepts_a_valid_file() {
        let cfg = parse("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: a\nqps: 5\n").unwrap();
        assert_eq!(cfg.profiles[0].scheduler_name, "a");
        assert_eq!(cfg.qps, Some(5.0));
    }

    #[test]
    fn unknown_nested_field_is_named_with_its_path_and_file() {
        let err = parse("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: a\n  plugns: {}\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/etc/cfg.yaml"), "{msg}");
        assert!(
            msg.contains("unknown field \"profiles[0].plugns\""),
            "{msg}"
        );
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = parse("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nqps: fast\n").unwrap_err();
        assert!(err.to_string().contains("field \"qps\""), "{err}");
    }

    #[test]
    fn wrong_kind_or_version_is_refused() {
        let err = parse(
            "apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("\"v1beta3\"")
                || err
                    .to_string()
                    .contains("kubescheduler.config.k8s.io/v1beta3"),
            "{err}"
        );
        let err = parse("kind: KubeSchedulerConfiguration\n").unwrap_err();
        assert!(
            err.to_string().contains("\"apiVersion\" is missing"),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_is_reported() {
        let err = parse("apiVersion: [").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }
}
