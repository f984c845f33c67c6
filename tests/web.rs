//! `--web.config.file` end to end: a certificate made here (rcgen), dbwatch's web server with TLS and basic
//! auth, and real TLS clients (reqwest with rustls, and curl) against it; client certificates; the file's
//! validation errors.
//!
//! And the status page (`/`, `/api/v1/targets`, `/api/v1/alerts`) of the daemon watching every engine of the
//! local fleet with an alert firing, rendered by headless Chromium, with a screenshot kept under target/tmp.
//!
//! Needs curl, `deploy/local/fleet up` and Debian's chromium (installed by the fleet's tools component); fails
//! without them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use dbwatch::web::{self, WebConfig, WebConfigError};
use fleet::{connection, free_port, Process};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tokio_util::sync::CancellationToken;

#[path = "support/fleet.rs"]
mod fleet;

/// A bcrypt hash as `htpasswd -nbB` writes it; cost 4 (the minimum) keeps the test fast.
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt hash")
}

/// A CA, a server certificate for localhost and 127.0.0.1 signed by it, and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "dbwatch test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca cert");

        let server_key = KeyPair::generate().expect("server key");
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server_params
            .signed_by(&server_key, &ca)
            .expect("server cert");

        let client_key = KeyPair::generate().expect("client key");
        let mut client_params =
            CertificateParams::new(Vec::<String>::new()).expect("client params");
        client_params
            .distinguished_name
            .push(DnType::CommonName, "prometheus");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params
            .signed_by(&client_key, &ca)
            .expect("client cert");

        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write pem")
        };
        write("ca.pem", ca.pem());
        write("server.pem", server.pem());
        write("server.key", server_key.serialize_pem());
        write("client.pem", client.pem());
        write("client.key", client_key.serialize_pem());
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> Vec<u8> {
        std::fs::read(self.path("ca.pem")).expect("read ca")
    }

    /// Writes a web configuration file beside the certificates (relative paths resolve against it).
    fn web_config(&self, text: &str) -> Result<WebConfig, WebConfigError> {
        let path = self.path("web.yml");
        std::fs::write(&path, text).expect("write web.yml");
        WebConfig::load(&path)
    }
}

