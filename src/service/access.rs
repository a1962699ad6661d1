//! An in-process cache of who holds which role where and of organizations,
//! for `CheckPermission` and `GetOrganization`, the reads other services call
//! constantly. It follows the event log by the kinds of its events: this
//! process's own commits reach it before they return, other replicas'
//! commits when the log follower next reads the log, so every replica
//! converges on the database's answer within one poll interval.
//!
//! Memory is bounded in bytes whatever callers send: memberships and
//! organizations live in LRUs (moka) weighted by an estimate of their size,
//! each with half of `ORGS_CACHE_MAX_BYTES`. Only what exists is cached: an
//! unknown organization, or a user who is not a member, is read from the
//! database every time (one indexed query) and leaves no entry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use moka::sync::Cache;

use crate::domain::events::EventKind;
use crate::domain::organizations::Organization;
use crate::events::follower::ChangeListener;
use crate::events::reader::Change;

/// The default of `ORGS_CACHE_MAX_BYTES`.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 128 * 1024 * 1024;
/// What an entry costs besides its strings: map slots, `Arc`s, moka's own
/// bookkeeping (an estimate on the high side).
const ENTRY_OVERHEAD: u32 = 160;

/// The members of one organization known to the cache: user → role.
#[derive(Debug, Default)]
struct KnownMembers {
    roles: Mutex<HashMap<String, String>>,
    /// The estimated bytes of `roles`, read by the weigher.
    bytes: AtomicU32,
}

/// The cache; cheap to clone.
#[derive(Clone)]
pub struct AccessCache {
    inner: Arc<Inner>,
}

struct Inner {
    /// Bumped by every invalidation: a value read from the database before an
    /// invalidation is not stored after it. Fills hold it shared while they
    /// store, invalidations exclusively.
    generation: RwLock<u64>,
    /// organization → its members known here.
    members: Cache<String, Arc<KnownMembers>>,
    /// The most bytes one organization's members may take.
    max_members_bytes: u32,
    /// role → the permissions it grants (as many as the catalogue has roles).
    roles: RwLock<HashMap<String, Arc<Vec<String>>>>,
    /// organization → its view, for `GetOrganization`.
    organizations: Cache<String, Arc<Organization>>,
}

impl std::fmt::Debug for AccessCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessCache").finish_non_exhaustive()
    }
}

impl Default for AccessCache {
    fn default() -> Self {
        AccessCache::new(DEFAULT_CACHE_MAX_BYTES)
    }
}

/// The size of one cache, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheSize {
    pub entries: u64,
    pub bytes: u64,
}

/// What a lookup found.
pub enum Cached {
    /// The user's role (empty for none) and whether it grants the permission.
    Answer(bool, String),
    /// Not cached; read the database, then [`AccessCache::fill`] with this
    /// generation.
    Miss(u64),
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// An estimate of the bytes an organization takes in memory: its strings and
/// its metadata as JSON (the parsed form is of the same order).
fn organization_bytes(organization: &Organization) -> u32 {
    let metadata = serde_json::to_vec(&organization.public_metadata).map_or(0, |v| v.len())
        + serde_json::to_vec(&organization.private_metadata).map_or(0, |v| v.len());
    let strings = organization.name.len()
        + organization.slug.len()
        + organization.external_id.as_ref().map_or(0, String::len)
        + 2 * organization.id.as_str().len()
        + organization
            .created_by
            .as_ref()
            .map_or(0, |u| u.as_str().len());
    saturating_u32(metadata + strings).saturating_add(ENTRY_OVERHEAD)
}

impl AccessCache {
    /// A cache taking at most about `max_bytes`: half for memberships, half
    /// for organizations.
    pub fn new(max_bytes: u64) -> Self {
        let half = (max_bytes / 2).max(1);
        let members = Cache::builder()
            .max_capacity(half)
            .weigher(|organization_id: &String, known: &Arc<KnownMembers>| {
                saturating_u32(organization_id.len())
                    .saturating_add(ENTRY_OVERHEAD)
                    .saturating_add(known.bytes.load(Ordering::Relaxed))
            })
            .build();
        let organizations = Cache::builder()
            .max_capacity(half)
            .weigher(|_: &String, organization: &Arc<Organization>| {
                organization_bytes(organization)
            })
            .build();
        AccessCache {
            inner: Arc::new(Inner {
                generation: RwLock::new(0),
                members,
                max_members_bytes: u32::try_from(half / 8).unwrap_or(u32::MAX),
                roles: RwLock::new(HashMap::new()),
                organizations,
            }),
        }
    }

