//! The status UI (issue 18) in a real browser, against the daemon watching the fleet: every page rendered by
//! headless Chromium, its DOM checked and a screenshot written to `target/screenshots/` (look at them); one
//! alert firing and one silenced; hostile label and annotation values from a rule shown as text, never as
//! markup or a link; the write forms guarded by their token and origin; and writes refused to anyone the web
//! server does not let write.
//!
//! Needs `deploy/local/fleet up` (its environment, `eval "$(deploy/local/fleet env)"`) and Debian's chromium
//! (installed by the fleet's tools component).

#[path = "support/fleet.rs"]
mod fleet;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fleet::{connection, free_port, Process};
use serde_json::Value;
use tokio::time::Instant;

/// What a rule puts in labels and annotations, as a hostile database name would.
const HOSTILE: &str = "<img src=x onerror=alert(1)>\"'&";

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

fn screenshots() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots folder");
    dir
}

struct Daemon {
    _dir: tempfile::TempDir,
    process: Process,
    base: String,
    client: reqwest::Client,
}

/// The daemon on `targets` with `rules`, a webhook receiver that accepts everything, and `flags`.
/// `extra_rules`: more rule files (the shipped ones, for their thresholds on the sparklines).
fn start(
    rules: &str,
    targets: &str,
    web_config: Option<&str>,
    flags: &[&str],
    hook: u16,
) -> Daemon {
    start_with(rules, &[], targets, web_config, flags, hook)
}

fn start_with(
    rules: &str,
    extra_rules: &[&str],
    targets: &str,
    web_config: Option<&str>,
    flags: &[&str],
    hook: u16,
) -> Daemon {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("rules.yml"), rules).expect("rules");
    std::fs::write(
        dir.path().join("routing.yml"),
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook}/hook\n"
        ),
    )
    .expect("routing");
    std::fs::write(
        dir.path().join("dbwatch.yml"),
        format!(
            "global: {{interval: 2s, timeout: 1900ms, evaluation_interval: 1s}}\nrule_files: [rules.yml{extra}]\n\
             alerting: {{config_file: routing.yml}}\ntargets:\n{targets}",
            extra = extra_rules.iter().map(|file| format!(", {file}")).collect::<String>(),
        ),
    )
    .expect("config");
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_dbwatch"));
    command
        .arg("--config.file")
        .arg(dir.path().join("dbwatch.yml"))
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--storage.path")
        .arg(dir.path().join("data"))
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(web) = web_config {
        std::fs::write(dir.path().join("web.yml"), web).expect("web config");
        command
            .arg("--web.config.file")
            .arg(dir.path().join("web.yml"));
    }
    Daemon {
        process: Process(command.spawn().expect("start dbwatch")),
        _dir: dir,
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
    }
}

