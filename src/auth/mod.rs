//! Authentication (bearer JWT → [`Principal`]) and authorization (one policy
//! table keyed by RPC, enforced by [`layer::AuthLayer`] and [`policy::Caller`]).

pub mod authorizer;
pub mod jwks;
pub mod keys;
pub mod layer;
pub mod policy;
pub mod token;
pub mod verified;

pub use authorizer::{Authorizer, MembershipLookup, Reader, Target};
pub use policy::{Caller, Rule};
pub use token::{Principal, Verifier};
