//! Health reports NOT_SERVING while the database cannot be reached and SERVING
//! again when it can (PostgreSQL only: an SQLite file cannot go away).

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
