//! CoreDNS's Prometheus metrics, with its names and label sets (`prometheus`, `cache` and
//! `forward` plugins), so its dashboards and alerts work unchanged. The `zone` label is
//! `.` and `view` is empty, as for kubeadm's one `.:53` server block.

use component_base::metrics::Metrics;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::sync::{Arc, OnceLock};

type Labels<const N: usize> = [(&'static str, &'static str); N];

/// The `zone` label of every series (kubeadm's server block is `.`).
pub const ZONE: &str = ".";
/// The `view` label of every series (no views).
pub const VIEW: &str = "";

/// Which plugin wrote a response (the `plugin` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    /// Answered from the cluster's records.
    Kubernetes,
    /// Answered by an upstream.
    Forward,
    /// Answered from the cache.
    Cache,
    /// Answered by the server itself (malformed requests, unsupported opcodes).
    Server,
}

impl Plugin {
    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            Plugin::Kubernetes => "kubernetes",
            Plugin::Forward => "forward",
            Plugin::Cache => "cache",
            Plugin::Server => "",
        }
    }
}

/// The transport a request came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// TCP rather than UDP.
    pub tcp: bool,
    /// IPv6 rather than IPv4.
    pub ipv6: bool,
}

impl Transport {
    fn index(self) -> usize {
        usize::from(self.tcp) * 2 + usize::from(self.ipv6)
    }

    fn proto(self) -> &'static str {
        if self.tcp {
            "tcp"
        } else {
            "udp"
        }
    }

    fn family(self) -> &'static str {
        if self.ipv6 {
            "2"
        } else {
            "1"
        }
    }
}

/// Cache entry kinds, CoreDNS's `type` label of cache metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// Positive answers.
    Success,
    /// NXDOMAIN and NODATA.
    Denial,
}

impl CacheKind {
    fn label(self) -> &'static str {
        match self {
            CacheKind::Success => "success",
            CacheKind::Denial => "denial",
        }
    }
}

/// The query types CoreDNS labels by name; everything else is `other`.
const NAMED_TYPES: [(RecordType, &str); 18] = [
    (RecordType::A, "A"),
    (RecordType::AAAA, "AAAA"),
    (RecordType::MX, "MX"),
    (RecordType::SOA, "SOA"),
    (RecordType::CNAME, "CNAME"),
    (RecordType::PTR, "PTR"),
    (RecordType::TXT, "TXT"),
    (RecordType::NS, "NS"),
    (RecordType::SRV, "SRV"),
    (RecordType::DS, "DS"),
    (RecordType::DNSKEY, "DNSKEY"),
    (RecordType::RRSIG, "RRSIG"),
    (RecordType::NSEC, "NSEC"),
    (RecordType::NSEC3, "NSEC3"),
    (RecordType::HTTPS, "HTTPS"),
    (RecordType::IXFR, "IXFR"),
    (RecordType::AXFR, "AXFR"),
    (RecordType::ANY, "ANY"),
];
const TYPE_SLOTS: usize = NAMED_TYPES.len() + 1;

fn type_index(qtype: RecordType) -> usize {
    NAMED_TYPES
        .iter()
        .position(|(t, _)| *t == qtype)
        .unwrap_or(NAMED_TYPES.len())
}

/// CoreDNS's `type` label: common types by name, the rest as `other`.
pub fn type_label(qtype: RecordType) -> &'static str {
    NAMED_TYPES
        .get(type_index(qtype))
        .map(|(_, l)| *l)
        .unwrap_or("other")
}

const RCODES: [ResponseCode; 7] = [
    ResponseCode::NoError,
    ResponseCode::FormErr,
    ResponseCode::ServFail,
    ResponseCode::NXDomain,
    ResponseCode::NotImp,
    ResponseCode::Refused,
    ResponseCode::BADVERS,
];
const RCODE_SLOTS: usize = RCODES.len() + 1;
const PLUGIN_SLOTS: usize = 4;

