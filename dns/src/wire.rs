//! The DNS message layer: reading requests (malformed ones get FORMERR or are dropped),
//! building responses with the request's ID, question and EDNS, and fitting them into the
//! client's UDP size (RFC 1035 512 bytes, or the EDNS buffer) by truncation.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;

/// The classic UDP payload limit without EDNS.
pub const CLASSIC_UDP_SIZE: usize = 512;
/// The largest UDP payload we advertise and accept to send.
pub const MAX_UDP_SIZE: u16 = 4096;
/// The TCP message limit (two-byte length prefix).
pub const MAX_TCP_SIZE: usize = 65535;

/// A request, read.
#[derive(Debug)]
pub enum Parsed {
    /// One well-formed standard query for class IN.
    Query(Message),
    /// Something to answer with an error at once (FORMERR, NOTIMP, REFUSED, BADVERS).
    Error(Message),
    /// Not worth an answer (too short to carry an ID, or a response).
    Drop,
}

/// Reads `bytes` as a DNS request.
pub fn parse(bytes: &[u8]) -> Parsed {
    let message = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(_) => {
            // A header we can read gets FORMERR; anything shorter, or a response, is dropped.
            if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
                return Parsed::Drop;
            }
            let id = u16::from_be_bytes([bytes[0], bytes[1]]);
            let op_code = OpCode::from_u8((bytes[2] >> 3) & 0x0f);
            let mut reply = Message::error_msg(id, op_code, ResponseCode::FormErr);
            reply.metadata.recursion_desired = bytes[2] & 0x01 != 0;
            return Parsed::Error(reply);
        }
    };
    if message.message_type == MessageType::Response {
        return Parsed::Drop;
    }
    let error = |rcode| Parsed::Error(response(&message, rcode));
    if message.op_code != OpCode::Query {
        return error(ResponseCode::NotImp);
    }
    if message.queries.len() != 1 {
        return error(ResponseCode::FormErr);
    }
    if message.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return error(ResponseCode::BADVERS);
    }
    if message.queries[0].query_class() != DNSClass::IN {
        return error(ResponseCode::Refused);
    }
    Parsed::Query(message)
}

/// An empty response to `request`: its ID, RD and CD bits, question and (when it had one)
/// an OPT record; RA set, as CoreDNS sets it.
pub fn response(request: &Message, rcode: ResponseCode) -> Message {
    let mut reply = Message::response(request.id, request.op_code);
    reply.metadata.recursion_desired = request.recursion_desired;
    reply.metadata.checking_disabled = request.checking_disabled;
    reply.metadata.recursion_available = true;
    reply.metadata.response_code = rcode;
    reply.queries = request.queries.clone();
    if let Some(req_edns) = &request.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(advertised_size(req_edns.max_payload()));
        edns.set_dnssec_ok(req_edns.flags().dnssec_ok);
        reply.edns = Some(edns);
    }
    reply
}

fn advertised_size(requested: u16) -> u16 {
    requested.clamp(CLASSIC_UDP_SIZE as u16, MAX_UDP_SIZE)
}

/// The largest response `request` may receive over UDP.
pub fn udp_limit(request: &Message) -> usize {
    match &request.edns {
        Some(edns) => usize::from(advertised_size(edns.max_payload())),
        None => CLASSIC_UDP_SIZE,
    }
}

/// Encodes `reply` in at most `limit` bytes: first the additional section goes, then as
/// many answer and authority records as needed, with TC set (as miekg/dns's Truncate that
/// CoreDNS uses). An unencodable message becomes SERVFAIL.
pub fn encode(reply: &mut Message, limit: usize) -> Vec<u8> {
    match reply.to_vec() {
        Ok(bytes) if bytes.len() <= limit => return bytes,
        Ok(_) => {}
        Err(_) => return servfail(reply),
    }
    reply.additionals.clear();
    if let Ok(bytes) = reply.to_vec() {
        if bytes.len() <= limit {
            return bytes;
        }
    }
    reply.metadata.truncation = true;
    reply.authorities.clear();
    let answers = std::mem::take(&mut reply.answers);
    // The most answers that fit, by bisection.
    let (mut fits, mut fails) = (0usize, answers.len() + 1);
    while fails - fits > 1 {
        let mid = (fits + fails) / 2;
        reply.answers = answers[..mid].to_vec();
        match reply.to_vec() {
            Ok(b) if b.len() <= limit => fits = mid,
            _ => fails = mid,
        }
    }
    reply.answers = answers[..fits].to_vec();
    reply.to_vec().unwrap_or_else(|_| servfail(reply))
}

fn servfail(reply: &Message) -> Vec<u8> {
    let mut failed = Message::error_msg(reply.id, reply.op_code, ResponseCode::ServFail);
    failed.queries = reply.queries.clone();
    failed.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests;
