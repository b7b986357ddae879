use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::*;
use crate::test_support::{AUDIENCE, ISSUER, TestClock, TestKey, unix_now, valid_claims};

fn builder() -> JwtVerifierBuilder {
    JwtVerifier::builder().issuer(ISSUER).audience(AUDIENCE)
}

/// Builds a verifier with every shared test key, each as PEM under its own kid.
fn verifier_with_all_keys() -> JwtVerifier {
    let mut builder = builder();
    for algorithm in SigningAlgorithm::ALL {
        let key = TestKey::shared(algorithm);
        builder = builder.public_key_pem(&key.kid, algorithm, &key.public_pem);
    }
    builder.build().unwrap()
}

fn with_claim(name: &str, value: Value) -> Value {
    let mut claims = valid_claims();
    claims[name] = value;
    claims
}

#[test]
fn verify_accepts_each_algorithm_from_pem() {
    let verifier = verifier_with_all_keys();

    for algorithm in SigningAlgorithm::ALL {
        let key = TestKey::shared(algorithm);
        let claims = verifier.verify(&key.sign(&valid_claims()));
        assert_eq!(claims.map(|c| c.subject().to_owned()), Ok("service:gateway".to_owned()), "{algorithm}");
    }
}

#[test]
fn verify_accepts_each_algorithm_from_jwk() {
    for algorithm in SigningAlgorithm::ALL {
        let key = TestKey::shared(algorithm);
        let verifier = builder().jwk_json(&key.jwk.to_string()).build().unwrap();

        let result = verifier.verify(&key.sign(&valid_claims()));

        assert!(result.is_ok(), "{algorithm}: {result:?}");
    }
}

#[test]
fn verify_accepts_keys_from_jwks_file() {
    let keys: Vec<Value> = SigningAlgorithm::ALL.iter().map(|a| TestKey::shared(*a).jwk.clone()).collect();
    let path = std::env::temp_dir().join(format!("zerotrust-jwt-jwks-{}.json", std::process::id()));
    std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();

    let verifier = builder().jwks_file(&path).build();
    std::fs::remove_file(&path).unwrap();

    let verifier = verifier.unwrap();
    for algorithm in SigningAlgorithm::ALL {
        assert!(verifier.verify(&TestKey::shared(algorithm).sign(&valid_claims())).is_ok(), "{algorithm}");
    }
}

#[test]
fn verify_rejects_algorithm_not_bound_to_key() {
    let verifier = verifier_with_all_keys();
    let rsa = TestKey::shared(SigningAlgorithm::Rs256);
    let ec = TestKey::shared(SigningAlgorithm::Es256);
    // The same RSA key bound to RS256 must not verify a PS256 header naming it.
    let pss_as_rs = TestKey {
        kid: rsa.kid.clone(),
        algorithm: SigningAlgorithm::Ps256,
        private_pem: rsa.private_pem.clone(),
        public_pem: rsa.public_pem.clone(),
        jwk: rsa.jwk.clone(),
    };
    let es_header_on_rsa_kid = ec.sign_with_header(&json!({"alg": "ES256", "kid": rsa.kid}), &valid_claims());
    let hmac_with_public_key = {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": rsa.kid}).to_string()),
            URL_SAFE_NO_PAD.encode(valid_claims().to_string())
        );
        let secret = jsonwebtoken::EncodingKey::from_secret(rsa.public_pem.as_bytes()).unwrap();
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &secret, jsonwebtoken::Algorithm::HS256).unwrap();
        format!("{input}.{signature}")
    };
    let none_with_signature = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": rsa.kid}).to_string()),
        URL_SAFE_NO_PAD.encode(valid_claims().to_string())
    );

    let cases = [
        ("PS256 header on RS256 key", pss_as_rs.sign(&valid_claims())),
        ("ES256 header on RS256 key", es_header_on_rsa_kid),
        ("HS256 keyed with the public key", hmac_with_public_key),
        ("alg none", none_with_signature),
    ];
    for (name, token) in cases {
        assert_eq!(verifier.verify(&token).unwrap_err(), JwtRejection::DisallowedHeader, "{name}");
    }
}

