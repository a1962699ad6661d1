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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use moka::sync::Cache;

use crate::domain::events::EventKind;
use crate::domain::organizations::Organization;
use crate::events::follower::ChangeListener;
use crate::events::reader::Change;

/// The default of `ORGS_CACHE_MAX_BYTES`.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 128 * 1024 * 1024;
/// What an organization's entry costs besides its strings: map slots,
/// `Arc`s, moka's own bookkeeping (an estimate on the high side).
const ENTRY_OVERHEAD: u32 = 160;
/// What a member within an organization's entry costs besides its user id:
/// a slot of the map (a boxed id and a shared role name, at most 7/8 full),
/// the allocation of the id (measured: 100,000 organizations × 5 members
/// of 40-byte ids take about 60 MiB of resident memory).
const MEMBER_OVERHEAD: u32 = 80;

/// The members of one organization known to the cache: user → role.
#[derive(Debug, Default)]
struct KnownMembers {
    roles: Mutex<HashMap<Box<str>, Arc<str>>>,
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
    /// The role names members hold, each stored once and shared by every
    /// member who holds it (as many as the catalogue ever had roles).
    role_names: RwLock<HashSet<Arc<str>>>,
    /// organization → its view, for `GetOrganization`.
    organizations: Cache<String, Arc<Organization>>,
    /// Turns true once the log follower has taken its position and cleared
    /// the cache: what is stored from then on is kept up to date by it.
    followed: tokio::sync::watch::Sender<bool>,
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
                role_names: RwLock::new(HashSet::new()),
                organizations,
                followed: tokio::sync::watch::Sender::new(false),
            }),
        }
    }

    /// The generation to fill with: what is read from the database after
    /// this call may be stored with it.
    pub fn generation(&self) -> u64 {
        *self
            .inner
            .generation
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The shared copy of a role name.
    fn role_name(&self, role: &str) -> Arc<str> {
        let names = self
            .inner
            .role_names
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(name) = names.get(role) {
            return name.clone();
        }
        drop(names);
        let mut names = self
            .inner
            .role_names
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(name) = names.get(role) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(role);
        names.insert(name.clone());
        name
    }

    fn role_of(&self, organization_id: &str, user_id: &str) -> Option<Arc<str>> {
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
        match roles.get(role.as_ref()) {
            Some(permissions) => Cached::Answer(
                permissions.iter().any(|p| p == permission),
                role.to_string(),
            ),
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
        self.if_current(generation, || {
            self.inner
                .roles
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(role.clone(), Arc::new(permissions));
            self.store_role(organization_id, user_id, &role);
        });
    }

    /// Adds a member's role; the caller holds the generation shared.
    fn store_role(&self, organization_id: &str, user_id: &str, role: &str) {
        let known = self
            .inner
            .members
            .get_with(organization_id.to_string(), Default::default);
        {
            let mut roles = known.roles.lock().unwrap_or_else(PoisonError::into_inner);
            let added = saturating_u32(user_id.len()).saturating_add(MEMBER_OVERHEAD);
            let bytes = known.bytes.load(Ordering::Relaxed);
            if roles.contains_key(user_id)
                || bytes.saturating_add(added) > self.inner.max_members_bytes
            {
                return;
            }
            roles.insert(Box::from(user_id), self.role_name(role));
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
        self.if_current(generation, || {
            self.inner
                .organizations
                .insert(organization.id.to_string(), Arc::new(organization));
        });
    }

    /// Stores a membership's role without its permissions (they are read
    /// when a permission check needs them).
    pub fn fill_role(&self, generation: u64, organization_id: &str, user_id: &str, role: &str) {
        self.if_current(generation, || {
            self.store_role(organization_id, user_id, role);
        });
    }

    /// Runs `store` with the generation held shared, if it is still
    /// `generation` (nothing was invalidated since it was handed out);
    /// whether it ran.
    fn if_current(&self, generation: u64, store: impl FnOnce()) -> bool {
        let current = self
            .inner
            .generation
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if *current != generation {
            return false;
        }
        store();
        true
    }

    /// Waits until the log follower has taken its position: a value stored
    /// before would be cleared then, or miss what changed meanwhile.
    pub async fn followed(&self) {
        let mut followed = self.inner.followed.subscribe();
        // The sender lives as long as the cache.
        let _ = followed.wait_for(|followed| *followed).await;
    }

    /// Whether the memberships and the organizations each have room left
    /// below nine tenths of their bytes: the warm-up fills no further, so
    /// that it evicts nothing.
    pub fn room(&self) -> (bool, bool) {
        fn room<V: Clone + Send + Sync + 'static>(cache: &Cache<String, V>) -> bool {
            cache.run_pending_tasks();
            let used = cache.weighted_size();
            cache
                .policy()
                .max_capacity()
                .is_none_or(|max| used < max / 10 * 9)
        }
        (room(&self.inner.members), room(&self.inner.organizations))
    }

    /// Stores a page of active memberships (organization, user, role) of
    /// active organizations with the permissions of their roles, unless
    /// something was invalidated since `generation`; false if it was not
    /// stored.
    pub fn warm_members(
        &self,
        generation: u64,
        roles: &HashMap<String, Arc<Vec<String>>>,
        members: &[(String, String, String)],
    ) -> bool {
        self.if_current(generation, || {
            self.inner
                .roles
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(
                    roles
                        .iter()
                        .map(|(key, grants)| (key.clone(), grants.clone())),
                );
            for (organization_id, user_id, role) in members {
                self.store_role(organization_id, user_id, role);
            }
        })
    }

    /// Stores a page of organizations, unless something was invalidated since
    /// `generation`; false if it was not stored.
    pub fn warm_organizations(&self, generation: u64, organizations: Vec<Organization>) -> bool {
        self.if_current(generation, || {
            for organization in organizations {
                self.inner
                    .organizations
                    .insert(organization.id.to_string(), Arc::new(organization));
            }
        })
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
        self.inner.followed.send_replace(true);
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
    fn a_warm_up_page_read_before_an_invalidation_is_not_stored() {
        let cache = AccessCache::new(1024 * 1024);
        let grants = HashMap::from([(
            "org:member".to_string(),
            Arc::new(vec!["org:x:read".to_string()]),
        )]);
        let page = [(
            "org_1".to_string(),
            "user".to_string(),
            "org:member".to_string(),
        )];
        let generation = cache.generation();
        cache.invalidate(Some(EventKind::MembershipDeleted), "org_1");
        assert!(!cache.warm_members(generation, &grants, &page));
        assert!(matches!(
            cache.check("org_1", "user", "org:x:read"),
            Cached::Miss(_)
        ));
        assert!(cache.warm_members(cache.generation(), &grants, &page));
        assert!(matches!(
            cache.check("org_1", "user", "org:x:read"),
            Cached::Answer(true, _)
        ));
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
