//! Answering a question from the store: the cluster zones (Services, endpoints, pods, the
//! zone apex), PTR in the reverse zones, and the decision to forward everything else.
//! Pure functions of the index and the question.

use crate::index::Index;
use crate::names;
use crate::records::address_record;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::net::IpAddr;

/// The DNS schema version CoreDNS serves at `dns-version.<zone>` (TXT).
pub const SCHEMA_VERSION: &str = "1.1.0";
/// How many CNAMEs are followed inside the cluster zones.
const MAX_CNAME_CHAIN: usize = 8;

/// An authoritative answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// NOERROR (with or without data) or NXDOMAIN.
    pub rcode: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section (the zone's SOA for negative answers).
    pub authorities: Vec<Record>,
    /// The additional section (addresses of SRV and NS targets).
    pub additionals: Vec<Record>,
}

impl Answer {
    fn empty() -> Self {
        Answer {
            rcode: ResponseCode::NoError,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

/// What to do with a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answer it from the cluster's records.
    Answer(Answer),
    /// Not ours (or a reverse name we have no PTR for): ask the upstream resolvers, as
    /// CoreDNS's `fallthrough in-addr.arpa ip6.arpa` and `forward . /etc/resolv.conf` do.
    Forward,
}

/// What answering reads: the zones, TTL and index, the SOA serial and the addresses of the
/// DNS Service itself (for `ns.dns.<zone>`).
pub struct Authority<'a> {
    /// The cluster zones, e.g. `cluster.local.`.
    pub zones: &'a [Name],
    /// Their index keys ([`names::key_of`]), in the same order.
    pub zone_keys: &'a [String],
    /// Their SOA MNAME and RNAME ([`soa_names`]), in the same order.
    pub soa_names: &'a [(Name, Name)],
    /// Record TTL (also the SOA minimum).
    pub ttl: u32,
    /// The records.
    pub index: &'a Index,
    /// The SOA serial.
    pub serial: u32,
    /// The cluster DNS Service's ClusterIPs (asked only for `ns.dns.<zone>` and NS).
    pub ns_addresses: &'a dyn Fn() -> Vec<IpAddr>,
}

impl Authority<'_> {
    /// The cluster zone `key` is in (the longest match).
    fn zone_of(&self, key: &str) -> Option<(&Name, &str)> {
        self.zones
            .iter()
            .zip(self.zone_keys)
            .filter(|(_, zk)| names::in_zone(key, zk))
            .max_by_key(|(_, zk)| zk.len())
            .map(|(z, zk)| (z, zk.as_str()))
    }

    /// The zone's SOA, as CoreDNS makes it: `ns.dns.<zone> hostmaster.<zone> <serial> 7200
    /// 1800 86400 <ttl>`.
    pub fn soa(&self, zone: &Name) -> Record {
        let (mname, rname) = self
            .zones
            .iter()
            .position(|z| z == zone)
            .and_then(|i| self.soa_names.get(i))
            .cloned()
            .unwrap_or_else(|| soa_names(zone));
        Record::from_rdata(
            zone.clone(),
            self.ttl,
            RData::SOA(SOA::new(
                mname,
                rname,
                self.serial,
                7200,
                1800,
                86400,
                self.ttl,
            )),
        )
    }

    fn ns_name(zone: &Name) -> Option<Name> {
        names::child("ns", &names::child("dns", zone)?)
    }

    fn ns_address_records(&self, name: &Name, qtype: Option<RecordType>) -> Vec<Record> {
        (self.ns_addresses)()
            .into_iter()
            .map(|ip| address_record(name.clone(), self.ttl, ip))
            .filter(|r| qtype.is_none_or(|t| r.record_type() == t))
            .collect()
    }
}

/// The SOA MNAME and RNAME of `zone`: `ns.dns.<zone>` and `hostmaster.<zone>`.
pub fn soa_names(zone: &Name) -> (Name, Name) {
    let mname = names::child("dns", zone)
        .and_then(|d| names::child("ns", &d))
        .unwrap_or_else(|| zone.clone());
    let rname = names::child("hostmaster", zone).unwrap_or_else(|| zone.clone());
    (mname, rname)
}

/// Answers `qtype` for `qname`, or says to forward it.
pub fn resolve(auth: &Authority<'_>, qname: &Name, qtype: RecordType) -> Outcome {
    resolve_key(auth, qname, &names::key_of(qname), qtype)
}

/// [`resolve`] with the name's index key already computed.
pub fn resolve_key(auth: &Authority<'_>, qname: &Name, key: &str, qtype: RecordType) -> Outcome {
    if let Some((zone, zone_key)) = auth.zone_of(key) {
        return Outcome::Answer(cluster_answer(auth, qname, key, zone, zone_key, qtype));
    }
    if qtype == RecordType::PTR
        && (names::in_zone(key, "in-addr.arpa") || names::in_zone(key, "ip6.arpa"))
    {
        if let Some(node) = auth.index.get(key) {
            let answers: Vec<Record> = node
                .records_of(RecordType::PTR)
                .map(|r| renamed(r, qname))
                .collect();
            if !answers.is_empty() {
                return Outcome::Answer(Answer {
                    answers,
                    ..Answer::empty()
                });
            }
        }
    }
    Outcome::Forward
}

