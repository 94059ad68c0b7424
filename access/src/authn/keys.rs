//! Service-account token keys from PEM files, as kube-apiserver reads them:
//! `--service-account-signing-key-file` (one private key: PKCS#8, PKCS#1 RSA or SEC1 EC) and
//! `--service-account-key-file` (public keys, certificates or private keys, several per file).
//!
//! Invariants: RSA keys sign RS256, P-256 keys ES256 and P-384 keys ES384, as kube picks the
//! algorithm from the key; every key's id (`kid`) is kube's: base64url(sha256(DER of its
//! SubjectPublicKeyInfo)), so tokens name the key that signed them.

use crate::error::Error;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::signature::KeyPair;
use rustls_pki_types::pem::{PemObject, SectionKind};
use sha2::{Digest, Sha256};

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// A key that signs service account tokens.
pub struct SigningKey {
    /// RS256, ES256 or ES384.
    pub algorithm: Algorithm,
    /// kube's key id.
    pub kid: String,
    encoding: EncodingKey,
    public: VerifyingKey,
}

/// A key that verifies service account tokens.
#[derive(Clone)]
pub struct VerifyingKey {
    /// The algorithm tokens signed by this key use.
    pub algorithm: Algorithm,
    /// kube's key id.
    pub kid: String,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("algorithm", &self.algorithm).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey").field("algorithm", &self.algorithm).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key that verifies what this one signs.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.public.clone()
    }

    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }
}

impl VerifyingKey {
    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

// --- a few DER shapes, enough for the key formats above -------------------------------------

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    der(0x30, &parts.concat())
}

/// Reads one TLV; returns (tag, content, rest).
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn spki(alg_oid: &[u8], param: Option<&[u8]>, key: &[u8]) -> Vec<u8> {
    let oid = der(0x06, alg_oid);
    let param = match param {
        Some(p) => der(0x06, p),
        None => vec![0x05, 0x00],
    };
    let mut bits = vec![0u8];
    bits.extend_from_slice(key);
    seq(&[&seq(&[&oid, &param]), &der(0x03, &bits)])
}

fn kid(spki_der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(spki_der))
}

/// The private key inside a PKCS#8 document (for RSA, the PKCS#1 key).
fn pkcs8_inner(pkcs8: &[u8]) -> Option<&[u8]> {
    let (_, body, _) = read_tlv(pkcs8)?;
    let (_, _version, rest) = read_tlv(body)?;
    let (_, _alg, rest) = read_tlv(rest)?;
    let (tag, key, _) = read_tlv(rest)?;
    (tag == 0x04).then_some(key)
}

/// Wraps a SEC1 `EC PRIVATE KEY` into PKCS#8, taking the curve from its parameters.
fn sec1_to_pkcs8(sec1: &[u8]) -> Option<(Vec<u8>, &'static [u8])> {
    let (_, body, _) = read_tlv(sec1)?;
    let (_, _version, mut rest) = read_tlv(body)?;
    let (_, _key, r) = read_tlv(rest)?;
    rest = r;
    let mut curve: Option<&'static [u8]> = None;
    while let Some((tag, content, r)) = read_tlv(rest) {
        if tag == 0xa0 {
            let (_, oid, _) = read_tlv(content)?;
            curve = if oid == OID_P256 {
                Some(OID_P256)
            } else if oid == OID_P384 {
                Some(OID_P384)
            } else {
                None
            };
        }
        rest = r;
    }
    let curve = curve?;
    let alg = seq(&[&der(0x06, OID_EC), &der(0x06, curve)]);
    Some((seq(&[&[0x02, 0x01, 0x00], &alg, &der(0x04, sec1)]), curve))
}

fn ec_from_pkcs8(pkcs8: &[u8]) -> Option<SigningKey> {
    let rng = ring::rand::SystemRandom::new();
    for (ring_alg, jwt_alg, curve) in [
        (&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, Algorithm::ES256, OID_P256),
        (&ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING, Algorithm::ES384, OID_P384),
    ] {
        if let Ok(kp) = ring::signature::EcdsaKeyPair::from_pkcs8(ring_alg, pkcs8, &rng) {
            let point = kp.public_key().as_ref();
            let kid = kid(&spki(OID_EC, Some(curve), point));
            let public = VerifyingKey { algorithm: jwt_alg, kid: kid.clone(), decoding: DecodingKey::from_ec_der(point) };
            return Some(SigningKey { algorithm: jwt_alg, kid, encoding: EncodingKey::from_ec_der(pkcs8), public });
        }
    }
    None
}

fn rsa_from_pkcs1(pkcs1: &[u8]) -> Option<SigningKey> {
    let kp = ring::signature::RsaKeyPair::from_der(pkcs1).ok()?;
    let public = kp.public().as_ref();
    let kid = kid(&spki(OID_RSA, None, public));
    let verifying = VerifyingKey { algorithm: Algorithm::RS256, kid: kid.clone(), decoding: DecodingKey::from_rsa_der(public) };
    Some(SigningKey { algorithm: Algorithm::RS256, kid, encoding: EncodingKey::from_rsa_der(pkcs1), public: verifying })
}

