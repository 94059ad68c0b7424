//! Auth tokens, as `--auth-token` chooses them.
//!
//! - **simple** (etcd's default): a random opaque string that the member receiving Authenticate
//!   picks and proposes, so every member learns it when it applies the entry. A token lives
//!   `--auth-token-ttl` after its last use, and dies with its user, its user's password, or auth.
//! - **jwt**: a signed token carrying the user name, the auth revision it was issued at and an
//!   expiry; any member holding the public key checks it without shared state. A token issued
//!   before a later auth change is refused as "revision of auth store is old".

use crate::error::{Error, Result};
use crate::seams::{SystemClock, WallClock};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The simple tokens this member knows: token → (user, expiry).
#[derive(Debug)]
pub struct SimpleTokens {
    ttl: Duration,
    map: Mutex<HashMap<String, (String, Instant)>>,
}

impl SimpleTokens {
    /// No tokens yet; each lives `ttl` after its last use.
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens { ttl, map: Mutex::new(HashMap::new()) }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remember `token` for `user`.
    pub fn insert(&self, token: String, user: String, now: Instant) {
        let mut map = self.map();
        map.retain(|_, (_, until)| *until > now);
        map.insert(token, (user, now + self.ttl));
    }

    /// The user of a live token, whose life starts over with this use.
    pub fn resolve(&self, token: &str, now: Instant) -> Option<String> {
        let mut map = self.map();
        let (user, until) = map.get_mut(token)?;
        if *until <= now {
            map.remove(token);
            return None;
        }
        *until = now + self.ttl;
        Some(user.clone())
    }

    /// Forget every token of `user` (deleted, or its password changed).
    pub fn invalidate_user(&self, user: &str) {
        self.map().retain(|_, (u, _)| u != user);
    }

    /// Forget every token (auth disabled).
    pub fn clear(&self) {
        self.map().clear();
    }
}

/// `--auth-token jwt,…`: keys, signing method and lifetime.
pub struct Jwt {
    alg: Algorithm,
    sign: Option<EncodingKey>,
    verify: DecodingKey,
    ttl: Duration,
    clock: std::sync::Arc<dyn WallClock>,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt").field("alg", &self.alg).field("can_sign", &self.sign.is_some()).field("ttl", &self.ttl).finish()
    }
}

/// The claims etcd puts in its JWTs.
#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// What `--auth-token` asks for.
#[derive(Debug)]
pub enum TokenKind {
    /// Simple tokens.
    Simple,
    /// Signed JWTs.
    Jwt(Jwt),
}

impl TokenKind {
    /// Parse `--auth-token`: `simple`, or `jwt,pub-key=FILE,priv-key=FILE,sign-method=ALG,ttl=DUR`
    /// (etcd's syntax; `priv-key` may be left out on members that only check tokens).
    pub fn parse(spec: &str) -> std::result::Result<TokenKind, String> {
        let mut parts = spec.split(',');
        match parts.next().unwrap_or_default() {
            "simple" | "" => Ok(TokenKind::Simple),
            "jwt" => {
                let mut opts: HashMap<&str, &str> = HashMap::new();
                for p in parts {
                    let (k, v) = p.split_once('=').ok_or_else(|| format!("jwt option {p:?} is not key=value"))?;
                    if !matches!(k, "pub-key" | "priv-key" | "sign-method" | "ttl") {
                        return Err(format!("unknown jwt option {k:?}"));
                    }
                    opts.insert(k, v);
                }
                Jwt::new(&opts).map(TokenKind::Jwt)
            }
            other => Err(format!("unknown token type {other:?} (want simple or jwt)")),
        }
    }
}

