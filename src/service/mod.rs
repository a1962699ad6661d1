//! Use cases. Each call is one transaction ([`Work`]) that appends its events to
//! the log before it commits, or rolls everything back for `validate_only`.

pub mod access;
pub mod billing;
pub mod domains;
pub mod invitations;
pub mod organizations;
pub mod roles;

use std::sync::Arc;

use sea_orm::DatabaseTransaction;
use serde::{Serialize, de::DeserializeOwned};

use crate::config::ServeConfig;
use crate::domain::time::{Clock, Micros};
use crate::domain::{Actor, Error, Reason, Result};
use crate::events::{self, NewEvent, Notifier};
use crate::store::{self, Db, repo::idempotency};
use crate::telemetry::metrics::Metrics;

/// How long idempotency records are kept, in microseconds (at least 24 hours).
const IDEMPOTENCY_RETENTION_MICROS: Micros = 48 * 3600 * 1_000_000;

/// Everything the use cases need.
#[derive(Debug, Clone)]
pub struct Services {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ServeConfig>,
    pub notifier: Notifier,
    /// Becomes true when the server starts shutting down; long-lived streams
    /// end with UNAVAILABLE then.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The Prometheus metrics: `metrics.watch_stream_opened()` for watch
    /// streams, `metrics.set_billing_period(..)` or `metrics.on_scrape(..)` for
    /// the billing gauges.
    pub metrics: Metrics,
    /// Users known to be active per period, and the log poller of watches.
    pub billing: Arc<billing::BillingState>,
    /// Roles by organization and user, for `CheckPermission`.
    pub access: access::AccessCache,
}

/// The idempotency key of a create or accept call: its `request_id` and a
/// fingerprint of the whole request.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub request_id: String,
    pub fingerprint: String,
}

/// One transaction with its outbox of events.
pub struct Work {
    pub txn: DatabaseTransaction,
    pub now: Micros,
    events: Vec<NewEvent>,
    notifier: Notifier,
    access: access::AccessCache,
    validate_only: bool,
}

/// The start of an idempotent call: a stored answer, or a transaction to run.
pub enum Begun<T> {
    Replay(T),
    Fresh(Work),
}

impl Services {
    pub fn now(&self) -> Micros {
        self.clock.now_micros()
    }

    /// Begins a write transaction.
    pub async fn begin(&self, validate_only: bool) -> Result<Work> {
        Ok(Work {
            txn: self.db.begin().await?,
            now: self.now(),
            events: Vec::new(),
            notifier: self.notifier.clone(),
            access: self.access.clone(),
            validate_only,
        })
    }

    /// Begins a write transaction for a call that may carry a `request_id`. The
    /// key is claimed first, so a concurrent call with the same key waits and
    /// then gets the first call's answer.
    pub async fn begin_idempotent<T: DeserializeOwned>(
        &self,
        actor: &Actor,
        idempotency: Option<&Idempotency>,
        validate_only: bool,
    ) -> Result<Begun<T>> {
        let work = self.begin(validate_only).await?;
        let Some(key) = idempotency.filter(|_| !validate_only) else {
            return Ok(Begun::Fresh(work));
        };
        if let Some(previous) = replay(&work.txn, actor, key, work.now).await? {
            work.rollback().await;
            return Ok(Begun::Replay(previous));
        }
        // An expired record of this key no longer counts; occasionally purge
        // every expired record.
        let cutoff = work.now - IDEMPOTENCY_RETENTION_MICROS;
        idempotency::delete_expired_claim(&work.txn, &actor.sub, &key.request_id, cutoff).await?;
        if rand::random_ratio(1, 256) {
            idempotency::purge(&work.txn, cutoff).await?;
        }
        let claimed = idempotency::claim(
            &work.txn,
            &actor.sub,
            &key.request_id,
            actor.action,
            &key.fingerprint,
            work.now,
        )
        .await;
        match claimed {
            Ok(_) => Ok(Begun::Fresh(work)),
            Err(err) if store::is_unique_violation(&err) => {
                work.rollback().await;
                // Another call holds or held this key: answer as it did.
                let now = self.now();
                match replay(self.db.conn(), actor, key, now).await? {
                    Some(previous) => Ok(Begun::Replay(previous)),
                    None => Err(Error::Unavailable(
                        Reason::DatabaseUnavailable,
                        "a call with the same request_id is in progress; retry".into(),
                    )),
                }
            }
            Err(err) => Err(err.into()),
        }
    }
}

