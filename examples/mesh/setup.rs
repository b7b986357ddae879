//! The mesh's shared material: PKI, token keys, event sink, and the files written for other tools.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zerotrust::core::{MemorySink, SharedSink};
use zerotrust::jwt::{ServiceDirectory, ServiceTokenIssuer};
use zerotrust::mtls::ClientTlsBuilder;
use zerotrust_testkit::pki::{DevPki, write_private};
use zerotrust_testkit::tokens::SigningKeyPair;

use super::events::PrintingSink;
use super::services::Endpoints;

pub(crate) const TRUST_DOMAIN: &str = "zerotrust.test";
pub(crate) const TOKEN_ISSUER: &str = "https://issuer.zerotrust.test";
pub(crate) const SERVICES: [(&str, &str); 3] = [
    ("gateway", "api:gateway"),
    ("orders", "api:orders"),
    ("payments", "api:payments"),
];

/// Everything the three services share.
pub(crate) struct Mesh {
    pub(crate) pki: DevPki,
    pub(crate) signing_key: SigningKeyPair,
    pub(crate) issuer: Arc<ServiceTokenIssuer>,
    pub(crate) events: Arc<MemorySink>,
    printing: Arc<PrintingSink>,
    pub(crate) dir: PathBuf,
}

impl Mesh {
    /// Generates the PKI and the token key, and writes them under `dir`.
    pub(crate) fn generate(dir: PathBuf, print_events: bool) -> Result<Self, Box<dyn std::error::Error>> {
        let names: Vec<&str> = SERVICES.iter().map(|(name, _)| *name).collect();
        let pki = DevPki::generate(TRUST_DOMAIN, &names)?;
        let signing_key = SigningKeyPair::generate_rs256("mesh-1")?;

        let mut directory = ServiceDirectory::new();
        for (name, audience) in SERVICES {
            directory = directory.with_service(name, audience);
        }
        let issuer = ServiceTokenIssuer::builder()
            .issuer(TOKEN_ISSUER)
            .rsa_private_key_pem(&signing_key.kid, &signing_key.private_key_pem)
            .directory(directory)
            .build()?;

        pki.write_to(&dir)?;
        write_private(&dir.join("token-signing-key.pem"), &signing_key.private_key_pem)?;
        std::fs::write(dir.join("token-signing-public.pem"), &signing_key.public_key_pem)?;

        let events = Arc::new(MemorySink::new(100_000));
        let printing = Arc::new(PrintingSink {
            memory: events.clone(),
            print: print_events,
        });
        Ok(Self {
            pki,
            signing_key,
            issuer: Arc::new(issuer),
            events,
            printing,
            dir,
        })
    }

    /// Returns the sink every layer sends its events to.
    pub(crate) fn sink(&self) -> SharedSink {
        self.printing.clone()
    }

    /// Builds the outbound TLS configuration of `service` (or no client certificate for `None`).
    pub(crate) fn client_tls(&self, service: &str) -> Result<Arc<rustls::ClientConfig>, Box<dyn std::error::Error>> {
        let leaf = self.pki.service(service).ok_or("service missing from the PKI")?;
        Ok(ClientTlsBuilder::new()
            .trust_bundle_pem(self.pki.ca_cert_pem())
            .client_certificate_pem(&leaf.cert_pem, &leaf.key_pem)
            .build()?)
    }

    /// Builds a TLS configuration with no client certificate.
    pub(crate) fn anonymous_tls(&self) -> Result<Arc<rustls::ClientConfig>, Box<dyn std::error::Error>> {
        Ok(ClientTlsBuilder::new().trust_bundle_pem(self.pki.ca_cert_pem()).build()?)
    }

    /// Writes `mesh.json`: services, token issuer and key id, and the demo API key.
    pub(crate) fn write_manifest(&self, endpoints: &Endpoints, demo_key: &str) -> std::io::Result<()> {
        let urls = [&endpoints.gateway, &endpoints.orders, &endpoints.payments];
        let services: Vec<_> = SERVICES
            .iter()
            .zip(urls)
            .map(|((name, audience), url)| {
                serde_json::json!({
                    "name": name,
                    "url": url,
                    "spiffe_id": format!("spiffe://{TRUST_DOMAIN}/{name}"),
                    "audience": audience,
                    "certificate": format!("{name}.pem"),
                    "private_key": format!("{name}-key.pem"),
                })
            })
            .collect();
        let manifest = serde_json::json!({
            "trust_domain": TRUST_DOMAIN,
            "ca_certificate": "ca.pem",
            "ca_private_key": "ca-key.pem",
            "services": services,
            "token": {
                "issuer": TOKEN_ISSUER,
                "kid": self.signing_key.kid,
                "algorithm": "RS256",
                "private_key": "token-signing-key.pem",
                "public_key": "token-signing-public.pem",
            },
            "demo_api_key": demo_key,
        });
        let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
        // The manifest contains the demo API key, so only its owner may read it.
        write_private(&self.dir.join("mesh.json"), &text).map_err(std::io::Error::other)
    }
}

/// Returns `target/zerotrust-mesh`, next to the example binary's build directory.
pub(crate) fn default_dir() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .filter(|dir| dir.file_name().is_some_and(|name| name == "target"))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("zerotrust-mesh")
}
