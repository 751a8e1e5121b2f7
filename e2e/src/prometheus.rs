//! Checking Prometheus text exposition (format 0.0.4), as served on `/metrics`.

use std::collections::BTreeSet;

use anyhow::{bail, Result};

/// Parses a Prometheus text exposition strictly enough to catch malformed output: every line
/// is a `# HELP`/`# TYPE` comment, another comment, or `name[{labels}] value [timestamp]` with
/// a valid metric name and a numeric value. Returns the sample names seen.
pub fn sample_names(text: &str) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                    bail!("line {}: malformed TYPE: {line}", n + 1);
                };
                if !valid_name(name)
                    || !matches!(
                        kind,
                        "counter"
                            | "gauge"
                            | "histogram"
                            | "summary"
                            | "untyped"
                            | "unknown"
                            | "info"
                            | "stateset"
                            | "gaugehistogram"
                    )
                {
                    bail!("line {}: bad TYPE: {line}", n + 1);
                }
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if !valid_name(name) {
            bail!("line {}: bad metric name {name:?}: {line}", n + 1);
        }
        let rest = &line[name_end..];
        let after_labels = if rest.starts_with('{') {
            match rest.rfind('}') {
                Some(end) => &rest[end + 1..],
                None => bail!("line {}: unterminated labels: {line}", n + 1),
            }
        } else {
            rest
        };
        let mut fields = after_labels.split_whitespace();
        let value = fields.next().unwrap_or_default();
        if value.parse::<f64>().is_err() && !matches!(value, "+Inf" | "-Inf" | "NaN") {
            bail!("line {}: bad value {value:?}: {line}", n + 1);
        }
        names.insert(name.to_string());
    }
    Ok(names)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_exposition_and_names_samples() {
        let text = "# HELP up Whether up.\n# TYPE up gauge\nup 1\n\
                    kubernetes_build_info{major=\"1\",minor=\"35\"} 1\n\
                    req_bucket{le=\"+Inf\"} 3 1700000000000\n";
        let names = sample_names(text).unwrap();
        assert!(names.contains("up") && names.contains("kubernetes_build_info"));
        assert!(names.contains("req_bucket"));
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(sample_names("1bad 1\n").is_err());
        assert!(sample_names("x{a=\"b\" 1\n").is_err());
        assert!(sample_names("x one\n").is_err());
        assert!(sample_names("# TYPE x nonsense\n").is_err());
    }
}
