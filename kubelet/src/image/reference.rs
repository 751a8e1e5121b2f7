//! Image references as upstream's kubelet reads them before it asks the runtime for an image:
//! the distribution reference grammar (`[domain[:port]/]path[:tag][@digest]`) with Docker Hub's
//! normalization (`busybox` is `docker.io/library/busybox`). The apiserver only checks that a
//! container's image is non-empty and has no surrounding whitespace, so `BusyBox:1.35` or
//! `busybox@sha256:abc` reach the node; there they are the container's `InvalidImageName`,
//! with upstream's message ([`with_default_tag`]).

/// Docker Hub, the domain of names without one.
const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's legacy name, read as [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Where Docker Hub's official images live (`busybox` is `library/busybox`).
const OFFICIAL_PREFIX: &str = "library/";
/// The longest repository path.
const NAME_MAX: usize = 255;
/// The longest tag.
const TAG_MAX: usize = 128;

/// A parsed, normalized reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub name: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest (`algorithm:hex`), if any.
    pub digest: Option<String>,
}

/// The image as upstream's kubelet passes it on (`applyDefaultImageTag`): `image` with
/// `:latest` appended when it has neither tag nor digest. The error is upstream's
/// `couldn't parse image name "<image>": <why>`.
pub fn with_default_tag(image: &str) -> Result<String, String> {
    let r = parse_normalized(image)
        .map_err(|why| format!("couldn't parse image name {image:?}: {why}"))?;
    Ok(match (&r.tag, &r.digest) {
        (None, None) => format!("{image}:latest"),
        _ => image.to_string(),
    })
}

/// Parses a familiar or full reference and normalizes it to Docker Hub where it names no
/// domain (distribution's `ParseNormalizedNamed`); the error is the grammar's message.
pub fn parse_normalized(s: &str) -> Result<Reference, String> {
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        ));
    }
    let (domain, remainder) = split_domain(s);
    let remote = remainder.split(':').next().unwrap_or_default();
    if remote.to_lowercase() != remote {
        return Err(format!(
            "invalid reference format: repository name ({remote}) must be lowercase"
        ));
    }
    parse(&format!("{domain}/{remainder}"))
}

/// Splits off the domain as Docker does: the first component is a domain when it is
/// `localhost`, has a `.` or `:`, or has an upper-case letter; else the name is Docker Hub's
/// (official images under `library/`).
fn split_domain(name: &str) -> (String, String) {
    let Some((first, rest)) = name.split_once('/') else {
        return (DEFAULT_DOMAIN.into(), format!("{OFFICIAL_PREFIX}{name}"));
    };
    let (domain, remote) =
        if first == "localhost" || first.contains(['.', ':']) || first.to_lowercase() != first {
            let domain = if first == LEGACY_DEFAULT_DOMAIN {
                DEFAULT_DOMAIN
            } else {
                first
            };
            (domain.to_string(), rest.to_string())
        } else {
            (DEFAULT_DOMAIN.to_string(), name.to_string())
        };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        return (domain, format!("{OFFICIAL_PREFIX}{remote}"));
    }
    (domain, remote)
}

/// Parses `name[:tag][@digest]` (distribution's `Parse`).
fn parse(s: &str) -> Result<Reference, String> {
    let Some((name, path_len, tag, digest)) = match_reference(s) else {
        return Err(if s.is_empty() {
            "repository name must have at least one component".into()
        } else if match_reference(&s.to_lowercase()).is_some() {
            "repository name must be lowercase".into()
        } else {
            "invalid reference format".into()
        });
    };
    if path_len > NAME_MAX {
        return Err(format!(
            "repository name must not be more than {NAME_MAX} characters"
        ));
    }
    if let Some(d) = digest {
        validate_digest(d)?;
    }
    Ok(Reference {
        name: name.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

/// Matches the whole reference grammar: `(name, path length, tag, digest)`.
fn match_reference(s: &str) -> Option<(&str, usize, Option<&str>, Option<&str>)> {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if digest.is_some_and(|d| !is_digest(d)) {
        return None;
    }
    // A `:` after the last `/` separates the tag (a domain's port is followed by a `/`).
    let last = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last..].find(':') {
        Some(i) => (&rest[..last + i], Some(&rest[last + i + 1..])),
        None => (rest, None),
    };
    if tag.is_some_and(|t| !is_tag(t)) {
        return None;
    }
    let path_len = match name.split_once('/') {
        Some((domain, path)) if is_domain(domain) && is_remote_name(path) => path.len(),
        _ if is_remote_name(name) => name.len(),
        _ => return None,
    };
    Some((name, path_len, tag, digest))
}

/// `[\w][\w.-]{0,127}`.
fn is_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= TAG_MAX
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `algorithm:hex`: algorithm components of `[A-Za-z][A-Za-z0-9]*` joined by one of
/// `-_+.`, then at least 32 hex digits.
fn is_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let component = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    };
    alg.split(['-', '_', '+', '.']).all(component)
        && hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What go-digest accepts of a digest the grammar matched: a known algorithm, its length,
/// lower-case hex.
fn validate_digest(d: &str) -> Result<(), String> {
    let (alg, hex) = d.split_once(':').unwrap_or((d, ""));
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm".into()),
    };
    if hex.len() != len {
        return Err("invalid checksum digest length".into());
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("invalid checksum digest format".into());
    }
    Ok(())
}