#[test]
fn verify_looks_up_kid_exactly() {
    let verifier = verifier_with_all_keys();
    let key = TestKey::shared(SigningAlgorithm::Es256);

    for kid in [Value::from("K-ES256"), Value::from("k-ES256 "), Value::from("k-ES"), Value::from("")] {
        let token = key.sign_with_header(&json!({"alg": "ES256", "kid": kid}), &valid_claims());
        assert_eq!(verifier.verify(&token).unwrap_err(), JwtRejection::UnknownKey, "{kid}");
    }
    let no_kid = key.sign_with_header(&json!({"alg": "ES256"}), &valid_claims());
    assert_eq!(verifier.verify(&no_kid).unwrap_err(), JwtRejection::UnknownKey);
}

#[test]
fn verify_checks_required_type() {
    let key = TestKey::shared(SigningAlgorithm::EdDsa);
    let verifier = builder()
        .public_key_pem(&key.kid, key.algorithm, &key.public_pem)
        .required_type("at+jwt")
        .build()
        .unwrap();
    let header = |typ: Option<&str>| {
        let mut header = json!({"alg": "EdDSA", "kid": key.kid});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        header
    };

    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        assert!(verifier.verify(&key.sign_with_header(&header(Some(typ)), &valid_claims())).is_ok(), "{typ}");
    }
    for typ in [Some("JWT"), Some("jwt"), Some("application/jwt"), None] {
        let token = key.sign_with_header(&header(typ), &valid_claims());
        assert_eq!(verifier.verify(&token).unwrap_err(), JwtRejection::TypeMismatch, "{typ:?}");
    }
}

#[test]
fn verify_rejects_claims_by_kind() {
    let key = TestKey::shared(SigningAlgorithm::Es256);
    let verifier = builder()
        .public_key_pem(&key.kid, key.algorithm, &key.public_pem)
        .max_lifetime(Duration::from_secs(300))
        .require_claim("jti")
        .build()
        .unwrap();
    let now = unix_now();
    let mut no_iat = valid_claims();
    no_iat.as_object_mut().unwrap().remove("iat");
    let mut no_jti = valid_claims();
    no_jti.as_object_mut().unwrap().remove("jti");

    let cases = [
        ("expired", with_claim("exp", json!(now - 31)), JwtRejection::Expired),
        ("not yet valid", with_claim("nbf", json!(now + 60)), JwtRejection::NotYetValid),
        ("issued in the future", with_claim("iat", json!(now + 60)), JwtRejection::IssuedInFuture),
        ("lifetime too long", with_claim("exp", json!(now + 301)), JwtRejection::LifetimeTooLong),
        ("no iat with a maximum lifetime", no_iat, JwtRejection::InvalidClaims),
        ("required claim missing", no_jti, JwtRejection::InvalidClaims),
        ("required claim null", with_claim("jti", json!(null)), JwtRejection::InvalidClaims),
        ("exp as string", with_claim("exp", json!((now + 60).to_string())), JwtRejection::InvalidClaims),
        ("exp negative", with_claim("exp", json!(-5)), JwtRejection::InvalidClaims),
        ("exp absurd", with_claim("exp", json!(1e18)), JwtRejection::InvalidClaims),
        ("aud number", with_claim("aud", json!(7)), JwtRejection::InvalidClaims),
        ("aud of another service", with_claim("aud", json!(["api:payments"])), JwtRejection::AudienceMismatch),
        ("issuer differs", with_claim("iss", json!("https://evil.test")), JwtRejection::IssuerMismatch),
    ];
    for (name, claims, expected) in cases {
        assert_eq!(verifier.verify(&key.sign(&claims)).unwrap_err(), expected, "{name}");
    }
}

