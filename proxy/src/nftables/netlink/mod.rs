//! Applying a [`Transaction`](super::Transaction) by talking nf_tables netlink directly:
//! one nfnetlink batch per sync, which the kernel commits atomically like `nft -f`, but
//! without the CLI re-reading the whole table first (at 10,000 Services the CLI spends
//! ~2 s listing chains before every transaction, however small). The batch carries the
//! same objects and expressions the CLI would send for the same text ([`expr`]), so the
//! table lists identically. Text outside that vocabulary is [`Unsupported`]; the runner
//! then uses the CLI.

pub mod attr;
pub mod expr;
pub mod socket;

use attr::{comment_udata, Buf, F_ACK, F_APPEND, F_CREATE, F_REQUEST, SUBSYS_NFTABLES};
pub use expr::Unsupported;
use expr::{addr_bytes, proto_number, put_data, put_exprs, rule_exprs, split_comment, Fam, Val};

const NEWTABLE: u16 = 0;
const DELTABLE: u16 = 2;
const NEWCHAIN: u16 = 3;
const DELCHAIN: u16 = 5;
const NEWRULE: u16 = 6;
const DELRULE: u16 = 8;
const NEWSET: u16 = 9;
const DELSET: u16 = 11;
const NEWSETELEM: u16 = 12;
const DELSETELEM: u16 = 14;

/// An encoded batch: the bytes, and which text line each message sequence number came
/// from (to name the failing command in errors).
#[derive(Debug, Default)]
pub struct Batch {
    /// The messages, batch begin and end included.
    pub buf: Buf,
    /// `lines[seq]` is the transaction line of message `seq` (0 = batch begin).
    pub lines: Vec<usize>,
    /// The sequence number of the last command (sent with `NLM_F_ACK`).
    pub last_seq: u32,
}

struct Encoder {
    fam: Fam,
    b: Batch,
    set_id: u32,
    /// Sets declared in this batch by name, with their batch ids (nft passes the id
    /// along with the name when a rule refers to such a set).
    new_sets: std::collections::HashMap<String, u32>,
    table: String,
}

impl Encoder {
    fn begin(&mut self, msg: u16, flags: u16, line: usize) {
        let seq = self.b.lines.len() as u32;
        self.b.lines.push(line);
        self.b.buf.begin(
            (SUBSYS_NFTABLES << 8) | msg,
            F_REQUEST | flags,
            seq,
            self.fam.nfproto(),
            0,
        );
        self.b.last_seq = seq;
    }
}

/// Parses `{ … comment "C" ; }` bodies: the `;`-separated clauses between the braces.
fn clauses(body: &str) -> Vec<&str> {
    body.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(" ; ")
        .map(|c| c.trim().trim_end_matches(';').trim())
        .filter(|c| !c.is_empty())
        .collect()
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"')
}

fn hook_number(h: &str) -> Option<u32> {
    Some(match h {
        "prerouting" => 0,
        "input" => 1,
        "forward" => 2,
        "output" => 3,
        "postrouting" => 4,
        _ => return None,
    })
}

/// (key type id, key length, user data prefix) of a set/map key type as nft encodes it.
fn key_type(ty: &str) -> Option<(u32, u32, &'static [u8])> {
    const ADDR_UDATA: &[u8] = &[0, 4, 2, 0, 0, 0];
    const CONCAT_UDATA: &[u8] = &[
        0, 4, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0, 3, 8, 0, 4, 0x0d, 0, 0, 0, 1, 0, 6, 4, 0, 0, 0, 0,
    ];
    Some(match ty {
        "ipv4_addr" => (7, 4, ADDR_UDATA),
        "ipv6_addr" => (8, 16, ADDR_UDATA),
        "ipv4_addr . inet_proto . inet_service" => (0x730d, 12, CONCAT_UDATA),
        "ipv6_addr . inet_proto . inet_service" => (0x830d, 24, CONCAT_UDATA),
        "inet_proto . inet_service" => (0x30d, 8, CONCAT_UDATA),
        _ => return None,
    })
}

