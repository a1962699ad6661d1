//! What a measurement cost besides its time: the WAL a PostgreSQL cluster
//! wrote (`pg_stat_wal` before and after, over the calls made) and the CPU
//! time the server processes, the local PostgreSQL processes and this
//! benchmark spent (`/proc`, before and after, over the calls made).
//!
//! Rates on a small shared machine move by a third between runs; both of
//! these barely move, so they show what a change to the write path saves, and
//! the CPU shows where the cores went: a phase whose processes use every core
//! is bound by them, not by a lock. Both count everything on the machine or
//! the cluster, so nothing else should run meanwhile.

use std::collections::HashMap;
use std::time::Instant;

use orgs::store::Db;
use sea_orm::DbBackend;

use crate::load::Measured;

/// Meters a measurement: see the module's doc.
pub struct Meters {
    wal: Option<Db>,
    servers: Vec<u32>,
    postgres: bool,
}

/// CPU seconds spent so far by the servers and by this benchmark.
#[derive(Default, Clone, Copy)]
struct Cpu {
    server: f64,
    client: f64,
}

impl Meters {
    /// `servers`: the process ids of the servers under test. The PostgreSQL
    /// processes are metered when `url` names a PostgreSQL database on this
    /// machine.
    pub async fn connect(url: Option<&str>, servers: Vec<u32>) -> anyhow::Result<Meters> {
        let local_postgres = url.is_some_and(is_local_postgres);
        let wal = match url {
            Some(url) => {
                let db = Db::connect(url, 1).await?;
                if db.backend() == DbBackend::Postgres {
                    Some(db)
                } else {
                    db.close().await;
                    None
                }
            }
            None => None,
        };
        Ok(Meters {
            wal,
            servers,
            postgres: local_postgres,
        })
    }

    /// Bytes of WAL written so far (PostgreSQL 14 and later).
    async fn wal_bytes(&self) -> anyhow::Result<i64> {
        let Some(db) = &self.wal else { return Ok(0) };
        Ok(orgs::store::fetch_i64(
            db.conn(),
            "SELECT wal_bytes::bigint FROM pg_stat_wal",
            vec![],
        )
        .await?)
    }

    fn cpu(&self) -> Cpu {
        Cpu {
            server: self
                .servers
                .iter()
                .filter_map(|pid| cpu_seconds(&format!("/proc/{pid}/stat")))
                .sum(),
            client: cpu_seconds("/proc/self/stat").unwrap_or(0.0),
        }
    }

    /// Runs a measurement; returns it with what it cost per call, as
    /// `; N B WAL per call; CPU per call: …`, with nothing for what cannot be
    /// read.
    pub async fn around(
        &self,
        measurement: impl Future<Output = anyhow::Result<Measured>>,
    ) -> anyhow::Result<(Measured, String)> {
        let wal_before = self.wal_bytes().await?;
        let postgres_before = self.postgres.then(postgres_cpu_seconds);
        let cpu_before = self.cpu();
        let started = Instant::now();
        let measured = measurement.await?;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu_after = self.cpu();
        let server = cpu_after.server - cpu_before.server;
        let client = cpu_after.client - cpu_before.client;
        // A backend started meanwhile (a pool filling up) counts its whole
        // life; one that ended meanwhile is missed after `before`.
        let postgres = postgres_before.map_or(0.0, |before| {
            postgres_cpu_seconds()
                .iter()
                .map(|(pid, seconds)| seconds - before.get(pid).copied().unwrap_or(0.0))
                .sum::<f64>()
        });
        if measured.ok == 0 {
            return Ok((measured, String::new()));
        }
        let calls = measured.ok as f64;
        let mut note = String::new();
        if self.wal.is_some() {
            let written = self.wal_bytes().await? - wal_before;
            note.push_str(&format!("; {:.0} B WAL per call", written as f64 / calls));
        }
        let mut parts = Vec::new();
        if !self.servers.is_empty() {
            parts.push(format!("server {:.0}", server / calls * 1e6));
        }
        if self.postgres {
            parts.push(format!("PostgreSQL {:.0}", postgres / calls * 1e6));
        }
        parts.push(format!("client {:.0}", client / calls * 1e6));
        let cores = (server + postgres + client) / elapsed.max(f64::MIN_POSITIVE);
        note.push_str(&format!(
            "; CPU µs per call: {} ({cores:.2} cores)",
            parts.join(", ")
        ));
        Ok((measured, note))
    }

    pub async fn close(self) {
        if let Some(db) = self.wal {
            db.close().await;
        }
    }
}

/// Whether `url` names a PostgreSQL server on this machine, whose processes
/// can be read in `/proc`.
fn is_local_postgres(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    matches!(parsed.scheme(), "postgres" | "postgresql")
        && matches!(
            parsed.host_str(),
            None | Some("" | "localhost" | "127.0.0.1" | "[::1]" | "::1")
        )
}

/// User and system CPU seconds of a process or thread, from its `stat` file.
fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // The command name is in parentheses and may hold spaces: count the
    // fields after its closing one (state is field 3, utime 14, stime 15).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / USER_HZ)
}

/// CPU seconds of every process named `postgres`, by process id.
fn postgres_cpu_seconds() -> HashMap<u32, f64> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim_end() == "postgres")
                .then(|| cpu_seconds(&format!("/proc/{pid}/stat")).map(|cpu| (pid, cpu)))?
        })
        .collect()
}

/// The clock ticks per second in which `/proc` counts CPU time: `USER_HZ`,
/// part of Linux's interface to user space, 100 on every architecture that
/// runs this.
const USER_HZ: f64 = 100.0;
