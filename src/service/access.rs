//! An in-process cache of who holds which role where and of organizations,
//! for `CheckPermission` and `GetOrganization`, the reads other services call
//! constantly. It follows the event log by the kinds of its events: this
//! process's own commits reach it before they return, other replicas'
//! commits when the log follower next reads the log, so every replica
//! converges on the database's answer within one poll interval.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::domain::events::EventKind;
use crate::domain::organizations::Organization;
use crate::events::follower::ChangeListener;
use crate::events::reader::Change;

/// At most this many memberships are cached; past it the cache starts over.
const CAPACITY: usize = 200_000;

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
    /// organization → its view, for `GetOrganization`.
    organizations: HashMap<String, Arc<Organization>>,
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

    /// A cached organization, or the generation to fill it with.
    pub fn organization(&self, organization_id: &str) -> Result<Arc<Organization>, u64> {
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

    /// Stores an organization read from the database, unless something was
    /// invalidated since `generation`.
    pub fn fill_organization(&self, generation: u64, organization: Organization) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.generation != generation {
            return;
        }
        if entries.organizations.len() >= CAPACITY {
            entries.organizations.clear();
        }
        entries
            .organizations
            .insert(organization.id.to_string(), Arc::new(organization));
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

    /// Forgets what a committed change of `kind` in `organization_id` may
    /// have changed.
    pub fn invalidate(&self, kind: Option<EventKind>, organization_id: &str) {
        let Some(kind) = kind else { return };
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        entries.generation += 1;
        if kind.changes_roles() {
            entries.roles.clear();
        }
        if kind.changes_organization() && !organization_id.is_empty() {
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
}

impl ChangeListener for AccessCache {
    fn changed(&self, changes: &[Change]) {
        for change in changes {
            self.invalidate(change.kind, &change.organization_id);
        }
    }

    fn lost_track(&self) {
        self.clear();
    }
}