/// `record` with owner `qname` when the two differ only in case (answers echo the case the
/// client asked in).
fn renamed(record: &Record, qname: &Name) -> Record {
    let mut r = record.clone();
    if r.name.eq_ignore_root(qname) {
        r.name = qname.clone();
    }
    r
}

fn negative(auth: &Authority<'_>, zone: &Name, rcode: ResponseCode) -> Answer {
    Answer {
        rcode,
        authorities: vec![auth.soa(zone)],
        ..Answer::empty()
    }
}

fn cluster_answer(
    auth: &Authority<'_>,
    qname: &Name,
    key: &str,
    zone: &Name,
    zone_key: &str,
    qtype: RecordType,
) -> Answer {
    let labels = names::relative_labels(key, zone_key);
    let nodata = || negative(auth, zone, ResponseCode::NoError);
    let single = |record: Record| Answer {
        answers: vec![record],
        ..Answer::empty()
    };
    match labels.as_slice() {
        [] => match qtype {
            RecordType::SOA => {
                let mut soa = auth.soa(zone);
                soa.name = qname.clone();
                single(soa)
            }
            RecordType::NS => match Authority::ns_name(zone) {
                Some(ns) => Answer {
                    answers: vec![Record::from_rdata(
                        qname.clone(),
                        auth.ttl,
                        RData::NS(NS(ns.clone())),
                    )],
                    additionals: auth.ns_address_records(&ns, None),
                    ..Answer::empty()
                },
                None => nodata(),
            },
            _ => nodata(),
        },
        ["dns-version"] if qtype == RecordType::TXT => single(Record::from_rdata(
            qname.clone(),
            28800,
            RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])),
        )),
        ["dns-version"] | ["dns"] => nodata(),
        ["ns", "dns"] => {
            let answers = match qtype {
                RecordType::A | RecordType::AAAA => auth.ns_address_records(qname, Some(qtype)),
                _ => Vec::new(),
            };
            if answers.is_empty() {
                nodata()
            } else {
                Answer {
                    answers,
                    ..Answer::empty()
                }
            }
        }
        // Namespaces are not checked (as CoreDNS, without a namespace label selector).
        ["svc"] | [_, "svc"] | ["pod"] | [_, "pod"] => nodata(),
        [pod, _, "pod"] => match names::undashed(pod) {
            None => negative(auth, zone, ResponseCode::NXDomain),
            Some(ip) => {
                let record = address_record(qname.clone(), auth.ttl, ip);
                if record.record_type() == qtype {
                    single(record)
                } else {
                    nodata()
                }
            }
        },
        _ => {
            let mut answer = Answer::empty();
            let found = from_index(auth, qname, key, qtype, &mut answer, 0);
            match found {
                Lookup::Found => answer,
                Lookup::NoData => Answer {
                    authorities: vec![auth.soa(zone)],
                    ..answer
                },
                Lookup::NoName => Answer {
                    rcode: ResponseCode::NXDomain,
                    authorities: vec![auth.soa(zone)],
                    ..answer
                },
            }
        }
    }
}

enum Lookup {
    Found,
    NoData,
    NoName,
}

fn from_index(
    auth: &Authority<'_>,
    qname: &Name,
    key: &str,
    qtype: RecordType,
    answer: &mut Answer,
    depth: usize,
) -> Lookup {
    let Some(node) = auth.index.get(key) else {
        return Lookup::NoName;
    };
    let before = answer.answers.len();
    answer
        .answers
        .extend(node.records_of(qtype).map(|r| renamed(r, qname)));
    if answer.answers.len() > before {
        if qtype == RecordType::SRV {
            add_target_addresses(auth, answer, before);
        }
        return Lookup::Found;
    }
    if qtype == RecordType::CNAME {
        return Lookup::NoData;
    }
    let Some(cname) = node.records_of(RecordType::CNAME).next() else {
        return Lookup::NoData;
    };
    answer.answers.push(renamed(cname, qname));
    let RData::CNAME(target) = &cname.data else {
        return Lookup::Found;
    };
    let target_key = names::key_of(&target.0);
    if depth >= MAX_CNAME_CHAIN || auth.zone_of(&target_key).is_none() {
        // Out of the cluster zones: the client's resolver follows it.
        return Lookup::Found;
    }
    match from_index(auth, &target.0, &target_key, qtype, answer, depth + 1) {
        Lookup::NoName => Lookup::NoName,
        _ => Lookup::Found,
    }
}

/// The A/AAAA records of the targets of the SRV records from `answers[from..]`.
fn add_target_addresses(auth: &Authority<'_>, answer: &mut Answer, from: usize) {
    let mut targets: Vec<&Name> = answer.answers[from..]
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(&srv.target),
            _ => None,
        })
        .collect();
    targets.dedup();
    let mut extra = Vec::new();
    for target in targets {
        if let Some(node) = auth.index.get(&names::key_of(target)) {
            extra.extend(node.records_of(RecordType::A).cloned());
            extra.extend(node.records_of(RecordType::AAAA).cloned());
        }
    }
    answer.additionals.extend(extra);
}

#[cfg(test)]
mod tests;
