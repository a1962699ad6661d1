//! The transaction of one change, as the change sees it, and the events it
//! emits.

use serde::Serialize;

use super::scope::Scope;
use crate::domain::events::EventKind;
use crate::domain::ids::OrganizationId;
use crate::domain::time::Micros;
use crate::domain::{Actor, Error, Result};
use crate::events::NewEvent;

/// The transaction of one change, with the events it emits.
pub struct Tx {
    pub(super) txn: Scope,
    /// The time of the change.
    pub now: Micros,
    pub(super) actor: Actor,
    pub(super) request_id: Option<String>,
    pub(super) events: Vec<NewEvent>,
    /// Events a statement of the change wrote itself (PostgreSQL): not
    /// appended again, but the caches forget what they touched all the same.
    pub(super) written: Vec<NewEvent>,
    pub(super) commit_on_error: bool,
}

impl Tx {
    /// The connection the change's statements run on.
    pub fn conn(&self) -> &impl sea_orm::ConnectionTrait {
        &self.txn
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Records that the call changed `resource` (its state after the change;
    /// its last state for a deletion). The first event a call emits is its
    /// entry in the audit trail.
    pub fn emit(
        &mut self,
        kind: EventKind,
        organization_id: Option<&OrganizationId>,
        resource_id: &str,
        resource: &impl Serialize,
    ) -> Result<()> {
        let mut event = self.event(kind, organization_id, resource_id);
        event.payload = serde_json::to_value(resource).map_err(Error::internal)?;
        self.events.push(event);
        Ok(())
    }

    /// The event [`Self::emit`] would record next, with an empty payload:
    /// for a statement that writes the event itself
    /// ([`Self::emitted_by_statement`]).
    pub fn event(
        &self,
        kind: EventKind,
        organization_id: Option<&OrganizationId>,
        resource_id: &str,
    ) -> NewEvent {
        let audit = !self
            .events
            .iter()
            .chain(&self.written)
            .any(|event| event.audit);
        self.actor_event(Some(kind), organization_id, resource_id, audit)
    }

    /// An event of the call's actor, with an empty payload.
    fn actor_event(
        &self,
        kind: Option<EventKind>,
        organization_id: Option<&OrganizationId>,
        resource_id: &str,
        audit: bool,
    ) -> NewEvent {
        NewEvent {
            kind,
            action: self.actor.action.to_string(),
            actor: self.actor.sub.clone(),
            on_behalf_of: self.actor.on_behalf_of.clone().unwrap_or_default(),
            organization_id: organization_id.map(|id| id.to_string()).unwrap_or_default(),
            resource_id: resource_id.to_string(),
            request_id: self.request_id.clone().unwrap_or_default(),
            audit,
            payload: serde_json::Value::Null,
            create_time: self.now,
        }
    }

    /// Records `event` (from [`Self::event`], its payload as written) as
    /// written by the change's own statement, in its transaction, after
    /// every lock the change takes (PostgreSQL only: the SQLite writer gives
    /// positions itself). It is not appended again.
    pub fn emitted_by_statement(&mut self, event: NewEvent) {
        debug_assert_eq!(
            sea_orm::ConnectionTrait::get_database_backend(&self.txn),
            sea_orm::DbBackend::Postgres
        );
        self.written.push(event);
    }

    /// Records a fact that follows from the change (an organization became
    /// billable): not an entry of the audit trail.
    pub fn emit_derived(
        &mut self,
        kind: EventKind,
        organization_id: Option<&OrganizationId>,
        payload: &impl Serialize,
    ) -> Result<()> {
        let payload = serde_json::to_value(payload).map_err(Error::internal)?;
        let organization_id = organization_id.map(|id| id.to_string()).unwrap_or_default();
        self.events.push(NewEvent {
            kind: Some(kind),
            action: kind.as_str().to_string(),
            actor: String::new(),
            on_behalf_of: String::new(),
            resource_id: organization_id.clone(),
            organization_id,
            request_id: String::new(),
            audit: false,
            payload,
            create_time: self.now,
        });
        Ok(())
    }

    /// Records in the audit trail an attempt that changed nothing a reader
    /// sees (a wrong verification code, an email that did not match), with
    /// no event for other services. Kept when the call then fails with
    /// [`Self::commit_on_error`].
    pub fn audit_only(&mut self, organization_id: Option<&OrganizationId>, resource_id: &str) {
        let mut event = self.actor_event(None, organization_id, resource_id, true);
        event.payload = serde_json::Value::Object(Default::default());
        self.events.push(event);
    }

    /// Keeps what the change wrote even though it fails (a wrong verification
    /// code still counts as an attempt).
    pub fn commit_on_error(&mut self) {
        self.commit_on_error = true;
    }
}
