//! An in-process cache of who holds which role where and of organization
//! rows, for `CheckPermission` and `GetOrganization`, the reads other services
//! call constantly. It is invalidated from the event
//! log: by this process's own commits before they return, and by other
//! replicas' commits when the log tail is polled, so every replica converges on
//! the database's answer within one poll interval.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::Services;
use crate::events::NewEvent;
use crate::store::repo::organizations::OrganizationRow;

/// How often other replicas' commits are looked for.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// At most this many memberships are cached; past it the cache starts over.
const CAPACITY: usize = 200_000;

/// Actions that change what a role grants.
const ROLE_ACTIONS: &[&str] = &[
    "CreateRole",
    "UpdateRole",
    "DeleteRole",
    "CreatePermission",
    "DeletePermission",
];

#[derive(Debug, Default)]
struct Entries {
    /// Bumped by every invalidation: a value read from the database before an
    /// invalidation is not stored after it.
    generation: u64,
    /// organization → user → role (`None`: not a member).
    members: HashMap<String, HashMap<String, Option<String>>>,
    member_count: usize,
    /// role → the permissions it grants.
    roles: HashMap<String, Arc<Vec<String>>>,
    /// organization → its row, for `GetOrganization`.
    organizations: HashMap<String, Arc<OrganizationRow>>,
}

/// The cache; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AccessCache {
    entries: Arc<RwLock<Entries>>,
}

/// What a lookup found.
pub enum Cached {
    /// The user's role (empty for none) and whether it grants the permission.
    Answer(bool, String),
    /// Not cached; read the database, then [`AccessCache::fill`] with this
    /// generation.
    Miss(u64),
}

impl AccessCache {
    pub fn check(&self, organization_id: &str, user_id: &str, permission: &str) -> Cached {
        let Ok(entries) = self.entries.read() else {
            return Cached::Miss(u64::MAX);
        };
        let role = entries
            .members
            .get(organization_id)
            .and_then(|users| users.get(user_id));
        match role {
            Some(None) => Cached::Answer(false, String::new()),
            Some(Some(role)) => match entries.roles.get(role) {
                Some(permissions) => {
                    Cached::Answer(permissions.iter().any(|p| p == permission), role.clone())
                }
                None => Cached::Miss(entries.generation),
            },
            None => Cached::Miss(entries.generation),
        }
    }

    /// Stores what the database said, unless something was invalidated since
    /// `generation` was handed out.
    pub fn fill(
        &self,
        generation: u64,
        organization_id: &str,
        user_id: &str,
        found: Option<(String, Vec<String>)>,
    ) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.generation != generation {
            return;
        }
        if entries.member_count >= CAPACITY {
            entries.members.clear();
            entries.member_count = 0;
        }
        let role = match found {
            Some((role, permissions)) => {
                entries.roles.insert(role.clone(), Arc::new(permissions));
                Some(role)
            }
            None => None,
        };
        let previous = entries
            .members
            .entry(organization_id.to_string())
            .or_default()
            .insert(user_id.to_string(), role);
        if previous.is_none() {
            entries.member_count += 1;
        }
    }

    /// A cached organization row, or the generation to fill it with.
    pub fn organization(&self, organization_id: &str) -> Result<Arc<OrganizationRow>, u64> {
        let Ok(entries) = self.entries.read() else {
            return Err(u64::MAX);
        };
        entries
            .organizations
            .get(organization_id)
            .cloned()
            .ok_or(entries.generation)
    }

    /// Whether `user_id` is known to be a member (`Some(false)`: known not to
    /// be), or `Err` with the generation to fill it with.
    pub fn is_member(&self, organization_id: &str, user_id: &str) -> Result<bool, u64> {
        let Ok(entries) = self.entries.read() else {
            return Err(u64::MAX);
        };
        match entries
            .members
            .get(organization_id)
            .and_then(|users| users.get(user_id))
        {
            Some(role) => Ok(role.is_some()),
            None => Err(entries.generation),
        }
    }

    /// Stores an organization row read from the database, unless something
    /// was invalidated since `generation`.
    pub fn fill_organization(&self, generation: u64, row: OrganizationRow) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.generation != generation {
            return;
        }
        if entries.organizations.len() >= CAPACITY {
            entries.organizations.clear();
        }
        entries.organizations.insert(row.id.clone(), Arc::new(row));
    }

    /// Stores a membership's role without its permissions (they are read
    /// when a permission check needs them).
    pub fn fill_role(&self, generation: u64, organization_id: &str, user_id: &str, role: &str) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.generation != generation || entries.member_count >= CAPACITY {
            return;
        }
        let previous = entries
            .members
            .entry(organization_id.to_string())
            .or_default()
            .insert(user_id.to_string(), Some(role.to_string()));
        if previous.is_none() {
            entries.member_count += 1;
        }
    }

    /// Forgets what a committed change may have changed.
    pub fn invalidate(&self, action: &str, organization_id: &str) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        entries.generation += 1;
        if ROLE_ACTIONS.contains(&action) {
            entries.roles.clear();
        }
        if !organization_id.is_empty() {
            entries.organizations.remove(organization_id);
            if let Some(users) = entries.members.remove(organization_id) {
                entries.member_count -= users.len();
            }
        }
    }

    /// Forgets everything (when the log cannot be read).
    pub fn clear(&self) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        entries.generation += 1;
        entries.members.clear();
        entries.member_count = 0;
        entries.roles.clear();
        entries.organizations.clear();
    }

    pub(crate) fn invalidate_all(&self, events: &[NewEvent]) {
        for event in events.iter().filter(|e| e.audit) {
            self.invalidate(&event.action, &event.organization_id);
        }
    }
}

impl Services {
    /// Follows the log for changes committed by other replicas until shutdown.
    pub fn spawn_access_invalidation(&self) -> tokio::task::JoinHandle<()> {
        let services = self.clone();
        tokio::spawn(async move {
            let mut shutdown = services.shutdown.clone();
            // Where this process starts following the log; until it knows,
            // nothing it caches can be trusted.
            let mut after: Option<i64> = None;
            loop {
                if after.is_none() {
                    after = crate::events::reader::head(services.db.conn()).await.ok();
                    services.access.clear();
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                    _ = shutdown.changed() => return,
                }
                let Some(position) = after else { continue };
                let changes =
                    crate::events::reader::changes_after(services.db.conn(), position, 1000).await;
                match changes {
                    Ok(changes) => {
                        for change in &changes {
                            services
                                .access
                                .invalidate(&change.action, &change.organization_id);
                            after = Some(change.seq);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot read the event log; access cache cleared");
                        services.access.clear();
                    }
                }
            }
        })
    }
}
