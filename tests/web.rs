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
        let router = Router::new().route("/metrics", get(|| async { "db_up 1\n" }));
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
            "{file}: unknown field `basic_auth_user`, expected one of `tls_server_config`, \
             `http_server_config`, `basic_auth_users`"
        )
    );
    let nested = error_of(&pki, &format!("{tls}  key_fil: server.key\n"));
    assert!(
        nested.starts_with(&format!(
            "{file}: tls_server_config: unknown field `key_fil`"
        )) && nested.contains("line 4"),
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
        row("billing-down").contains("<td class=\"down\">down (connect)</td>"),
        "{}",
        row("billing-down")
    );
    assert!(
        row("orders-primary").contains("<td class=\"up\">up</td>"),
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
        alert.contains("<td class=\"firing\">firing</td>") && alert.contains("target=billing-down"),
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
    let anonymous = client
        .get(&url)
        .send()
        .await
        .expect("answers")
        .status()
        .as_u16();
    assert_eq!(anonymous, 401);
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