fn rcode_index(rcode: ResponseCode) -> usize {
    RCODES
        .iter()
        .position(|r| *r == rcode)
        .unwrap_or(RCODES.len())
}

/// Series handles resolved once per label combination, so the per-query path touches no
/// family map (the label sets are small and fixed).
struct Hot {
    requests: [OnceLock<Counter>; 4 * TYPE_SLOTS],
    request_size: [OnceLock<Histogram>; 2],
    response_size: [OnceLock<Histogram>; 2],
    duration: [OnceLock<Histogram>; TYPE_SLOTS],
    responses: [OnceLock<Counter>; RCODE_SLOTS * PLUGIN_SLOTS],
}

impl Default for Hot {
    fn default() -> Self {
        Hot {
            requests: [const { OnceLock::new() }; 4 * TYPE_SLOTS],
            request_size: [const { OnceLock::new() }; 2],
            response_size: [const { OnceLock::new() }; 2],
            duration: [const { OnceLock::new() }; TYPE_SLOTS],
            responses: [const { OnceLock::new() }; RCODE_SLOTS * PLUGIN_SLOTS],
        }
    }
}

/// The rcode as miekg/dns spells it (`NOERROR`, `NXDOMAIN`, ...).
pub fn rcode_label(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "other",
    }
}

fn size_buckets() -> impl Iterator<Item = f64> {
    [
        0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3,
        64e3,
    ]
    .into_iter()
}

