//! Running `nft`: applying a transaction from stdin (`nft -f -`), listing our chains and
//! sets, deleting the table. Optionally inside a named network namespace (`ip netns exec`),
//! which is how tests and the benchmark keep their rules off the host.

use super::names::TABLE;
use super::netlink;
use super::proxier::Inventory;
use super::tx::{nft_family, Transaction};
use crate::model::IpFamily;
use std::io::Write;
use std::process::{Command, Stdio};

/// How transactions reach the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// nf_tables netlink, falling back to `nft -f` when the transaction holds text the
    /// netlink encoder does not cover or the netlink apply fails.
    #[default]
    Auto,
    /// Only `nft -f`.
    Cli,
    /// Netlink, and a failed netlink apply is an error, not a fallback (tests); text
    /// the encoder does not cover still goes through `nft -f`.
    Netlink,
}

impl Backend {
    /// The backend named by `FERROKUBE_NFT_BACKEND` (`cli`, `netlink`; default auto).
    pub fn from_env() -> Self {
        match std::env::var("FERROKUBE_NFT_BACKEND").as_deref() {
            Ok("cli") => Backend::Cli,
            Ok("netlink") => Backend::Netlink,
            _ => Backend::Auto,
        }
    }
}

/// How to reach `nft`.
#[derive(Debug, Clone, Default)]
pub struct Nft {
    /// Run inside this network namespace (`ip netns exec NAME nft …`).
    pub netns: Option<String>,
    /// How [`Nft::apply`] programs the kernel.
    pub backend: Backend,
}

/// A failed `nft` run, with its stderr.
#[derive(Debug, thiserror::Error)]
#[error("nft {args}: {message}")]
pub struct NftError {
    /// The arguments.
    pub args: String,
    /// stderr, or the spawn error.
    pub message: String,
}

impl Nft {
    /// `nft` in the host namespace.
    pub fn host() -> Self {
        Nft {
            netns: None,
            backend: Backend::from_env(),
        }
    }

    /// `nft` in network namespace `name`.
    pub fn in_netns(name: &str) -> Self {
        Nft {
            netns: Some(name.to_string()),
            backend: Backend::from_env(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nft"]);
                c
            }
            None => Command::new("nft"),
        };
        cmd.args(args);
        cmd
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let err = |message: String| NftError {
            args: args.join(" "),
            message,
        };
        let mut child = self
            .command(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot run nft: {e}")))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|e| err(format!("writing the transaction: {e}")))?;
        }
        let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
        }
    }

    /// Applies `tx` atomically: one netlink batch, or `nft -f -` (see [`Backend`]).
    pub fn apply(&self, tx: &Transaction) -> Result<(), NftError> {
        if tx.is_empty() {
            return Ok(());
        }
        if self.backend != Backend::Cli {
            match netlink::encode(tx.family(), tx.text()) {
                Err(e) => tracing::debug!("using nft -f: {e}"),
                Ok(batch) => match self.send_netlink(tx, &batch) {
                    Ok(()) => return Ok(()),
                    Err(e) if self.backend == Backend::Netlink => return Err(e),
                    Err(e) => tracing::warn!("netlink apply failed, using nft -f: {e}"),
                },
            }
        }
        self.run(&["-f", "-"], Some(tx.text())).map(|_| ())
    }

    /// Applies `tx` as one nf_tables netlink batch (an error if it cannot be encoded).
    pub fn apply_netlink(&self, tx: &Transaction) -> Result<(), NftError> {
        let batch = netlink::encode(tx.family(), tx.text()).map_err(|e| NftError {
            args: "(netlink batch)".into(),
            message: e.to_string(),
        })?;
        self.send_netlink(tx, &batch)
    }

    fn send_netlink(&self, tx: &Transaction, batch: &netlink::Batch) -> Result<(), NftError> {
        let err = |message: String| NftError {
            args: "(netlink batch)".into(),
            message,
        };
        netlink::socket::send(self.netns.as_deref(), batch).map_err(|e| match &e {
            netlink::socket::NetlinkError::Rejected { line, .. } => err(format!(
                "{e}: {}",
                tx.text().lines().nth(*line).unwrap_or_default()
            )),
            _ => err(e.to_string()),
        })
    }

    /// Our table's chains and sets in `family`, or `None` if the table does not exist
    /// (over netlink unless the backend is the CLI; `nft -j list table` when that fails).
    pub fn inventory(&self, family: IpFamily) -> Result<Option<Inventory>, NftError> {
        if self.backend != Backend::Cli {
            let nfproto = match family {
                IpFamily::V4 => 2,
                IpFamily::V6 => 10,
            };
            match netlink::socket::names(self.netns.as_deref(), nfproto, TABLE) {
                Ok(found) => {
                    return Ok(found.map(|(chains, sets)| Inventory {
                        chains: chains.into_iter().collect(),
                        sets: sets.into_iter().collect(),
                    }))
                }
                Err(e) if self.backend == Backend::Netlink => {
                    return Err(NftError {
                        args: "(netlink dump)".into(),
                        message: e.to_string(),
                    })
                }
                Err(e) => tracing::warn!("netlink listing failed, using nft -j: {e}"),
            }
        }
        self.inventory_cli(family)
    }

    /// [`Nft::inventory`] through `nft -j list table`.
    pub fn inventory_cli(&self, family: IpFamily) -> Result<Option<Inventory>, NftError> {
        let fam = nft_family(family);
        let listed = match self.run(&["-j", "list", "table", fam, TABLE], None) {
            Ok(text) => text,
            Err(e) if e.message.contains("No such file") => return Ok(None),
            Err(e) => return Err(e),
        };
        parse_inventory(&listed)
            .map(Some)
            .map_err(|message| NftError {
                args: format!("-j list table {fam} {TABLE}"),
                message,
            })
    }

    /// The table as `nft list table` prints it (empty if absent).
    pub fn list(&self, family: IpFamily) -> Result<String, NftError> {
        match self.run(&["list", "table", nft_family(family), TABLE], None) {
            Err(e) if e.message.contains("No such file") => Ok(String::new()),
            other => other,
        }
    }

    /// Deletes our table in `family` (`--cleanup`); absent is fine.
    pub fn delete_table(&self, family: IpFamily) -> Result<bool, NftError> {
        match self.run(&["delete", "table", nft_family(family), TABLE], None) {
            Ok(_) => Ok(true),
            Err(e) if e.message.contains("No such file") => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Reads `nft -j list table ...` output into the chain and set names it lists; the error
/// says why the text is not nft's JSON.
pub fn parse_inventory(listed: &str) -> Result<Inventory, String> {
    let json: serde_json::Value =
        serde_json::from_str(listed).map_err(|e| format!("unparsable JSON: {e}"))?;
    let mut inv = Inventory::default();
    for item in json["nftables"].as_array().into_iter().flatten() {
        if let Some(name) = item["chain"]["name"].as_str() {
            inv.chains.insert(name.to_string());
        }
        if let Some(name) = item["set"]["name"].as_str() {
            inv.sets.insert(name.to_string());
        }
    }
    Ok(inv)
}