async fn replay<T: DeserializeOwned>(
    conn: &impl sea_orm::ConnectionTrait,
    actor: &Actor,
    key: &Idempotency,
    now: Micros,
) -> Result<Option<T>> {
    let row = idempotency::get(
        conn,
        &actor.sub,
        &key.request_id,
        now - IDEMPOTENCY_RETENTION_MICROS,
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    if row.method != actor.action || row.fingerprint != key.fingerprint {
        return Err(Error::FailedPrecondition(
            Reason::RequestIdReused,
            "request_id was used before with different content".into(),
        ));
    }
    if row.response.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&row.response)
        .map(Some)
        .map_err(Error::internal)
}

impl Work {
    /// Records a change made by a caller in the audit trail.
    pub fn audit(
        &mut self,
        actor: &Actor,
        organization_id: &str,
        resource_id: &str,
        request_id: Option<&str>,
    ) {
        self.events.push(NewEvent {
            action: actor.action.to_string(),
            actor: actor.sub.clone(),
            on_behalf_of: actor.on_behalf_of.clone().unwrap_or_default(),
            organization_id: organization_id.to_string(),
            resource_id: resource_id.to_string(),
            request_id: request_id.unwrap_or_default().to_string(),
            audit: true,
            payload: serde_json::Value::Object(Default::default()),
            create_time: self.now,
        });
    }

    /// Records a derived event (not an audit entry), such as a billing transition.
    pub fn derived(&mut self, action: &str, organization_id: &str, payload: serde_json::Value) {
        self.events.push(NewEvent {
            action: action.to_string(),
            actor: String::new(),
            on_behalf_of: String::new(),
            organization_id: organization_id.to_string(),
            resource_id: organization_id.to_string(),
            request_id: String::new(),
            audit: false,
            payload,
            create_time: self.now,
        });
    }

    pub fn is_validate_only(&self) -> bool {
        self.validate_only
    }

    /// Commits (appending the events, and storing `response` under the
    /// idempotency key), or rolls back for `validate_only`.
    pub async fn finish<T: Serialize>(
        self,
        actor: &Actor,
        idempotency: Option<&Idempotency>,
        response: &T,
    ) -> Result<()> {
        if self.validate_only {
            self.rollback().await;
            return Ok(());
        }
        if let Some(key) = idempotency {
            let json = serde_json::to_string(response).map_err(Error::internal)?;
            idempotency::store_response(&self.txn, &actor.sub, &key.request_id, &json).await?;
        }
        self.commit().await
    }

    /// Ends a call with its result: on success records the audit event
    /// (`resource_id` names what was changed), stores the answer under the
    /// idempotency key and commits, or rolls back for `validate_only`; on error
    /// rolls back.
    pub async fn conclude<T: Serialize>(
        mut self,
        actor: &Actor,
        idempotency: Option<&Idempotency>,
        organization_id: impl FnOnce(&T) -> String,
        resource_id: impl FnOnce(&T) -> String,
        result: Result<T>,
    ) -> Result<T> {
        match result {
            Ok(value) => {
                self.audit(
                    actor,
                    &organization_id(&value),
                    &resource_id(&value),
                    idempotency.map(|k| k.request_id.as_str()),
                );
                self.finish(actor, idempotency, &value).await?;
                Ok(value)
            }
            Err(err) => {
                self.rollback().await;
                Err(err)
            }
        }
    }

    /// Appends the events and commits.
    pub async fn commit(self) -> Result<()> {
        let last_seq = events::append(&self.txn, &self.events).await?;
        self.txn.commit().await?;
        // Before the caller hears of the change, this process forgets what it
        // cached about it.
        self.access.invalidate_all(&self.events);
        if let Some(seq) = last_seq {
            self.notifier.committed(seq);
        }
        Ok(())
    }

    pub async fn rollback(self) {
        if let Err(err) = self.txn.rollback().await {
            tracing::warn!(error = %err, "rollback failed");
        }
    }
}
