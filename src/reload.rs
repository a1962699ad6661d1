//! Files that are re-read when they change: the PEM public key of the tokens
//! and the TLS certificate, key and client CA. Secrets mounted by Kubernetes
//! (and rotated by cert-manager) change by an atomic swap of a symlink, which
//! an mtime check can miss, so the poller compares contents; the files are a
//! few kilobytes.

use std::path::PathBuf;
use std::time::Duration;

/// What became of a new version of the files.
pub enum Reloaded {
    /// In use from now on.
    Applied,
    /// Not usable (say, a certificate whose key has not been written yet); the
    /// previous version stays in use and the files are read again at the next
    /// poll.
    Refused(String),
    /// Nobody uses them any more: stop polling.
    Stop,
}

/// Reads `paths` every `interval` and, when their contents differ from
/// `current`, hands the new contents (in the order of `paths`) to `apply`.
/// A file that cannot be read keeps the previous version in use; each new
/// problem is logged once.
pub fn spawn_poller<F>(
    what: &'static str,
    paths: Vec<PathBuf>,
    current: Vec<Vec<u8>>,
    interval: Duration,
    mut apply: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(&[Vec<u8>]) -> Reloaded + Send + 'static,
{
    tokio::spawn(async move {
        let mut seen = current;
        let mut last_problem: Option<String> = None;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let contents = match read_all(&paths).await {
                Ok(contents) => contents,
                Err(problem) => {
                    if last_problem.as_ref() != Some(&problem) {
                        tracing::warn!(what, problem = %problem, "cannot read for reload; keeping the version in use");
                        last_problem = Some(problem);
                    }
                    continue;
                }
            };
            if contents == seen {
                continue;
            }
            match apply(&contents) {
                Reloaded::Applied => {
                    tracing::info!(what, "reloaded");
                    seen = contents;
                    last_problem = None;
                }
                Reloaded::Refused(problem) => {
                    if last_problem.as_ref() != Some(&problem) {
                        tracing::warn!(what, problem = %problem, "changed but not usable; keeping the version in use");
                        last_problem = Some(problem);
                    }
                }
                Reloaded::Stop => return,
            }
        }
    })
}

async fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    let mut contents = Vec::with_capacity(paths.len());
    for path in paths {
        contents.push(
            tokio::fs::read(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?,
        );
    }
    Ok(contents)
}
