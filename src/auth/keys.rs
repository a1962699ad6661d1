//! Where the keys that verify tokens come from: the HS256 secret, a PEM public
//! key file re-read when it changes, or an identity provider's JWKS
//! ([`super::jwks`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use jsonwebtoken::{Algorithm, DecodingKey};

use super::jwks::Jwks;
use crate::reload::{Reloaded, spawn_poller};

/// The keys of the configured algorithm.
pub enum KeySource {
    /// The HS256 secret, for the life of the process.
    Fixed(Arc<DecodingKey>),
    /// A PEM public key file; a new key replaces the old one when the file
    /// changes.
    File(Arc<FileKey>),
    /// An identity provider's key set, chosen by the token's `kid`.
    Jwks(Arc<Jwks>),
}

impl KeySource {
    /// Moves whenever the keys change: a verification made with the keys of
    /// one generation stands only while it is current.
    pub fn generation(&self) -> u64 {
        match self {
            KeySource::Fixed(_) => 0,
            KeySource::File(file) => file.generation.load(Ordering::Acquire),
            KeySource::Jwks(jwks) => jwks.generation(),
        }
    }
}

/// A PEM public key, as last read from its file.
pub struct FileKey {
    path: PathBuf,
    current: RwLock<Arc<DecodingKey>>,
    /// Replacements of the key so far.
    generation: AtomicU64,
}

impl FileKey {
    /// Reads the key (an error stops the start), then polls the file every
    /// `interval` for a new one. The poller ends with the last holder of the
    /// key.
    pub fn watch(
        path: &Path,
        algorithm: Algorithm,
        interval: std::time::Duration,
    ) -> anyhow::Result<Arc<FileKey>> {
        let pem = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!("cannot read the public key file {}: {e}", path.display())
        })?;
        let key = parse_pem(algorithm, &pem).map_err(|e| {
            anyhow::anyhow!(
                "the public key file {} holds no {algorithm:?} public key: {e}",
                path.display()
            )
        })?;
        let file_key = Arc::new(FileKey {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(key)),
            generation: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&file_key);
        spawn_poller(
            "auth public key",
            vec![path.to_path_buf()],
            vec![pem],
            interval,
            move |contents| {
                let Some(file_key) = weak.upgrade() else {
                    return Reloaded::Stop;
                };
                match parse_pem(algorithm, &contents[0]) {
                    Ok(key) => {
                        file_key.replace(key);
                        tracing::info!(path = %file_key.path.display(), "new token public key in use");
                        Reloaded::Applied
                    }
                    Err(e) => Reloaded::Refused(format!(
                        "{} holds no {algorithm:?} public key: {e}",
                        file_key.path.display()
                    )),
                }
            },
        );
        Ok(file_key)
    }

    /// The key in use.
    pub fn current(&self) -> Arc<DecodingKey> {
        match self.current.read() {
            Ok(key) => key.clone(),
            // A writer never panics while holding the lock (it only assigns),
            // so the value is whole either way.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, key: DecodingKey) {
        let mut current = match self.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = Arc::new(key);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

fn parse_pem(algorithm: Algorithm, pem: &[u8]) -> jsonwebtoken::errors::Result<DecodingKey> {
    match algorithm {
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
        _ => DecodingKey::from_rsa_pem(pem),
    }
}
