//! Thin gRPC handlers, one file per service: proto → domain (validation), the
//! policy check, the service call, domain → proto.

pub mod billing;
pub mod codec;
pub mod convert;
pub mod invitation;
pub mod organization;
pub mod status;

use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use crate::auth::Caller;
use crate::domain::types::request_id;
use crate::domain::{Actor, Error, FieldViolation, Reason};
use crate::service::{Idempotency, Services};

/// The caller the auth layer verified for this request.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| {
            Status::from(Error::Unauthenticated(
                Reason::TokenMissing,
                "no verified caller".into(),
            ))
        })
}

/// Decides the RPC's rule for a call about one organization (and, for
/// self-service rules, one user).
pub async fn authorize_in_organization(
    services: &Services,
    caller: &Caller,
    organization_id: &str,
    user_id: Option<&str>,
) -> Result<Actor, Status> {
    let membership = if caller.needs_membership(user_id) {
        services
            .membership_permissions(organization_id, &caller.principal.sub)
            .await?
    } else {
        None
    };
    Ok(caller.authorize_in_organization(user_id, membership.as_deref())?)
}

/// The idempotency key of a request: its `request_id` and a fingerprint of the
/// whole message, so a reuse with other content is recognised.
pub fn idempotency<M: prost::Message>(
    message: &M,
    raw_request_id: &str,
) -> Result<Option<Idempotency>, FieldViolation> {
    Ok(
        request_id("request_id", raw_request_id)?.map(|request_id| Idempotency {
            request_id,
            fingerprint: hex::encode(Sha256::digest(message.encode_to_vec())),
        }),
    )
}

/// An optional etag: empty means none.
pub fn etag(value: &str) -> Option<&str> {
    let value = value.trim();
    (!value.is_empty()).then_some(value)
}

/// An amount in minor units of `currency` as `Money`.
pub fn money(currency: &str, minor_units: i64) -> crate::proto::v1::Money {
    let exponent = currency_exponent(currency);
    let scale = 10_i64.pow(exponent);
    crate::proto::v1::Money {
        currency_code: currency.to_string(),
        units: minor_units / scale,
        nanos: ((minor_units % scale) * 10_i64.pow(9 - exponent)) as i32,
    }
}

/// Digits after the decimal point of a currency's minor unit (ISO 4217).
fn currency_exponent(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

pub fn billing_impact_to_proto(
    services: &Services,
    impact: crate::domain::billing::BillingImpact,
) -> crate::proto::v1::BillingImpact {
    crate::proto::v1::BillingImpact {
        period: impact.period,
        active_member_count_before: impact.active_member_count_before as i32,
        active_member_count_after: impact.active_member_count_after as i32,
        billable_before: impact.billable_before,
        billable_after: impact.billable_after,
        marginal_amount: Some(money(
            &services.config.billing.currency,
            impact.marginal_amount_minor,
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn money_in_minor_units() {
        let usd = super::money("USD", 12_345);
        assert_eq!((usd.units, usd.nanos), (123, 450_000_000));
        let jpy = super::money("JPY", 500);
        assert_eq!((jpy.units, jpy.nanos), (500, 0));
        let kwd = super::money("KWD", 1_001);
        assert_eq!((kwd.units, kwd.nanos), (1, 1_000_000));
    }
}
