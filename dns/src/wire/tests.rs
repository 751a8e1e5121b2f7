use super::*;
use crate::records::address_record;
use hickory_proto::op::Query;
use hickory_proto::rr::{Name, RecordType};

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

fn big_reply(request: &Message, n: usize) -> Message {
    let mut reply = response(request, ResponseCode::NoError);
    let name = Name::from_ascii("db.default.svc.cluster.local.").unwrap();
    for i in 0..n {
        reply.add_answer(address_record(
            name.clone(),
            30,
            format!("10.1.{}.{}", i / 250, i % 250 + 1).parse().unwrap(),
        ));
    }
    reply
}

#[test]
fn well_formed_queries_parse_and_errors_are_answered_or_dropped() {
    let q = query("web.default.svc.cluster.local.", RecordType::A, None);
    assert!(matches!(parse(&q.to_vec().unwrap()), Parsed::Query(_)));
    // Garbage after a readable header: FORMERR with the request's ID.
    let mut bytes = q.to_vec().unwrap();
    bytes.truncate(20);
    match parse(&bytes) {
        Parsed::Error(reply) => {
            assert_eq!(reply.id, q.id);
            assert_eq!(reply.response_code, ResponseCode::FormErr);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse(&[1, 2, 3]), Parsed::Drop));
    assert!(matches!(parse(&[]), Parsed::Drop));
    // Two questions: FORMERR.
    let mut two = q.clone();
    two.add_query(Query::query(Name::root(), RecordType::NS));
    assert!(
        matches!(parse(&two.to_vec().unwrap()), Parsed::Error(r) if r.response_code == ResponseCode::FormErr)
    );
    // A response is never answered.
    let reply = response(&q, ResponseCode::NoError);
    assert!(matches!(parse(&reply.to_vec().unwrap()), Parsed::Drop));
    // Other opcodes: NOTIMP.
    let mut notify = q.clone();
    notify.metadata.op_code = OpCode::Notify;
    assert!(
        matches!(parse(&notify.to_vec().unwrap()), Parsed::Error(r) if r.response_code == ResponseCode::NotImp)
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in 0..600 {
        let bytes: Vec<u8> = (0..len % 97)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = parse(&bytes);
    }
}

#[test]
fn responses_echo_id_question_and_edns() {
    let q = query("Web.default.svc.cluster.local.", RecordType::A, Some(1232));
    let r = response(&q, ResponseCode::NXDomain);
    assert_eq!(r.id, q.id);
    assert!(r.recursion_desired && r.recursion_available);
    assert_eq!(r.queries, q.queries);
    assert_eq!(r.edns.as_ref().unwrap().max_payload(), 1232);
    assert!(
        response(&query("a.", RecordType::A, None), ResponseCode::NoError)
            .edns
            .is_none()
    );
}

#[test]
fn responses_over_512_bytes_without_edns_are_truncated() {
    let q = query("db.default.svc.cluster.local.", RecordType::A, None);
    assert_eq!(udp_limit(&q), 512);
    let mut reply = big_reply(&q, 100);
    let bytes = encode(&mut reply, udp_limit(&q));
    assert!(bytes.len() <= 512, "{}", bytes.len());
    let decoded = Message::from_vec(&bytes).unwrap();
    assert!(decoded.truncation);
    assert!(!decoded.answers.is_empty() && decoded.answers.len() < 100);
    // Small answers are not truncated.
    let mut small = big_reply(&q, 3);
    let decoded = Message::from_vec(&encode(&mut small, 512)).unwrap();
    assert!(!decoded.truncation);
    assert_eq!(decoded.answers.len(), 3);
}

#[test]
fn edns_buffers_allow_bigger_udp_answers() {
    let q = query("db.default.svc.cluster.local.", RecordType::A, Some(4096));
    assert_eq!(udp_limit(&q), 4096);
    let mut reply = big_reply(&q, 100);
    let bytes = encode(&mut reply, udp_limit(&q));
    assert!(bytes.len() > 512);
    let decoded = Message::from_vec(&bytes).unwrap();
    assert!(!decoded.truncation);
    assert_eq!(decoded.answers.len(), 100);
    assert!(decoded.edns.is_some());
    // Buffers below 512 count as 512; above our maximum as our maximum.
    assert_eq!(udp_limit(&query("a.", RecordType::A, Some(100))), 512);
    assert_eq!(udp_limit(&query("a.", RecordType::A, Some(65000))), 4096);
}

#[test]
fn additional_records_go_first_without_truncation_flag() {
    let q = query("db.default.svc.cluster.local.", RecordType::SRV, None);
    let mut reply = big_reply(&q, 5);
    let extra = big_reply(&q, 60).answers;
    reply.additionals = extra;
    let decoded = Message::from_vec(&encode(&mut reply, 512)).unwrap();
    assert!(!decoded.truncation);
    assert_eq!(decoded.answers.len(), 5);
    assert!(decoded.additionals.is_empty());
}
