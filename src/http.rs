//! Building the `reqwest::Client` the generated clients send through.

/// The `User-Agent` of every client the crate builds.
pub const USER_AGENT: &str = concat!("edgekv/", env!("CARGO_PKG_VERSION"));

/// A `reqwest::ClientBuilder` set up for these APIs: the crate's `User-Agent`, and with the
/// `rustls` feature, the `ring` crypto provider installed if the process has none yet.
///
/// ```
/// let http = edgekv::http::client_builder().build().expect("a TLS backend is available");
/// # drop(http);
/// ```
pub fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder().user_agent(USER_AGENT)
}

/// With the `rustls` feature, reqwest needs a process-wide crypto provider before it can build a
/// client. `ring` is chosen over reqwest's default `aws-lc-rs` for the build cost of every
/// dependent (see the README). A provider the application installed first is kept.
pub(crate) fn install_crypto_provider() {
    #[cfg(feature = "rustls")]
    {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: any installed provider serves.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    }
}
