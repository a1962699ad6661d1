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
use tonic_types::StatusExt;

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

#[tokio::test]
async fn a_huge_unknown_update_mask_path_gives_a_small_status() {
    let app = TestApp::spawn().await;
    let organization = create_org(&app, "Masked Inc", None).await;
    let path = "x".repeat(1 << 20);
    let status = app
        .admin()
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: organization.id.clone(),
                name: "New".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec![path] }),
        })
        .await
        .expect_err("unknown path");
    assert_eq!(status.code(), Code::InvalidArgument, "{:?}", status.code());
    assert_eq!(bad_fields(&status), ["update_mask"]);
    assert!(status.message().len() < 1024, "{}", status.message().len());
    assert!(status.details().len() < 1024, "{}", status.details().len());
    let description = status
        .get_details_bad_request()
        .expect("BadRequest")
        .field_violations[0]
        .description
        .clone();
    assert!(description.contains("xxxx…"), "{description}");
    assert!(description.contains("allowed paths: name"), "{description}");
}

#[tokio::test]
async fn an_activity_event_before_1970_is_rejected_alone() {
    let app = TestApp::spawn().await;
    let now = chrono::Utc::now().timestamp();
    let event = |user: &str, seconds: i64| pb::ActivityEvent {
        user_id: user.into(),
        occur_time: Some(prost_types::Timestamp { seconds, nanos: 0 }),
    };
    let recorded = app
        .billing(Some(token("svc-billing", "billing:write")))
        .record_activity(pb::RecordActivityRequest {
            events: vec![
                event("user_a", now),
                event("user_b", -1),
                event("user_c", i64::MIN),
                event("user_d", i64::MAX),
            ],
        })
        .await
        .expect("the batch is recorded")
        .into_inner();
    assert_eq!(recorded.accepted_count, 1);
    assert_eq!(recorded.rejected_count, 3);
    let rejected: Vec<i32> = recorded.rejected.iter().map(|r| r.index).collect();
    assert_eq!(rejected, [1, 2, 3]);
}
