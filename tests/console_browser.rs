//! The console in a real browser: headless Chromium driven through
//! WebDriver (chromedriver) signs in, adds a member after the billing
//! preview, and opens the billing page, saving a screenshot of each step
//! under `target/console-screenshots/`.
//!
//! Runs when `ORGS_CONSOLE_BROWSER` is set (`1` for `/usr/bin/chromium`, or
//! the path of a Chromium binary); `ORGS_CHROMEDRIVER` names chromedriver
//! when it is not on the PATH. Without the variable the test prints why it
//! did nothing; with it, a missing browser or driver fails the test.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc};
use common::console::{admin_token, spawn_console};
use common::record;
use common::{TestApp, add_member, create_org};
use fantoccini::{Client, ClientBuilder, Locator};
use tokio::process::{Child, Command};

/// The flags Chromium needs on these machines: no sandbox as root, and no
/// background traffic to hosts a closed network refuses.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
];

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("console-screenshots")
}

/// chromedriver on a free local port, ended with the test.
struct Driver {
    _child: Child,
    url: String,
}

async fn start_driver() -> Driver {
    let program = std::env::var("ORGS_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(&program)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {program}: {e} (apt-get install chromium-driver)")
        });
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Driver { _child: child, url };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{program} did not listen on {port}");
}

async fn browser(driver: &Driver, binary: &str, profile: &std::path::Path) -> Client {
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": binary, "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let dir = screenshots_dir();
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(dir.join(name), png).expect("write screenshot");
}

async fn wait_for_url(client: &Client, part: &str) {
    for _ in 0..100 {
        if client
            .current_url()
            .await
            .map(|url| url.as_str().contains(part))
            .unwrap_or(false)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = client.current_url().await.map(|u| u.to_string());
    panic!("never reached {part}; at {url:?}");
}

/// Organizations that became billable on different days of this period, an
/// admin account in all of them, and the clock on the 20th; the id of an
/// organization one more active member makes billable.
async fn seed(app: &TestApp) -> String {
    let now = Utc::now();
    let start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 9, 0, 0)
        .single()
        .expect("first of the month");
    let names = [
        "Acme Robotics",
        "Blue Harbor Logistics",
        "Cedar & Pine Studio",
        "Delta Analytics",
        "Evergreen Health",
        "Fjord Outfitters",
        "Granite Legal",
    ];
    let days = [1, 3, 3, 6, 9, 13, 17];
    for (n, (name, day)) in names.iter().zip(days).enumerate() {
        app.clock.set(start + chrono::Duration::days(day - 1));
        let owner = format!("user_owner_{n}");
        let org = create_org(app, name, Some(&owner)).await;
        add_member(app, &org.id, "user_ops_admin", "org:admin").await;
        record(app, &[&owner, "user_ops_admin"]).await;
    }
    let sandbox = create_org(app, "Harbor Sandbox", Some("user_trial")).await;
    app.clock.set(start + chrono::Duration::days(19));
    record(app, &["user_trial", "user_newcomer"]).await;
    sandbox.id
}

#[tokio::test]
async fn a_browser_signs_in_adds_a_member_after_the_preview_and_reads_the_bill() {
    let Some(binary) = std::env::var("ORGS_CONSOLE_BROWSER")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        println!(
            "console browser test skipped: set ORGS_CONSOLE_BROWSER=1 (Debian's chromium and \
             chromium-driver) to run it"
        );
        return;
    };
    let binary = if binary == "1" {
        "/usr/bin/chromium".to_string()
    } else {
        binary
    };
    assert!(
        std::path::Path::new(&binary).exists(),
        "no Chromium at {binary} (apt-get install chromium chromium-driver)"
    );
    let app = spawn_console(|config| config.billing.free_organizations = 3).await;
    let organization_id = seed(&app).await;
    let base = format!("http://{}", app.console_addr.expect("console"));
    let driver = start_driver().await;
    let profile = std::env::temp_dir().join(format!("orgs-chromium-{}", ulid::Ulid::new()));
    let client = browser(&driver, &binary, &profile).await;

    let result = async {
        // Sign in by pasting a token.
        client.goto(&format!("{base}/sign-in")).await?;
        screenshot(&client, "sign-in.png").await;
        client
            .find(Locator::Css("#token"))
            .await?
            .send_keys(&admin_token())
            .await?;
        client
            .find(Locator::Css("form[action='/sign-in'] button[type=submit]"))
            .await?
            .click()
            .await?;
        wait_for_url(&client, "/organizations").await;
        let listed = client.source().await?;
        assert!(listed.contains("Acme Robotics"), "{listed}");
        assert!(listed.contains("Signed in as"), "{listed}");
        screenshot(&client, "organizations.png").await;

        // Add a member with the keyboard: Enter submits the preview.
        client
            .goto(&format!("{base}/organizations/{organization_id}"))
            .await?;
        let user = client.find(Locator::Css("#new-user")).await?;
        user.send_keys("user_newcomer").await?;
        user.send_keys("\u{E007}").await?;
        wait_for_url(&client, "/members/add").await;
        let preview = client.source().await?;
        assert!(preview.contains("Billing impact in"), "{preview}");
        assert!(
            preview.contains("makes the organization billable"),
            "{preview}"
        );
        screenshot(&client, "add-member-preview.png").await;
        client
            .find(Locator::Css("form.confirm button[type=submit]"))
            .await?
            .click()
            .await?;
        wait_for_url(&client, "done=member-added").await;
        let page = client.source().await?;
        assert!(page.contains("The member was added."), "{page}");
        assert!(page.contains("user_newcomer"), "{page}");
        screenshot(&client, "member-added.png").await;

        // The bill, its chart and its cost drivers, on a taller window.
        client.set_window_size(1280, 1500).await?;
        client.goto(&format!("{base}/billing")).await?;
        let billing = client.source().await?;
        assert!(billing.contains("<svg"), "{billing}");
        assert!(billing.contains("Cost drivers"), "{billing}");
        assert!(billing.contains("user_ops_admin"), "{billing}");
        client
            .find(Locator::Css("svg.chart title"))
            .await
            .map(|_| ())?;
        screenshot(&client, "billing.png").await;
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    let _ = client.close().await;
    let _ = std::fs::remove_dir_all(&profile);
    result.expect("browser steps");
    println!("screenshots in {}", screenshots_dir().display());
}
