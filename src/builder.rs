//! What both providers' `ClientBuilder`s hold and how they build. The public builders stay one per
//! provider on purpose (each names its own credential, default base URL and caveats, and the
//! Cloudflare one an account); only these internals are shared.

use crate::error::{Error, Provider};
use crate::policy::RequestPolicy;
use crate::transport::{Credential, Transport};

/// A builder's settings, as the caller left them.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) credential: Credential,
    pub(crate) base_url: String,
    pub(crate) http: Option<reqwest::Client>,
    pub(crate) policy: RequestPolicy,
}

impl Settings {
    /// `credential` at `base_url`, under the default policy, with an HTTP client built for it.
    pub(crate) fn new(credential: Credential, base_url: &str) -> Self {
        Settings {
            credential,
            base_url: base_url.to_string(),
            http: None,
            policy: RequestPolicy::default(),
        }
    }

    /// What the provider's generated client is made of: the transport, the HTTP client (see
    /// [`crate::transport::with_http_client`]) and the base URL without a trailing slash (the
    /// generated paths start with one). Fails if the credential cannot be sent as a header value
    /// or the HTTP client cannot be built.
    pub(crate) fn build(
        self,
        provider: Provider,
    ) -> Result<(Transport, reqwest::Client, String), Error> {
        if let Some(limit) = &self.policy.client_limit {
            limit.check()?;
        }
        let transport = Transport::new(self.credential)?.with_policy(self.policy);
        let (transport, http) = crate::transport::with_http_client(transport, self.http, provider)?;
        let mut base_url = self.base_url;
        base_url.truncate(base_url.trim_end_matches('/').len());
        Ok((transport, http, base_url))
    }
}

#[cfg(test)]
mod tests {
    use super::Settings;
    use crate::error::Provider;
    use crate::transport::Credential;

    #[test]
    fn the_base_url_loses_its_trailing_slashes() {
        for base_url in ["http://h/v4", "http://h/v4/", "http://h/v4//"] {
            let settings = Settings::new(Credential::FastlyToken("t".into()), base_url);
            let (_, _, built) = settings.build(Provider::Fastly).unwrap();
            assert_eq!(built, "http://h/v4", "{base_url}");
        }
    }

    #[test]
    fn a_credential_no_header_can_carry_fails_the_build() {
        let settings = Settings::new(Credential::FastlyToken("a\nb".into()), "http://h");
        assert!(settings.build(Provider::Fastly).is_err());
    }
}
