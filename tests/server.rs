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

/// What health says for the liveness service name.
async fn liveness(app: &TestApp) -> i32 {
    HealthClient::new(app.channel())
        .check(HealthCheckRequest {
            service: orgs::server::LIVENESS_SERVICE.into(),
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
    // Readiness follows the database; liveness does not, so an outage does
    // not restart every pod at once.
    assert_eq!(liveness(&app).await, ServingStatus::Serving as i32);
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
async fn liveness_says_serving_from_start_to_shutdown() {
    let app = TestApp::spawn().await;
    assert_eq!(liveness(&app).await, ServingStatus::Serving as i32);
    assert_eq!(status(&app).await, ServingStatus::Serving as i32);
    let mut watch = HealthClient::new(app.channel())
        .watch(HealthCheckRequest {
            service: orgs::server::LIVENESS_SERVICE.into(),
        })
        .await
        .expect("watch liveness")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("first status")
        .expect("a status");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    app.shutdown().await;
    // The watch ends with shutdown; the last status it saw, if any, is
    // NOT_SERVING.
    let mut last = None;
    while let Ok(Some(message)) = watch.message().await {
        last = Some(message.status);
    }
    if let Some(last) = last {
        assert_eq!(last, ServingStatus::NotServing as i32);
    }
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_every_service() {
    use tonic_reflection::pb::{v1, v1alpha};
    let app = TestApp::spawn().await;
    let expected = [
        "grpc.health.v1.Health",
        "orgs.v1.BillingService",
        "orgs.v1.EventService",
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

/// Starts `orgs serve` with `args` and `env`, and returns it with the address
/// it logs.
async fn serve_process(
    args: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, std::net::SocketAddr) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_orgs"));
    command
        .arg("serve")
        .args(args)
        .env_remove("ORGS_AUTH_HS256_SECRET")
        .env("ORGS_LOG_FORMAT", "json");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if entry["message"] == "serving gRPC" {
                return entry["addr"].as_str().unwrap().parse().unwrap();
            }
        }
        panic!("orgs serve ended without serving");
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test]
async fn a_config_file_sits_below_variables_and_flags() {
    use orgs::proto::v1 as pb;
    let dir = std::env::temp_dir()
        .join("orgs-tests")
        .join(format!("config-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("orgs.toml");
    std::fs::write(
        &file,
        format!(
            "listen_addr = \"127.0.0.1:0\"\nmetrics_listen_addr = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\nmax_organizations_per_user = 1\n[auth]\nhs256_secret = \"{SECRET}\"\n",
            fresh_database_url().await
        ),
    )
    .unwrap();
    let create = |addr: std::net::SocketAddr, name: &'static str| async move {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        orgs::clients::OrganizationServiceClient::with_interceptor(
            channel,
            Bearer::new(token("user_cfg", "")),
        )
        .create_organization(pb::CreateOrganizationRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
    };

    // The file alone: its secret verifies tokens, its limit holds.
    let (mut child, addr) = serve_process(&["--config", file.to_str().unwrap()], &[]).await;
    create(addr, "First").await.unwrap();
    assert_status(
        create(addr, "Second").await,
        tonic::Code::ResourceExhausted,
        "ORGANIZATION_LIMIT_REACHED",
    );
    child.kill().await.unwrap();

    // A variable beats the file.
    let (mut child, addr) = serve_process(
        &[],
        &[
            ("ORGS_CONFIG_FILE", file.to_str().unwrap()),
            ("ORGS_MAX_ORGANIZATIONS_PER_USER", "2"),
        ],
    )
    .await;
    create(addr, "Second").await.unwrap();
    assert_status(
        create(addr, "Third").await,
        tonic::Code::ResourceExhausted,
        "ORGANIZATION_LIMIT_REACHED",
    );
    child.kill().await.unwrap();

    // A flag beats the variable.
    let (mut child, addr) = serve_process(
        &["--max-organizations-per-user", "4"],
        &[
            ("ORGS_CONFIG_FILE", file.to_str().unwrap()),
            ("ORGS_MAX_ORGANIZATIONS_PER_USER", "2"),
        ],
    )
    .await;
    create(addr, "Third").await.unwrap();
    create(addr, "Fourth").await.unwrap();
    assert_status(
        create(addr, "Fifth").await,
        tonic::Code::ResourceExhausted,
        "ORGANIZATION_LIMIT_REACHED",
    );
    child.kill().await.unwrap();

    // A misspelt setting stops the start.
    std::fs::write(&file, "listen_adr = \"127.0.0.1:0\"\n").unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_orgs"))
        .args(["serve", "--config", file.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown setting `listen_adr`"));
    std::fs::remove_dir_all(&dir).unwrap();
}