impl Daemon {
    async fn json(&self, path: &str, user: Option<(&str, &str)>) -> Option<Value> {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some((user, password)) = user {
            request = request.basic_auth(user, Some(password));
        }
        let text = request.send().await.ok()?.text().await.ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits (bounded) until `/api/v1/alerts` lists `alertname` firing.
    async fn wait_firing(&mut self, alertname: &str, user: Option<(&str, &str)>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(self.process.exited().is_none(), "dbwatch exited early");
            let alerts = self.json("/api/v1/alerts", user).await;
            let firing = alerts.as_ref().is_some_and(|alerts| {
                alerts["data"]["alerts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|alert| {
                        alert["labels"]["alertname"] == alertname && alert["state"] == "firing"
                    })
            });
            if firing {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{alertname} not firing within 60 s: {alerts:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn page(&self, path: &str, user: Option<(&str, &str)>) -> String {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some((user, password)) = user {
            request = request.basic_auth(user, Some(password));
        }
        request
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("text")
    }

    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
        user: Option<(&str, &str)>,
    ) -> (u16, String) {
        let body: Vec<String> = form
            .iter()
            .map(|(name, value)| format!("{}={}", urlencode(name), urlencode(value)))
            .collect();
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some((user, password)) = user {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.expect("answer");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}

/// `application/x-www-form-urlencoded` escaping of one name or value.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (byte as char).to_string()
            }
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A webhook receiver that accepts every notification.
async fn receiver() -> u16 {
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

/// The value of the first `name="token"` hidden field in `html`.
fn token(html: &str) -> Option<String> {
    let start = html.find("name=\"token\" value=\"")? + "name=\"token\" value=\"".len();
    Some(html[start..].split('"').next()?.to_owned())
}

fn rules() -> String {
    format!(
        "groups:\n  - name: ui\n    rules:\n      - alert: target_down\n        expr: db_up == 0\n        \
         labels: {{severity: critical}}\n        annotations: {{summary: '{{{{ $labels.target }}}} cannot be reached', \
         runbook_url: 'https://example.invalid/runbooks#target_down'}}\n      - alert: connections_in_use\n        \
         expr: db_connections_utilization_ratio{{target=\"orders-pg\"}} > 0\n        labels: {{severity: warning, \
         hostile: {hostile}}}\n        annotations: {{summary: {hostile}, runbook_url: 'javascript:alert(1)'}}\n",
        hostile = serde_json::to_string(HOSTILE).expect("json string"),
    )
}

#[tokio::test]
async fn every_page_in_chromium_with_one_alert_firing_one_silenced_and_hostile_values_as_text() {
    let hook = receiver().await;
    let targets = format!(
        "  - {{name: orders-pg, type: postgres, labels: {{cluster: orders}}, connection: {}}}\n  \
         - {{name: orders-mariadb, type: mysql, connection: {}}}\n  \
         - {{name: billing-down, type: postgres, connection: {{host: 127.0.0.1, port: 1, user: dbwatch, password: x}}}}\n",
        connection("pg-primary"),
        connection("mysql-primary"),
    );
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/fleet.yml");
    let mut daemon = start_with(
        &rules(),
        &[shipped],
        &targets,
        None,
        &["--web.enable-unauthenticated-writes"],
        hook,
    );
    daemon.wait_firing("target_down", None).await;
    daemon.wait_firing("connections_in_use", None).await;

    // Silence target_down from the alerts page, as the on-call human would: the form's token and fields.
    let alerts = daemon.page("/alerts", None).await;
    let token = token(&alerts).expect("the alerts page offers the silence form");
    let row = alerts
        .split("<tr data-alert=\"target_down\">")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .expect("target_down's row");
    let labels = row
        .split("name=\"labels\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the labels field")
        .replace("&quot;", "\"");
    let form = [
        ("token", token.as_str()),
        ("labels", labels.as_str()),
        ("duration", "4h"),
        ("comment", "billing is being migrated"),
    ];
    // Without the token, or from another origin: refused, nothing silenced.
    let (status, body) = daemon.post("/ui/silence", &form[1..], &[], None).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = daemon
        .post(
            "/ui/silence",
            &form,
            &[("origin", "https://evil.example")],
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = daemon
        .post(
            "/ui/silence",
            &form,
            &[("sec-fetch-site", "cross-site")],
            None,
        )
        .await;
    assert_eq!(status, 403);
    let silences = daemon
        .json("/api/v2/silences", None)
        .await
        .expect("silences");
    assert_eq!(silences.as_array().map(Vec::len), Some(0), "{silences}");
    // With it, from this origin: a silence on exactly the alert's labels, then back to the alerts.
    let origin = daemon.base.clone();
    let (status, _) = daemon
        .post("/ui/silence", &form, &[("origin", origin.as_str())], None)
        .await;
    assert_eq!(status, 303);
    let silences = daemon
        .json("/api/v2/silences", None)
        .await
        .expect("silences");
    let silence = &silences[0];
    assert_eq!(silence["status"]["state"], "active", "{silences}");
    assert_eq!(silence["comment"], "billing is being migrated");
    let matchers: Vec<String> = silence["matchers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|matcher| {
            format!(
                "{}={}",
                matcher["name"].as_str().unwrap_or(""),
                matcher["value"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        matchers.contains(&"alertname=target_down".to_owned())
            && matchers.contains(&"target=billing-down".to_owned()),
        "{matchers:?}"
    );
    // Recorded in the history with its matchers.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = daemon.json("/api/v1/events?kind=silence", None).await;
        let recorded = events.as_ref().is_some_and(|events| {
            events["data"]["events"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|event| {
                    event["action"] == "created"
                        && event["matchers"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|m| m == "alertname=\"target_down\"")
                })
        });
        if recorded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the silence is not in the history: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every page, as the browser builds it; then a screenshot of each.
    let folder = screenshots();
    for (name, path, size) in [
        ("fleet", "/", "1400,900"),
        ("fleet-phone", "/", "390,844"),
        ("target", "/targets/orders-pg", "1400,900"),
        ("alerts", "/alerts", "1400,900"),
        ("silences", "/silences", "1400,700"),
        ("events", "/events", "1400,900"),
        ("notifications", "/events?kind=notification", "1400,700"),
    ] {
        let url = format!("{}{path}", daemon.base);
        let dom = chromium(&["--dump-dom", &url]).await;
        assert!(
            dom.status.success(),
            "chromium --dump-dom {path}: {}",
            String::from_utf8_lossy(&dom.stderr)
        );
        let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
        // No markup from a rule: no element the page did not write, no script, no javascript: link.
        for forbidden in ["<img", "<script", "href=\"javascript:", "onerror=alert(1)>"] {
            assert!(
                !dom.contains(forbidden),
                "{path} contains {forbidden}:\n{dom}"
            );
        }
        let shot = folder.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        let output = chromium(&[
            &format!("--window-size={size}"),
            &format!("--screenshot={}", shot.display()),
            &url,
        ])
        .await;
        assert!(
            output.status.success(),
            "chromium --screenshot {path}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let png = std::fs::read(&shot).expect("the screenshot was written");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
            "{name}: not a real PNG ({} bytes)",
            png.len()
        );
        eprintln!("screenshot {}", shot.display());
        match name {
            "fleet" => {
                for target in ["orders-pg", "orders-mariadb", "billing-down"] {
                    assert!(
                        dom.contains(&format!("<tr data-target=\"{target}\">")),
                        "{target} missing:\n{dom}"
                    );
                }
                let row = dom
                    .split("<tr data-target=\"billing-down\">")
                    .nth(1)
                    .unwrap_or_default();
                assert!(
                    row.contains("<span class=\"badge down\">down: connect</span>"),
                    "{row}"
                );
                // Sparklines, with the shipped connection_pool_exhausted threshold (90 %) marked.
                assert!(dom.contains("<svg"), "no sparkline:\n{dom}");
                assert!(
                    dom.contains("connection_pool_exhausted fires at &gt; 90.0 %")
                        && dom.contains("stroke-dasharray"),
                    "no threshold on the sparklines:\n{dom}"
                );
            }
            "target" => {
                assert!(
                    dom.contains("<h2>Collectors</h2>") && dom.contains("class=\"up\">ok</td>"),
                    "{dom}"
                );
                assert!(dom.contains("data-alert=\"connections_in_use\""), "{dom}");
            }
            "alerts" => {
                // The hostile values are there, as text.
                assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
                assert!(
                    dom.contains("javascript:alert(1)") && !dom.contains("href=\"javascript"),
                    "{dom}"
                );
                assert!(
                    dom.contains("href=\"https://example.invalid/runbooks#target_down\""),
                    "{dom}"
                );
                let row = dom
                    .split("<tr data-alert=\"target_down\">")
                    .nth(1)
                    .unwrap_or_default();
                let row = row.split("</tr>").next().unwrap_or_default();
                assert!(
                    row.contains("silenced") && row.contains("Expire silence"),
                    "{row}"
                );
                let row = dom
                    .split("<tr data-alert=\"connections_in_use\">")
                    .nth(1)
                    .unwrap_or_default();
                assert!(row.contains("<button>Silence</button>"), "{row}");
            }
            "silences" => assert!(
                dom.contains("billing is being migrated") && dom.contains(">active<"),
                "{dom}"
            ),
            "events" => assert!(
                dom.contains("data-kind=\"alert\"") && dom.contains("data-kind=\"silence\""),
                "{dom}"
            ),
            _ => {}
        }
    }
}

#[tokio::test]
async fn the_ui_never_lets_anyone_the_web_server_refuses_write() {
    let hook = receiver().await;
    let targets = "  - {name: billing-down, type: postgres, connection: {host: 127.0.0.1, port: 1, user: dbwatch, password: x}}\n";
    let rules =
        "groups:\n  - name: ui\n    rules:\n      - alert: target_down\n        expr: db_up == 0\n";
    let form = |token: &str| {
        vec![
            ("token".to_owned(), token.to_owned()),
            (
                "labels".to_owned(),
                "{\"alertname\":\"target_down\"}".to_owned(),
            ),
            ("duration".to_owned(), "1h".to_owned()),
            ("comment".to_owned(), "x".to_owned()),
        ]
    };
    let as_refs = |form: &[(String, String)]| -> Vec<(String, String)> { form.to_vec() };

    // No users and no --web.enable-unauthenticated-writes: no write form, and a forged POST is refused.
    let mut open = start(rules, targets, None, &[], hook);
    open.wait_firing("target_down", None).await;
    let alerts = open.page("/alerts", None).await;
    assert!(
        token(&alerts).is_none(),
        "a write form for a reader:\n{alerts}"
    );
    let forged = as_refs(&form("0"));
    let forged: Vec<(&str, &str)> = forged
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (status, _) = open.post("/ui/silence", &forged, &[], None).await;
    assert_eq!(status, 403);
    let (status, _) = open
        .post("/ui/silences/x/expire", &[("token", "0")], &[], None)
        .await;
    assert_eq!(status, 403);

    // Basic auth: a reader sees no form and is refused; a writer's form works only with its own token.
    let hash = |password: &str| bcrypt::hash(password, 4).expect("bcrypt");
    let web = format!(
        "basic_auth_users:\n  reader: {}\n  oncall: {}\nwrite_users: [oncall]\n",
        hash("r"),
        hash("w")
    );
    let mut auth = start(rules, targets, Some(&web), &[], hook);
    let reader = Some(("reader", "r"));
    let writer = Some(("oncall", "w"));
    auth.wait_firing("target_down", reader).await;
    assert!(token(&auth.page("/alerts", reader).await).is_none());
    let writer_token = token(&auth.page("/alerts", writer).await).expect("a writer gets the form");
    let with_token = form(&writer_token);
    let with_token: Vec<(&str, &str)> = with_token
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (status, _) = auth.post("/ui/silence", &with_token, &[], reader).await;
    assert_eq!(status, 403, "a reader with a writer's token");
    let (status, _) = auth.post("/ui/silence", &with_token, &[], None).await;
    assert_eq!(status, 401);
    let (status, _) = auth.post("/ui/silence", &with_token, &[], writer).await;
    assert_eq!(status, 303);
    let silences = auth
        .json("/api/v2/silences", reader)
        .await
        .expect("silences");
    assert_eq!(silences[0]["createdBy"], "oncall", "{silences}");
    assert_eq!(silences.as_array().map(Vec::len), Some(1));
}
