//! Proving that an organization owns a domain, with limits per domain that
//! survive new codes: at most 5 prepared verifications an hour, and 10 failed
//! attempts (wrong codes, DNS records not found) within 24 hours lock the
//! domain for 24 hours. Every prepare and failure is a row of the attempts
//! table, counted in the change's transaction under the domain's row lock,
//! so concurrent attempts cannot slip past a limit.
//!
//! A DNS TXT proof is looked up before the unit of work begins, so no
//! transaction or lock is held while the resolver answers; the unit of work
//! then decides with what it found, checking again that the domain, its
//! challenge and its lock are as they were.

use std::time::Duration;

use super::domains::{Domains, already_verified, domain_exists, domain_not_found, lock_name};
use super::unit_of_work::{Call, Tx};
use crate::domain::enrollment::{DnsChallenge, Domain, PreparedVerification};
use crate::domain::events::EventKind;
use crate::domain::ids::{DomainId, OrganizationId};
use crate::domain::invitations::{
    MAX_VERIFICATION_ATTEMPTS, VERIFICATION_CODE_VALIDITY_MICROS, new_verification_code,
};
use crate::domain::time::{Micros, from_micros};
use crate::domain::types::Email;
use crate::domain::verification::{
    AttemptKind, FAILURE_WINDOW, MAX_PREPARES, PREPARE_WINDOW, VerificationStrategy, code_mac,
    code_matches, dns_record_name, lock_after_failure, new_dns_token,
};
use crate::domain::{Actor, Error, Reason, Result};
use crate::store::is_unique_violation;
use crate::store::repo::domain_attempts;
use crate::store::repo::domains::{self, VerificationCode};

/// How long a claim removed by another organization's verification is
/// remembered, so that calls on it answer ALREADY_EXISTS rather than
/// NOT_FOUND.
const REMOVED_CLAIM_MEMORY: Micros = 30 * 24 * 3600 * 1_000_000;

/// What an attempt brings as proof.
#[derive(Clone)]
enum Proof {
    /// The 6-digit code of the email strategy.
    Code(String),
    /// The DNS challenge value that was looked up, and whether a TXT record
    /// held it.
    Dns { token: String, found: bool },
}