/// A set element key: fields joined by ` . `, each padded to 4 bytes.
fn element_key(fam: Fam, key: &str) -> Result<Vec<u8>, Unsupported> {
    let fields: Vec<&str> = key.split(" . ").map(str::trim).collect();
    let mut out = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let start = out.len();
        if let Ok(p) = proto_number(f) {
            out.push(p);
        } else if f.contains(['.', ':']) {
            out.extend(addr_bytes(fam, f)?);
        } else {
            let port: u16 = f
                .parse()
                .map_err(|_| Unsupported(format!("element key {key}")))?;
            out.extend(port.to_be_bytes());
        }
        if fields.len() > 1 || i > 0 {
            while (out.len() - start) % 4 != 0 {
                out.push(0);
            }
        }
    }
    Ok(out)
}

fn verdict(text: &str) -> Result<Val, Unsupported> {
    let t: Vec<&str> = text.split_whitespace().collect();
    Ok(match t.as_slice() {
        ["drop"] => Val::Verdict(expr::NF_DROP, None),
        ["accept"] => Val::Verdict(1, None),
        ["goto", c] => Val::Verdict(-4, Some(c.to_string())),
        ["jump", c] => Val::Verdict(-3, Some(c.to_string())),
        _ => return Err(Unsupported(format!("verdict {text}"))),
    })
}

impl Encoder {
    fn table_head(&mut self) {
        let t = self.table.clone();
        self.b.buf.str(1, &t);
    }

