//! Our rule text (the subset of nft syntax the proxier writes) as nf_tables expressions,
//! laid out exactly as the nft CLI linearises the same text, so `nft list` prints the
//! rules identically whichever path wrote them. Anything else is [`Unsupported`] and the
//! caller falls back to the CLI.

use super::attr::Buf;
use std::net::IpAddr;

/// A rule or command outside the vocabulary encoded here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not encodable over netlink: {0}")]
pub struct Unsupported(pub String);

/// One attribute value of an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// Big-endian u32.
    U32(u32),
    /// Raw bytes (u8 attributes).
    Raw(Vec<u8>),
    /// `NFTA_DATA_VALUE` nested in the attribute.
    Data(Vec<u8>),
    /// A verdict (code, chain) nested as `NFTA_DATA_VERDICT`.
    Verdict(i32, Option<String>),
    /// A NUL-terminated string.
    Str(String),
}

/// One expression: its name and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    /// `payload`, `cmp`, …
    pub name: &'static str,
    /// (attribute type, value).
    pub attrs: Vec<(u16, Val)>,
}

/// Verdict codes.
pub const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;

const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;

fn e(name: &'static str, attrs: Vec<(u16, Val)>) -> Expr {
    Expr { name, attrs }
}

/// Writes `data` (a `NFTA_DATA_*` nest) for a value or verdict.
pub fn put_data(b: &mut Buf, ty: u16, v: &Val) {
    let at = b.open(ty);
    match v {
        Val::Data(bytes) => b.put(1, bytes),
        Val::Verdict(code, chain) => {
            let vt = b.open(2);
            b.be32(1, *code as u32);
            if let Some(c) = chain {
                b.str(2, c);
            }
            b.close(vt);
        }
        _ => {}
    }
    b.close(at);
}

/// Encodes `exprs` as `NFTA_RULE_EXPRESSIONS` (attribute 4).
pub fn put_exprs(b: &mut Buf, exprs: &[Expr]) {
    let list = b.open(4);
    for x in exprs {
        let elem = b.open(1);
        b.str(1, x.name);
        let data = b.open(2);
        for (ty, v) in &x.attrs {
            match v {
                Val::U32(n) => b.be32(*ty, *n),
                Val::Raw(r) => b.put(*ty, r),
                Val::Str(s) => b.str(*ty, s),
                Val::Data(_) | Val::Verdict(..) => put_data(b, *ty, v),
            }
        }
        b.close(data);
        b.close(elem);
    }
    b.close(list);
}

/// The register holding 32-bit unit `unit` (nft numbers the first `NFT_REG_1`).
fn reg(unit: u32) -> u32 {
    if unit == 0 {
        1
    } else {
        8 + unit
    }
}

fn payload(dreg: u32, base: u32, offset: u32, len: u32) -> Expr {
    e(
        "payload",
        vec![
            (1, Val::U32(dreg)),
            (2, Val::U32(base)),
            (3, Val::U32(offset)),
            (4, Val::U32(len)),
        ],
    )
}

fn cmp(op: u32, data: Vec<u8>) -> Expr {
    e(
        "cmp",
        vec![(1, Val::U32(1)), (2, Val::U32(op)), (3, Val::Data(data))],
    )
}

fn bitwise(len: u32, mask: Vec<u8>, xor: Vec<u8>) -> Expr {
    e(
        "bitwise",
        vec![
            (1, Val::U32(1)),
            (2, Val::U32(1)),
            (3, Val::U32(len)),
            (4, Val::Data(mask)),
            (5, Val::Data(xor)),
        ],
    )
}

fn immediate_verdict(code: i32, chain: Option<&str>) -> Expr {
    e(
        "immediate",
        vec![
            (1, Val::U32(0)),
            (2, Val::Verdict(code, chain.map(str::to_string))),
        ],
    )
}

fn lookup(set: &str, dreg: Option<u32>, invert: bool) -> Expr {
    let mut attrs = vec![(1, Val::Str(set.to_string())), (2, Val::U32(1))];
    if let Some(d) = dreg {
        attrs.push((3, Val::U32(d)));
    }
    if invert {
        attrs.push((5, Val::U32(1)));
    }
    e("lookup", attrs)
}