/// Refuses a locked domain.
fn check_unlocked(challenge: &VerificationCode, now: Micros) -> Result<()> {
    match challenge.locked_until {
        Some(until) if until > now => Err(Error::FailedPrecondition(
            Reason::DomainVerificationLocked,
            format!(
                "too many failed verification attempts: the domain is locked until {}",
                from_micros(until).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        )),
        _ => Ok(()),
    }
}

async fn challenge_of(
    conn: &impl sea_orm::ConnectionTrait,
    id: &DomainId,
) -> Result<VerificationCode> {
    domains::get_code(conn, id.as_str())
        .await?
        .ok_or_else(domain_not_found)
}

/// Deletes the other organizations' unverified claims of a name that
/// `domain` now holds verified: each an event `domain.deleted` and an entry
/// in the audit trail of its organization.
pub(super) async fn remove_other_claims(tx: &mut Tx, domain: &Domain) -> Result<()> {
    let others =
        domains::other_claims_for_update(tx.conn(), &domain.name, domain.id.as_str()).await?;
    for row in others {
        domains::delete(tx.conn(), &row.id).await?;
        domain_attempts::record_removed_claim(
            tx.conn(),
            &row.id,
            &row.organization_id,
            &row.name,
            tx.now,
            tx.now - REMOVED_CLAIM_MEMORY,
        )
        .await?;
        let gone = Domain::from(row);
        tx.emit(
            EventKind::DomainDeleted,
            Some(&gone.organization_id),
            gone.id.as_str(),
            &gone,
        )?;
        tx.audit_only(Some(&gone.organization_id), gone.id.as_str());
    }
    Ok(())
}

/// Counts a failed attempt, and locks the domain when it is the tenth within
/// the window. Returns the lock's end, if it locked.
async fn record_failure(tx: &Tx, id: &DomainId) -> Result<Option<Micros>> {
    let conn = tx.conn();
    domain_attempts::prune(conn, id.as_str(), tx.now - FAILURE_WINDOW).await?;
    domain_attempts::record(conn, id.as_str(), AttemptKind::Failure, tx.now).await?;
    let (failures, _) = domain_attempts::since(
        conn,
        id.as_str(),
        AttemptKind::Failure,
        tx.now - FAILURE_WINDOW,
    )
    .await?;
    let lock = lock_after_failure(failures, tx.now);
    if let Some(until) = lock {
        domains::lock(conn, id.as_str(), until).await?;
    }
    Ok(lock)
}

impl Domains {
    /// Prepares the proof of the domain's strategy: a new 6-digit code for
    /// an address at the domain (replacing any outstanding one; only its
    /// keyed hash is stored), or the DNS record to publish (its value made
    /// once and kept until the domain is verified).
    pub async fn prepare_verification(
        &self,
        actor: Actor,
        id: DomainId,
        affiliation_email_address: Option<Email>,
    ) -> Result<PreparedVerification> {
        let this = self.clone();
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let now = tx.now;
                    let current = this.locked(tx, &id).await?;
                    if current.verified {
                        return Err(already_verified());
                    }
                    let challenge = challenge_of(tx.conn(), &id).await?;
                    check_unlocked(&challenge, now)?;
                    let (prepares, oldest) = domain_attempts::since(
                        tx.conn(),
                        id.as_str(),
                        AttemptKind::Prepare,
                        now - PREPARE_WINDOW,
                    )
                    .await?;
                    if prepares >= MAX_PREPARES {
                        let next = oldest.unwrap_or(now) + PREPARE_WINDOW;
                        let wait = u64::try_from(next - now).unwrap_or(0).max(1_000_000);
                        return Err(Error::ResourceExhausted(
                            Reason::VerificationPrepareLimitReached,
                            format!(
                                "a domain may prepare {MAX_PREPARES} verifications an hour; the next at {}",
                                from_micros(next).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                            ),
                            Duration::from_micros(wait),
                        ));
                    }
                    let mut prepared = PreparedVerification {
                        domain: current.clone(),
                        code: String::new(),
                        expire_time: None,
                        dns_challenge: None,
                    };
                    let changed = match current.verification_strategy {
                        VerificationStrategy::EmailCode => {
                            let Some(email) = affiliation_email_address else {
                                return Err(Error::invalid(
                                    "affiliation_email_address",
                                    "is required for the EMAIL_CODE strategy",
                                ));
                            };
                            if email.domain() != current.name {
                                return Err(Error::invalid(
                                    "affiliation_email_address",
                                    format!("must be an address at {}", current.name),
                                ));
                            }
                            let code = new_verification_code();
                            let expire_time = now + VERIFICATION_CODE_VALIDITY_MICROS;
                            domains::set_code(
                                tx.conn(),
                                id.as_str(),
                                email.as_str(),
                                &code_mac(&this.code_key, id.as_str(), &code),
                                expire_time,
                                now,
                            )
                            .await?;
                            prepared.code = code;
                            prepared.expire_time = Some(expire_time);
                            true
                        }
                        VerificationStrategy::DnsTxt => {
                            let (token, changed) = match challenge.dns_token {
                                Some(token) => (token, false),
                                None => (new_dns_token(), true),
                            };
                            if changed {
                                domains::set_dns_token(tx.conn(), id.as_str(), &token, now).await?;
                            }
                            prepared.dns_challenge = Some(DnsChallenge {
                                name: dns_record_name(&current.name),
                                value: token,
                            });
                            changed
                        }
                    };
                    domain_attempts::prune(tx.conn(), id.as_str(), now - FAILURE_WINDOW).await?;
                    domain_attempts::record(tx.conn(), id.as_str(), AttemptKind::Prepare, now)
                        .await?;
                    if changed {
                        prepared.domain = this.locked(tx, &id).await?;
                        tx.emit(
                            EventKind::DomainUpdated,
                            Some(&prepared.domain.organization_id),
                            prepared.domain.id.as_str(),
                            &prepared.domain,
                        )?;
                    } else {
                        tx.audit_only(Some(&current.organization_id), current.id.as_str());
                    }
                    Ok(prepared)
                })
            })
            .await
    }

    /// Verifies the domain: with its code (email strategy), or by looking up
    /// its DNS TXT record (DNS strategy, `code` empty). A wrong code or a
    /// record not found is a failed attempt, committed with an audit entry
    /// although the call fails. On success the other organizations'
    /// unverified claims of the name are removed.
    /// `current` is the domain as the caller was authorized for it.
    pub async fn attempt_verification(
        &self,
        actor: Actor,
        current: Domain,
        code: Option<String>,
    ) -> Result<Domain> {
        let id = current.id.clone();
        if current.verified {
            return Err(already_verified());
        }
        let proof = match (current.verification_strategy, code) {
            (VerificationStrategy::EmailCode, Some(code)) => Proof::Code(code),
            (VerificationStrategy::EmailCode, None) => {
                return Err(Error::invalid(
                    "code",
                    "is required: the domain is verified with an emailed code",
                ));
            }
            (VerificationStrategy::DnsTxt, Some(_)) => {
                return Err(Error::invalid(
                    "code",
                    "must be empty: the domain is verified with a DNS TXT record",
                ));
            }
            (VerificationStrategy::DnsTxt, None) => self.look_up_challenge(&current).await?,
        };
        let this = self.clone();
        self.writer
            .write(Call::new(actor), move |tx| {
                Box::pin(async move {
                    let now = tx.now;
                    lock_name(tx, &current.name).await?;
                    let row = domains::get_for_update(tx.conn(), id.as_str()).await?;
                    let domain = match this.in_force(row, now) {
                        Ok(domain) => domain,
                        // Gone: another organization verified the name
                        // meanwhile (its verification removed this claim).
                        Err(err) => {
                            return Err(
                                match domains::verified_named(tx.conn(), &current.name).await? {
                                    Some(_) => domain_exists(&current.name),
                                    None => err,
                                },
                            );
                        }
                    };
                    if domain.verified {
                        return Err(already_verified());
                    }
                    let challenge = challenge_of(tx.conn(), &id).await?;
                    check_unlocked(&challenge, now)?;
                    let failure = match (domain.verification_strategy, proof) {
                        (VerificationStrategy::EmailCode, Proof::Code(code)) => {
                            let live = challenge.code_expire_time.is_some_and(|t| t > now)
                                && challenge.code_attempts < MAX_VERIFICATION_ATTEMPTS;
                            let Some(stored) = challenge.code_hash.as_deref().filter(|_| live)
                            else {
                                return Err(Error::FailedPrecondition(
                                    Reason::VerificationCodeExpired,
                                    "no usable verification code: prepare a new one".into(),
                                ));
                            };
                            if code_matches(&this.code_key, id.as_str(), &code, stored) {
                                None
                            } else {
                                domains::record_wrong_attempt(
                                    tx.conn(),
                                    id.as_str(),
                                    MAX_VERIFICATION_ATTEMPTS,
                                )
                                .await?;
                                Some((
                                    Reason::VerificationCodeInvalid,
                                    "the verification code is wrong".to_string(),
                                ))
                            }
                        }
                        (VerificationStrategy::DnsTxt, Proof::Dns { token, found }) => {
                            if challenge.dns_token.as_deref() != Some(token.as_str()) {
                                return Err(not_prepared());
                            }
                            (!found).then(|| {
                                (
                                    Reason::DnsRecordNotFound,
                                    format!(
                                        "no TXT record at {} holds the prepared value",
                                        dns_record_name(&domain.name)
                                    ),
                                )
                            })
                        }
                        _ => {
                            return Err(Error::invalid(
                                "code",
                                "does not fit the domain's verification strategy, which changed during the call",
                            ));
                        }
                    };
                    if let Some((reason, message)) = failure {
                        let locked = record_failure(tx, &id).await?;
                        // Keep the count, and the attempt in the audit trail;
                        // a failed attempt changes nothing else.
                        tx.audit_only(Some(&domain.organization_id), domain.id.as_str());
                        tx.commit_on_error();
                        let message = match locked {
                            Some(until) => format!(
                                "{message}; too many failed attempts: the domain is locked until {}",
                                from_micros(until).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                            ),
                            None => message,
                        };
                        return Err(Error::FailedPrecondition(reason, message));
                    }
                    domains::mark_verified(tx.conn(), id.as_str(), now)
                        .await
                        .map_err(|err| {
                            if is_unique_violation(&err) {
                                domain_exists(&domain.name)
                            } else {
                                err.into()
                            }
                        })?;
                    let verified = this.locked(tx, &id).await?;
                    tx.emit(
                        EventKind::DomainVerified,
                        Some(&verified.organization_id),
                        verified.id.as_str(),
                        &verified,
                    )?;
                    remove_other_claims(tx, &verified).await?;
                    Ok(verified)
                })
            })
            .await
    }

    /// Looks up the domain's DNS challenge record, outside any transaction.
    /// A locked or unprepared domain is refused before the resolver is asked.
    async fn look_up_challenge(&self, domain: &Domain) -> Result<Proof> {
        let challenge = challenge_of(self.db.conn(), &domain.id).await?;
        check_unlocked(&challenge, self.writer.now())?;
        let Some(token) = challenge.dns_token else {
            return Err(not_prepared());
        };
        let records = self
            .dns
            .txt(&dns_record_name(&domain.name))
            .await
            .map_err(|err| Error::Unavailable(Reason::DnsResolverUnavailable, err.to_string()))?;
        let found = records.iter().any(|record| record.trim() == token);
        Ok(Proof::Dns { token, found })
    }
}

fn not_prepared() -> Error {
    Error::FailedPrecondition(
        Reason::DnsChallengeNotPrepared,
        "no DNS challenge: call PrepareDomainVerification for the record to publish".into(),
    )
}

impl Domains {
    /// The organization and name of a claim that was removed because another
    /// organization verified the name, if it is remembered: a caller who may
    /// see that organization learns `DOMAIN_EXISTS` rather than NOT_FOUND.
    pub async fn removed_claim(&self, id: &DomainId) -> Result<Option<(OrganizationId, String)>> {
        Ok(domain_attempts::removed_claim(self.db.conn(), id.as_str())
            .await?
            .map(|(organization_id, name)| (OrganizationId::from_stored(organization_id), name)))
    }
}
