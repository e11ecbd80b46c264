//! Building the `reqwest::Client` the generated clients send through.

use crate::policy::Timeouts;

/// The `User-Agent` of every client the crate builds.
pub const USER_AGENT: &str = concat!("edgekv/", env!("CARGO_PKG_VERSION"));

/// A `reqwest::ClientBuilder` set up for these APIs with the default [`Timeouts`]; see
/// [`client_builder_with`].
///
/// ```
/// let http = edgekv::http::client_builder().build().expect("a TLS backend is available");
/// # drop(http);
/// ```
pub fn client_builder() -> reqwest::ClientBuilder {
    client_builder_with(&Timeouts::default())
}

/// A `reqwest::ClientBuilder` set up for these APIs: the crate's `User-Agent`, the connect and
/// idle-read timeouts, redirects followed only within the same origin (credentials are added to
/// every request, so a redirect to another host must not be followed), and with the `rustls`
/// feature, the `ring` crypto provider installed if the process has none yet.
///
/// A client of your own should do the same about redirects:
/// `.redirect(reqwest::redirect::Policy::none())` is the simplest.
pub fn client_builder_with(timeouts: &Timeouts) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.idle_read)
        .redirect(same_origin_redirects())
}

/// Follows up to 5 redirects that keep the method and body (307, 308), and none that leaves
/// the origin of the first request. A 301, 302 or 303 would turn a write into a `GET` whose
/// success reads as the write's: it comes back as an undocumented status instead.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let leaves_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() != attempt.url().origin());
        let keeps_method = matches!(attempt.status().as_u16(), 307 | 308);
        if leaves_origin || !keeps_method || attempt.previous().len() > 5 {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// With the `rustls` feature, reqwest needs a process-wide crypto provider before it can build a
/// client. `ring` is chosen over reqwest's default `aws-lc-rs` for the build cost of every
/// dependent (a clean release build of a one-call dependent took 70 s with ring, 140 s with
/// aws-lc-rs; see the README). A provider the application installed first is kept, so an
/// application that wants post-quantum key exchange installs aws-lc-rs's before the first client.
pub(crate) fn install_crypto_provider() {
    #[cfg(feature = "rustls")]
    {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // rustls 0.23.48 deprecates this function, and rustls has no other entry point to its
            // ring provider: the deprecation says what it lacks, no post-quantum key exchange
            // (X25519MLKEM768 comes only with aws-lc-rs), and is not a defect to fix here. This
            // crate keeps ring for build cost, says so (and how to get post-quantum key exchange)
            // in the README, and keeps any provider installed before it. `allow` rather than
            // `expect`: a dependent's lockfile may hold a rustls 0.23 from before the deprecation.
            #[allow(deprecated)]
            let provider = rustls::crypto::ring::default_provider();
            // Losing a race with another installer is fine: any installed provider serves.
            let _ = provider.install_default();
        }
    }
}
