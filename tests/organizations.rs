//! OrganizationService through the generated client against a real server.

mod common;

use common::*;
use orgs::proto::v1 as pb;
use prost_types::FieldMask;
use tonic::Code;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() })
}

#[tokio::test]
async fn admin_creates_on_behalf_of_a_user_who_becomes_the_only_member() {
    let app = TestApp::spawn().await;
    let response = app
        .admin()
        .create_organization(pb::CreateOrganizationRequest {
            name: "Acme Inc".into(),
            created_by: "user_alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let organization = response.organization.unwrap();
    assert!(organization.id.starts_with("org_"));
    assert_eq!(organization.slug, "acme-inc");
    assert_eq!(organization.created_by, "user_alice");
    assert_eq!(organization.members_count, 1);
    let membership = response.membership.unwrap();
    assert_eq!(membership.user_id, "user_alice");
    assert_eq!(membership.role, "org:admin");
    assert!(membership.permissions.contains(&"org:sys_memberships:manage".to_string()));

    let members = app
        .admin()
        .list_memberships(pb::ListMembershipsRequest { organization_id: organization.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.total_size, 1);
    assert_eq!(members.memberships[0].user_id, "user_alice", "the admin caller is never added");
}