#[test]
fn verify_accepts_fractional_dates_and_audience_arrays() {
    let key = TestKey::shared(SigningAlgorithm::Es256);
    let verifier = builder().public_key_pem(&key.kid, key.algorithm, &key.public_pem).build().unwrap();
    let now = unix_now() as f64;
    let claims = json!({
        "iss": ISSUER, "sub": "s", "aud": ["api:payments", AUDIENCE],
        "iat": now - 0.5, "nbf": now - 0.25, "exp": now + 120.75,
    });

    let verified = verifier.verify(&key.sign(&claims)).unwrap();

    assert_eq!(verified.claims().exp, (now + 120.75) as u64);
}

#[test]
fn verify_rejects_duplicate_members() {
    let key = TestKey::shared(SigningAlgorithm::Es256);
    let verifier = builder().public_key_pem(&key.kid, key.algorithm, &key.public_pem).build().unwrap();
    let claims = valid_claims().to_string();
    let duplicate_aud = claims.replacen('{', r#"{"aud":"api:payments","#, 1);
    let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, key.kid);
    let duplicate_kid = format!(r#"{{"alg":"ES256","kid":"other","kid":"{}"}}"#, key.kid);

    assert_eq!(verifier.verify(&key.sign_raw(&header, &duplicate_aud)).unwrap_err(), JwtRejection::Malformed);
    assert_eq!(verifier.verify(&key.sign_raw(&duplicate_kid, &claims)).unwrap_err(), JwtRejection::Malformed);
    assert!(verifier.verify(&key.sign_raw(&header, &claims)).is_ok());
}

#[test]
fn verify_accepts_service_token_under_five_minute_maximum() {
    let key = TestKey::shared(SigningAlgorithm::Rs256);
    let issuer = crate::ServiceTokenIssuer::builder()
        .issuer(ISSUER)
        .private_key_pem(&key.kid, key.algorithm, &key.private_pem)
        .directory(crate::ServiceDirectory::new().with_service("orders", AUDIENCE))
        .build()
        .unwrap();
    let verifier = builder()
        .public_key_pem(&key.kid, key.algorithm, &key.public_pem)
        .max_lifetime(crate::DEFAULT_SERVICE_TOKEN_LIFETIME)
        .build()
        .unwrap();

    let token = issuer.mint("gateway", "orders").unwrap();

    assert_eq!(verifier.verify(token.expose()).unwrap().service_name(), Some("gateway"));
}

#[test]
fn cached_token_is_rechecked_against_clock() {
    let key = TestKey::shared(SigningAlgorithm::Es256);
    let clock = Arc::new(TestClock::new());
    let verifier = builder()
        .public_key_pem(&key.kid, key.algorithm, &key.public_pem)
        .clock(clock.clone())
        .build()
        .unwrap();
    let token = key.sign(&valid_claims());

    let first = verifier.verify(&token).unwrap();
    let second = verifier.verify(&token).unwrap();
    let cached = verifier.cache.as_ref().unwrap().len();
    clock.advance(Duration::from_secs(300 + 30));
    let after_expiry = verifier.verify(&token);

    assert_eq!(first, second);
    assert_eq!(cached, 1);
    assert_eq!(after_expiry.unwrap_err(), JwtRejection::Expired);
}

#[test]
fn cache_accepts_latest_numeric_date() {
    let key = TestKey::shared(SigningAlgorithm::Es256);
    let verifier = builder().public_key_pem(&key.kid, key.algorithm, &key.public_pem).build().unwrap();
    let token = key.sign(&with_claim("exp", json!(253_402_300_799_u64)));

    let first = verifier.verify(&token);
    let second = verifier.verify(&token);

    assert!(first.is_ok(), "{first:?}");
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(verifier.cache.as_ref().unwrap().len(), 1);
}

#[test]
fn cache_never_stores_rejected_tokens() {
    let key = TestKey::shared(SigningAlgorithm::Es256);
    let verifier = builder().public_key_pem(&key.kid, key.algorithm, &key.public_pem).build().unwrap();
    let wrong_audience = key.sign(&with_claim("aud", json!("api:payments")));

    for _ in 0..3 {
        assert_eq!(verifier.verify(&wrong_audience).unwrap_err(), JwtRejection::AudienceMismatch);
    }

    assert_eq!(verifier.cache.as_ref().unwrap().len(), 0);
}

#[test]
fn verify_without_cache_checks_every_time() {
    let key = TestKey::shared(SigningAlgorithm::EdDsa);
    let verifier = builder()
        .public_key_pem(&key.kid, key.algorithm, &key.public_pem)
        .without_token_cache()
        .build()
        .unwrap();
    let token = key.sign(&valid_claims());

    assert!(verifier.verify(&token).is_ok());
    assert!(verifier.verify(&token).is_ok());
    assert!(verifier.cache.is_none());
}

#[test]
fn verify_never_panics_on_mutated_tokens() {
    let verifier = verifier_with_all_keys();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"ABCxyz019-_.=+/ \x00{}\"";

    for algorithm in SigningAlgorithm::ALL {
        let token = TestKey::shared(algorithm).sign(&valid_claims()).into_bytes();
        for _ in 0..400 {
            let mut mutated = token.clone();
            match next() % 3 {
                0 => {
                    let at = (next() as usize) % mutated.len();
                    mutated[at] = alphabet[(next() as usize) % alphabet.len()];
                }
                1 => mutated.truncate((next() as usize) % mutated.len()),
                _ => {
                    let at = (next() as usize) % mutated.len();
                    mutated.insert(at, alphabet[(next() as usize) % alphabet.len()]);
                }
            }
            let text = String::from_utf8_lossy(&mutated);
            let _ = verifier.verify(&text);
        }
    }
}

#[test]
fn builder_rejects_incomplete_configuration() {
    let key = TestKey::shared(SigningAlgorithm::Rs256);
    let ec = TestKey::shared(SigningAlgorithm::Es384);
    let complete = || builder().rsa_public_key_pem("k1", &key.public_pem);

    let no_audience = JwtVerifier::builder().issuer(ISSUER).rsa_public_key_pem("k1", &key.public_pem).build().unwrap_err();
    let empty_audience = complete().audience("").build().unwrap_err();
    let no_issuer = JwtVerifier::builder().audience(AUDIENCE).build().unwrap_err();
    let no_keys = builder().build().unwrap_err();
    let bad_key = complete().rsa_public_key_pem("k2", "junk").build().unwrap_err();
    let wrong_curve = complete().public_key_pem("k2", SigningAlgorithm::Es256, &ec.public_pem).build().unwrap_err();
    let duplicate = complete().rsa_public_key_pem("k1", &key.public_pem).build().unwrap_err();
    let leeway = complete().leeway(Duration::from_secs(301)).build().unwrap_err();
    let lifetime = complete().max_lifetime(Duration::ZERO).build().unwrap_err();
    let empty_type = complete().required_type("").build().unwrap_err();
    let empty_claim = complete().require_claim("").build().unwrap_err();
    let empty_jwks = complete().jwks_json(r#"{"keys":[]}"#).build().unwrap_err();
    let missing_file = complete().jwks_file("/nonexistent/jwks.json").build().unwrap_err();

    assert!(matches!(no_audience, JwtConfigError::MissingAudience));
    assert!(matches!(empty_audience, JwtConfigError::MissingAudience));
    assert!(matches!(no_issuer, JwtConfigError::MissingIssuer));
    assert!(matches!(no_keys, JwtConfigError::NoKeys));
    assert!(matches!(bad_key, JwtConfigError::InvalidKey { ref kid, .. } if kid == "k2"));
    assert!(matches!(wrong_curve, JwtConfigError::InvalidKey { ref kid, .. } if kid == "k2"));
    assert!(matches!(duplicate, JwtConfigError::InvalidKeyId(_)));
    assert!(matches!(leeway, JwtConfigError::LeewayTooLarge(_)));
    assert!(matches!(lifetime, JwtConfigError::ZeroMaxLifetime));
    assert!(matches!(empty_type, JwtConfigError::EmptyRequirement(_)));
    assert!(matches!(empty_claim, JwtConfigError::EmptyRequirement(_)));
    assert!(matches!(empty_jwks, JwtConfigError::InvalidJwks(_)));
    assert!(matches!(missing_file, JwtConfigError::InvalidJwks(ref message) if message.contains("/nonexistent/jwks.json")));
    assert!(complete().build().is_ok());
}

#[test]
fn jwks_skips_unusable_keys() {
    let rsa = TestKey::shared(SigningAlgorithm::Rs256).jwk.clone();
    let ec = TestKey::shared(SigningAlgorithm::Es256).jwk.clone();
    let ed = TestKey::shared(SigningAlgorithm::EdDsa).jwk.clone();
    let with = |jwk: &Value, name: &str, value: Value| {
        let mut jwk = jwk.clone();
        jwk[name] = value;
        jwk
    };
    let document = json!({"keys": [
        rsa,
        ec,
        with(&ed, "kid", json!("twice")),
        with(&ec, "kid", json!("twice")),
        with(&ec, "use", json!("enc")),
        with(&with(&rsa, "kid", json!("private")), "d", json!("AQAB")),
        with(&with(&ec, "kid", json!("hmac")), "alg", json!("HS256")),
        with(&with(&ec, "kid", json!("ops")), "key_ops", json!(["encrypt"])),
        with(&with(&ec, "kid", json!("curve")), "alg", json!("ES384")),
        {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
        {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
        {"kid": "no-kty"},
        "not an object",
    ]});

    let (keys, skipped) = KeySet::from_jwks_json(&document.to_string()).unwrap();

    assert_eq!(keys.kids(), vec!["k-ES256", "k-RS256"]);
    assert_eq!(keys.algorithm_of("k-RS256"), Some(SigningAlgorithm::Rs256));
    assert_eq!(skipped.len(), 10, "{skipped:?}");
    assert!(skipped.iter().any(|key| key.kid.as_deref() == Some("twice") && key.reason.contains("more than once")));
}

#[test]
fn jwks_rejects_documents_that_are_not_key_sets() {
    for document in ["[]", "{}", r#"{"keys":{}}"#, r#"{"keys":[],"keys":[]}"#, "nope"] {
        assert!(KeySet::from_jwks_json(document).is_err(), "{document}");
    }
}

#[test]
fn jwk_binds_rsa_without_alg_to_rs256() {
    let key = TestKey::shared(SigningAlgorithm::Rs256);
    let mut jwk = key.jwk.clone();
    jwk.as_object_mut().unwrap().remove("alg");
    let verifier = builder().jwk_json(&jwk.to_string()).build().unwrap();
    let pss = TestKey {
        kid: key.kid.clone(),
        algorithm: SigningAlgorithm::Ps256,
        private_pem: key.private_pem.clone(),
        public_pem: key.public_pem.clone(),
        jwk: jwk.clone(),
    };

    assert!(verifier.verify(&key.sign(&valid_claims())).is_ok());
    assert_eq!(verifier.verify(&pss.sign(&valid_claims())).unwrap_err(), JwtRejection::DisallowedHeader);
}

#[test]
fn every_config_error_formats_without_key_material() {
    let errors = [
        JwtConfigError::MissingAudience,
        JwtConfigError::MissingIssuer,
        JwtConfigError::NoKeys,
        JwtConfigError::InvalidKeyId(String::new()),
        JwtConfigError::InvalidKey { kid: "k".into(), message: "bad".into() },
        JwtConfigError::InvalidJwks("bad".into()),
        JwtConfigError::LeewayTooLarge(Duration::from_secs(600)),
        JwtConfigError::ZeroMaxTokenBytes,
        JwtConfigError::ZeroMaxLifetime,
        JwtConfigError::EmptyRequirement("claim name"),
    ];

    for error in errors {
        let text = error.to_string();
        assert!(!text.is_empty());
        assert!(!text.contains("PRIVATE KEY"));
    }
}