    fn line(&mut self, n: usize, line: &str) -> Result<(), Unsupported> {
        let unsupported = || Unsupported(line.to_string());
        let mut parts = line.splitn(5, ' ');
        let (verb, what, _fam, table) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let rest = parts.next().unwrap_or("");
        self.table = table.to_string();
        match (verb, what) {
            ("add", "table") => {
                self.begin(NEWTABLE, F_CREATE, n);
                self.table_head();
                self.b.buf.be32(2, 0);
                for c in clauses(rest) {
                    if let Some(text) = c.strip_prefix("comment ") {
                        self.b.buf.put(6, &comment_udata(unquote(text)));
                    } else {
                        return Err(unsupported());
                    }
                }
            }
            ("delete", "table") => {
                self.begin(DELTABLE, 0, n);
                self.table_head();
            }
            ("add", "chain") => {
                let (name, body) = rest.split_once(' ').unwrap_or((rest, ""));
                self.begin(NEWCHAIN, F_CREATE, n);
                self.table_head();
                self.b.buf.str(3, name);
                for c in clauses(body) {
                    let w: Vec<&str> = c.split_whitespace().collect();
                    match w.as_slice() {
                        ["type", kind, "hook", hook, "priority", prio] => {
                            let hook = hook_number(hook).ok_or_else(unsupported)?;
                            let prio: i32 = prio.parse().map_err(|_| unsupported())?;
                            let h = self.b.buf.open(4);
                            self.b.buf.be32(1, hook);
                            self.b.buf.be32(2, prio as u32);
                            self.b.buf.close(h);
                            self.b.buf.str(7, kind);
                        }
                        ["comment", ..] => {
                            let text = unquote(&c["comment ".len()..]);
                            self.b.buf.put(12, &comment_udata(text));
                        }
                        _ => return Err(unsupported()),
                    }
                }
            }
            ("flush", "chain") => {
                self.begin(DELRULE, 0, n);
                self.table_head();
                self.b.buf.str(2, rest);
            }
            ("delete", "chain") => {
                self.begin(DELCHAIN, 0, n);
                self.table_head();
                self.b.buf.str(3, rest);
            }
            ("add", "rule") => {
                let (chain, rule) = rest.split_once(' ').ok_or_else(unsupported)?;
                let (rule, comment) = split_comment(rule);
                let mut exprs = rule_exprs(self.fam, rule)
                    .map_err(|e| Unsupported(format!("{}: {line}", e.0)))?;
                for x in exprs
                    .iter_mut()
                    .filter(|x| matches!(x.name, "lookup" | "dynset"))
                {
                    let id = x.attrs.iter().find_map(|(ty, v)| match v {
                        Val::Str(name) if *ty == 1 => self.new_sets.get(name).copied(),
                        _ => None,
                    });
                    if let Some(id) = id {
                        // NFTA_LOOKUP_SET_ID / NFTA_DYNSET_SET_ID.
                        let ty = if x.name == "lookup" { 4 } else { 2 };
                        x.attrs.push((ty, Val::U32(id)));
                    }
                }
                self.begin(NEWRULE, F_CREATE | F_APPEND, n);
                self.table_head();
                self.b.buf.str(2, chain);
                put_exprs(&mut self.b.buf, &exprs);
                if let Some(c) = comment {
                    self.b.buf.put(7, &comment_udata(c));
                }
            }
            ("add", "set" | "map") => {
                let (name, body) = rest.split_once(' ').ok_or_else(unsupported)?;
                let mut flags = if what == "map" { 0x8 } else { 0 };
                let mut key = None;
                let mut timeout = None;
                let mut comment = None;
                for c in clauses(body) {
                    if let Some(ty) = c.strip_prefix("type ") {
                        let (k, data) = match ty.split_once(" : ") {
                            Some((k, d)) => (k, Some(d)),
                            None => (ty, None),
                        };
                        if data.is_some_and(|d| d != "verdict") || data.is_some() != (what == "map")
                        {
                            return Err(unsupported());
                        }
                        key = Some(key_type(k).ok_or_else(unsupported)?);
                    } else if c == "flags dynamic,timeout" {
                        flags |= 0x30;
                    } else if let Some(t) = c.strip_prefix("timeout ") {
                        let secs: u64 = t
                            .strip_suffix('s')
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(unsupported)?;
                        timeout = Some(secs * 1000);
                    } else if let Some(text) = c.strip_prefix("comment ") {
                        comment = Some(unquote(text).to_string());
                    } else {
                        return Err(unsupported());
                    }
                }
                let (ktype, klen, udata) = key.ok_or_else(unsupported)?;
                self.begin(NEWSET, F_CREATE, n);
                self.table_head();
                self.b.buf.str(2, name);
                self.b.buf.be32(3, flags);
                self.b.buf.be32(4, ktype);
                self.b.buf.be32(5, klen);
                if what == "map" {
                    self.b.buf.be32(6, 0xffff_ff00);
                    self.b.buf.be32(7, 0);
                }
                self.set_id += 1;
                self.b.buf.be32(10, self.set_id);
                self.new_sets.insert(name.to_string(), self.set_id);
                if let Some(ms) = timeout {
                    self.b.buf.be64(11, ms);
                }
                let mut u = udata.to_vec();
                if let Some(c) = comment {
                    u.push(7);
                    u.extend_from_slice(&comment_udata(&c)[1..]);
                }
                self.b.buf.put(13, &u);
            }
            ("flush", "set" | "map") => {
                self.begin(DELSETELEM, 0, n);
                self.table_head();
                self.b.buf.str(2, rest);
            }
            ("delete", "set" | "map") => {
                self.begin(DELSET, 0, n);
                self.table_head();
                self.b.buf.str(2, rest);
            }
            ("add" | "delete", "element") => {
                let (set, body) = rest.split_once(' ').ok_or_else(unsupported)?;
                let body = body
                    .trim()
                    .strip_prefix("{ ")
                    .and_then(|b| b.strip_suffix(" }"))
                    .ok_or_else(unsupported)?;
                let (key, value) = match body.rsplit_once(" : ") {
                    Some((k, v)) => (k, Some(verdict(v)?)),
                    None => (body, None),
                };
                let (key, comment) = split_comment(key);
                let key = element_key(self.fam, key)?;
                let add = verb == "add";
                self.begin(
                    if add { NEWSETELEM } else { DELSETELEM },
                    if add { F_CREATE } else { 0 },
                    n,
                );
                self.table_head();
                self.b.buf.str(2, set);
                let list = self.b.buf.open(3);
                let elem = self.b.buf.open(1);
                put_data(&mut self.b.buf, 1, &Val::Data(key));
                if let Some(v) = &value {
                    put_data(&mut self.b.buf, 2, v);
                }
                if let Some(c) = comment {
                    self.b.buf.put(6, &comment_udata(c));
                }
                self.b.buf.close(elem);
                self.b.buf.close(list);
            }
            _ => return Err(unsupported()),
        }
        self.b.buf.end();
        Ok(())
    }
}

