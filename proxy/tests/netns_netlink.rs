//! The netlink path writes the same table as `nft -f`: every golden transaction (with its
//! family's base layout) is applied through the CLI in one network namespace and through
//! one netlink batch in another, and `nft list table` must print the same text. Then a
//! follow-up partial transaction (flushes, deletes, element replacement) the same way.
//! Skipped loudly without root or nft.

mod lab;

use proxy::model::IpFamily;
use proxy::nftables::runner::Backend;
use proxy::nftables::{Nft, Transaction};
use std::path::PathBuf;

/// Golden files whose text holds constructs the netlink encoder leaves to the CLI
/// (multi-element anonymous sets).
const CLI_ONLY: &[&str] = &["load-balancer-source-ranges-affinity.nft"];

fn golden(name: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name),
    )
    .unwrap()
}

fn nft(ns: &lab::Netns, backend: Backend) -> Nft {
    let mut n = Nft::in_netns(&ns.name);
    n.backend = backend;
    n
}

/// A transaction holding `text` (already in `nft -f` syntax) for `family`.
fn tx_of(family: IpFamily, text: &str) -> Transaction {
    Transaction::from_text(family, text)
}

#[test]
fn netlink_batches_list_exactly_like_the_cli() {
    if let Some(why) = lab::unavailable() {
        lab::skip("netlink_batches_list_exactly_like_the_cli", &why);
        return;
    }
    let mut files: Vec<String> =
        std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".nft") && !n.starts_with("base") && n != "partial-sync.nft")
            .collect();
    files.sort();
    assert!(files.len() >= 10, "golden files: {files:?}");
    let mut compared = 0;
    for file in &files {
        let body = golden(file);
        let family = if body.contains(" ip6 kube-proxy ") {
            IpFamily::V6
        } else {
            IpFamily::V4
        };
        let base = golden(match family {
            IpFamily::V4 => "base.nft",
            IpFamily::V6 => "base-ipv6-nodeport-addresses.nft",
        });
        let text = format!("{base}{body}");
        let id = std::process::id();
        let (a, b) = (
            lab::Netns::create_for_bench(&format!("fknlc{id}")),
            lab::Netns::create_for_bench(&format!("fknln{id}")),
        );
        nft(&a, Backend::Cli)
            .apply(&tx_of(family, &text))
            .unwrap_or_else(|e| panic!("{file} through nft -f: {e}"));
        let via_netlink = nft(&b, Backend::Netlink).apply_netlink(&tx_of(family, &text));
        if CLI_ONLY.contains(&file.as_str()) {
            let e = via_netlink.expect_err("expected a CLI-only construct");
            assert!(e.message.contains("not encodable"), "{file}: {e}");
            // Auto falls back to the CLI and gets there too.
            nft(&b, Backend::Auto)
                .apply(&tx_of(family, &text))
                .unwrap_or_else(|e| panic!("{file} through the fallback: {e}"));
        } else {
            via_netlink.unwrap_or_else(|e| panic!("{file} through netlink: {e}"));
            compared += 1;
        }
        let (la, lb) = (
            nft(&a, Backend::Cli).list(family).unwrap(),
            nft(&b, Backend::Cli).list(family).unwrap(),
        );
        assert!(la.contains("chain services"), "{file}: {la}");
        assert_eq!(la, lb, "{file}: the two paths list differently");
        // The netlink inventory names what nft -j lists.
        let (ia, ib) = (
            nft(&a, Backend::Cli).inventory(family).unwrap().unwrap(),
            nft(&a, Backend::Netlink)
                .inventory(family)
                .unwrap()
                .unwrap(),
        );
        assert!(
            ia.chains.contains("services") && !ia.sets.is_empty(),
            "{file}"
        );
        assert_eq!(ia.chains, ib.chains, "{file}: inventory chains");
        // nft -j reports maps as "map" items, which the CLI inventory does not read.
        assert!(
            ia.sets.is_subset(&ib.sets),
            "{file}: {:?} vs {:?}",
            ia.sets,
            ib.sets
        );
        assert!(ib.sets.contains("service-ips"), "{file}: {:?}", ib.sets);

        // A partial sync on top: replace an element, flush and delete a chain.
        let ip = if family == IpFamily::V4 { "ip" } else { "ip6" };
        let partial = format!(
            "add chain {ip} kube-proxy extra\n\
             add rule {ip} kube-proxy extra meta l4proto udp jump mark-for-masquerade\n\
             flush chain {ip} kube-proxy extra\n\
             delete chain {ip} kube-proxy extra\n\
             flush map {ip} kube-proxy no-endpoint-nodeports\n"
        );
        nft(&a, Backend::Cli)
            .apply(&tx_of(family, &partial))
            .unwrap();
        nft(&b, Backend::Netlink)
            .apply_netlink(&tx_of(family, &partial))
            .unwrap();
        assert_eq!(
            nft(&a, Backend::Cli).list(family).unwrap(),
            nft(&b, Backend::Cli).list(family).unwrap(),
            "{file}: after the partial transaction"
        );
    }
    assert!(compared >= files.len() - CLI_ONLY.len(), "{compared}");
}

