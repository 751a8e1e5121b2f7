//! `--feature-gates`, as upstream's component-base parses it: `Name=true,Other=false`. A gate
//! the flag does not name has its default, which each component keeps in its own table of the
//! gates it reads (upstream's defaults for the release). Gates a component does not read are
//! accepted, as they change nothing here.

use std::collections::BTreeMap;

/// One gate a component reads and upstream's default for it.
pub type Gate = (&'static str, bool);

/// The gates set on the command line, over a component's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureGates {
    defaults: BTreeMap<&'static str, bool>,
    set: BTreeMap<String, bool>,
}

impl FeatureGates {
    /// The defaults alone (no `--feature-gates`).
    pub fn with_defaults(defaults: &[Gate]) -> Self {
        FeatureGates {
            defaults: defaults.iter().copied().collect(),
            set: BTreeMap::new(),
        }
    }

    /// Parses `--feature-gates` (`A=true,B=false`; blanks around entries ignored) over
    /// `defaults`. A value that is not a boolean is an error naming the gate.
    pub fn parse(spec: &str, defaults: &[Gate]) -> Result<Self, String> {
        let mut gates = FeatureGates::with_defaults(defaults);
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, value) = entry
                .split_once('=')
                .ok_or_else(|| format!("--feature-gates: missing bool value for {entry}"))?;
            let name = name.trim();
            let value: bool = value.trim().parse().map_err(|_| {
                format!("--feature-gates: invalid value of {name}={value}, err: want true or false")
            })?;
            gates.set.insert(name.to_string(), value);
        }
        Ok(gates)
    }

    /// Whether `gate` is on: as set, else its default (off when the component has none).
    pub fn enabled(&self, gate: &str) -> bool {
        self.set
            .get(gate)
            .copied()
            .or_else(|| self.defaults.get(gate).copied())
            .unwrap_or(false)
    }

    /// The gates set on the command line that this component does not read.
    pub fn unread(&self) -> Vec<&str> {
        self.set
            .keys()
            .filter(|g| !self.defaults.contains_key(g.as_str()))
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: &[Gate] = &[("On", true), ("Off", false)];

    #[test]
    fn set_gates_override_defaults_and_unknown_ones_are_kept_aside() {
        let g = FeatureGates::parse(" Off=true, On=false ,Other=true", DEFAULTS).unwrap();
        assert!(g.enabled("Off") && !g.enabled("On") && g.enabled("Other"));
        assert_eq!(g.unread(), ["Other"]);
        let d = FeatureGates::parse("", DEFAULTS).unwrap();
        assert!(d.enabled("On") && !d.enabled("Off") && !d.enabled("Missing"));
    }

    #[test]
    fn bad_values_name_the_gate() {
        let e = FeatureGates::parse("On=yes", DEFAULTS).unwrap_err();
        assert!(e.contains("On=yes"), "{e}");
        let e = FeatureGates::parse("On", DEFAULTS).unwrap_err();
        assert!(e.contains("missing bool value for On"), "{e}");
    }
}
