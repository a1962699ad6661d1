//! The server's public surface: reflection (v1 and v1alpha) and health, which
//! reports NOT_SERVING while the database cannot be reached.

mod common;

use common::*;
use sea_orm::ConnectionTrait;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

async fn status(app: &TestApp) -> i32 {
    HealthClient::new(app.channel())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

async fn wait_for(app: &TestApp, expected: ServingStatus) {
    for _ in 0..150 {
        if status(app).await == expected as i32 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("health never became {expected:?}");
}

#[tokio::test]
async fn health_follows_the_database() {
    let Some(base) = backend_url() else {
        eprintln!("skipped: needs ORGS_TEST_DATABASE_URL");
        return;
    };
    let app = TestApp::spawn().await;
    wait_for(&app, ServingStatus::Serving).await;
    let name = app.database_url.rsplit('/').next().unwrap().to_string();
    let admin = orgs::store::Db::connect(&base, 1).await.unwrap();
    admin
        .conn()
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .conn()
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();
    wait_for(&app, ServingStatus::NotServing).await;
    let refused = app
        .admin()
        .list_roles(orgs::proto::v1::ListRolesRequest::default())
        .await;
    let status = refused.expect_err("the database is unreachable");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), "DATABASE_UNAVAILABLE");
    admin
        .conn()
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    wait_for(&app, ServingStatus::Serving).await;
    app.admin()
        .list_roles(orgs::proto::v1::ListRolesRequest::default())
        .await
        .unwrap();
    admin.close().await;
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_every_service() {
    use tonic_reflection::pb::{v1, v1alpha};
    let app = TestApp::spawn().await;
    let expected = [
        "grpc.health.v1.Health",
        "orgs.v1.BillingService",
        "orgs.v1.InvitationService",
        "orgs.v1.OrganizationService",
    ];

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection answer {response:?}");
    };
    let services: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in expected {
        assert!(
            services.iter().any(|s| s == name),
            "v1 lists no {name}: {services:?}"
        );
    }

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel());
    let requests = [
        v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        },
        v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                    "google.rpc.ErrorInfo".into(),
                ),
            ),
        },
    ];
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        first.message_response
    else {
        panic!("unexpected reflection answer {first:?}");
    };
    assert_eq!(
        list.service
            .iter()
            .filter(|s| expected.contains(&s.name.as_str()))
            .count(),
        expected.len()
    );
    // Error details resolve, so grpcurl can print ErrorInfo and BadRequest.
    let second = stream.message().await.unwrap().unwrap();
    assert!(
        matches!(
            second.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ),
        "{second:?}"
    );
}
