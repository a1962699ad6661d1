//! Builds the use cases from the configuration, each with only what it needs,
//! and the gRPC handlers over them.

use std::sync::Arc;

use tokio::sync::watch;

use crate::auth::Authorizer;
use crate::config::ServeConfig;
use crate::dns::HickoryTxtLookup;
use crate::domain::keys::ServerKey;
use crate::domain::paging::PageTokens;
use crate::domain::time::Clock;
use crate::events::reader::SharedTail;
use crate::events::{Notifier, WatchHub};
use crate::grpc::{
    billing::BillingApi, events::EventApi, invitation::InvitationApi, organization::OrganizationApi,
};
use crate::service::Events;
use crate::service::{
    AccessCache, Activity, Audit, BillingCounters, BillingReads, BillingWatch,
    DatabaseMembershipLookup, Domains, Invitations, Members, MembershipRequests, Memberships,
    Onboardings, Organizations, Roles, Writer,
};
use crate::store::checkpoints::Checkpoint;
use crate::store::{Db, repo::server_keys};
use crate::telemetry::metrics::Metrics;

/// The handlers of the four services.
pub struct Handlers {
    pub organization: OrganizationApi,
    pub invitation: InvitationApi,
    pub billing: BillingApi,
    pub events: EventApi,
    /// The billing reads, for the metrics scraped from the counters.
    pub billing_reads: BillingReads,
}

/// The secrets every replica shares, read (or made, by the first replica)
/// from the database at start.
#[derive(Debug, Clone)]
pub struct ServerKeys {
    /// Authenticates page tokens and watch cursors.
    pub page_tokens: ServerKey,
    /// Hashes domain verification codes.
    pub verification_codes: ServerKey,
    /// Makes and checks the console's CSRF tokens.
    pub console_csrf: ServerKey,
}

impl ServerKeys {
    pub async fn load(db: &Db, now: i64) -> anyhow::Result<ServerKeys> {
        let key = |name: &'static str| async move {
            let secret =
                server_keys::get_or_create(db.conn(), name, &ServerKey::generate(), now).await?;
            let bytes = hex::decode(secret)
                .map_err(|e| anyhow::anyhow!("the server key {name} is not hex: {e}"))?;
            anyhow::Ok(ServerKey::new(bytes))
        };
        Ok(ServerKeys {
            page_tokens: key("page_tokens").await?,
            verification_codes: key("verification_codes").await?,
            console_csrf: key("console_csrf").await?,
        })
    }
}

/// What the use cases share: the database, the clock, the log's wake-up,
/// the access cache, the server's shutdown flag and the shared keys.
pub struct Shared {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub notifier: Notifier,
    pub access: AccessCache,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Metrics,
    pub keys: ServerKeys,
}

pub fn handlers(config: &ServeConfig, shared: &Shared) -> Handlers {
    let Shared {
        db,
        clock,
        notifier,
        access,
        shutdown,
        metrics,
        keys,
    } = shared;
    let wal = metrics.wal_gauges();
    let writer = Writer::new(
        db.clone(),
        clock.clone(),
        notifier.clone(),
        Arc::new(access.clone()),
        move |checkpoint| match checkpoint {
            Checkpoint::Done(log) => wal.checkpointed(log.pages, log.copied),
            Checkpoint::Failed => wal.checkpoint_failed(),
        },
    );
    let tokens = PageTokens::new(keys.page_tokens.clone());
    let rules = config.organization_rules();
    let pricing = config.pricing();
    let members = Members::new(BillingCounters::new(pricing.clone()));
    let authorizer = Authorizer::new(Arc::new(DatabaseMembershipLookup::new(db.clone())));
    let billing_reads =
        BillingReads::new(db.clone(), pricing.clone(), tokens.clone(), clock.clone());
    // One tail of the log for every watch of the process, whatever it streams.
    let hub = WatchHub {
        notifier: notifier.clone(),
        shutdown: shutdown.clone(),
        tail: Arc::new(SharedTail::default()),
    };
    Handlers {
        organization: OrganizationApi {
            authorizer: authorizer.clone(),
            organizations: Organizations::new(
                db.clone(),
                writer.clone(),
                rules.clone(),
                members.clone(),
                access.clone(),
                tokens.clone(),
            ),
            memberships: Memberships::new(
                db.clone(),
                writer.clone(),
                members.clone(),
                rules.default_role.clone(),
                access.clone(),
                tokens.clone(),
            ),
            roles: Roles::new(db.clone(), writer.clone(), rules.clone(), tokens.clone()),
            audit: Audit::new(db.clone(), tokens.clone()),
        },
        invitation: InvitationApi {
            authorizer: authorizer.clone(),
            invitations: Invitations::new(
                db.clone(),
                writer.clone(),
                clock.clone(),
                members.clone(),
                config.invitation_rules(),
                tokens.clone(),
            ),
            domains: Domains::new(
                db.clone(),
                writer.clone(),
                config.domain_rules(),
                keys.verification_codes.clone(),
                Arc::new(HickoryTxtLookup::new(&config.dns_settings())),
                tokens.clone(),
            ),
            membership_requests: MembershipRequests::new(
                db.clone(),
                writer.clone(),
                members.clone(),
                rules.default_role.clone(),
                tokens.clone(),
            ),
            onboardings: Onboardings::new(
                db.clone(),
                writer.clone(),
                clock.clone(),
                rules.default_role.clone(),
            ),
        },
        events: EventApi {
            authorizer: authorizer.clone(),
            events: Events::new(
                db.clone(),
                clock.clone(),
                config.watch_settings(),
                hub.clone(),
                tokens.clone(),
            ),
            metrics: metrics.clone(),
        },
        billing: BillingApi {
            authorizer,
            activity: Activity::new(db.clone(), writer.clone(), members.counters().clone()),
            reads: billing_reads.clone(),
            watch: BillingWatch::new(
                db.clone(),
                clock.clone(),
                pricing,
                config.watch_settings(),
                hub,
                tokens.clone(),
            ),
            clock: clock.clone(),
            metrics: metrics.clone(),
        },
        billing_reads,
    }
}

/// The console's own set of the three services' handlers, over the same use
/// cases (cheap clones sharing the database, the access cache and the log's
/// wake-up): the console calls them in-process with the caller the auth layer
/// would make, so it can do nothing a token could not do over gRPC.
pub fn console_services(config: &ServeConfig, shared: &Shared) -> crate::console::Services {
    let Handlers {
        organization,
        invitation,
        billing,
        ..
    } = handlers(config, shared);
    crate::console::Services {
        organization,
        invitation,
        billing,
    }
}
