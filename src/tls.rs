//! TLS: the one rustls crypto provider of the process (ring).

/// Makes ring the process's rustls provider, which the JWKS client takes.
/// Calling it again, or after someone else installed one, changes nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