fn signing_from_section(kind: SectionKind, der: &[u8]) -> Option<SigningKey> {
    match kind {
        SectionKind::PrivateKey => {
            if let Some(k) = ec_from_pkcs8(der) {
                return Some(k);
            }
            pkcs8_inner(der).and_then(rsa_from_pkcs1)
        }
        SectionKind::RsaPrivateKey => rsa_from_pkcs1(der),
        SectionKind::EcPrivateKey => sec1_to_pkcs8(der).and_then(|(p8, _)| ec_from_pkcs8(&p8)),
        _ => None,
    }
}

fn verifying_from_spki(spki_der: &[u8]) -> Option<VerifyingKey> {
    use x509_parser::prelude::FromDer;
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).ok()?;
    let alg = info.algorithm.algorithm.as_bytes();
    let key = &info.subject_public_key.data;
    let kid = kid(spki_der);
    if alg == OID_RSA {
        return Some(VerifyingKey { algorithm: Algorithm::RS256, kid, decoding: DecodingKey::from_rsa_der(key) });
    }
    if alg == OID_EC {
        let curve = info.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok())?;
        let algorithm = match curve.as_bytes() {
            c if c == OID_P256 => Algorithm::ES256,
            c if c == OID_P384 => Algorithm::ES384,
            _ => return None,
        };
        return Some(VerifyingKey { algorithm, kid, decoding: DecodingKey::from_ec_der(key) });
    }
    None
}

fn sections(pem: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, Error> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| Error::Key(format!("invalid PEM: {e}")))
}

/// Reads `--service-account-signing-key-file`.
pub fn signing_key_from_pem(pem: &[u8]) -> Result<SigningKey, Error> {
    let secs = sections(pem)?;
    secs.iter()
        .find_map(|(k, d)| signing_from_section(*k, d))
        .ok_or_else(|| Error::Key("no valid RSA or ECDSA (P-256, P-384) private key found".into()))
}

/// Reads `--service-account-key-file`: every public key, certificate or private key in it.
pub fn verifying_keys_from_pem(pem: &[u8]) -> Result<Vec<VerifyingKey>, Error> {
    let mut out = Vec::new();
    for (kind, der) in sections(pem)? {
        let key = match kind {
            SectionKind::PublicKey => verifying_from_spki(&der),
            SectionKind::Certificate => {
                use x509_parser::prelude::FromDer;
                x509_parser::certificate::X509Certificate::from_der(&der)
                    .ok()
                    .and_then(|(_, c)| verifying_from_spki(c.tbs_certificate.subject_pki.raw))
            }
            other => signing_from_section(other, &der).map(|k| k.public),
        };
        out.extend(key);
    }
    if out.is_empty() {
        return Err(Error::Key("data does not contain any valid RSA or ECDSA public keys".into()));
    }
    Ok(out)
}

/// A fresh P-256 signing key as PKCS#8 PEM (what `keel up` writes when no key file is given).
pub fn generate_signing_key_pem() -> Result<String, Error> {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map(|k| k.serialize_pem()).map_err(|e| Error::Key(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PKCS1: &[u8] = include_bytes!("testdata/rsa-pkcs1.pem");
    const RSA_PKCS8: &[u8] = include_bytes!("testdata/rsa-pkcs8.pem");
    const RSA_PUB: &[u8] = include_bytes!("testdata/rsa-pub.pem");
    const EC_SEC1: &[u8] = include_bytes!("testdata/ec-sec1.pem");
    const EC_PUB: &[u8] = include_bytes!("testdata/ec-pub.pem");

    #[test]
    fn every_private_key_format_loads_with_the_public_keys_kid() {
        let rsa1 = signing_key_from_pem(RSA_PKCS1).unwrap();
        let rsa8 = signing_key_from_pem(RSA_PKCS8).unwrap();
        assert_eq!(rsa1.algorithm, Algorithm::RS256);
        assert_eq!(rsa1.kid, rsa8.kid);
        assert_eq!(verifying_keys_from_pem(RSA_PUB).unwrap()[0].kid, rsa1.kid);
        let ec = signing_key_from_pem(EC_SEC1).unwrap();
        assert_eq!(ec.algorithm, Algorithm::ES256);
        assert_eq!(verifying_keys_from_pem(EC_PUB).unwrap()[0].kid, ec.kid);
        let generated = generate_signing_key_pem().unwrap();
        let g = signing_key_from_pem(generated.as_bytes()).unwrap();
        assert_eq!(g.algorithm, Algorithm::ES256);
        assert_eq!(g.kid.len(), 43);
    }

    #[test]
    fn key_files_may_hold_several_keys_and_private_keys() {
        let both = [RSA_PUB, EC_SEC1].concat();
        let keys = verifying_keys_from_pem(&both).unwrap();
        assert_eq!(keys.iter().map(|k| k.algorithm).collect::<Vec<_>>(), [Algorithm::RS256, Algorithm::ES256]);
        assert!(verifying_keys_from_pem(b"not pem").is_err());
        assert!(signing_key_from_pem(RSA_PUB).is_err());
    }
}