    fn generation(&self) -> u64 {
        *self
            .inner
            .generation
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn role_of(&self, organization_id: &str, user_id: &str) -> Option<String> {
        let known = self.inner.members.get(organization_id)?;
        let roles = known.roles.lock().unwrap_or_else(PoisonError::into_inner);
        roles.get(user_id).cloned()
    }

    pub fn check(&self, organization_id: &str, user_id: &str, permission: &str) -> Cached {
        let generation = self.generation();
        let Some(role) = self.role_of(organization_id, user_id) else {
            return Cached::Miss(generation);
        };
        let roles = self
            .inner
            .roles
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match roles.get(&role) {
            Some(permissions) => Cached::Answer(permissions.iter().any(|p| p == permission), role),
            None => Cached::Miss(generation),
        }
    }

    /// Stores what the database said, unless something was invalidated since
    /// `generation` was handed out. Nothing is stored for a user who is not
    /// a member (or an organization that does not exist).
    pub fn fill(
        &self,
        generation: u64,
        organization_id: &str,
        user_id: &str,
        found: Option<(String, Vec<String>)>,
    ) {
        let Some((role, permissions)) = found else {
            return;
        };
        let current = self
            .inner
            .generation
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if *current != generation {
            return;
        }
        self.inner
            .roles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(role.clone(), Arc::new(permissions));
        self.store_role(organization_id, user_id, role);
    }

    /// Adds a member's role; the caller holds the generation shared.
    fn store_role(&self, organization_id: &str, user_id: &str, role: String) {
        let known = self
            .inner
            .members
            .get_with(organization_id.to_string(), Default::default);
        {
            let mut roles = known.roles.lock().unwrap_or_else(PoisonError::into_inner);
            let added = saturating_u32(user_id.len() + role.len()).saturating_add(ENTRY_OVERHEAD);
            let bytes = known.bytes.load(Ordering::Relaxed);
            if roles.contains_key(user_id)
                || bytes.saturating_add(added) > self.inner.max_members_bytes
            {
                return;
            }
            roles.insert(user_id.to_string(), role);
            known
                .bytes
                .store(bytes.saturating_add(added), Ordering::Relaxed);
        }
        // Inserted again so that the cache weighs it anew.
        self.inner
            .members
            .insert(organization_id.to_string(), known);
    }

    /// A cached organization, or the generation to fill it with.
    pub fn organization(&self, organization_id: &str) -> Result<Arc<Organization>, u64> {
        let generation = self.generation();
        self.inner
            .organizations
            .get(organization_id)
            .ok_or(generation)
    }

    /// Whether `user_id` is known to be a member, or `Err` with the
    /// generation to fill it with (non-members are not cached).
    pub fn is_member(&self, organization_id: &str, user_id: &str) -> Result<bool, u64> {
        let generation = self.generation();
        match self.role_of(organization_id, user_id) {
            Some(_) => Ok(true),
            None => Err(generation),
        }
    }

    /// Stores an organization read from the database, unless something was
    /// invalidated since `generation`.
    pub fn fill_organization(&self, generation: u64, organization: Organization) {
        let current = self
            .inner
            .generation
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if *current != generation {
            return;
        }
        self.inner
            .organizations
            .insert(organization.id.to_string(), Arc::new(organization));
    }

    /// Stores a membership's role without its permissions (they are read
    /// when a permission check needs them).
    pub fn fill_role(&self, generation: u64, organization_id: &str, user_id: &str, role: &str) {
        let current = self
            .inner
            .generation
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if *current != generation {
            return;
        }
        self.store_role(organization_id, user_id, role.to_string());
    }

    /// Forgets what a committed change of `kind` in `organization_id` may
    /// have changed.
    pub fn invalidate(&self, kind: Option<EventKind>, organization_id: &str) {
        let Some(kind) = kind else { return };
        let mut generation = self
            .inner
            .generation
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *generation += 1;
        if kind.changes_roles() {
            self.inner
                .roles
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        if kind.changes_organization() && !organization_id.is_empty() {
            self.inner.organizations.invalidate(organization_id);
            self.inner.members.invalidate(organization_id);
        }
    }

    /// Forgets everything (when the log cannot be read).
    pub fn clear(&self) {
        let mut generation = self
            .inner
            .generation
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *generation += 1;
        self.inner.members.invalidate_all();
        self.inner.organizations.invalidate_all();
        self.inner
            .roles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The entries and estimated bytes of the memberships and of the
    /// organizations cached now.
    pub fn sizes(&self) -> (CacheSize, CacheSize) {
        self.inner.members.run_pending_tasks();
        self.inner.organizations.run_pending_tasks();
        (
            CacheSize {
                entries: self.inner.members.entry_count(),
                bytes: self.inner.members.weighted_size(),
            },
            CacheSize {
                entries: self.inner.organizations.entry_count(),
                bytes: self.inner.organizations.weighted_size(),
            },
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_members_and_unknown_organizations_leave_no_entry() {
        let cache = AccessCache::new(1024 * 1024);
        for i in 0..1_000 {
            let org = format!("org_{i}");
            let Cached::Miss(generation) = cache.check(&org, "user", "org:x:y") else {
                panic!("nothing is cached yet");
            };
            cache.fill(generation, &org, "user", None);
        }
        assert_eq!(cache.sizes().0, CacheSize::default());
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let cache = AccessCache::new(64 * 1024);
        for i in 0..10_000 {
            let generation = cache.generation();
            cache.fill(
                generation,
                &format!("org_{i}"),
                "user",
                Some(("org:member".into(), vec!["org:x:read".into()])),
            );
        }
        let (members, _) = cache.sizes();
        assert!(members.bytes <= 32 * 1024, "{members:?}");
        assert!(members.entries > 0);
    }
}
