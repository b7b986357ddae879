//! Verification cost per token: a full check (cache miss) and a cache hit, for
//! RS256, ES256 and EdDSA.
//!
//! Run with `cargo xtask bench` or `cargo bench -p zerotrust-jwt`.

#![allow(missing_docs, reason = "criterion_group! generates an undocumented public function")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use zerotrust_jwt::{JwtVerifier, JwtVerifierBuilder, ServiceDirectory, ServiceTokenIssuer, SigningAlgorithm};

const ISSUER: &str = "https://issuer.zerotrust.test";
const AUDIENCE: &str = "api:orders";

/// Mints a service token with a fresh key for `algorithm`, and returns it with a
/// verifier builder that has the public key.
fn token_and_builder(algorithm: SigningAlgorithm) -> (String, JwtVerifierBuilder) {
    let pair = match algorithm {
        SigningAlgorithm::Rs256 => rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048),
        SigningAlgorithm::Es256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        SigningAlgorithm::EdDsa => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519),
        other => panic!("no benchmark key for {other}"),
    }
    .expect("key generation failed");
    let issuer = ServiceTokenIssuer::builder()
        .issuer(ISSUER)
        .private_key_pem("bench", algorithm, &pair.serialize_pem())
        .directory(ServiceDirectory::new().with_service("orders", AUDIENCE))
        .build()
        .expect("issuer configuration is valid");
    let token = issuer.mint("gateway", "orders").expect("minting succeeds").expose().to_owned();
    let builder = JwtVerifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .public_key_pem("bench", algorithm, &pair.public_key_pem());
    (token, builder)
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    for algorithm in [SigningAlgorithm::Rs256, SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
        let (token, builder) = token_and_builder(algorithm);
        let uncached = builder.without_token_cache().build().expect("verifier configuration is valid");
        group.bench_with_input(BenchmarkId::new("cache_miss", algorithm), &token, |b, token| {
            b.iter(|| uncached.verify(black_box(token)).expect("token is valid"));
        });
    }
    for algorithm in [SigningAlgorithm::Rs256, SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
        let (token, builder) = token_and_builder(algorithm);
        let cached = builder.build().expect("verifier configuration is valid");
        cached.verify(&token).expect("token is valid");
        group.bench_with_input(BenchmarkId::new("cache_hit", algorithm), &token, |b, token| {
            b.iter(|| cached.verify(black_box(token)).expect("token is valid"));
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
