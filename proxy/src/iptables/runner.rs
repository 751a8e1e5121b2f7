//! Running the iptables tools of one family (`iptables`/`ip6tables` and their `-save`/
//! `-restore`), optionally inside a named network namespace (`ip netns exec`), which is
//! how tests and the benchmark keep their rules off the host. Which backend the tools
//! drive (nf_tables or legacy) is the host's `update-alternatives` choice; on Debian 12
//! it is `iptables-nft`.

use super::names::{is_service_chain, JUMPS, KUBELET_FIREWALL, MARK_MASQ, POSTROUTING};
use super::names::{EXTERNAL_SERVICES, FORWARD, NODEPORTS, PROXY_FIREWALL, SERVICES};
use crate::model::IpFamily;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

/// upstream's canary chain (created in mangle/nat/filter by older releases); removed by
/// `--cleanup` only.
const CANARY: &str = "KUBE-PROXY-CANARY";

/// How to reach the iptables tools of one family.
#[derive(Debug, Clone)]
pub struct Iptables {
    /// The family (`iptables` or `ip6tables`).
    pub family: IpFamily,
    /// Run inside this network namespace.
    pub netns: Option<String>,
}

/// A failed iptables tool run, with its stderr.
#[derive(Debug, thiserror::Error)]
#[error("{command}: {message}")]
pub struct IptablesError {
    /// The command line.
    pub command: String,
    /// stderr, or the spawn error.
    pub message: String,
}

impl Iptables {
    /// The tools of `family` in the host namespace, or in `netns`.
    pub fn new(family: IpFamily, netns: Option<&str>) -> Self {
        Iptables {
            family,
            netns: netns.map(str::to_string),
        }
    }

    fn tool(&self, suffix: &str) -> String {
        let base = match self.family {
            IpFamily::V4 => "iptables",
            IpFamily::V6 => "ip6tables",
        };
        format!("{base}{suffix}")
    }

    fn run(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Result<String, IptablesError> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, tool]);
                c
            }
            None => Command::new(tool),
        };
        cmd.args(args);
        let err = |message: String| IptablesError {
            command: format!("{tool} {}", args.join(" ")),
            message,
        };
        let mut child = cmd
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot run {tool}: {e}")))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|e| err(format!("writing the input: {e}")))?;
        }
        let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
        }
    }

    /// Applies `text` in one `iptables-restore --noflush --counters` run: only the chains
    /// it declares are flushed; everything else in the tables is left alone.
    pub fn restore(&self, text: &str) -> Result<(), IptablesError> {
        self.run(
            &self.tool("-restore"),
            &["-w", "5", "--noflush", "--counters"],
            Some(text),
        )
        .map(|_| ())
    }

    /// The chains of `table` (from `iptables-save -t TABLE`).
    pub fn chains(&self, table: &str) -> Result<BTreeSet<String>, IptablesError> {
        let saved = self.run(&self.tool("-save"), &["-t", table], None)?;
        Ok(parse_chains(&saved))
    }

    /// The table as `iptables-save -t TABLE` prints it.
    pub fn save(&self, table: &str) -> Result<String, IptablesError> {
        self.run(&self.tool("-save"), &["-t", table], None)
    }

    fn jump_args(jump: &super::names::Jump) -> Vec<&'static str> {
        let (_, target, _, comment, extra) = *jump;
        let mut args: Vec<&str> = extra.to_vec();
        if !comment.is_empty() {
            args.extend(["-m", "comment", "--comment", comment]);
        }
        args.extend(["-j", target]);
        args
    }

    /// Ensures our top-level chains exist and the built-in chains jump to them (prepended
    /// when missing), as upstream does before each full sync.
    pub fn ensure_jumps(&self) -> Result<(), IptablesError> {
        let tool = self.tool("");
        let mut chains: BTreeSet<(&str, &str)> = BTreeSet::new();
        for jump in JUMPS {
            let (table, target, source, ..) = *jump;
            if chains.insert((table, target)) {
                if let Err(e) = self.run(&tool, &["-w", "5", "-t", table, "-N", target], None) {
                    if !e.message.contains("exists") {
                        return Err(e);
                    }
                }
            }
            let rule = Self::jump_args(jump);
            let mut check = vec!["-w", "5", "-t", table, "-C", source];
            check.extend(&rule);
            if self.run(&tool, &check, None).is_err() {
                let mut insert = vec!["-w", "5", "-t", table, "-I", source];
                insert.extend(&rule);
                self.run(&tool, &insert, None)?;
            }
        }
        Ok(())
    }

    /// `--cleanup`: removes the jumps to our chains and deletes our chains (kubelet's
    /// `KUBE-FIREWALL` stays, as upstream). Returns how many chains were deleted.
    pub fn cleanup(&self) -> Result<usize, IptablesError> {
        let tool = self.tool("");
        for jump in JUMPS.iter().filter(|j| j.1 != KUBELET_FIREWALL) {
            let (table, _, source, ..) = *jump;
            let mut delete = vec!["-w", "5", "-t", table, "-D", source];
            delete.extend(Self::jump_args(jump));
            // Absent is fine; repeat while duplicates remain.
            for _ in 0..8 {
                if self.run(&tool, &delete, None).is_err() {
                    break;
                }
            }
        }
        let ours_nat = [SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ, CANARY];
        let ours_filter = [
            SERVICES,
            EXTERNAL_SERVICES,
            FORWARD,
            NODEPORTS,
            PROXY_FIREWALL,
            CANARY,
        ];
        let mut text = String::new();
        let mut deleted = 0;
        for (table, ours) in [("filter", &ours_filter[..]), ("nat", &ours_nat[..])] {
            let existing = self.chains(table)?;
            let doomed: Vec<&String> = existing
                .iter()
                .filter(|c| ours.contains(&c.as_str()) || is_service_chain(c))
                .collect();
            if doomed.is_empty() {
                continue;
            }
            text.push_str(&format!("*{table}\n"));
            for c in &doomed {
                text.push_str(&format!(":{c} - [0:0]\n"));
            }
            for c in &doomed {
                text.push_str(&format!("-X {c}\n"));
            }
            text.push_str("COMMIT\n");
            deleted += doomed.len();
        }
        if !text.is_empty() {
            self.restore(&text)?;
        }
        Ok(deleted)
    }

    /// Sets `net.ipv4.conf.all.route_localnet=1`, which localhost NodePorts need.
    pub fn enable_route_localnet(&self) -> Result<(), IptablesError> {
        self.run(
            "sysctl",
            &["-qw", "net.ipv4.conf.all.route_localnet=1"],
            None,
        )
        .map(|_| ())
    }
}

/// The chain names that `iptables-save` output declares (its `:CHAIN POLICY [p:b]` lines).
pub fn parse_chains(saved: &str) -> BTreeSet<String> {
    saved
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}
