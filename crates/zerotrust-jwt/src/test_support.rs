//! Keys, signing and a settable clock for this crate's unit tests.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};
use zerotrust_core::Clock;

use crate::algorithm::SigningAlgorithm;

pub(crate) const ISSUER: &str = "https://issuer.zerotrust.test";
pub(crate) const AUDIENCE: &str = "api:orders";

/// A key pair for one algorithm, with its public key as PEM and as a JWK.
pub(crate) struct TestKey {
    pub(crate) kid: String,
    pub(crate) algorithm: SigningAlgorithm,
    pub(crate) private_pem: String,
    pub(crate) public_pem: String,
    pub(crate) jwk: Value,
}

impl TestKey {
    pub(crate) fn generate(kid: &str, algorithm: SigningAlgorithm) -> TestKey {
        let rcgen_algorithm = match algorithm {
            SigningAlgorithm::Rs256 | SigningAlgorithm::Ps256 => &rcgen::PKCS_RSA_SHA256,
            SigningAlgorithm::Es256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            SigningAlgorithm::Es384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            SigningAlgorithm::EdDsa => &rcgen::PKCS_ED25519,
        };
        let pair = match algorithm {
            SigningAlgorithm::Rs256 | SigningAlgorithm::Ps256 => {
                rcgen::KeyPair::generate_rsa_for(rcgen_algorithm, rcgen::RsaKeySize::_2048).unwrap()
            }
            _ => rcgen::KeyPair::generate_for(rcgen_algorithm).unwrap(),
        };
        let private_pem = pair.serialize_pem();
        let raw = pair.public_key_raw();
        let jwk = match algorithm {
            SigningAlgorithm::Rs256 | SigningAlgorithm::Ps256 => {
                let encoding = EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
                let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, algorithm.to_jsonwebtoken()).unwrap();
                serde_json::to_value(jwk).unwrap()
            }
            SigningAlgorithm::Es256 | SigningAlgorithm::Es384 => {
                let half = (raw.len() - 1) / 2;
                let curve = if algorithm == SigningAlgorithm::Es256 { "P-256" } else { "P-384" };
                json!({
                    "kty": "EC",
                    "crv": curve,
                    "alg": algorithm.as_str(),
                    "x": URL_SAFE_NO_PAD.encode(&raw[1..1 + half]),
                    "y": URL_SAFE_NO_PAD.encode(&raw[1 + half..]),
                })
            }
            SigningAlgorithm::EdDsa => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "x": URL_SAFE_NO_PAD.encode(raw),
            }),
        };
        let mut jwk = jwk;
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        TestKey {
            kid: kid.to_owned(),
            algorithm,
            private_pem,
            public_pem: pair.public_key_pem(),
            jwk,
        }
    }

    /// Returns a shared key for `algorithm` with kid `k-<alg>`, generated once per
    /// test binary because RSA generation is slow.
    pub(crate) fn shared(algorithm: SigningAlgorithm) -> &'static TestKey {
        static KEYS: OnceLock<Vec<TestKey>> = OnceLock::new();
        let keys = KEYS.get_or_init(|| {
            SigningAlgorithm::ALL
                .iter()
                .map(|algorithm| TestKey::generate(&format!("k-{algorithm}"), *algorithm))
                .collect()
        });
        keys.iter().find(|key| key.algorithm == algorithm).unwrap()
    }

    pub(crate) fn encoding_key(&self) -> EncodingKey {
        match self.algorithm {
            SigningAlgorithm::Rs256 | SigningAlgorithm::Ps256 => EncodingKey::from_rsa_pem(self.private_pem.as_bytes()),
            SigningAlgorithm::Es256 | SigningAlgorithm::Es384 => EncodingKey::from_ec_pem(self.private_pem.as_bytes()),
            SigningAlgorithm::EdDsa => EncodingKey::from_ed_pem(self.private_pem.as_bytes()),
        }
        .unwrap()
    }

    /// Signs `claims` with a header of this key's `alg` and `kid`.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&json!({"alg": self.algorithm.as_str(), "kid": self.kid, "typ": "JWT"}), claims)
    }

    /// Signs the exact header and claims JSON given, with this key's algorithm.
    pub(crate) fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(&header.to_string(), &claims.to_string())
    }

    /// Signs header and claims given as JSON text, so tests can write duplicates.
    pub(crate) fn sign_raw(&self, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding_key(), self.algorithm.to_jsonwebtoken()).unwrap();
        format!("{input}.{signature}")
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Valid claims for [`ISSUER`] and [`AUDIENCE`], issued now, expiring in 5 minutes.
pub(crate) fn valid_claims() -> Value {
    let now = unix_now();
    json!({"iss": ISSUER, "sub": "service:gateway", "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 300, "jti": "j1"})
}

/// A clock that tests move by hand.
#[derive(Debug)]
pub(crate) struct TestClock(Mutex<SystemTime>);

impl TestClock {
    pub(crate) fn new() -> Self {
        Self(Mutex::new(SystemTime::now()))
    }

    pub(crate) fn set(&self, time: SystemTime) {
        *self.0.lock().unwrap() = time;
    }

    pub(crate) fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}
