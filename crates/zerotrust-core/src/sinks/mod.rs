//! Event sinks for SIEM pipelines: OCSF-shaped JSON lines, an HTTP webhook
//! (feature `webhook`), and a rate limit per kind and identifier.

pub(crate) mod ocsf;
pub(crate) mod rate_limit;
#[cfg(feature = "webhook")]
pub(crate) mod webhook;

pub use ocsf::{JsonLinesSink, OCSF_VERSION, ocsf_json};
pub use rate_limit::{DEFAULT_MAX_TRACKED, RateLimitedSink};
#[cfg(feature = "webhook")]
pub use webhook::{WebhookConfig, WebhookError, WebhookSink};
