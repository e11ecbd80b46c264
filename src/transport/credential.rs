//! The credential of either API, kept as sensitive header values.

use std::fmt;

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};

use crate::error::InvalidInput;

/// A credential for one of the two APIs. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// A Fastly API token, sent as `Fastly-Key`.
    FastlyToken(String),
    /// A Cloudflare API token, sent as `Authorization: Bearer <token>`.
    CloudflareToken(String),
    /// Cloudflare's older account email and global API key, sent as `X-Auth-Email` and
    /// `X-Auth-Key`.
    CloudflareGlobalKey {
        /// The account's email address.
        email: String,
        /// The global API key.
        key: String,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::FastlyToken(_) => f.write_str("FastlyToken(<redacted>)"),
            Credential::CloudflareToken(_) => f.write_str("CloudflareToken(<redacted>)"),
            Credential::CloudflareGlobalKey { .. } => {
                f.write_str("CloudflareGlobalKey { email: <redacted>, key: <redacted> }")
            }
        }
    }
}

impl Credential {
    /// The secret parts, as they could be echoed.
    pub(crate) fn secrets(&self) -> Vec<String> {
        match self {
            Credential::FastlyToken(token) | Credential::CloudflareToken(token) => {
                vec![token.clone()]
            }
            Credential::CloudflareGlobalKey { email, key } => vec![email.clone(), key.clone()],
        }
    }

    /// The headers that carry this credential, marked sensitive (kept out of logs and HPACK
    /// tables).
    pub(crate) fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, InvalidInput> {
        let sensitive = |header: &'static str, value: &str| {
            let mut value =
                HeaderValue::from_str(value).map_err(|_| InvalidInput::Credential { header })?;
            value.set_sensitive(true);
            Ok::<_, InvalidInput>(value)
        };
        Ok(match self {
            Credential::FastlyToken(token) => {
                vec![(
                    HeaderName::from_static("fastly-key"),
                    sensitive("Fastly-Key", token)?,
                )]
            }
            Credential::CloudflareToken(token) => {
                vec![(
                    AUTHORIZATION,
                    sensitive("Authorization", &format!("Bearer {token}"))?,
                )]
            }
            Credential::CloudflareGlobalKey { email, key } => vec![
                (
                    HeaderName::from_static("x-auth-email"),
                    sensitive("X-Auth-Email", email)?,
                ),
                (
                    HeaderName::from_static("x-auth-key"),
                    sensitive("X-Auth-Key", key)?,
                ),
            ],
        })
    }
}
