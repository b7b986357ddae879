//! Verification keys, each bound to one algorithm, and key sets from PEM, JWK and JWKS.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};

use crate::algorithm::SigningAlgorithm;
use crate::json::parse_object;

/// The smallest RSA modulus accepted from a JWK, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// A public key and the one algorithm it verifies.
pub(crate) struct VerificationKey {
    pub(crate) key: DecodingKey,
    pub(crate) algorithm: SigningAlgorithm,
}

impl VerificationKey {
    /// Parses a PEM public key for `algorithm`: SubjectPublicKeyInfo, or PKCS#1 for RSA.
    pub(crate) fn from_pem(algorithm: SigningAlgorithm, pem: &str) -> Result<Self, String> {
        let key = match algorithm {
            SigningAlgorithm::Rs256 | SigningAlgorithm::Ps256 => DecodingKey::from_rsa_pem(pem.as_bytes()),
            SigningAlgorithm::Es256 | SigningAlgorithm::Es384 => DecodingKey::from_ec_pem(pem.as_bytes()),
            SigningAlgorithm::EdDsa => DecodingKey::from_ed_pem(pem.as_bytes()),
        }
        .map_err(|error| format!("not a {algorithm} public key in PEM form: {error}"))?;

        // jsonwebtoken keeps an EC or Ed25519 key as its raw point, so the length
        // shows the curve. A P-384 key bound to ES256 would otherwise fail every
        // signature instead of failing here.
        let expected_point_len = match algorithm {
            SigningAlgorithm::Es256 => Some(65),
            SigningAlgorithm::Es384 => Some(97),
            SigningAlgorithm::EdDsa => Some(32),
            SigningAlgorithm::Rs256 | SigningAlgorithm::Ps256 => None,
        };
        if let Some(expected) = expected_point_len {
            let actual = key.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0);
            if actual != expected {
                return Err(format!("the key's curve does not match {algorithm}"));
            }
        }
        Ok(Self { key, algorithm })
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Verification keys by key id (`kid`), looked up by exact match.
///
/// Built from a JWKS document with [`KeySet::from_jwks_json`], or filled by the
/// [`JwtVerifierBuilder`](crate::JwtVerifierBuilder) key methods.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<VerificationKey>>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<_> = self.keys.iter().map(|(kid, key)| (kid, key.algorithm)).collect();
        kids.sort_by(|a, b| a.0.cmp(b.0));
        f.debug_struct("KeySet").field("keys", &kids).finish()
    }
}

/// A key in a JWKS document that [`KeySet::from_jwks_json`] did not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// The key's `kid`, if it had a string one.
    pub kid: Option<String>,
    /// The reason the key was skipped, such as `use is "enc", not "sig"`.
    pub reason: String,
}

impl KeySet {
    /// Parses a JWKS document (RFC 7517 section 5) and returns the usable keys
    /// with the keys it skipped.
    ///
    /// A key is used when it is an RSA (2048 bits or more), P-256, P-384 or
    /// Ed25519 public key with a non-empty `kid`. Its `use`, if present, must be
    /// `sig`, its `key_ops` must include `verify`, and its `alg` must be one this
    /// crate supports for its key type. An RSA key without `alg` is bound to RS256. A key that
    /// contains private parameters, or whose `kid` occurs twice, is skipped.
    ///
    /// Fails when the document is not a JSON object with a `keys` array, or has
    /// duplicate members. It does not fail when every key is skipped.
    pub fn from_jwks_json(json: &str) -> Result<(KeySet, Vec<SkippedKey>), String> {
        let document = parse_object(json.as_bytes()).map_err(|error| format!("invalid JWKS JSON: {error}"))?;
        let Some(Value::Array(entries)) = document.get("keys") else {
            return Err("invalid JWKS: expected an object with a \"keys\" array".to_owned());
        };

        let mut keys = HashMap::new();
        let mut skipped = Vec::new();
        let mut duplicate_kids = Vec::new();
        for entry in entries {
            let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
            let parsed = match entry {
                Value::Object(map) => key_from_jwk(map),
                _ => Err("not a JSON object".to_owned()),
            };
            match (parsed, kid) {
                (Ok((kid, key)), _) => {
                    if keys.insert(kid.clone(), Arc::new(key)).is_some() {
                        duplicate_kids.push(kid);
                    }
                }
                (Err(reason), kid) => skipped.push(SkippedKey { kid, reason }),
            }
        }
        // Two keys with one kid make the lookup ambiguous, so neither is used.
        for kid in duplicate_kids {
            if keys.remove(&kid).is_some() {
                skipped.push(SkippedKey {
                    kid: Some(kid),
                    reason: "the kid occurs more than once".to_owned(),
                });
            }
        }
        Ok((KeySet { keys }, skipped))
    }

