//! Hostile but well-formed input is the caller's error, answered small and
//! clearly: undecodable requests, absurdly deep or non-finite metadata, huge
//! values quoted back, times no timestamp should hold.

mod common;

use std::collections::BTreeMap;

use common::*;
use orgs::proto::v1 as pb;
use prost::Message;
use prost_types::{Struct, Value, value::Kind};
use tonic::Code;

/// `{"a": {"a": … 1 …}}` with `levels` levels of objects, the outer one included.
fn nested(levels: usize) -> Struct {
    let mut value = Value {
        kind: Some(Kind::NumberValue(1.0)),
    };
    for _ in 1..levels {
        value = Value {
            kind: Some(Kind::StructValue(Struct {
                fields: BTreeMap::from([("a".to_string(), value)]),
            })),
        };
    }
    Struct {
        fields: BTreeMap::from([("a".to_string(), value)]),
    }
}

fn number(n: f64) -> Struct {
    Struct {
        fields: BTreeMap::from([(
            "n".to_string(),
            Value {
                kind: Some(Kind::NumberValue(n)),
            },
        )]),
    }
}

fn create(metadata: Struct) -> pb::CreateOrganizationRequest {
    pb::CreateOrganizationRequest {
        name: "Deep Inc".into(),
        public_metadata: Some(metadata),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_request_that_cannot_be_decoded_is_invalid_argument_naming_the_field() {
    let app = TestApp::spawn().await;
    // Past prost's recursion limit: decoding fails before any handler runs.
    let status = app
        .admin()
        .create_organization(create(nested(40)))
        .await
        .expect_err("too deep to decode");
    assert_status::<()>(Err(status.clone()), Code::InvalidArgument, "FIELD_INVALID");
    assert_eq!(bad_fields(&status), ["public_metadata"]);

    // The same through a membership's metadata, and bytes that are no
    // protobuf at all (an unterminated varint).
    let membership = pb::CreateMembershipRequest {
        organization_id: "org_01jd3x4y5z6a7b8c9d0e1f2g3h".into(),
        user_id: "user_a".into(),
        private_metadata: Some(nested(40)),
        ..Default::default()
    };
    let status = raw::unary(
        app.channel(),
        "/orgs.v1.OrganizationService/CreateMembership",
        membership.encode_to_vec().into(),
        Some(&token("svc-onboarding", "orgs:admin")),
    )
    .await
    .expect_err("too deep to decode");
    assert_status::<()>(Err(status.clone()), Code::InvalidArgument, "FIELD_INVALID");
    assert_eq!(bad_fields(&status), ["private_metadata"]);
    let status = raw::unary(
        app.channel(),
        "/orgs.v1.OrganizationService/ListRoles",
        vec![0x08, 0xff, 0xff].into(),
        Some(&token("svc-onboarding", "orgs:admin")),
    )
    .await
    .expect_err("not protobuf");
    assert_status::<()>(Err(status.clone()), Code::InvalidArgument, "FIELD_INVALID");
}

#[tokio::test]
async fn metadata_deeper_than_sixteen_levels_or_not_finite_is_refused() {
    let app = TestApp::spawn().await;
    let mut admin = app.admin();
    // Decodable, but deeper than the documented limit.
    assert_invalid(
        admin.create_organization(create(nested(17))).await,
        "public_metadata",
    );
    let organization = admin
        .create_organization(create(nested(16)))
        .await
        .expect("16 levels are allowed")
        .into_inner()
        .organization
        .expect("organization");

    for n in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_invalid(
            admin.create_organization(create(number(n))).await,
            "public_metadata",
        );
        assert_invalid(
            admin
                .update_organization_metadata(pb::UpdateOrganizationMetadataRequest {
                    organization_id: organization.id.clone(),
                    private_metadata: Some(number(n)),
                    ..Default::default()
                })
                .await,
            "private_metadata",
        );
    }
    // Nothing was stored as null meanwhile.
    let stored = admin
        .get_organization(pb::GetOrganizationRequest {
            lookup: Some(pb::get_organization_request::Lookup::OrganizationId(
                organization.id.clone(),
            )),
        })
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("organization");
    assert_eq!(stored.etag, organization.etag);
    assert!(
        stored
            .private_metadata
            .unwrap_or_default()
            .fields
            .is_empty()
    );
}
