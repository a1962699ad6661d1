//! Billing: how activity and membership changes move the per-period counters
//! ([`counters`]), recording activity ([`activity`]), the reads over the
//! counters ([`reads`]) and the watch of billable organizations ([`watch`]).

pub mod activity;
pub mod counters;
pub mod reads;
pub mod watch;

pub use activity::Activity;
pub use counters::BillingCounters;
pub use reads::BillingReads;
pub use watch::{BillingWatch, WatchEvent, WatchMessage, WatchSettings};
