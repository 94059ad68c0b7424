//! Secrets encrypted at rest: values under `/registry/secrets/` are stored as
//! `k8s:enc:aesgcm:v1:<key name>:` + 12-byte nonce + AES-256-GCM ciphertext (Kubernetes' prefix
//! convention; the store key is the additional authenticated data, so a value copied to
//! another key does not open). `etcdctl get /registry/secrets/...` shows ciphertext; the API
//! shows the Secret.
//!
//! Keys live in a file, one `name:base64-of-32-bytes` per line: new writes use the first, reads
//! try the key the value names, so keys rotate by putting a new line first and rewriting the
//! secrets. Without a file the server generates one key on first start.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::Mutex;

/// The prefix of every encrypted value.
pub const PREFIX: &str = "k8s:enc:aesgcm:v1:";

/// Store keys whose values are encrypted.
const ENCRYPTED: &[&str] = &["/registry/secrets/"];

/// Seals and opens stored values.
pub struct Codec {
    keys: Vec<(String, Aes256Gcm)>,
    // A std mutex: held for a nonce's worth of bytes, never across an await.
    rng: Mutex<StdRng>,
}

impl Codec {
    /// A codec that stores everything in the clear (tests of other parts).
    pub fn plain() -> Codec {
        Codec { keys: Vec::new(), rng: Mutex::new(StdRng::seed_from_u64(0)) }
    }

    /// Keys from `text` (the key file's contents); nonces from a generator seeded with `seed`.
    pub fn parse(text: &str, seed: u64) -> Result<Codec, String> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().map(str::trim).enumerate().filter(|(_, l)| !l.is_empty() && !l.starts_with('#')) {
            let (name, b64) = line.split_once(':').ok_or_else(|| format!("line {}: expected name:base64-key", i + 1))?;
            let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|e| format!("line {}: {e}", i + 1))?;
            if raw.len() != 32 {
                return Err(format!("line {}: an AES-256 key is 32 bytes, not {}", i + 1, raw.len()));
            }
            if name.is_empty() || name.contains(':') {
                return Err(format!("line {}: a key name must be non-empty and without ':'", i + 1));
            }
            let cipher = Aes256Gcm::new_from_slice(&raw).map_err(|e| e.to_string())?;
            keys.push((name.to_string(), cipher));
        }
        if keys.is_empty() {
            return Err("the key file holds no key".into());
        }
        Ok(Codec { keys, rng: Mutex::new(StdRng::seed_from_u64(seed)) })
    }

    /// The key file at `path`, created with one fresh key (from `seed`) if it does not exist.
    pub fn load_or_create(path: &Path, seed: u64) -> Result<Codec, String> {
        if !path.exists() {
            let key: [u8; 32] = StdRng::seed_from_u64(seed ^ 0x5eed_cafe).random();
            let line = format!("key1:{}\n", base64::engine::general_purpose::STANDARD.encode(key));
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            }
            std::fs::write(path, line).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Codec::parse(&text, seed)
    }

    fn encrypts(&self, key: &str) -> bool {
        !self.keys.is_empty() && ENCRYPTED.iter().any(|p| key.starts_with(p))
    }

    /// The bytes to store for `plain` at `key`.
    pub fn seal(&self, key: &str, plain: Vec<u8>) -> Vec<u8> {
        let Some((name, cipher)) = self.keys.first().filter(|_| self.encrypts(key)) else { return plain };
        let nonce: [u8; 12] = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner).random();
        // Encryption with a valid key and nonce does not fail; if it ever did, storing the
        // plaintext would leak it, so store nothing readable instead.
        let sealed = cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: &plain, aad: key.as_bytes() }).unwrap_or_default();
        let mut out = format!("{PREFIX}{name}:").into_bytes();
        out.extend_from_slice(&nonce);
        out.extend(sealed);
        out
    }

    /// The plaintext of a stored value (values without the prefix are plaintext).
    pub fn open(&self, key: &str, stored: &[u8]) -> Result<Vec<u8>, String> {
        let Some(rest) = stored.strip_prefix(PREFIX.as_bytes()) else { return Ok(stored.to_vec()) };
        let colon = rest.iter().position(|b| *b == b':').ok_or("encrypted value without a key name")?;
        let name = String::from_utf8_lossy(&rest[..colon]).into_owned();
        let body = &rest[colon + 1..];
        if body.len() < 12 {
            return Err("encrypted value too short".into());
        }
        let (_, cipher) = self.keys.iter().find(|(n, _)| *n == name).ok_or_else(|| format!("no key named {name:?} to decrypt with"))?;
        cipher
            .decrypt(Nonce::from_slice(&body[..12]), Payload { msg: &body[12..], aad: key.as_bytes() })
            .map_err(|_| format!("decrypting with key {name:?} failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line(name: &str, byte: u8) -> String {
        format!("{name}:{}", base64::engine::general_purpose::STANDARD.encode([byte; 32]))
    }

    #[test]
    fn secrets_round_trip_and_other_keys_stay_plain() {
        let c = Codec::parse(&key_line("k1", 1), 7).unwrap_or_else(|e| panic!("{e}"));
        let sealed = c.seal("/registry/secrets/ns/s", b"{\"data\":1}".to_vec());
        assert!(sealed.starts_with(b"k8s:enc:aesgcm:v1:k1:"));
        assert!(!sealed.windows(6).any(|w| w == b"\"data\""), "no plaintext in the stored bytes");
        assert_eq!(c.open("/registry/secrets/ns/s", &sealed).ok(), Some(b"{\"data\":1}".to_vec()));
        assert!(c.open("/registry/secrets/ns/other", &sealed).is_err(), "bound to its key");
        assert_eq!(c.seal("/registry/configmaps/ns/c", b"x".to_vec()), b"x".to_vec());
        assert_eq!(c.open("/registry/secrets/ns/s", b"{}").ok(), Some(b"{}".to_vec()), "old plaintext still reads");
    }

    #[test]
    fn rotation_writes_with_the_first_key_and_reads_with_any() {
        let old = Codec::parse(&key_line("old", 1), 1).unwrap_or_else(|e| panic!("{e}"));
        let sealed = old.seal("/registry/secrets/a/b", b"v".to_vec());
        let both = Codec::parse(&format!("{}\n{}\n", key_line("new", 2), key_line("old", 1)), 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(both.open("/registry/secrets/a/b", &sealed).ok(), Some(b"v".to_vec()));
        assert!(both.seal("/registry/secrets/a/b", b"v".to_vec()).starts_with(b"k8s:enc:aesgcm:v1:new:"));
        let new_only = Codec::parse(&key_line("new", 2), 3).unwrap_or_else(|e| panic!("{e}"));
        assert!(new_only.open("/registry/secrets/a/b", &sealed).is_err());
    }

    #[test]
    fn bad_key_files_are_refused() {
        assert!(Codec::parse("", 0).is_err());
        assert!(Codec::parse("k1:c2hvcnQ=", 0).is_err(), "short key");
        assert!(Codec::parse("no-colon", 0).is_err());
    }
}