fn duration_histogram() -> Histogram {
    // CoreDNS's plugin.TimeBuckets: 0.25 ms doubling 16 times.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

fn size_histogram() -> Histogram {
    Histogram::new(size_buckets())
}

/// Every series ferrokube-dns exports besides the process metrics.
#[derive(Clone)]
pub struct DnsMetrics {
    server: &'static str,
    hot: Arc<Hot>,
    requests: Family<Labels<6>, Counter>,
    responses: Family<Labels<5>, Counter>,
    duration: Family<Labels<4>, Histogram, fn() -> Histogram>,
    request_size: Family<Labels<4>, Histogram, fn() -> Histogram>,
    response_size: Family<Labels<4>, Histogram, fn() -> Histogram>,
    do_requests: Family<Labels<3>, Counter>,
    cache_entries: Family<Labels<4>, Gauge>,
    cache_hits: Family<Labels<4>, Counter>,
    cache_misses: Family<Labels<3>, Counter>,
    cache_requests: Family<Labels<3>, Counter>,
    forward_requests: Family<[(&'static str, String); 1], Counter>,
    forward_responses: Family<[(&'static str, String); 2], Counter>,
}

impl DnsMetrics {
    /// Registers CoreDNS's families in `registry`; `server` is the `server` label
    /// (`dns://:53`).
    pub fn register(registry: &Metrics, server: &str) -> Self {
        let server: &'static str = Box::leak(server.to_string().into_boxed_str());
        let m = DnsMetrics {
            server,
            hot: Arc::default(),
            requests: Family::default(),
            responses: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            request_size: Family::new_with_constructor(size_histogram),
            response_size: Family::new_with_constructor(size_histogram),
            do_requests: Family::default(),
            cache_entries: Family::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            cache_requests: Family::default(),
            forward_requests: Family::default(),
            forward_responses: Family::default(),
        };
        registry.register(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            m.requests.clone(),
        );
        registry.register(
            "coredns_dns_responses",
            "Counter of response status codes.",
            m.responses.clone(),
        );
        registry.register(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            m.duration.clone(),
        );
        registry.register(
            "coredns_dns_request_size_bytes",
            "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
            m.request_size.clone(),
        );
        registry.register(
            "coredns_dns_response_size_bytes",
            "Size of the returned response in bytes.",
            m.response_size.clone(),
        );
        registry.register(
            "coredns_dns_do_requests",
            "Counter of DNS requests with DO bit set per zone.",
            m.do_requests.clone(),
        );
        registry.register(
            "coredns_cache_entries",
            "The number of elements in the cache.",
            m.cache_entries.clone(),
        );
        registry.register(
            "coredns_cache_hits",
            "The count of cache hits.",
            m.cache_hits.clone(),
        );
        registry.register(
            "coredns_cache_misses",
            "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.",
            m.cache_misses.clone(),
        );
        registry.register(
            "coredns_cache_requests",
            "The count of cache requests.",
            m.cache_requests.clone(),
        );
        registry.register(
            "coredns_forward_requests",
            "Counter of requests made per upstream.",
            m.forward_requests.clone(),
        );
        registry.register(
            "coredns_forward_responses",
            "Counter of responses received per upstream.",
            m.forward_responses.clone(),
        );
        let build_info = Family::<Labels<3>, Gauge>::default();
        build_info
            .get_or_create(&[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", "ferrokube"),
                ("goversion", "none"),
            ])
            .set(1);
        registry.register(
            "coredns_build_info",
            "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.",
            build_info,
        );
        let enabled = Family::<Labels<4>, Gauge>::default();
        for name in [
            "kubernetes",
            "forward",
            "cache",
            "loop",
            "health",
            "ready",
            "prometheus",
        ] {
            enabled
                .get_or_create(&[
                    ("server", server),
                    ("zone", ZONE),
                    ("view", VIEW),
                    ("name", name),
                ])
                .set(1);
        }
        registry.register(
            "coredns_plugin_enabled",
            "A metric that indicates whether a plugin is enabled on per server and zone basis.",
            enabled,
        );
        m
    }

    /// Counts a request (`coredns_dns_requests_total`, size, DO bit).
    pub fn request(&self, transport: Transport, qtype: RecordType, size: usize, dnssec_ok: bool) {
        let server = self.server;
        let t = type_index(qtype);
        self.hot.requests[transport.index() * TYPE_SLOTS + t]
            .get_or_init(|| {
                self.requests
                    .get_or_create(&[
                        ("server", server),
                        ("zone", ZONE),
                        ("view", VIEW),
                        ("proto", transport.proto()),
                        ("family", transport.family()),
                        ("type", type_label(qtype)),
                    ])
                    .clone()
            })
            .inc();
        let size = if transport.tcp { 65535 } else { size };
        self.hot.request_size[usize::from(transport.tcp)]
            .get_or_init(|| {
                self.request_size
                    .get_or_create(&[
                        ("server", server),
                        ("zone", ZONE),
                        ("view", VIEW),
                        ("proto", transport.proto()),
                    ])
                    .clone()
            })
            .observe(size as f64);
        if dnssec_ok {
            self.do_requests
                .get_or_create(&[("server", server), ("view", VIEW), ("zone", ZONE)])
                .inc();
        }
    }

    /// Counts a response and its duration.
    pub fn response(
        &self,
        transport: Transport,
        qtype: RecordType,
        rcode: ResponseCode,
        plugin: Plugin,
        size: usize,
        seconds: f64,
    ) {
        let server = self.server;
        self.hot.responses[rcode_index(rcode) * PLUGIN_SLOTS + plugin.index()]
            .get_or_init(|| {
                self.responses
                    .get_or_create(&[
                        ("server", server),
                        ("zone", ZONE),
                        ("view", VIEW),
                        ("rcode", rcode_label(rcode)),
                        ("plugin", plugin.label()),
                    ])
                    .clone()
            })
            .inc();
        self.hot.duration[type_index(qtype)]
            .get_or_init(|| {
                self.duration
                    .get_or_create(&[
                        ("server", server),
                        ("zone", ZONE),
                        ("view", VIEW),
                        ("type", type_label(qtype)),
                    ])
                    .clone()
            })
            .observe(seconds);
        self.hot.response_size[usize::from(transport.tcp)]
            .get_or_init(|| {
                self.response_size
                    .get_or_create(&[
                        ("server", server),
                        ("zone", ZONE),
                        ("view", VIEW),
                        ("proto", transport.proto()),
                    ])
                    .clone()
            })
            .observe(size as f64);
    }

    fn cache_labels3(&self) -> Labels<3> {
        [("server", self.server), ("zones", ZONE), ("view", VIEW)]
    }

    fn cache_labels4(&self, kind: CacheKind) -> Labels<4> {
        [
            ("server", self.server),
            ("type", kind.label()),
            ("zones", ZONE),
            ("view", VIEW),
        ]
    }

    /// Counts a cache lookup and its outcome.
    pub fn cache_lookup(&self, hit: Option<CacheKind>) {
        self.cache_requests
            .get_or_create(&self.cache_labels3())
            .inc();
        match hit {
            Some(kind) => {
                self.cache_hits
                    .get_or_create(&self.cache_labels4(kind))
                    .inc();
            }
            None => {
                self.cache_misses.get_or_create(&self.cache_labels3()).inc();
            }
        }
    }

    /// Sets the number of cache entries of `kind`.
    pub fn cache_size(&self, kind: CacheKind, entries: usize) {
        self.cache_entries
            .get_or_create(&self.cache_labels4(kind))
            .set(entries as i64);
    }

    /// Counts a query sent upstream and its outcome (`None`: no answer).
    pub fn forwarded(&self, upstream: &str, rcode: Option<ResponseCode>) {
        self.forward_requests
            .get_or_create(&[("to", upstream.to_string())])
            .inc();
        if let Some(rcode) = rcode {
            self.forward_responses
                .get_or_create(&[
                    ("to", upstream.to_string()),
                    ("rcode", rcode_label(rcode).into()),
                ])
                .inc();
        }
    }
}

impl std::fmt::Debug for DnsMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsMetrics")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The `server` label for a listener: `dns://:53`, or `dns://<ip>:<port>` when bound to
/// one address (CoreDNS's form with the `bind` plugin).
pub fn server_label(bind: std::net::IpAddr, port: u16) -> String {
    if bind.is_unspecified() {
        format!("dns://:{port}")
    } else if bind.is_ipv6() {
        format!("dns://[{bind}]:{port}")
    } else {
        format!("dns://{bind}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_carry_coredns_names_and_labels() {
        let registry = Metrics::new();
        let m = DnsMetrics::register(&registry, "dns://:53");
        let udp4 = Transport {
            tcp: false,
            ipv6: false,
        };
        m.request(udp4, RecordType::A, 40, false);
        m.response(
            udp4,
            RecordType::A,
            ResponseCode::NXDomain,
            Plugin::Kubernetes,
            100,
            0.0001,
        );
        m.cache_lookup(Some(CacheKind::Success));
        m.cache_lookup(None);
        m.cache_size(CacheKind::Denial, 3);
        let text = registry.render();
        for needle in [
            r#"coredns_dns_requests_total{server="dns://:53",zone=".",view="",proto="udp",family="1",type="A"} 1"#,
            r#"coredns_dns_responses_total{server="dns://:53",zone=".",view="",rcode="NXDOMAIN",plugin="kubernetes"} 1"#,
            r#"coredns_dns_request_duration_seconds_bucket{le="0.00025",server="dns://:53",zone=".",view="",type="A"} 1"#,
            r#"coredns_cache_hits_total{server="dns://:53",type="success",zones=".",view=""} 1"#,
            r#"coredns_cache_misses_total{server="dns://:53",zones=".",view=""} 1"#,
            r#"coredns_cache_entries{server="dns://:53",type="denial",zones=".",view=""} 3"#,
            "coredns_build_info{",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert_eq!(server_label("0.0.0.0".parse().unwrap(), 53), "dns://:53");
        assert_eq!(
            server_label("127.0.0.1".parse().unwrap(), 1053),
            "dns://127.0.0.1:1053"
        );
    }
}
