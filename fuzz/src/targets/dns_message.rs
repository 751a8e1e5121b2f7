//! DNS requests as ferrokube-dns reads them off UDP/TCP, and the reply path: the response
//! skeleton, the answer name's key, and encoding within the client's size limit
//! (truncation).

use dns::wire::{self, Parsed};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};

/// Parses a request; a query is answered with a few dozen A records and encoded within
/// its UDP limit, which the encoding must respect.
pub fn fuzz(data: &[u8]) {
    match wire::parse(data) {
        Parsed::Drop => {}
        Parsed::Error(mut reply) => {
            let bytes = wire::encode(&mut reply, wire::MAX_TCP_SIZE);
            assert!(bytes.len() <= wire::MAX_TCP_SIZE);
        }
        Parsed::Query(request) => {
            let name = request.queries[0].name().clone();
            let _ = dns::names::key_of(&name);
            let limit = wire::udp_limit(&request);
            let mut reply = wire::response(&request, ResponseCode::NoError);
            let count = data.last().map_or(0, |b| usize::from(*b % 64));
            for i in 0..count {
                let ip = A::new(10, 0, (i / 256) as u8, i as u8);
                reply
                    .answers
                    .push(Record::from_rdata(name.clone(), 30, RData::A(ip)));
            }
            let bytes = wire::encode(&mut reply, limit);
            assert!(
                bytes.len() <= limit,
                "{} bytes past the limit {limit}",
                bytes.len()
            );
        }
    }
}
