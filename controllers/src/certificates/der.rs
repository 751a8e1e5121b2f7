//! Minimal DER surgery: puts the CSR's subject, byte for byte, into a certificate rcgen has
//! built, then signs it again. rcgen's `DistinguishedName` holds one value per attribute type,
//! so a subject such as `O=devs, O=admins, CN=alice` (a user in two groups) cannot be
//! expressed through it.

use rcgen::{KeyPair, SigningKey};
use x509_parser::prelude::FromDer;

/// `cert_der` with its subject replaced by `subject_der` (a complete DER `Name`), re-signed
/// with `key` (the key that signed `cert_der`, so the signature algorithm is unchanged).
pub fn with_subject(cert_der: &[u8], subject_der: &[u8], key: &KeyPair) -> Result<Vec<u8>, String> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der)
        .map_err(|e| format!("re-reading the issued certificate: {e}"))?;
    let tbs: &[u8] = cert.tbs_certificate.as_ref();
    let old_subject = cert.tbs_certificate.subject.as_raw();
    let at = offset_in(tbs, old_subject).ok_or("subject is not inside the certificate")?;
    let tbs_at = offset_in(cert_der, tbs).ok_or("TBSCertificate is not inside the certificate")?;
    let (tbs_header, _) = header(tbs)?;
    let mut content = Vec::with_capacity(tbs.len() + subject_der.len());
    content.extend_from_slice(&tbs[tbs_header..at]);
    content.extend_from_slice(subject_der);
    content.extend_from_slice(&tbs[at + old_subject.len()..]);
    let new_tbs = sequence(&content);
    // The signatureAlgorithm element follows the TBSCertificate unchanged.
    let rest = &cert_der[tbs_at + tbs.len()..];
    let (alg_header, alg_len) = header(rest)?;
    let algorithm = rest
        .get(..alg_header + alg_len)
        .ok_or("truncated signatureAlgorithm")?;
    let signature = key
        .sign(&new_tbs)
        .map_err(|e| format!("failed to sign certificate: {e}"))?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(&signature);
    let mut out = new_tbs;
    out.extend_from_slice(algorithm);
    out.extend(element(0x03, &bits));
    Ok(sequence(&out))
}

// AlgorithmIdentifier of rsaEncryption (with NULL parameters) and the ecPublicKey OID.
const RSA_ALGORITHM: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
const EC_PUBLIC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const CURVES: [&[u8]; 2] = [
    // prime256v1
    &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
    // secp384r1
    &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
];

/// A PKCS#8 `PrivateKeyInfo` around a PKCS#1 `RSAPrivateKey` (what `RSA PRIVATE KEY` PEM
/// blocks hold; kubeadm writes its CA keys so).
pub fn pkcs8_from_pkcs1(rsa: &[u8]) -> Vec<u8> {
    let mut content = vec![0x02, 0x01, 0x00];
    content.extend_from_slice(RSA_ALGORITHM);
    content.extend(element(0x04, rsa));
    sequence(&content)
}

/// A PKCS#8 `PrivateKeyInfo` around a SEC1 `ECPrivateKey` (`EC PRIVATE KEY`), whose curve
/// (P-256 or P-384) is read from its parameters.
pub fn pkcs8_from_sec1(ec: &[u8]) -> Result<Vec<u8>, String> {
    let curve = CURVES
        .iter()
        .find(|c| ec.windows(c.len()).any(|w| w == **c))
        .ok_or(
            "EC PRIVATE KEY: only P-256 and P-384 keys with named-curve parameters are supported",
        )?;
    let mut algorithm = EC_PUBLIC_KEY_OID.to_vec();
    algorithm.extend_from_slice(curve);
    let mut content = vec![0x02, 0x01, 0x00];
    content.extend(sequence(&algorithm));
    content.extend(element(0x04, ec));
    Ok(sequence(&content))
}

/// Where `inner` starts within `outer`, if it is a sub-slice of it.
fn offset_in(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start + inner.len() <= outer.len()).then_some(start)
}

/// The length of a DER element's tag+length header and of its content.
fn header(der: &[u8]) -> Result<(usize, usize), String> {
    let first = *der.get(1).ok_or("truncated DER element")?;
    if first < 0x80 {
        return Ok((2, first as usize));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return Err("unsupported DER length".into());
    }
    let bytes = der.get(2..2 + n).ok_or("truncated DER length")?;
    Ok((
        2 + n,
        bytes.iter().fold(0usize, |acc, b| acc << 8 | *b as usize),
    ))
}

/// A DER element of `tag` around `content`.
pub(crate) fn element(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A DER SEQUENCE around `content`.
pub(crate) fn sequence(content: &[u8]) -> Vec<u8> {
    element(0x30, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let e = element(0x30, &vec![7u8; len]);
            assert_eq!(header(&e).unwrap().1, len);
            assert_eq!(header(&e).unwrap().0 + len, e.len());
        }
    }

    #[test]
    fn subject_is_replaced_and_signature_verifies() {
        let key = KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let cert = params.self_signed(&key).unwrap();
        // O=devs, O=admins, CN=alice
        let subject = sequence(
            &[
                rdn(&[0x55, 0x04, 0x0a], b"devs"),
                rdn(&[0x55, 0x04, 0x0a], b"admins"),
                rdn(&[0x55, 0x04, 0x03], b"alice"),
            ]
            .concat(),
        );
        let der = with_subject(cert.der(), &subject, &key).unwrap();
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
        assert_eq!(parsed.subject().to_string(), "O=devs, O=admins, CN=alice");
        parsed.verify_signature(None).unwrap();
    }

    fn rdn(oid: &[u8], value: &[u8]) -> Vec<u8> {
        let atv = sequence(&[element(0x06, oid), element(0x0c, value)].concat());
        element(0x31, &atv)
    }
}
