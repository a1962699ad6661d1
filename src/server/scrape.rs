//! What the server computes for `/metrics` at each scrape: the billing
//! gauges from the database, the sizes of the in-process caches and where the
//! process stands in the event log. Each hook holds only what it reads and its
//! gauges, never what holds the registry.

use std::sync::Arc;

use super::wiring::{Handlers, Shared};
use crate::auth::Verifier;
use crate::domain::time::BillingPeriod;

pub(super) fn hooks(shared: &Shared, handlers: &Handlers, verifier: &Arc<Verifier>) {
    // The billing gauges come from the database, so every replica reports
    // the same numbers.
    let (reads, clock) = (handlers.billing_reads.clone(), shared.clock.clone());
    let gauges = shared.metrics.billing_gauges();
    shared.metrics.on_scrape(move || {
        let (reads, clock, gauges) = (reads.clone(), clock.clone(), gauges.clone());
        Box::pin(async move {
            let period = BillingPeriod::containing(clock.now());
            match reads.summary(period).await {
                Ok(summary) => {
                    gauges.set(
                        summary.billable_organizations.max(0) as u64,
                        summary.charged_organizations.max(0) as u64,
                    );
                    gauges.set_budget(
                        summary.budget.map_or(0, |budget| budget.minor_units),
                        summary.projected_amount_due.minor_units,
                    );
                }
                Err(err) => tracing::warn!(error = %err, "billing gauges not refreshed"),
            }
        })
    });
    let (access, gauges) = (shared.access.clone(), shared.metrics.cache_gauges());
    let tokens = verifier.clone();
    shared.metrics.on_scrape(move || {
        let (memberships, organizations) = access.sizes();
        gauges.set("memberships", memberships.entries, memberships.bytes);
        gauges.set("organizations", organizations.entries, organizations.bytes);
        let (entries, bytes) = tokens.verified_tokens();
        gauges.set("tokens", entries, bytes);
        Box::pin(async {})
    });
    let (notifier, gauges) = (shared.notifier.clone(), shared.metrics.log_gauges());
    shared.metrics.on_scrape(move || {
        gauges.set(notifier.position(), notifier.held_back_for());
        Box::pin(async {})
    });
}
