//! Signing service-account JWTs as upstream's `JWTTokenGenerator`: RS256 for RSA keys,
//! ES256/ES384 for EC keys, `kid` = base64url(sha256(PKIX public key)).

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use serde_json::json;

/// A private key that signs service-account JWTs (RS256, ES256 or ES384), with upstream's
/// key ID: base64url(sha256(PKIX public key)).
pub struct TokenSigner {
    key: SigningKey,
    key_id: String,
    rng: SystemRandom,
}

enum SigningKey {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair, &'static str),
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("alg", &self.algorithm())
            .field("kid", &self.key_id)
            .finish()
    }
}

// DER prefixes of the SubjectPublicKeyInfo of an RSA key and of P-256/P-384 keys, before
// the BIT STRING's content.
const RSA_ALGORITHM: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
const P256_ALGORITHM: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
const P384_ALGORITHM: &[u8] = &[
    0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04,
    0x00, 0x22,
];

impl TokenSigner {
    /// Loads `--service-account-private-key-file`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read(path)
            .with_context(|| format!("--service-account-private-key-file {}", path.display()))?;
        Self::from_pem(&pem)
            .with_context(|| format!("--service-account-private-key-file {}", path.display()))
    }

    /// The first private key in `pem`: `RSA PRIVATE KEY` (PKCS#1) or `PRIVATE KEY` (PKCS#8,
    /// RSA or EC P-256/P-384).
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
            let block = block.map_err(|e| anyhow::anyhow!("not PEM: {e}"))?;
            let der = &block.contents;
            let key = match block.label.as_str() {
                "RSA PRIVATE KEY" => SigningKey::Rsa(
                    RsaKeyPair::from_der(der)
                        .map_err(|e| anyhow::anyhow!("RSA PRIVATE KEY: {e}"))?,
                ),
                "PRIVATE KEY" => pkcs8_key(der, &rng)?,
                "EC PRIVATE KEY" => {
                    let der = crate::certificates::der::pkcs8_from_sec1(der)
                        .map_err(|e| anyhow::anyhow!(e))?;
                    pkcs8_key(&der, &rng)?
                }
                _ => continue,
            };
            let spki = match &key {
                SigningKey::Rsa(k) => spki(RSA_ALGORITHM, k.public_key().as_ref()),
                SigningKey::Ecdsa(k, "ES256") => spki(P256_ALGORITHM, k.public_key().as_ref()),
                SigningKey::Ecdsa(k, _) => spki(P384_ALGORITHM, k.public_key().as_ref()),
            };
            let key_id = base64url(ring::digest::digest(&ring::digest::SHA256, &spki).as_ref());
            return Ok(TokenSigner { key, key_id, rng });
        }
        anyhow::bail!("no private key PEM block found")
    }

    /// The JWS algorithm.
    pub fn algorithm(&self) -> &'static str {
        match &self.key {
            SigningKey::Rsa(_) => "RS256",
            SigningKey::Ecdsa(_, alg) => alg,
        }
    }

    /// The `kid` header.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// A compact JWS of `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> anyhow::Result<String> {
        let header = json!({"alg": self.algorithm(), "kid": self.key_id});
        let input = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let sig = match &self.key {
            SigningKey::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
                sig
            }
            SigningKey::Ecdsa(k, _) => k
                .sign(&self.rng, input.as_bytes())
                .map_err(|_| anyhow::anyhow!("ECDSA signing failed"))?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{input}.{}", base64url(&sig)))
    }
}

/// An RSA or EC P-256/P-384 key from PKCS#8 DER.
fn pkcs8_key(der: &[u8], rng: &SystemRandom) -> anyhow::Result<SigningKey> {
    if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
        return Ok(SigningKey::Rsa(k));
    }
    let p256 = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    if let Ok(k) = EcdsaKeyPair::from_pkcs8(p256, der, rng) {
        return Ok(SigningKey::Ecdsa(k, "ES256"));
    }
    let p384 = &signature::ECDSA_P384_SHA384_FIXED_SIGNING;
    if let Ok(k) = EcdsaKeyPair::from_pkcs8(p384, der, rng) {
        return Ok(SigningKey::Ecdsa(k, "ES384"));
    }
    anyhow::bail!("the private key is neither RSA nor EC P-256/P-384")
}

fn spki(algorithm: &[u8], public_key: &[u8]) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend_from_slice(public_key);
    let mut content = algorithm.to_vec();
    content.extend(der_element(0x03, &bits));
    der_element(0x30, &content)
}

fn der_element(tag: u8, content: &[u8]) -> Vec<u8> {
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

fn base64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    }

    #[test]
    fn ecdsa_key_signs_a_verifiable_es256_jwt() {
        let key = rcgen::KeyPair::generate().unwrap(); // P-256, PKCS#8
        let signer = TokenSigner::from_pem(key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(signer.algorithm(), "ES256");
        let expected_kid = base64url(
            ring::digest::digest(
                &ring::digest::SHA256,
                &rcgen::PublicKeyData::subject_public_key_info(&key),
            )
            .as_ref(),
        );
        assert_eq!(
            signer.key_id(),
            expected_kid,
            "kid is sha256 of the PKIX public key"
        );
        let jwt = signer.sign(&json!({"sub": "x"})).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&b64(parts[0])).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": expected_kid}));
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            key.public_key_raw(),
        );
        public
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &b64(parts[2]),
            )
            .unwrap();
    }

    #[test]
    fn rsa_pkcs1_key_signs_rs256() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.key");
        let ok = std::process::Command::new("openssl")
            .args(["genrsa", "-traditional", "-out"])
            .arg(&path)
            .arg("2048")
            .output();
        let Ok(out) = ok else {
            eprintln!("SKIPPED: no openssl to make an RSA key");
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY"));
        let signer = TokenSigner::load(&path).unwrap();
        assert_eq!(signer.algorithm(), "RS256");
        let jwt = signer.sign(&json!({"sub": "x"})).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let SigningKey::Rsa(k) = &signer.key else {
            unreachable!()
        };
        signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            k.public_key().as_ref(),
        )
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64(parts[2]),
        )
        .unwrap();
    }

    #[test]
    fn sec1_ec_key_signs_es256() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.key");
        let Ok(out) = std::process::Command::new("openssl")
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ])
            .arg(&path)
            .output()
        else {
            eprintln!("SKIPPED: no openssl to make an EC key");
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let signer = TokenSigner::load(&path).unwrap();
        assert_eq!(signer.algorithm(), "ES256");
        let jwt = signer.sign(&json!({"sub": "x"})).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let SigningKey::Ecdsa(k, _) = &signer.key else {
            unreachable!()
        };
        signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            k.public_key().as_ref(),
        )
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64(parts[2]),
        )
        .unwrap();
    }

    #[test]
    fn bad_keys_name_the_problem() {
        let err = TokenSigner::from_pem(
            b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("P-256"), "{err:#}");
        assert!(TokenSigner::from_pem(b"nothing").is_err());
    }
}