fn meta_load(key: u32) -> Expr {
    e("meta", vec![(1, Val::U32(1)), (2, Val::U32(key))])
}

const META_MARK: u32 = 3;
const META_L4PROTO: u32 = 16;

/// The IP family a rule is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fam {
    /// `ip`
    V4,
    /// `ip6`
    V6,
}

impl Fam {
    fn addr_len(self) -> u32 {
        match self {
            Fam::V4 => 4,
            Fam::V6 => 16,
        }
    }
    fn offset(self, field: &str) -> Option<u32> {
        Some(match (self, field) {
            (Fam::V4, "saddr") => 12,
            (Fam::V4, "daddr") => 16,
            (Fam::V6, "saddr") => 8,
            (Fam::V6, "daddr") => 24,
            _ => return None,
        })
    }
    fn keyword(self) -> &'static str {
        match self {
            Fam::V4 => "ip",
            Fam::V6 => "ip6",
        }
    }
    /// NFPROTO_IPV4 / NFPROTO_IPV6.
    pub fn nfproto(self) -> u8 {
        match self {
            Fam::V4 => 2,
            Fam::V6 => 10,
        }
    }
}

/// An address of `fam` as bytes.
pub fn addr_bytes(fam: Fam, text: &str) -> Result<Vec<u8>, Unsupported> {
    let bad = || Unsupported(format!("address {text}"));
    match (fam, text.parse::<IpAddr>().map_err(|_| bad())?) {
        (Fam::V4, IpAddr::V4(a)) => Ok(a.octets().to_vec()),
        (Fam::V6, IpAddr::V6(a)) => Ok(a.octets().to_vec()),
        _ => Err(bad()),
    }
}

/// Protocol number of `tcp`/`udp`/`sctp`.
pub fn proto_number(p: &str) -> Result<u8, Unsupported> {
    match p {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "sctp" => Ok(132),
        _ => Err(Unsupported(format!("protocol {p}"))),
    }
}

fn hex_u32(s: &str) -> Result<u32, Unsupported> {
    let bad = || Unsupported(format!("number {s}"));
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).map_err(|_| bad()),
        None => s.parse().map_err(|_| bad()),
    }
}

/// `ip saddr [!=] ADDR[/LEN]`: payload load of the covered bytes, a mask when the prefix
/// ends inside a byte, then the comparison (nft's linearisation).
fn addr_match(
    out: &mut Vec<Expr>,
    fam: Fam,
    offset: u32,
    text: &str,
    op: u32,
) -> Result<(), Unsupported> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (
            a,
            l.parse::<u32>()
                .map_err(|_| Unsupported(format!("prefix {text}")))?,
        ),
        None => (text, fam.addr_len() * 8),
    };
    let bytes = addr_bytes(fam, addr)?;
    if len == 0 || len > fam.addr_len() * 8 {
        return Err(Unsupported(format!("prefix {text}")));
    }
    let n = len.div_ceil(8);
    out.push(payload(1, 1, offset, n));
    let mut value = bytes[..n as usize].to_vec();
    if len % 8 != 0 {
        let mut mask = vec![0xffu8; n as usize];
        mask[n as usize - 1] = 0xffu8 << (8 - len % 8);
        for (v, m) in value.iter_mut().zip(&mask) {
            *v &= m;
        }
        out.push(bitwise(n, mask, vec![0; n as usize]));
    }
    out.push(cmp(op, value));
    Ok(())
}

/// Splits a trailing ` comment "…"` off a rule.
pub fn split_comment(rule: &str) -> (&str, Option<&str>) {
    if let Some(i) = rule.find(" comment \"") {
        let c = &rule[i + 10..];
        if let Some(c) = c.strip_suffix('"') {
            return (&rule[..i], Some(c));
        }
    }
    (rule, None)
}