#[test]
fn affinity_sets_and_their_updates_list_like_the_cli() {
    if let Some(why) = lab::unavailable() {
        lab::skip("affinity_sets_and_their_updates_list_like_the_cli", &why);
        return;
    }
    // Two sets declared in the batch, each looked up and updated by its own rules.
    let mut text = String::from("add table ip kube-proxy\n");
    for i in 1..=2 {
        text += &format!(
            "add chain ip kube-proxy e{i}\n\
             add set ip kube-proxy aff-{i} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }}\n\
             add rule ip kube-proxy e{i} ip saddr @aff-{i} goto e{i}\n\
             add rule ip kube-proxy e{i} update @aff-{i} {{ ip saddr }}\n"
        );
    }
    let id = std::process::id();
    let (a, b) = (
        lab::Netns::create_for_bench(&format!("fknla{id}")),
        lab::Netns::create_for_bench(&format!("fknlb{id}")),
    );
    nft(&a, Backend::Cli)
        .apply(&tx_of(IpFamily::V4, &text))
        .unwrap();
    nft(&b, Backend::Netlink)
        .apply_netlink(&tx_of(IpFamily::V4, &text))
        .unwrap();
    let listed = nft(&a, Backend::Cli).list(IpFamily::V4).unwrap();
    assert!(listed.contains("update @aff-2 { ip saddr }"), "{listed}");
    assert_eq!(listed, nft(&b, Backend::Cli).list(IpFamily::V4).unwrap());
}

#[test]
fn a_rejected_batch_changes_nothing_and_names_the_line() {
    if let Some(why) = lab::unavailable() {
        lab::skip("a_rejected_batch_changes_nothing_and_names_the_line", &why);
        return;
    }
    let ns = lab::Netns::create_for_bench(&format!("fknle{}", std::process::id()));
    let n = nft(&ns, Backend::Netlink);
    assert!(n.inventory(IpFamily::V4).unwrap().is_none(), "no table yet");
    let text = "add table ip kube-proxy\n\
                add chain ip kube-proxy a\n\
                add rule ip kube-proxy a goto missing-chain\n";
    let err = n.apply_netlink(&tx_of(IpFamily::V4, text)).unwrap_err();
    assert!(err.message.contains("goto missing-chain"), "{err}");
    assert_eq!(n.list(IpFamily::V4).unwrap(), "", "nothing applied");
    n.apply(&tx_of(
        IpFamily::V4,
        "add table ip kube-proxy\nadd chain ip kube-proxy a\n",
    ))
    .unwrap();
    assert!(n.list(IpFamily::V4).unwrap().contains("chain a"));
}