/// Encodes the `nft -f` text of one transaction for `family` as one batch.
pub fn encode(family: crate::model::IpFamily, text: &str) -> Result<Batch, Unsupported> {
    let fam = match family {
        crate::model::IpFamily::V4 => Fam::V4,
        crate::model::IpFamily::V6 => Fam::V6,
    };
    let mut enc = Encoder {
        fam,
        b: Batch::default(),
        set_id: 0,
        new_sets: Default::default(),
        table: String::new(),
    };
    enc.b.lines.push(0);
    enc.b
        .buf
        .begin(attr::BATCH_BEGIN, F_REQUEST, 0, 0, SUBSYS_NFTABLES);
    enc.b.buf.end();
    for (n, line) in text.lines().enumerate() {
        if !line.is_empty() {
            enc.line(n, line)?;
        }
    }
    // Ask for an acknowledgement of the last command, so success is confirmed.
    let last = enc.b.last_seq;
    let mut off = 0;
    let bytes = &mut enc.b.buf.bytes;
    while off + 16 <= bytes.len() {
        let len = u32::from_ne_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        let seq = u32::from_ne_bytes(bytes[off + 8..off + 12].try_into().unwrap());
        if seq == last && last != 0 {
            let flags = u16::from_ne_bytes(bytes[off + 6..off + 8].try_into().unwrap()) | F_ACK;
            bytes[off + 6..off + 8].copy_from_slice(&flags.to_ne_bytes());
        }
        off += len.next_multiple_of(4);
    }
    let seq = enc.b.lines.len() as u32;
    enc.b.lines.push(0);
    enc.b
        .buf
        .begin(attr::BATCH_END, F_REQUEST, seq, 0, SUBSYS_NFTABLES);
    enc.b.buf.end();
    Ok(enc.b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IpFamily;

    #[test]
    fn element_keys_pad_each_concatenated_field_to_four_bytes() {
        assert_eq!(
            element_key(Fam::V4, "172.30.0.51 . tcp . 80").unwrap(),
            [172, 30, 0, 51, 6, 0, 0, 0, 0, 80, 0, 0]
        );
        assert_eq!(
            element_key(Fam::V4, "tcp . 30081").unwrap(),
            [6, 0, 0, 0, 0x75, 0x81, 0, 0]
        );
        assert_eq!(element_key(Fam::V4, "10.0.0.1").unwrap(), [10, 0, 0, 1]);
    }

    #[test]
    fn prefixes_load_the_covered_bytes_and_mask_a_partial_one() {
        let x = rule_exprs(Fam::V4, "ip saddr != 10.128.0.0/9 jump m").unwrap();
        let names: Vec<&str> = x.iter().map(|e| e.name).collect();
        assert_eq!(names, ["payload", "bitwise", "cmp", "immediate"]);
        assert_eq!(x[0].attrs[3], (4, Val::U32(2)));
        assert_eq!(x[1].attrs[3], (4, Val::Data(vec![0xff, 0x80])));
        assert_eq!(x[2].attrs[1], (2, Val::U32(1)));
        assert_eq!(x[2].attrs[2], (3, Val::Data(vec![10, 128])));
    }

    #[test]
    fn text_outside_the_vocabulary_is_unsupported() {
        let err = encode(
            IpFamily::V4,
            "add rule ip kube-proxy c ip saddr != { 1.2.3.4, 5.6.7.8 } drop\n",
        )
        .unwrap_err();
        assert!(err.0.contains("5.6.7.8"), "{err}");
        assert!(encode(
            IpFamily::V4,
            "add chain ip kube-proxy c\nflush chain ip kube-proxy c\n"
        )
        .is_ok());
    }
}
