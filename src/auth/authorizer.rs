//! The one place that decides whether a caller may make a call: the caller,
//! the rule of its RPC from the policy table, and the target the call is
//! about. Membership in an organization is resolved through a small lookup
//! that the use cases implement; nothing else grants access.

use std::sync::Arc;

use super::policy::{Caller, Rule};
use crate::domain::ids::{OrganizationId, PermissionKey, UserId};
use crate::domain::types::Email;
use crate::domain::{Access, Actor, Error, Reason, Result, quote};

/// Who holds which permissions where.
#[async_trait::async_trait]
pub trait MembershipLookup: Send + Sync + 'static {
    /// The permissions `user_id`'s role grants in the organization, or `None`
    /// when it is not a member.
    async fn permissions(
        &self,
        organization_id: &OrganizationId,
        user_id: &str,
    ) -> Result<Option<Vec<PermissionKey>>>;
}

/// What a call is about.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Nothing in particular: rules that need no organization.
    Service,
    /// One user: `SelfOr` rules, and self-service organization rules named by user.
    User(&'a UserId),
    /// One organization, and for self-service rules the user the call is about.
    Organization(&'a OrganizationId, Option<&'a UserId>),
    /// A resource of an organization, or of the application (`None`). A caller
    /// that may not see it learns only what `hidden` says: that it does not exist.
    Resource(Option<&'a OrganizationId>, fn() -> Error),
    /// Every organization at once (a list without `organization_id`): only
    /// principals holding the rule's scopes; anyone else must name one in
    /// `field`.
    AllOrganizations { field: &'static str },
}

/// How a caller may read an organization it names: anything, or only what it
/// is a member of (enforced by the read itself, so it stays one query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    Platform(Actor),
    Member(Actor),
}

/// Decides every call.
#[derive(Clone)]
pub struct Authorizer {
    lookup: Arc<dyn MembershipLookup>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

/// The `Actor` a caller acts as, reached through `access`.
fn actor(caller: &Caller, access: Access) -> Actor {
    let principal = &caller.principal;
    Actor {
        sub: principal.sub.clone(),
        on_behalf_of: principal.act.clone(),
        platform: principal.is_platform(),
        action: caller.action(),
        access,
        verified_email: principal
            .email
            .as_deref()
            .filter(|_| principal.email_verified)
            .and_then(|email| Email::parse("email", email).ok()),
    }
}

/// End users hold no scope. Only they act for themselves or through a
/// membership: a principal holding a scope (even a read-only one) never
/// creates, joins or changes anything as a user would.
fn is_end_user(caller: &Caller) -> bool {
    caller.principal.scopes.is_empty()
}

/// Whether the caller holds one of the scopes of its RPC's rule.
fn holds_rule_scope(caller: &Caller) -> bool {
    match caller.rule {
        Rule::Anyone => false,
        Rule::Scopes(scopes) | Rule::SelfOr(scopes) | Rule::Organization { scopes, .. } => {
            caller.principal.has_any_scope(scopes)
        }
    }
}

fn denied(caller: &Caller) -> Error {
    Error::permission_denied(format!(
        "{} is not allowed to call {}",
        quote(&caller.principal.sub),
        caller.action()
    ))
}

/// Whether the call is about the caller itself, an end user.
fn is_caller(caller: &Caller, user: Option<&UserId>) -> bool {
    is_end_user(caller) && user.is_some_and(|user| user.as_str() == caller.principal.sub)
}

/// Decides a rule without an organization: the scopes of the rule, `Anyone`,
/// or the user the call is about for `SelfOr`. The auth layer uses it to
/// refuse scope-only rules before the handler runs.
pub fn decide_without_organization(caller: &Caller, user: Option<&UserId>) -> Result<Actor> {
    if holds_rule_scope(caller) {
        return Ok(actor(caller, Access::Scope));
    }
    match caller.rule {
        Rule::Anyone => Ok(actor(caller, Access::Anyone)),
        Rule::SelfOr(_)
        | Rule::Organization {
            self_service: true, ..
        } if is_caller(caller, user) => Ok(actor(caller, Access::Itself)),
        _ => Err(denied(caller)),
    }
}

impl Authorizer {
    pub fn new(lookup: Arc<dyn MembershipLookup>) -> Self {
        Authorizer { lookup }
    }

    /// Decides the caller's RPC for `target`; the `Actor` says who acts and
    /// through what.
    pub async fn authorize(&self, caller: &Caller, target: Target<'_>) -> Result<Actor> {
        match target {
            Target::Service => decide_without_organization(caller, None),
            Target::User(user) => decide_without_organization(caller, Some(user)),
            Target::Organization(organization, user) => {
                self.in_organization(caller, organization, user).await
            }
            Target::Resource(organization, hidden) => {
                let decided = match organization {
                    Some(organization) => self.in_organization(caller, organization, None).await,
                    None if holds_rule_scope(caller) => Ok(actor(caller, Access::Scope)),
                    None if !is_end_user(caller) => Err(denied(caller)),
                    None => Err(hidden()),
                };
                decided.map_err(|err| match err {
                    Error::NotFound(..) => hidden(),
                    other => other,
                })
            }
            Target::AllOrganizations { field } => {
                if holds_rule_scope(caller) {
                    Ok(actor(caller, Access::Scope))
                } else {
                    Err(Error::invalid(
                        field,
                        "is required without the orgs:read or orgs:admin scope",
                    ))
                }
            }
        }
    }

    /// For calls about "a user, by default the caller" (`SelfOr` rules such as
    /// listing or creating organizations): principals holding the rule's
    /// scopes act for the user they name, or for nobody in particular; anyone
    /// else acts for itself, and naming another user is refused.
    pub fn subject(
        &self,
        caller: &Caller,
        requested: Option<UserId>,
    ) -> Result<(Actor, Option<UserId>)> {
        if holds_rule_scope(caller) {
            return Ok((actor(caller, Access::Scope), requested));
        }
        if !is_end_user(caller) {
            return Err(denied(caller));
        }
        let itself = UserId::from_stored(caller.principal.sub.clone());
        match requested {
            Some(user) if user != itself => Err(Error::permission_denied(format!(
                "{} may call {} only for itself",
                quote(&caller.principal.sub),
                caller.action()
            ))),
            _ => Ok((actor(caller, Access::Itself), Some(itself))),
        }
    }

    /// How the caller may read organizations it names by id or slug: every
    /// one with the rule's scopes; else only those it is a member of, which
    /// the read enforces (answering NOT_FOUND otherwise, so an organization's
    /// existence is not revealed).
    pub fn reader(&self, caller: &Caller) -> Result<Reader> {
        if holds_rule_scope(caller) {
            return Ok(Reader::Platform(actor(caller, Access::Scope)));
        }
        match caller.rule {
            Rule::Organization {
                permission: None, ..
            } if is_end_user(caller) => {
                Ok(Reader::Member(actor(caller, Access::Member(Vec::new()))))
            }
            _ => Err(denied(caller)),
        }
    }

    async fn in_organization(
        &self,
        caller: &Caller,
        organization: &OrganizationId,
        user: Option<&UserId>,
    ) -> Result<Actor> {
        if holds_rule_scope(caller) {
            return Ok(actor(caller, Access::Scope));
        }
        let Rule::Organization {
            permission,
            self_service,
            ..
        } = caller.rule
        else {
            return decide_without_organization(caller, user);
        };
        if self_service && is_caller(caller, user) {
            return Ok(actor(caller, Access::Itself));
        }
        if !is_end_user(caller) {
            return Err(denied(caller));
        }
        let membership = self
            .lookup
            .permissions(organization, &caller.principal.sub)
            .await?;
        match membership {
            None => Err(Error::organization_not_found()),
            Some(permissions) => match permission {
                Some(required) if !permissions.iter().any(|p| p == required) => Err(
                    Error::permission_denied(format!("requires the permission {required}")),
                ),
                _ => Ok(actor(caller, Access::Member(permissions))),
            },
        }
    }
}

/// The email address a call acts for. A principal holding the RPC's scopes
/// (the service that verified the address) passes it in `field`; an end
/// user's comes only from its token's `email` with `email_verified`, and an
/// address it sends must be that one. An end user never vouches for an
/// address by sending it.
pub fn email_of(actor: &Actor, sent: Option<Email>, field: &str) -> Result<Email> {
    if actor.by_scope() {
        return sent.ok_or_else(|| Error::invalid(field, "is required"));
    }
    let Some(verified) = &actor.verified_email else {
        return Err(Error::FailedPrecondition(
            Reason::EmailNotVerified,
            "the token carries no verified email address (email with email_verified: true)".into(),
        ));
    };
    match sent {
        Some(sent) if sent != *verified => Err(Error::PermissionDenied(
            Reason::EmailMismatch,
            format!("{field} is not the email address of the token"),
        )),
        _ => Ok(verified.clone()),
    }
}
