//! Fills the access cache from the database when a server starts, so that
//! `CheckPermission` and `GetOrganization` answer from memory for the whole
//! data set (as far as `ORGS_CACHE_MAX_BYTES` allows) instead of only for
//! keys read since the start. With keys spread over many organizations, a
//! cache filled only by misses stays cold for a long time: 500,000 members
//! read at random take millions of calls to be all seen once.
//!
//! The warm-up reads pages of organizations and of active memberships in
//! key order while the server serves. Each page is stored under the
//! generation handed out before it was read, so a change committed meanwhile
//! (which bumps the generation) makes the page be read again instead of
//! storing what the change replaced. It stops at nine tenths of each cache's
//! bytes, so it evicts nothing that callers asked for.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use sea_orm::DbErr;

use super::access::AccessCache;
use crate::domain::organizations::Organization;
use crate::store::Db;
use crate::store::repo::{memberships, organizations, roles};

/// Rows read per query.
const PAGE: u64 = 1000;
/// Reads of one page that lost to concurrent changes before the warm-up
/// moves on without it (its keys are then filled by the calls that miss).
const TRIES: u32 = 3;

/// What a warm-up stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Warmed {
    pub organizations: u64,
    pub memberships: u64,
}

/// Warms `cache` from `db` and logs what it stored; a failure is logged and
/// leaves the cache to fill by misses.
pub async fn run(db: Db, cache: AccessCache) {
    let started = Instant::now();
    match warm(&db, &cache).await {
        Ok(warmed) => tracing::info!(
            organizations = warmed.organizations,
            memberships = warmed.memberships,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "access cache warmed"
        ),
        Err(err) => tracing::warn!(error = %err, "access cache warm-up stopped"),
    }
}

/// Fills `cache` with organizations, then with memberships, while each has
/// room, once the log follower has taken its position (it clears the cache
/// then, and keeps what is stored afterwards up to date).
pub async fn warm(db: &Db, cache: &AccessCache) -> Result<Warmed, DbErr> {
    cache.followed().await;
    let mut warmed = Warmed::default();
    let (mut after, mut tries) = (String::new(), 0);
    while cache.room().1 {
        let generation = cache.generation();
        let rows = organizations::page_after(db.conn(), &after, PAGE).await?;
        let Some(last) = rows.last().map(|row| row.id.clone()) else {
            break;
        };
        let count = rows.len() as u64;
        let page: Vec<Organization> = rows.into_iter().map(Organization::from).collect();
        if cache.warm_organizations(generation, page) {
            warmed.organizations += count;
        } else if tries < TRIES {
            tries += 1;
            continue;
        }
        (after, tries) = (last, 0);
    }

    let mut after: Option<(String, String)> = None;
    let mut tries = 0;
    // The grants and the generation they were read under: read again only
    // when something was invalidated since (a change of roles bumps it), so
    // that every page is stored with grants read under its own generation.
    let mut grants = (cache.generation(), role_grants(db).await?);
    while cache.room().0 {
        let generation = cache.generation();
        if grants.0 != generation {
            grants = (generation, role_grants(db).await?);
        }
        let rows = memberships::active_roles_after(
            db.conn(),
            after.as_ref().map(|(o, u)| (o.as_str(), u.as_str())),
            PAGE,
        )
        .await?;
        let Some((organization_id, user_id, _)) = rows.last() else {
            break;
        };
        let last = (organization_id.clone(), user_id.clone());
        // Members of a deactivated organization are no members for checks.
        let mut ids: Vec<&str> = rows.iter().map(|(o, _, _)| o.as_str()).collect();
        ids.dedup();
        let deactivated: HashSet<String> = organizations::deactivated_among(db.conn(), &ids)
            .await?
            .into_iter()
            .collect();
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|(o, _, _)| !deactivated.contains(o))
            .collect();
        if cache.warm_members(generation, &grants.1, &rows) {
            warmed.memberships += rows.len() as u64;
        } else if tries < TRIES {
            tries += 1;
            continue;
        }
        (after, tries) = (Some(last), 0);
    }
    Ok(warmed)
}

/// Every role with the permissions it grants.
async fn role_grants(db: &Db) -> Result<HashMap<String, Arc<Vec<String>>>, DbErr> {
    let mut grants = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = roles::list_roles(db.conn(), after.as_deref(), PAGE).await?;
        let Some(last) = page.last().map(|role| role.key.clone()) else {
            return Ok(grants);
        };
        for role in page {
            grants.insert(role.key, Arc::new(role.permissions));
        }
        after = Some(last);
    }
}
