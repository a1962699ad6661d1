//! Use cases, one type per area, each given only what it needs (the
//! database, a writer, a clock, a small settings struct) and wired together
//! in `src/server.rs`. They take and return domain values. Every change is one
//! unit of work ([`unit_of_work::Writer`]): one transaction that appends its
//! events to the log before it commits, or rolls everything back for an error
//! or `validate_only`.

pub mod access;
pub mod audit;
pub mod billing;
pub mod domain_verification;
pub mod domains;
pub mod events;
pub mod invitations;
pub mod lifecycle;
pub mod list;
pub mod lookup;
pub mod members;
pub mod membership_requests;
pub mod memberships;
pub mod onboarding;
pub mod organizations;
pub mod roles;
pub mod unit_of_work;
pub mod warm;

pub use access::AccessCache;
pub use audit::Audit;
pub use billing::{Activity, BillingCounters, BillingReads, BillingWatch};
pub use domains::Domains;
pub use events::Events;
pub use invitations::Invitations;
pub use lookup::DatabaseMembershipLookup;
pub use members::Members;
pub use membership_requests::MembershipRequests;
pub use memberships::Memberships;
pub use onboarding::Onboardings;
pub use organizations::Organizations;
pub use roles::Roles;
pub use unit_of_work::{Call, Idempotency, Writer};