/// The server under test on an ephemeral port; stops when dropped.
struct Server {
    port: u16,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(web: Option<WebConfig>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let router = Router::new()
            .route("/metrics", get(|| async { "db_up 1\n" }))
            .route("/big", get(|| async { "x".repeat(1 << 20) }));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(web::serve(listener, router, web, shutdown.clone()));
        Server {
            port,
            shutdown,
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().expect("server task");
        let result = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the server stops within 5 s of the shutdown signal")
            .expect("server task");
        assert!(result.is_ok(), "serve returned {result:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn tls_client(pki: &Pki) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&pki.ca()).expect("ca certificate");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(5))
        .build()
        .expect("tls client")
}

/// curl, run without blocking the runtime the server under test runs on.
async fn curl(args: &[&str]) -> (String, String) {
    let output = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "5",
            "--write-out",
            "\n%{http_code}",
        ])
        .args(args)
        .output()
        .await
        .unwrap_or_else(|error| panic!("curl is required: {error}"));
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The HTTP status curl reports last (000 when no HTTP response came back).
async fn curl_status(args: &[&str]) -> String {
    let (stdout, _) = curl(args).await;
    stdout.lines().last().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn tls_and_basic_auth_against_real_clients() {
    let pki = Pki::new();
    let web = pki
        .web_config(&format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS12\n\
             http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n\
             basic_auth_users:\n  prometheus: '{}'\n",
            hash("s3cret")
        ))
        .expect("valid web config");
    assert!(web.tls_enabled() && web.basic_auth_enabled());
    assert!(
        !format!("{web:?}").contains("$2"),
        "the hashes leaked into Debug: {web:?}"
    );
    let server = Server::start(Some(web)).await;
    let url = format!("https://localhost:{}/metrics", server.port);
    let client = tls_client(&pki);

    let good = client
        .get(&url)
        .basic_auth("prometheus", Some("s3cret"))
        .send()
        .await
        .expect("tls request");
    assert_eq!(good.status().as_u16(), 200);
    assert_eq!(
        good.headers()
            .get("strict-transport-security")
            .and_then(|value| value.to_str().ok()),
        Some("max-age=31536000")
    );
    assert_eq!(good.text().await.expect("body"), "db_up 1\n");

    let wrong = client
        .get(&url)
        .basic_auth("prometheus", Some("guess"))
        .send()
        .await
        .expect("tls request");
    assert_eq!(wrong.status().as_u16(), 401);
    let unknown = client
        .get(&url)
        .basic_auth("mallory", Some("s3cret"))
        .send()
        .await
        .expect("tls request");
    assert_eq!(unknown.status().as_u16(), 401);
    let missing = client.get(&url).send().await.expect("tls request");
    assert_eq!(missing.status().as_u16(), 401);
    assert_eq!(
        missing
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok()),
        Some("Basic realm=\"dbwatch\"")
    );

    // Plain HTTP on the TLS port gets no HTTP answer at all.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("plain client")
        .get(format!("http://127.0.0.1:{}/metrics", server.port))
        .basic_auth("prometheus", Some("s3cret"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    // curl, an independent TLS stack, verifying the certificate against the CA by name and by IP address.
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().expect("utf-8 path");
    let by_ip = format!("https://127.0.0.1:{}/metrics", server.port);
    let (stdout, stderr) = curl(&["--cacert", ca, "--user", "prometheus:s3cret", &by_ip]).await;
    assert_eq!(stdout, "db_up 1\n\n200", "curl: {stderr}");
    assert_eq!(
        curl_status(&["--cacert", ca, "--user", "prometheus:nope", &url]).await,
        "401"
    );
    assert_eq!(curl_status(&["--cacert", ca, &url]).await, "401");
    // TLS 1.1 and older are refused by the server.
    assert_eq!(
        curl_status(&["--cacert", ca, "--tlsv1.1", "--tls-max", "1.1", &url]).await,
        "000"
    );
    // Without the CA, curl refuses the certificate: it really is verified.
    assert_eq!(
        curl_status(&["--user", "prometheus:s3cret", &url]).await,
        "000"
    );
    assert_eq!(
        curl_status(&[&format!("http://127.0.0.1:{}/metrics", server.port)]).await,
        "000"
    );

    server.stop().await;
}

#[tokio::test]
async fn client_certificates_are_required_and_verified() {
    let pki = Pki::new();
    let web = pki
        .web_config(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS13\n",
        )
        .expect("valid web config");
    let server = Server::start(Some(web)).await;
    let url = format!("https://localhost:{}/metrics", server.port);
    let path = |name: &str| pki.path(name).to_str().expect("utf-8 path").to_owned();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let (stdout, stderr) = curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]).await;
    assert!(
        stdout.ends_with("\n200"),
        "with a client certificate: {stdout} {stderr}"
    );
    assert_eq!(
        curl_status(&["--cacert", &ca, &url]).await,
        "000",
        "without a client certificate"
    );
    // A certificate the CA signed for servers only (extended key usage serverAuth) is no client certificate.
    assert_eq!(
        curl_status(&[
            "--cacert",
            &ca,
            "--cert",
            &path("server.pem"),
            "--key",
            &path("server.key"),
            &url
        ])
        .await,
        "000"
    );
    // min_version TLS13: a TLS 1.2-only client is refused.
    assert_eq!(
        curl_status(&[
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "--tls-max",
            "1.2",
            &url
        ])
        .await,
        "000"
    );
    server.stop().await;
}

#[tokio::test]
async fn without_a_web_config_it_serves_plain_http() {
    let server = Server::start(None).await;
    let response = reqwest::get(format!("http://127.0.0.1:{}/metrics", server.port))
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    // A body much larger than the server's buffers arrives whole.
    let big = reqwest::get(format!("http://127.0.0.1:{}/big", server.port))
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(big.len(), 1 << 20);

    // Basic auth alone, over plain HTTP, is allowed (as in the exporter-toolkit).
    let pki = Pki::new();
    let auth_only = pki
        .web_config(&format!(
            "basic_auth_users:\n  prometheus: {}\n",
            hash("pw")
        ))
        .expect("valid web config");
    assert!(!auth_only.tls_enabled());
    let secured = Server::start(Some(auth_only)).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/metrics", secured.port);
    let ok = client
        .get(&url)
        .basic_auth("prometheus", Some("pw"))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status().as_u16(), 200);
    let denied = client.get(&url).send().await.expect("request");
    assert_eq!(denied.status().as_u16(), 401);
    secured.stop().await;
    server.stop().await;
}