/// A host (DNS-like name, IPv4, or `[IPv6]`) with an optional `:port`.
fn is_domain(d: &str) -> bool {
    let (host, port) = if d.starts_with('[') {
        match d.find(']') {
            Some(i) => (&d[..=i], &d[i + 1..]),
            None => return false,
        }
    } else {
        match d.split_once(':') {
            Some((h, _)) => (h, &d[h.len()..]),
            None => (d, ""),
        }
    };
    let port_ok = port.is_empty()
        || (port.len() > 1
            && port.starts_with(':')
            && port[1..].bytes().all(|b| b.is_ascii_digit()));
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.trim_end_matches(']');
        !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
    } else {
        host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
    };
    port_ok && host_ok
}

/// Path components of `[a-z0-9]+` joined by `.`, `_`, `__` or dashes, separated by `/`.
fn is_remote_name(n: &str) -> bool {
    n.split('/').all(is_path_component)
}

fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: one `.`, one or two `_`, or any number of `-`; then an alphanumeric.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || !b.get(i).is_some_and(|&x| alnum(x)) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";

    #[test]
    fn familiar_names_normalize_to_docker_hub() {
        let r = parse_normalized("busybox:1.35").unwrap();
        assert_eq!(r.name, "docker.io/library/busybox");
        assert_eq!(r.tag.as_deref(), Some("1.35"));
        assert_eq!(
            parse_normalized("user/app").unwrap().name,
            "docker.io/user/app"
        );
        assert_eq!(
            parse_normalized("index.docker.io/busybox").unwrap().name,
            "docker.io/library/busybox"
        );
        let r = parse_normalized("localhost:5000/a/b:v1").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref()),
            ("localhost:5000/a/b", Some("v1"))
        );
        let r = parse_normalized(&format!("registry.k8s.io/pause:3.10@sha256:{SHA}")).unwrap();
        assert_eq!(r.name, "registry.k8s.io/pause");
        assert_eq!(r.digest, Some(format!("sha256:{SHA}")));
        assert!(parse_normalized("[::1]:5000/a__b/c--d.e").is_ok());
    }

    #[test]
    fn the_default_tag_is_latest_unless_tagged_or_digested() {
        assert_eq!(with_default_tag("busybox").unwrap(), "busybox:latest");
        assert_eq!(with_default_tag("busybox:1.35").unwrap(), "busybox:1.35");
        let digested = format!("busybox@sha256:{SHA}");
        assert_eq!(with_default_tag(&digested).unwrap(), digested);
        assert_eq!(
            with_default_tag("localhost:5000/app").unwrap(),
            "localhost:5000/app:latest"
        );
    }

    #[test]
    fn invalid_references_get_upstreams_messages() {
        for (image, why) in [
            (
                "BusyBox:1.35",
                "invalid reference format: repository name (library/BusyBox) must be lowercase",
            ),
            ("busybox:", "invalid reference format"),
            ("busybox::1", "invalid reference format"),
            ("busy box", "invalid reference format"),
            ("busybox@sha256:abc", "invalid reference format"),
            (
                "busybox@sha256:7cc4b5aefd1d0cadf8d97d4350462ba5",
                "invalid checksum digest length",
            ),
            (
                "busybox@md5:7cc4b5aefd1d0cadf8d97d4350462ba5",
                "unsupported digest algorithm",
            ),
            (
                "busybox@sha256:7CC4B5AEFD1D0CADF8D97D4350462BA51C694EBCA145B08D7D41B41ACC8DB5AA",
                "invalid checksum digest format",
            ),
            ("a/b/", "invalid reference format"),
            ("foo/-bar", "invalid reference format"),
            (
                "Registry.Example:5000/App",
                "invalid reference format: repository name (App) must be lowercase",
            ),
            (
                SHA,
                &format!(
                    "invalid repository name ({SHA}), cannot specify 64-byte hexadecimal strings"
                ),
            ),
        ] {
            assert_eq!(
                with_default_tag(image),
                Err(format!("couldn't parse image name {image:?}: {why}")),
                "{image}"
            );
        }
        let long = format!("a/{}", "b".repeat(NAME_MAX));
        assert_eq!(
            parse_normalized(&long),
            Err("repository name must not be more than 255 characters".into())
        );
        let long_tag = format!("busybox:{}", "1".repeat(TAG_MAX + 1));
        assert_eq!(
            parse_normalized(&long_tag),
            Err("invalid reference format".into())
        );
    }
}