impl Jwt {
    fn new(opts: &HashMap<&str, &str>) -> std::result::Result<Jwt, String> {
        let method = opts.get("sign-method").copied().ok_or("jwt needs sign-method")?;
        let alg: Algorithm = method.parse().map_err(|_| format!("unsupported sign-method {method:?}"))?;
        let ttl = match opts.get("ttl") {
            Some(t) => crate::duration::parse(t)?,
            None => Duration::from_secs(300),
        };
        let read = |k: &str| -> std::result::Result<Option<Vec<u8>>, String> {
            opts.get(k).map(|path| std::fs::read(path).map_err(|e| format!("reading {k} {path}: {e}"))).transpose()
        };
        let (public, private) = (read("pub-key")?, read("priv-key")?);
        let bad = |e: jsonwebtoken::errors::Error| format!("jwt key for {method}: {e}");
        let (sign, verify) = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                // HMAC: the key file's bytes are the shared secret, which signs as well as checks:
                // it is the private key, never a "pub-key" handed out.
                let secret = private.ok_or("jwt HMAC needs priv-key (the shared secret)")?;
                (Some(EncodingKey::from_secret(&secret)), DecodingKey::from_secret(&secret))
            }
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => {
                let public = public.ok_or("jwt needs pub-key")?;
                (private.map(|p| EncodingKey::from_rsa_pem(&p)).transpose().map_err(bad)?, DecodingKey::from_rsa_pem(&public).map_err(bad)?)
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let public = public.ok_or("jwt needs pub-key")?;
                (private.map(|p| EncodingKey::from_ec_pem(&p)).transpose().map_err(bad)?, DecodingKey::from_ec_pem(&public).map_err(bad)?)
            }
            Algorithm::EdDSA => {
                let public = public.ok_or("jwt needs pub-key")?;
                (private.map(|p| EncodingKey::from_ed_pem(&p)).transpose().map_err(bad)?, DecodingKey::from_ed_pem(&public).map_err(bad)?)
            }
        };
        Ok(Jwt { alg, sign, verify, ttl, clock: std::sync::Arc::new(SystemClock) })
    }

    /// The same keys, reading wall-clock time from `clock` (expiry is wall-clock time).
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn WallClock>) -> Jwt {
        self.clock = clock;
        self
    }

    /// A token for `user` at auth revision `revision`, expiring `ttl` from now.
    pub fn sign(&self, user: &str, revision: u64) -> Result<String> {
        let key = self.sign.as_ref().ok_or_else(|| Error::InvalidArgument("this member has no jwt priv-key to sign tokens".into()))?;
        let claims = Claims { username: user.to_string(), revision, exp: self.clock.unix_secs() + self.ttl.as_secs().max(1) };
        jsonwebtoken::encode(&Header::new(self.alg), &claims, key).map_err(|e| Error::InvalidArgument(format!("signing a jwt: {e}")))
    }

    /// The user and auth revision of a validly signed, unexpired token.
    pub fn verify(&self, token: &str) -> Result<(String, u64)> {
        let mut v = Validation::new(self.alg);
        // Expiry is checked below against this member's clock, not the library's.
        v.validate_exp = false;
        v.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.verify, &v).map_err(|_| Error::InvalidAuthToken)?;
        if data.claims.exp <= self.clock.unix_secs() {
            return Err(Error::InvalidAuthToken);
        }
        Ok((data.claims.username, data.claims.revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_tokens_live_ttl_after_last_use_and_die_with_their_user() {
        let t = SimpleTokens::new(Duration::from_secs(10));
        let now = Instant::now();
        t.insert("a.1".into(), "alice".into(), now);
        t.insert("b.2".into(), "bob".into(), now);
        assert_eq!(t.resolve("a.1", now + Duration::from_secs(9)).as_deref(), Some("alice"));
        assert_eq!(t.resolve("a.1", now + Duration::from_secs(18)).as_deref(), Some("alice"), "use renews the token");
        assert_eq!(t.resolve("b.2", now + Duration::from_secs(11)), None, "unused for its ttl: gone");
        t.invalidate_user("alice");
        assert_eq!(t.resolve("a.1", now), None);
        assert_eq!(t.resolve("nope", now), None);
    }

    #[test]
    fn token_specs() {
        assert!(matches!(TokenKind::parse("simple"), Ok(TokenKind::Simple)));
        assert!(TokenKind::parse("magic").is_err());
        assert!(TokenKind::parse("jwt,sign-method=RS256").unwrap_err().contains("pub-key"));
        assert!(TokenKind::parse("jwt,pub-key=/nonexistent,sign-method=RS256").unwrap_err().contains("/nonexistent"));
        assert!(TokenKind::parse("jwt,colour=blue,sign-method=RS256").unwrap_err().contains("colour"));
    }

    #[test]
    fn hmac_jwt_round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, b"secret").unwrap();
        let spec = format!("jwt,priv-key={},sign-method=HS256,ttl=1m", key.display());
        struct Fixed(std::sync::atomic::AtomicU64);
        impl WallClock for Fixed {
            fn unix_secs(&self) -> u64 {
                self.0.load(std::sync::atomic::Ordering::Relaxed)
            }
        }
        let clock = std::sync::Arc::new(Fixed(1_000_000.into()));
        let TokenKind::Jwt(jwt) = TokenKind::parse(&spec).unwrap() else { panic!("not jwt") };
        let jwt = jwt.with_clock(clock.clone());
        let token = jwt.sign("alice", 7).unwrap();
        assert_eq!(jwt.verify(&token).unwrap(), ("alice".to_string(), 7));
        clock.0.store(1_000_059, std::sync::atomic::Ordering::Relaxed);
        assert!(jwt.verify(&token).is_ok(), "59 s into a 1 m token");
        clock.0.store(1_000_060, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(jwt.verify(&token), Err(Error::InvalidAuthToken), "expired");
        assert_eq!(jwt.verify("garbage"), Err(Error::InvalidAuthToken));
        std::fs::write(&key, b"other").unwrap();
        let TokenKind::Jwt(other) = TokenKind::parse(&spec).unwrap() else { panic!("not jwt") };
        clock.0.store(1_000_000, std::sync::atomic::Ordering::Relaxed);
        let other = other.with_clock(clock);
        assert_eq!(other.verify(&token), Err(Error::InvalidAuthToken), "signed with another key");
    }
}