    /// Returns the number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Returns `true` if the set has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Returns the key ids, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// Returns the algorithm bound to key `kid`.
    pub fn algorithm_of(&self, kid: &str) -> Option<SigningAlgorithm> {
        self.keys.get(kid).map(|key| key.algorithm)
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&Arc<VerificationKey>> {
        self.keys.get(kid)
    }

    /// Adds a key, failing if `kid` is empty or already present.
    pub(crate) fn insert(&mut self, kid: String, key: VerificationKey) -> Result<(), String> {
        if kid.is_empty() || self.keys.contains_key(&kid) {
            return Err(kid);
        }
        self.keys.insert(kid, Arc::new(key));
        Ok(())
    }

    pub(crate) fn merge(&mut self, other: KeySet) -> Result<(), String> {
        for (kid, key) in other.keys {
            if self.keys.contains_key(&kid) {
                return Err(kid);
            }
            self.keys.insert(kid, key);
        }
        Ok(())
    }
}

/// Parses one JWK (RFC 7517 section 4) into its kid and a verification key.
pub(crate) fn key_from_jwk_json(json: &str) -> Result<(String, VerificationKey), String> {
    let map = parse_object(json.as_bytes()).map_err(|error| format!("invalid JWK JSON: {error}"))?;
    key_from_jwk(&map)
}

fn key_from_jwk(jwk: &Map<String, Value>) -> Result<(String, VerificationKey), String> {
    let kid = match jwk.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        _ => return Err("missing or empty kid".to_owned()),
    };
    // "d" is the private exponent or scalar for every key type this crate reads;
    // a JWKS that publishes it has leaked the key.
    if jwk.contains_key("d") {
        return Err("contains private key parameters".to_owned());
    }
    match jwk.get("use") {
        None => {}
        Some(Value::String(usage)) if usage == "sig" => {}
        Some(other) => return Err(format!("use is {other}, not \"sig\"")),
    }
    if let Some(operations) = jwk.get("key_ops") {
        let verifies = operations
            .as_array()
            .is_some_and(|list| list.iter().any(|operation| operation == "verify"));
        if !verifies {
            return Err("key_ops does not include \"verify\"".to_owned());
        }
    }
    let declared = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => {
            Some(SigningAlgorithm::from_name(name).ok_or_else(|| format!("unsupported alg {name:?}"))?)
        }
        Some(_) => return Err("alg is not a string".to_owned()),
    };

    let key = match string_member(jwk, "kty")? {
        "RSA" => rsa_key(jwk, declared)?,
        "EC" => ec_key(jwk, declared)?,
        "OKP" => okp_key(jwk, declared)?,
        other => return Err(format!("unsupported kty {other:?}")),
    };
    Ok((kid, key))
}

fn rsa_key(jwk: &Map<String, Value>, declared: Option<SigningAlgorithm>) -> Result<VerificationKey, String> {
    let algorithm = match declared {
        None => SigningAlgorithm::Rs256,
        Some(algorithm @ (SigningAlgorithm::Rs256 | SigningAlgorithm::Ps256)) => algorithm,
        Some(other) => return Err(format!("alg {other} does not fit kty \"RSA\"")),
    };
    let modulus = decode_member(jwk, "n")?;
    let exponent = decode_member(jwk, "e")?;
    let significant = modulus.iter().skip_while(|byte| **byte == 0).count();
    if significant < MIN_RSA_MODULUS_BYTES {
        return Err(format!("RSA modulus of {} bits is shorter than 2048", significant * 8));
    }
    Ok(VerificationKey {
        key: DecodingKey::from_rsa_raw_components(&modulus, &exponent),
        algorithm,
    })
}

fn ec_key(jwk: &Map<String, Value>, declared: Option<SigningAlgorithm>) -> Result<VerificationKey, String> {
    let (algorithm, coordinate_len) = match string_member(jwk, "crv")? {
        "P-256" => (SigningAlgorithm::Es256, 32),
        "P-384" => (SigningAlgorithm::Es384, 48),
        other => return Err(format!("unsupported crv {other:?}")),
    };
    if declared.is_some_and(|declared| declared != algorithm) {
        return Err(format!("alg does not fit crv, which needs {algorithm}"));
    }
    let x = decode_member(jwk, "x")?;
    let y = decode_member(jwk, "y")?;
    if x.len() != coordinate_len || y.len() != coordinate_len {
        return Err(format!("coordinates must be {coordinate_len} bytes for {algorithm}"));
    }
    let mut point = Vec::with_capacity(1 + 2 * coordinate_len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(VerificationKey {
        key: DecodingKey::from_ec_der(&point),
        algorithm,
    })
}

fn okp_key(jwk: &Map<String, Value>, declared: Option<SigningAlgorithm>) -> Result<VerificationKey, String> {
    let curve = string_member(jwk, "crv")?;
    if curve != "Ed25519" {
        return Err(format!("unsupported crv {curve:?}"));
    }
    if declared.is_some_and(|declared| declared != SigningAlgorithm::EdDsa) {
        return Err("alg does not fit crv \"Ed25519\", which needs EdDSA".to_owned());
    }
    let x = decode_member(jwk, "x")?;
    if x.len() != 32 {
        return Err("an Ed25519 public key must be 32 bytes".to_owned());
    }
    Ok(VerificationKey {
        key: DecodingKey::from_ed_der(&x),
        algorithm: SigningAlgorithm::EdDsa,
    })
}

fn string_member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing or non-string {name:?}"))
}

fn decode_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = string_member(jwk, name)?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| format!("{name:?} is not unpadded base64url"))
}
