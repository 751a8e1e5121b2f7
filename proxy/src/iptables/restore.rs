//! iptables-restore input: line buffers for the `filter` and `nat` tables (chain lines
//! and rules kept apart, as the format requires chains to be declared first) and the
//! quoting of `--comment` arguments as upstream writes them.

use std::fmt::Write;

/// Lines of iptables-restore text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lines {
    text: String,
    count: usize,
}

impl Lines {
    /// Appends one line made of `words` separated by spaces.
    pub fn push(&mut self, words: &[&str]) {
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                self.text.push(' ');
            }
            self.text.push_str(w);
        }
        self.text.push('\n');
        self.count += 1;
    }

    /// Appends a chain declaration `:NAME - [0:0]` (which also flushes the chain).
    pub fn chain(&mut self, name: &str) {
        let _ = writeln!(self.text, ":{name} - [0:0]");
        self.count += 1;
    }

    /// Appends all of `other`.
    pub fn extend(&mut self, other: &Lines) {
        self.text.push_str(&other.text);
        self.count += other.count;
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no lines.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A `--comment` argument: quoted when it contains whitespace.
pub fn comment(text: &str) -> String {
    if text.contains(char::is_whitespace) {
        format!("\"{text}\"")
    } else {
        text.to_string()
    }
}

/// One iptables-restore transaction over the `filter` and `nat` tables.
#[derive(Debug, Clone, Default)]
pub struct Restore {
    /// `filter` chain declarations.
    pub filter_chains: Lines,
    /// `filter` rules.
    pub filter_rules: Lines,
    /// `nat` chain declarations.
    pub nat_chains: Lines,
    /// `nat` rules (and `-X` deletions).
    pub nat_rules: Lines,
}

impl Restore {
    /// The iptables-restore input (`*filter … COMMIT`, `*nat … COMMIT`).
    pub fn text(&self) -> String {
        let mut out = String::with_capacity(
            self.filter_chains.text.len()
                + self.filter_rules.text.len()
                + self.nat_chains.text.len()
                + self.nat_rules.text.len()
                + 32,
        );
        out.push_str("*filter\n");
        out.push_str(&self.filter_chains.text);
        out.push_str(&self.filter_rules.text);
        out.push_str("COMMIT\n*nat\n");
        out.push_str(&self.nat_chains.text);
        out.push_str(&self.nat_rules.text);
        out.push_str("COMMIT\n");
        out
    }

    /// Total lines (chains and rules of both tables).
    pub fn lines(&self) -> usize {
        self.filter_chains.len()
            + self.filter_rules.len()
            + self.nat_chains.len()
            + self.nat_rules.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_tables_and_quotes_comments() {
        let mut r = Restore::default();
        r.filter_chains.chain("KUBE-SERVICES");
        r.nat_chains.chain("KUBE-SVC-X");
        let c = comment("ns/svc:p cluster IP");
        r.nat_rules
            .push(&["-A", "KUBE-SVC-X", "-m", "comment", "--comment", &c]);
        assert_eq!(comment("ns/svc:p"), "ns/svc:p");
        assert_eq!(
            r.text(),
            "*filter\n:KUBE-SERVICES - [0:0]\nCOMMIT\n*nat\n:KUBE-SVC-X - [0:0]\n\
             -A KUBE-SVC-X -m comment --comment \"ns/svc:p cluster IP\"\nCOMMIT\n"
        );
        assert_eq!(r.lines(), 3);
    }
}
