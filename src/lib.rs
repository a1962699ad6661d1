//! orgs: a gRPC service for B2B organizations, memberships, roles and
//! permissions, invitations, verified domains and membership requests, with
//! Clerk-style billing.

pub mod auth;
pub mod config;
pub mod console;
pub mod dns;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod middleware;
pub mod proto;
pub mod reload;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tls;

pub use config::ServeConfig;
pub use server::{App, RunningServer};

/// The generated gRPC clients, for other services and tests.
pub mod clients {
    pub use crate::proto::v1::billing_service_client::BillingServiceClient;
    pub use crate::proto::v1::event_service_client::EventServiceClient;
    pub use crate::proto::v1::invitation_service_client::InvitationServiceClient;
    pub use crate::proto::v1::organization_service_client::OrganizationServiceClient;
}