/// The expressions of one rule (without its comment).
pub fn rule_exprs(fam: Fam, rule: &str) -> Result<Vec<Expr>, Unsupported> {
    let t: Vec<&str> = rule.split_whitespace().collect();
    let unsupported = || Unsupported(rule.to_string());
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| t.get(i).copied().unwrap_or("");
    while i < t.len() {
        match at(i) {
            "ct" if at(i + 1) == "state" && at(i + 2) == "new" => {
                out.push(e("ct", vec![(1, Val::U32(1)), (2, Val::U32(0))]));
                out.push(bitwise(4, 8u32.to_ne_bytes().to_vec(), vec![0; 4]));
                out.push(cmp(CMP_NEQ, vec![0; 4]));
                i += 3;
            }
            kw if kw == fam.keyword() => {
                let offset = fam.offset(at(i + 1)).ok_or_else(unsupported)?;
                let next = at(i + 2);
                if next == "." {
                    // ip daddr . meta l4proto . th dport vmap @map
                    if t.get(i + 3..i + 9)
                        != Some(&["meta", "l4proto", ".", "th", "dport", "vmap"][..])
                    {
                        return Err(unsupported());
                    }
                    let map = at(i + 9).strip_prefix('@').ok_or_else(unsupported)?;
                    let units = fam.addr_len() / 4;
                    out.push(payload(reg(0), 1, offset, fam.addr_len()));
                    out.push(e(
                        "meta",
                        vec![(1, Val::U32(reg(units))), (2, Val::U32(META_L4PROTO))],
                    ));
                    out.push(payload(reg(units + 1), 2, 2, 2));
                    out.push(lookup(map, Some(0), false));
                    i += 10;
                } else if let Some(set) = next.strip_prefix('@') {
                    out.push(payload(1, 1, offset, fam.addr_len()));
                    out.push(lookup(set, None, false));
                    i += 3;
                } else if next == "!=" {
                    addr_match(&mut out, fam, offset, at(i + 3), CMP_NEQ)?;
                    i += 4;
                } else if next == "{" && at(i + 4) == "}" {
                    // A one-element anonymous set: nft compares directly.
                    addr_match(&mut out, fam, offset, at(i + 3), CMP_EQ)?;
                    i += 5;
                } else {
                    addr_match(&mut out, fam, offset, next, CMP_EQ)?;
                    i += 3;
                }
            }
            "meta" if at(i + 1) == "l4proto" => {
                if at(i + 2) == "." {
                    if t.get(i + 3..i + 6) != Some(&["th", "dport", "vmap"][..]) {
                        return Err(unsupported());
                    }
                    let map = at(i + 6).strip_prefix('@').ok_or_else(unsupported)?;
                    out.push(meta_load(META_L4PROTO));
                    out.push(payload(reg(1), 2, 2, 2));
                    out.push(lookup(map, Some(0), false));
                    i += 7;
                } else {
                    out.push(meta_load(META_L4PROTO));
                    out.push(cmp(CMP_EQ, vec![proto_number(at(i + 2))?]));
                    i += 3;
                }
            }
            "fib" if at(i + 2) == "type" && at(i + 3) == "local" => {
                let flags = match at(i + 1) {
                    "saddr" => 1,
                    "daddr" => 2,
                    _ => return Err(unsupported()),
                };
                out.push(e(
                    "fib",
                    vec![(1, Val::U32(1)), (2, Val::U32(3)), (3, Val::U32(flags))],
                ));
                out.push(cmp(CMP_EQ, 2u32.to_ne_bytes().to_vec()));
                i += 4;
            }
            "numgen" if at(i + 1) == "random" && at(i + 2) == "mod" => {
                let modulus: u32 = at(i + 3).parse().map_err(|_| unsupported())?;
                let value: u32 = at(i + 4).parse().map_err(|_| unsupported())?;
                out.push(e(
                    "numgen",
                    vec![
                        (1, Val::U32(1)),
                        (2, Val::U32(modulus)),
                        (3, Val::U32(1)),
                        (4, Val::U32(0)),
                    ],
                ));
                out.push(cmp(CMP_EQ, value.to_ne_bytes().to_vec()));
                i += 5;
            }
            "mark" if at(i + 1) == "set" && at(i + 2) == "mark" => {
                let m = hex_u32(at(i + 4))?;
                let (mask, xor) = match at(i + 3) {
                    "or" => (!m, m),
                    "xor" => (u32::MAX, m),
                    _ => return Err(unsupported()),
                };
                out.push(meta_load(META_MARK));
                out.push(bitwise(
                    4,
                    mask.to_ne_bytes().to_vec(),
                    xor.to_ne_bytes().to_vec(),
                ));
                out.push(e("meta", vec![(2, Val::U32(META_MARK)), (3, Val::U32(1))]));
                i += 5;
            }
            "mark" if at(i + 1) == "and" && at(i + 3) == "==" => {
                let m = hex_u32(at(i + 2))?;
                let v = hex_u32(at(i + 4))?;
                out.push(meta_load(META_MARK));
                out.push(bitwise(4, m.to_ne_bytes().to_vec(), vec![0; 4]));
                out.push(cmp(CMP_EQ, v.to_ne_bytes().to_vec()));
                i += 5;
            }
            "jump" | "goto" => {
                let code = if at(i) == "jump" { NFT_JUMP } else { NFT_GOTO };
                let chain = t.get(i + 1).ok_or_else(unsupported)?;
                out.push(immediate_verdict(code, Some(chain)));
                i += 2;
            }
            "return" => {
                out.push(immediate_verdict(NFT_RETURN, None));
                i += 1;
            }
            "drop" => {
                out.push(immediate_verdict(NF_DROP, None));
                i += 1;
            }
            "accept" => {
                out.push(immediate_verdict(NF_ACCEPT, None));
                i += 1;
            }
            "reject" => {
                // ICMP(v6) port unreachable, nft's default.
                let code = match fam {
                    Fam::V4 => 3,
                    Fam::V6 => 4,
                };
                out.push(e(
                    "reject",
                    vec![(1, Val::U32(0)), (2, Val::Raw(vec![code]))],
                ));
                i += 1;
            }
            "masquerade" if at(i + 1) == "fully-random" => {
                out.push(e("masq", vec![(1, Val::U32(0x10))]));
                i += 2;
            }
            "dnat" if at(i + 1) == "to" => {
                let target = at(i + 2);
                let (addr, port) = target.rsplit_once(':').ok_or_else(unsupported)?;
                let addr = addr.trim_start_matches('[').trim_end_matches(']');
                let port: u16 = port.parse().map_err(|_| unsupported())?;
                out.push(e(
                    "immediate",
                    vec![(1, Val::U32(1)), (2, Val::Data(addr_bytes(fam, addr)?))],
                ));
                out.push(e(
                    "immediate",
                    vec![
                        (1, Val::U32(2)),
                        (2, Val::Data(port.to_be_bytes().to_vec())),
                    ],
                ));
                out.push(e(
                    "nat",
                    vec![
                        (1, Val::U32(1)),
                        (2, Val::U32(fam.nfproto() as u32)),
                        (3, Val::U32(1)),
                        (5, Val::U32(2)),
                        (7, Val::U32(2)),
                    ],
                ));
                i += 3;
            }
            "update" => {
                // update @set { ip saddr }
                let set = at(i + 1).strip_prefix('@').ok_or_else(unsupported)?;
                if t.get(i + 2..i + 6) != Some(&["{", fam.keyword(), "saddr", "}"][..]) {
                    return Err(unsupported());
                }
                out.push(payload(1, 1, fam.offset("saddr").unwrap(), fam.addr_len()));
                // NFTA_DYNSET_SET_NAME, _OP (update), _SREG_KEY.
                out.push(e(
                    "dynset",
                    vec![
                        (1, Val::Str(set.to_string())),
                        (3, Val::U32(1)),
                        (4, Val::U32(1)),
                    ],
                ));
                i += 6;
            }
            _ => return Err(unsupported()),
        }
    }
    if out.is_empty() {
        return Err(unsupported());
    }
    Ok(out)
}