fn error_of(pki: &Pki, text: &str) -> String {
    match pki.web_config(text) {
        Ok(config) => panic!("accepted {text:?}: {config:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn invalid_files_are_rejected_naming_the_file_and_key() {
    let pki = Pki::new();
    let file = pki.path("web.yml");
    let file = file.display();
    let tls = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";

    assert_eq!(
        error_of(&pki, "tls_server_config:\n  key_file: server.key\n"),
        format!("{file}: tls_server_config.cert_file: required with tls_server_config")
    );
    let missing = error_of(
        &pki,
        "tls_server_config:\n  cert_file: nope.pem\n  key_file: server.key\n",
    );
    assert!(
        missing.starts_with(&format!(
            "{file}: tls_server_config.cert_file: cannot load certificates from "
        )),
        "{missing}"
    );
    let mismatched = error_of(
        &pki,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: client.key\n",
    );
    assert!(
        mismatched.starts_with(&format!(
            "{file}: tls_server_config.key_file: does not match"
        )),
        "{mismatched}"
    );
    assert_eq!(
        error_of(&pki, "basic_auth_users:\n  prometheus: plaintext\n"),
        format!("{file}: basic_auth_users.prometheus: not a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters)")
    );
    assert_eq!(
        error_of(&pki, "basic_auth_user:\n  prometheus: x\n"),
        format!(
            "{file} has 1 problem\n  {file}:1:1: basic_auth_user: unknown key \"basic_auth_user\", \
             expected one of: basic_auth_users, http_server_config, tls_server_config, write_users"
        )
    );
    let nested = error_of(&pki, &format!("{tls}  key_fil: server.key\n"));
    assert!(
        nested.contains(&format!(
            "{file}:4:3: tls_server_config.key_fil: unknown key \"key_fil\""
        )),
        "{nested}"
    );
    assert_eq!(
        error_of(&pki, &format!("{tls}  min_version: TLS11\n")),
        format!("{file}: tls_server_config.min_version: TLS11 is obsolete and not supported; use TLS12 or TLS13")
    );
    assert!(error_of(
        &pki,
        &format!("{tls}  client_auth_type: RequireAnyClientCert\n")
    )
    .starts_with(&format!(
        "{file}: tls_server_config.client_auth_type: RequireAnyClientCert accepts unverified"
    )),);
    assert_eq!(
        error_of(&pki, &format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n")),
        format!("{file}: tls_server_config.client_ca_file: required with client_auth_type RequireAndVerifyClientCert")
    );
    assert_eq!(
        error_of(&pki, "http_server_config:\n  headers:\n    Server: dbwatch\n"),
        format!(
            "{file}: http_server_config.headers.Server: header not allowed; one of Strict-Transport-Security, \
             X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy"
        )
    );
    let absent = WebConfig::load(Path::new("/nonexistent/web.yml")).expect_err("no such file");
    assert!(
        absent
            .to_string()
            .starts_with("cannot read /nonexistent/web.yml: "),
        "{absent}"
    );
    assert_eq!(
        error_of(
            &pki,
            &format!(
                "basic_auth_users:\n  prometheus: {}\nwrite_users: [prometheus, oncall]\n",
                hash("x")
            )
        ),
        format!("{file}: write_users[1]: \"oncall\" is not one of basic_auth_users")
    );
    // An empty file is plain HTTP without authentication.
    let empty = pki.web_config("").expect("empty file");
    assert!(!empty.tls_enabled() && !empty.basic_auth_enabled());
}

// ---------------------------------------------------------------------------------------------------------
// The status page, in a real browser, against the daemon watching the fleet.
//
// Needs `deploy/local/fleet up` and Debian's chromium (installed by the fleet's tools component).

async fn chromium(args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("chromium finishes within 90 s")
        .unwrap_or_else(|error| {
            panic!("chromium is required (installed by `deploy/local/fleet up tools`): {error}")
        })
}

#[tokio::test]
async fn status_page_shows_the_fleet_and_a_firing_alert_in_chromium() {
    let dir = tempfile::tempdir().expect("temp dir");
    // No `for`: the alert fires at the first evaluation that sees the target down.
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: status\n    rules:\n      - alert: target_unreachable\n        expr: db_up == 0\n        \
         labels: {severity: critical}\n        annotations: {summary: '{{ $labels.target }} <cannot> be reached'}\n",
    )
    .expect("write rules");
    let config = dir.path().join("dbwatch.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{interval: 2s, timeout: 1900ms, evaluation_interval: 1s}}\n\
             rule_files: [rules.yml]\n\
             targets:\n\
             - {{name: analytics-primary, type: postgres, labels: {{cluster: analytics}}, connection: {pg}}}\n\
             - {{name: orders-primary, type: mysql, connection: {mysql}}}\n\
             - {{name: catalog, type: mongodb, connection: {mongodb}}}\n\
             - {{name: events, type: cassandra, interval: 5s, timeout: 4s, connection: {cassandra}}}\n\
             - {{name: sessions, type: dynamodb, interval: 5s, timeout: 4s, connection: {dynamodb}}}\n\
             - {{name: billing-down, type: postgres, connection: {{host: 127.0.0.1, port: 1, user: dbwatch, password: x}}}}\n",
            pg = connection("pg-primary"),
            mysql = connection("mysql-primary"),
            mongodb = connection("mongodb"),
            cassandra = connection("cassandra"),
            dynamodb = connection("dynamodb"),
        ),
    )
    .expect("write config");
    let port = free_port();
    let mut daemon = Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_dbwatch"))
            .arg("--config.file")
            .arg(&config)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--storage.path")
            .arg(config.with_file_name("data"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start dbwatch"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let live = [
        "analytics-primary",
        "orders-primary",
        "catalog",
        "events",
        "sessions",
    ];

    // Wait (bounded) for every live target up and the alert firing, through the JSON APIs the page links to.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = daemon.exited() {
            panic!("dbwatch exited early: {status}");
        }
        let json = |path: &'static str| {
            let client = client.clone();
            let url = format!("{base}{path}");
            async move {
                let text = client.get(url).send().await.ok()?.text().await.ok()?;
                serde_json::from_str::<serde_json::Value>(&text).ok()
            }
        };
        let (targets, alerts) = (json("/api/v1/targets").await, json("/api/v1/alerts").await);
        let up = |name: &str| {
            targets.as_ref().is_some_and(|targets| {
                targets["data"]["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|target| target["target"] == name && target["up"] == true)
            })
        };
        let firing = alerts.as_ref().is_some_and(|alerts| {
            alerts["data"]["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|alert| {
                    alert["labels"]["alertname"] == "target_unreachable"
                        && alert["labels"]["target"] == "billing-down"
                        && alert["state"] == "firing"
                })
        });
        if live.iter().all(|name| up(name)) && firing {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every target up with the alert firing within 60 s:\n{targets:?}\n{alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The DOM as the browser built it.
    let dom = chromium(&["--dump-dom", &format!("{base}/")]).await;
    assert!(
        dom.status.success(),
        "chromium --dump-dom: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    for name in live.iter().chain(["billing-down"].iter()) {
        assert!(
            dom.contains(&format!("<tr data-target=\"{name}\">")),
            "{name} missing from the page:\n{dom}"
        );
    }
    let row = |name: &str| {
        let start = dom
            .find(&format!("<tr data-target=\"{name}\">"))
            .expect("row");
        dom[start..]
            .split("</tr>")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        row("billing-down").contains("<span class=\"badge down\">down: connect</span>"),
        "{}",
        row("billing-down")
    );
    assert!(
        row("orders-primary").contains("<span class=\"badge up\">up</span>"),
        "{}",
        row("orders-primary")
    );
    assert!(row("analytics-primary").contains("cluster=analytics"));
    let alert = dom
        .find("<tr data-alert=\"target_unreachable\">")
        .map(|start| &dom[start..])
        .expect("alert row");
    let alert = alert.split("</tr>").next().unwrap_or_default();
    assert!(
        alert.contains("<span class=\"badge firing\">firing</span>")
            && alert.contains("<td>billing-down</td>"),
        "{alert}"
    );
    // The annotation's markup is text, not HTML.
    assert!(
        alert.contains("billing-down &lt;cannot&gt; be reached"),
        "{alert}"
    );
    for link in ["/metrics", "/api/v1/targets", "/api/v1/alerts"] {
        assert!(
            dom.contains(&format!("<a href=\"{link}\">")),
            "no link to {link}"
        );
    }

    // The screenshot, kept as a test artifact under target/tmp.
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot = chromium(&[
        "--window-size=1400,900",
        &format!("--screenshot={}", screenshot.display()),
        &format!("{base}/"),
    ])
    .await;
    assert!(
        shot.status.success(),
        "chromium --screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let png = std::fs::read(&screenshot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a real PNG: {} bytes",
        png.len()
    );
    eprintln!("status page screenshot: {}", screenshot.display());
}

/// The binary's `--web.config.file`: the daemon itself serves TLS with basic auth, and refuses to start on a
/// bad web configuration, naming the file and key.
#[tokio::test]
async fn the_daemon_serves_tls_from_its_web_config_flag() {
    let pki = Pki::new();
    let web_yml = pki.path("web.yml");
    std::fs::write(
        &web_yml,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {}\n",
            hash("scrape-secret")
        ),
    )
    .expect("write web.yml");
    let config = pki.path("dbwatch.yml");
    std::fs::write(
        &config,
        "targets:\n  - {name: dead, type: postgres, connection: {host: 127.0.0.1, port: 1, user: dbwatch, password: x}}\n",
    )
    .expect("write dbwatch.yml");
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dbwatch"))
        .arg("--config.file")
        .arg(&config)
        .arg("--web.config.file")
        .arg(&web_yml)
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--storage.path")
        .arg(pki.path("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start dbwatch");
    let client = tls_client(&pki);
    let url = format!("https://localhost:{port}/-/healthy");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(response) = client
            .get(&url)
            .basic_auth("prometheus", Some("scrape-secret"))
            .send()
            .await
        {
            break response.status().as_u16();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dbwatch never answered over TLS"
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dbwatch exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 200);
    // The probes answer without credentials; everything else needs them.
    let anonymous = |path: &str| {
        let request = client.get(format!("https://localhost:{port}{path}")).send();
        async move { request.await.expect("answers").status().as_u16() }
    };
    assert_eq!(anonymous("/-/healthy").await, 200);
    assert_eq!(anonymous("/metrics").await, 401);
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/-/healthy"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|response| response.status().as_u16() == 400),
        "plain HTTP was served on the TLS port"
    );
    let _ = child.kill();
    let _ = child.wait();

    std::fs::write(&web_yml, "tls_server_config:\n  cert_file: server.pem\n")
        .expect("write web.yml");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dbwatch"))
        .arg("--config.file")
        .arg(&config)
        .arg("--web.config.file")
        .arg(&web_yml)
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--storage.path")
        .arg(pki.path("data"))
        .output()
        .expect("run dbwatch");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("web.yml") && stderr.contains("tls_server_config.key_file"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Who may write, the silences' bounds, and the server's bounds, against the real binary. These need no fleet:
// the one target is a closed port.

/// A silence as amtool posts it, muting `alertname` for an hour.
fn silence_json(alertname: &str) -> serde_json::Value {
    let now = std::time::SystemTime::now();
    let later = now + Duration::from_secs(3600);
    serde_json::json!({
        "matchers": [{"name": "alertname", "value": alertname, "isRegex": false, "isEqual": true}],
        "startsAt": humantime::format_rfc3339_seconds(now).to_string(),
        "endsAt": humantime::format_rfc3339_seconds(later).to_string(),
        "createdBy": "ops",
        "comment": "maintenance",
    })
}

/// The daemon binary (`DBWATCH_BIN` overrides it, to measure another build) on a free port, with a routing
/// file whose one receiver is `webhook`, two rules firing 3 s after start (`muted` and `loud`, both on the
/// closed port), stderr kept in a file.
struct Daemon {
    process: Process,
    dir: tempfile::TempDir,
    base: String,
    port: u16,
}

impl Daemon {
    fn start(webhook: &str, args: &[&str], web_yml: Option<&str>) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write file")
        };
        write(
            "rules.yml",
            "groups:\n  - name: auth\n    rules:\n\
             \x20     - {alert: muted, expr: db_up == 0, for: 3s}\n\
             \x20     - {alert: loud, expr: db_up == 0, for: 3s}\n",
        );
        write(
            "routing.yml",
            &format!(
                "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n\
                 receivers:\n  - name: hook\n    webhook_configs:\n      - url: {webhook}\n"
            ),
        );
        write(
            "dbwatch.yml",
            "global: {interval: 1s, timeout: 900ms, evaluation_interval: 1s}\nrule_files: [rules.yml]\n\
             alerting:\n  config_file: routing.yml\n\
             targets:\n  - {name: dead, type: postgres, connection: {host: 127.0.0.1, port: 1, user: dbwatch, password: x}}\n",
        );
        let port = free_port();
        let mut command = std::process::Command::new(
            std::env::var("DBWATCH_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_dbwatch").to_owned()),
        );
        command
            .arg("--config.file")
            .arg(dir.path().join("dbwatch.yml"))
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--storage.path")
            .arg(dir.path().join("data"))
            .args(args);
        if let Some(text) = web_yml {
            write("web.yml", text);
            command
                .arg("--web.config.file")
                .arg(dir.path().join("web.yml"));
        }
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let process = Process(
            command
                .stdout(std::process::Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start dbwatch"),
        );
        Daemon {
            process,
            dir,
            base: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// Waits (bounded) for the server to answer.
    async fn healthy(&mut self) {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            // Any answer: the tests that need the probes open say so themselves.
            if client
                .get(format!("{}/-/healthy", self.base))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            if let Some(status) = self.process.exited() {
                panic!("dbwatch exited early: {status}: {}", self.stderr());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "dbwatch never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    fn saved_silences(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("data/silences.json")).ok()
    }
}

/// A webhook receiver in the test: every body it is posted.
struct Hook {
    url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Hook {
    async fn start() -> Hook {
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&received);
        let router = Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let sink = std::sync::Arc::clone(&sink);
                async move {
                    sink.lock().expect("hook lock").push(body);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Hook { url, received }
    }

    /// The alert names notified so far.
    fn alertnames(&self) -> Vec<String> {
        self.received
            .lock()
            .expect("hook lock")
            .iter()
            .filter_map(|body| body["groupLabels"]["alertname"].as_str().map(str::to_owned))
            .collect()
    }
}

/// reqwest's `json` without its feature.
trait JsonBody {
    fn json_body(self, value: &serde_json::Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, value: &serde_json::Value) -> Self {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }
}

async fn status_and_body(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_users_writes_are_refused_unless_enabled_and_silences_are_bounded() {
    let hook = Hook::start().await;
    let client = reqwest::Client::new();

    // No web config, a routing file: the silences API is there, and writes are refused.
    let mut daemon = Daemon::start(&hook.url, &[], None);
    daemon.healthy().await;
    let silences = format!("{}/api/v2/silences", daemon.base);
    let (status, body) = status_and_body(
        client
            .post(&silences)
            .json_body(&silence_json("muted"))
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let message: String = serde_json::from_str(&body).expect("a JSON string");
    assert!(
        message.contains("basic_auth_users")
            && message.contains("--web.enable-unauthenticated-writes"),
        "{message}"
    );
    let (status, body) = status_and_body(
        client
            .delete(format!("{}/api/v2/silence/x", daemon.base))
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 403, "expiring is a write too: {body}");
    let (status, body) = status_and_body(client.get(&silences).send().await.expect("answer")).await;
    assert_eq!((status, body.as_str()), (200, "[]"), "reads stay open");
    assert_eq!(daemon.saved_silences(), None, "nothing was stored");
    drop(daemon);

    // Turned on knowingly: a warning names the address, and writes work.
    let mut daemon = Daemon::start(&hook.url, &["--web.enable-unauthenticated-writes"], None);
    daemon.healthy().await;
    let silences = format!("{}/api/v2/silences", daemon.base);
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("--web.enable-unauthenticated-writes")
            && stderr.contains(&format!("127.0.0.1:{}", daemon.port)),
        "{stderr}"
    );
    let (status, body) = status_and_body(
        client
            .post(&silences)
            .json_body(&silence_json("muted"))
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A page that rebound its own name to 127.0.0.1 sends that name as Host: refused.
    let (status, body) = status_and_body(
        client
            .post(&silences)
            .header("host", format!("attacker.example:{}", daemon.port))
            .json_body(&silence_json("loud"))
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("DNS rebinding"), "{body}");

    // The bounds, each a 400 (or 413) with a JSON string saying which.
    let refused = |mut silence: serde_json::Value, edit: &dyn Fn(&mut serde_json::Value)| {
        edit(&mut silence);
        let request = client.post(&silences).json_body(&silence).send();
        async move {
            let (status, body) = status_and_body(request.await.expect("answer")).await;
            let message: String =
                serde_json::from_str(&body).unwrap_or_else(|_| panic!("not a JSON string: {body}"));
            (status, message)
        }
    };
    let matchers: Vec<serde_json::Value> = (0..33)
        .map(|i| serde_json::json!({"name": format!("l{i}"), "value": "v", "isRegex": false}))
        .collect();
    assert_eq!(
        refused(silence_json("x"), &|silence| silence["matchers"] =
            serde_json::json!(matchers))
        .await,
        (400, "a silence has at most 32 matchers, not 33".to_owned())
    );
    assert_eq!(
        refused(silence_json("x"), &|silence| silence["comment"] =
            "c".repeat(5 * 1024).into())
        .await,
        (400, "comment is at most 4096 bytes, not 5120".to_owned())
    );
    assert_eq!(
        refused(silence_json("x"), &|silence| silence["createdBy"] =
            "a".repeat(257).into())
        .await,
        (400, "createdBy is at most 256 bytes, not 257".to_owned())
    );
    assert_eq!(
        refused(silence_json("x"), &|silence| silence["matchers"][0]
            ["value"] =
            "v".repeat(1025).into())
        .await,
        (
            400,
            "a matcher value is at most 1024 bytes, not 1025".to_owned()
        )
    );
    // 100 KiB: over the 64 KiB body limit whatever it holds.
    assert_eq!(
        refused(silence_json("x"), &|silence| silence["padding"] =
            "p".repeat(100 * 1024).into())
        .await,
        (413, "the request body is larger than 64 KiB".to_owned())
    );
    let (status, body) = status_and_body(
        client
            .post(&silences)
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        serde_json::from_str::<String>(&body).is_ok(),
        "malformed JSON is answered with a JSON string: {body}"
    );

    // 1,000 silences that have not expired, then the 1,001st is refused.
    for i in 1..1000 {
        let response = client
            .post(&silences)
            .json_body(&silence_json(&format!("a{i}")))
            .send()
            .await
            .expect("answer");
        assert_eq!(
            response.status().as_u16(),
            200,
            "silence {i}: {:?}",
            response.text().await
        );
    }
    assert_eq!(
        refused(silence_json("one-too-many"), &|_| {}).await,
        (
            400,
            "there are already 1000 silences that have not expired, the most dbwatch keeps (1000); expire some first"
                .to_owned()
        )
    );
    let listed: Vec<serde_json::Value> = client
        .get(&silences)
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .map(|text| serde_json::from_str(&text).expect("json"))
        .expect("body");
    assert_eq!(listed.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_cannot_mute_and_a_writer_can() {
    let hook = Hook::start().await;
    let pki = Pki::new();
    let web_yml = format!(
        "basic_auth_users:\n  prometheus: {}\n  oncall: {}\nwrite_users: [oncall]\n",
        hash("scrape-secret"),
        hash("oncall-secret")
    );
    let mut daemon = Daemon::start(
        &hook.url,
        &["--web.external-url=https://dbwatch.example:9630/"],
        Some(&web_yml),
    );
    daemon.healthy().await;
    let client = reqwest::Client::new();
    let base = daemon.base.clone();
    let silences = format!("{base}/api/v2/silences");
    let request = |method: reqwest::Method, path: &str, user: Option<(&str, &str)>| {
        let mut request = client.request(method, format!("{base}{path}"));
        if let Some((user, password)) = user {
            request = request.basic_auth(user, Some(password));
        }
        request
    };
    let reader = Some(("prometheus", "scrape-secret"));
    let writer = Some(("oncall", "oncall-secret"));

    // The probes need no credentials; the rest does.
    for path in ["/-/healthy", "/-/ready"] {
        let status = request(reqwest::Method::GET, path, None)
            .send()
            .await
            .expect("answer")
            .status()
            .as_u16();
        assert!(status == 200 || status == 503, "{path}: {status}");
    }
    for path in ["/metrics", "/", "/api/v2/silences"] {
        let response = request(reqwest::Method::GET, path, None)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }
    // The scrape user reads...
    for path in ["/metrics", "/api/v2/silences", "/api/v1/alerts"] {
        let response = request(reqwest::Method::GET, path, reader)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    // ...and cannot mute.
    let (status, body) = status_and_body(
        request(reqwest::Method::POST, "/api/v2/silences", reader)
            .json_body(&silence_json("muted"))
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let message: String = serde_json::from_str(&body).expect("a JSON string");
    assert!(
        message.contains("\"prometheus\" may read but not write")
            && message.contains("write_users"),
        "{message}"
    );
    // A wrong password, or none, is a 401 for a write as for a read.
    for user in [
        Some(("oncall", "guess")),
        Some(("mallory", "oncall-secret")),
        None,
    ] {
        let (status, body) = status_and_body(
            request(reqwest::Method::POST, "/api/v2/silences", user)
                .json_body(&silence_json("muted"))
                .send()
                .await
                .expect("answer"),
        )
        .await;
        assert_eq!(status, 401, "{user:?}: {body}");
        assert!(
            serde_json::from_str::<String>(&body).is_ok_and(|m| m.contains("write_users")),
            "{body}"
        );
    }
    assert_eq!(daemon.saved_silences(), None, "nothing was stored");

    // The writer mutes `muted`, through amtool and its --http.config.file (basic auth).
    let amtool_config = pki.path("amtool-http.yml");
    std::fs::write(
        &amtool_config,
        "basic_auth:\n  username: oncall\n  password: oncall-secret\n",
    )
    .expect("write");
    let amtool = |config: &Path, args: &[&str]| {
        std::process::Command::new("amtool")
            .arg(format!("--alertmanager.url={base}"))
            .arg(format!("--http.config.file={}", config.display()))
            .args(args)
            .output()
            .expect("amtool runs (deploy/local/fleet up tools installs it)")
    };
    let added = amtool(
        &amtool_config,
        &[
            "silence",
            "add",
            "alertname=muted",
            "--author=ops",
            "--comment=maintenance",
            "--duration=1h",
        ],
    );
    assert!(
        added.status.success(),
        "amtool: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    let id = String::from_utf8_lossy(&added.stdout).trim().to_owned();
    assert_eq!(id.len(), 36, "{id}");
    // amtool as the reader is refused, and says why.
    let reader_config = pki.path("amtool-reader.yml");
    std::fs::write(
        &reader_config,
        "basic_auth:\n  username: prometheus\n  password: scrape-secret\n",
    )
    .expect("write");
    let denied = amtool(
        &reader_config,
        &[
            "silence",
            "add",
            "alertname=loud",
            "--author=ops",
            "--comment=x",
            "--duration=1h",
        ],
    );
    assert!(
        !denied.status.success(),
        "the reader added a silence with amtool"
    );
    // The writer over plain HTTP too; a 200 with the id.
    let (status, body) = status_and_body(
        request(reqwest::Method::POST, "/api/v2/silences", writer)
            .json_body(&silence_json("other"))
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<serde_json::Value> = request(reqwest::Method::GET, "/api/v2/silences", reader)
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .map(|text| serde_json::from_str(&text).expect("json"))
        .expect("body");
    assert_eq!(listed.len(), 2);
    assert!(
        daemon
            .saved_silences()
            .is_some_and(|saved| saved.contains(&id)),
        "saved before acknowledged"
    );

    // Both rules fire together 3 s after start; `loud` is notified, `muted` never is.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !hook.alertnames().contains(&"loud".to_owned()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "`loud` was never notified: {}",
            daemon.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A few more flushes (group_interval 1 s) in which `muted` would have gone out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The links in notifications are --web.external-url's, without its trailing slash.
    let external: Vec<serde_json::Value> = hook
        .received
        .lock()
        .expect("hook lock")
        .iter()
        .map(|body| body["externalURL"].clone())
        .collect();
    assert!(
        external
            .iter()
            .all(|url| url == "https://dbwatch.example:9630"),
        "{external:?}"
    );
    assert!(
        !hook.alertnames().contains(&"muted".to_owned()),
        "{:?}",
        hook.alertnames()
    );
    let _ = silences;

    // The writer expires it; then `muted` is notified.
    let expired = amtool(&amtool_config, &["silence", "expire", &id]);
    assert!(
        expired.status.success(),
        "amtool: {}",
        String::from_utf8_lossy(&expired.stderr)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !hook.alertnames().contains(&"muted".to_owned()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "`muted` not notified after the expiry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends SIGTERM to a child.
fn terminate(process: &Process) {
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(process.0.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// SIGTERM while one client holds half a request and another reads /metrics a byte at a time: the process
/// still exits within the 10 s shutdown deadline (before this change it waited for them without end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_deadline_despite_slow_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hook = Hook::start().await;
    let mut daemon = Daemon::start(&hook.url, &[], None);
    daemon.healthy().await;
    let address: std::net::SocketAddr = format!("127.0.0.1:{}", daemon.port)
        .parse()
        .expect("address");

    // Half a request: the head never ends.
    let mut half = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");

    // A slow reader: a tiny receive buffer, and one byte read at a time.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(2048).expect("rcvbuf");
    let mut slow = socket.connect(address).await.expect("connect");
    // Enough requests pipelined that their responses exceed every buffer between the server and this reader
    // (the kernel lets a socket's send buffer grow to net.ipv4.tcp_wmem's maximum, 4 MiB by default), so the
    // server is really stuck mid-response.
    let size = reqwest::get(format!("{}/metrics", daemon.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body")
        .len();
    let send_buffer_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|text| text.split_whitespace().last()?.parse().ok())
        .unwrap_or(4 << 20);
    let requests = (3 * send_buffer_max).div_ceil(size);
    let pipelined = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(requests);
    slow.write_all(&pipelined).await.expect("write");
    let mut byte = [0u8; 1];
    slow.read_exact(&mut byte)
        .await
        .expect("the response starts");
    // Slow until the daemon has exited, then as fast as it can, to find how much the kernel still held.
    let exited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fast = std::sync::Arc::clone(&exited);
    let reader = tokio::spawn(async move {
        let mut total = 1usize;
        let mut buffer = [0u8; 4096];
        loop {
            let fast = fast.load(std::sync::atomic::Ordering::Relaxed);
            let size = if fast { buffer.len() } else { 1 };
            match slow.read(&mut buffer[..size]).await {
                Ok(0) | Err(_) => return total,
                Ok(read) => total += read,
            }
            if !fast {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = std::time::Instant::now();
    terminate(&daemon.process);
    let status = loop {
        if let Some(status) = daemon.process.exited() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "dbwatch did not exit within 10 s of SIGTERM: {}",
            daemon.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = started.elapsed();
    exited.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(status.success(), "{status}: {}", daemon.stderr());
    let read = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the slow reader's connection was closed")
        .expect("reader task");
    // The connection was cut long before every response was read.
    assert!(
        read < requests * size,
        "read {read} bytes of {requests} responses of {size} bytes"
    );
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("dropping them"),
        "the drain gave up on the slow clients: {stderr}"
    );
    eprintln!("SIGTERM to exit with two slow clients: {took:?}; the slow reader got {read} bytes");
    drop(half);
}

/// Not a timed assertion: the figures for authenticated scrapes and a flood of wrong passwords, at bcrypt cost
/// 10 (as `htpasswd -nBC 10` writes). `DBWATCH_BIN=<another build>` measures that build the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_costs_are_reported() {
    let hook = Hook::start().await;
    let cost10 = |password: &str| bcrypt::hash(password, 10).expect("bcrypt hash");
    let web_yml = format!(
        "basic_auth_users:\n  prometheus: {}\n",
        cost10("scrape-secret")
    );
    let mut daemon = Daemon::start(&hook.url, &[], Some(&web_yml));
    daemon.healthy().await;
    let url = format!("{}/metrics", daemon.base);
    let client = reqwest::Client::new();
    let scrape = || {
        let request = client
            .get(&url)
            .basic_auth("prometheus", Some("scrape-secret"))
            .send();
        async move { request.await.expect("answer").status().as_u16() }
    };
    assert_eq!(scrape().await, 200);

    let scrapes = 40;
    let start = std::time::Instant::now();
    for _ in 0..scrapes {
        assert_eq!(scrape().await, 200);
    }
    let rate = f64::from(scrapes) / start.elapsed().as_secs_f64();

    // CPU of the daemon (utime + stime, in clock ticks of 10 ms) during a 5 s flood of wrong passwords from 8
    // clients, and the latency of good scrapes meanwhile.
    let cpu = |pid: u32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest)
            .unwrap_or("")
            .split(' ')
            .collect();
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    };
    let pid = daemon.process.0.id();
    let flood_until = tokio::time::Instant::now() + Duration::from_secs(5);
    let cpu_before = cpu(pid);
    let wall = std::time::Instant::now();
    let mut flooders = Vec::new();
    for client_index in 0..8 {
        let url = url.clone();
        flooders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut answered = 0u32;
            while tokio::time::Instant::now() < flood_until {
                let password = format!("guess-{client_index}-{answered}");
                if let Ok(response) = client
                    .get(&url)
                    .basic_auth("prometheus", Some(password))
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await
                {
                    assert_ne!(response.status().as_u16(), 200);
                    answered += 1;
                }
            }
            answered
        }));
    }
    let mut latencies = Vec::new();
    while tokio::time::Instant::now() < flood_until {
        let one = std::time::Instant::now();
        assert_eq!(scrape().await, 200);
        latencies.push(one.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cores = (cpu(pid) - cpu_before) / wall.elapsed().as_secs_f64();
    let mut bad = 0;
    for flooder in flooders {
        bad += flooder.await.expect("flooder");
    }
    latencies.sort();
    let worst = latencies.last().copied().unwrap_or_default();
    eprintln!(
        "authenticated scrapes: {rate:.1} requests/s; during a flood ({bad} wrong passwords answered in 5 s): \
         {cores:.2} cores used by dbwatch, good scrapes' worst latency {worst:?} ({} scrapes)",
        latencies.len()
    );
}

#[test]
fn a_bad_external_url_stops_the_daemon_at_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dbwatch"))
        .arg("--web.external-url=dbwatch.example:9630")
        .arg("--config.file=/nonexistent.yml")
        .output()
        .expect("run dbwatch");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--web.external-url") && stderr.contains("not an http:// or https:// URL"),
        "{stderr}"
    );
}
