//! The deployment files under deploy/ checked by the tools that will read them: promtool (Prometheus
//! configuration and rules), amtool (Alertmanager configuration and routing), systemd-analyze (the unit and
//! its hardening), dbwatch itself (the configuration the Kubernetes ConfigMap carries), and structural checks
//! of the Kubernetes manifests, the container file and Grafana's provisioning without a cluster.
//!
//! Needs promtool and amtool (Debian packages prometheus and prometheus-alertmanager) and systemd-analyze
//! (package systemd), all installed by the fleet's tools component; fails without them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn repo(path: &str) -> PathBuf {
    Path::new(ROOT).join(path)
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("{program} is required (installed by `deploy/local/fleet up tools`): {error}")
        })
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn rule_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("alerts"))
        .expect("read alerts/")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule files in alerts/");
    files
}

#[test]
fn prometheus_config_and_rules_pass_promtool() {
    // The layout prometheus.yml documents: rules, secret and CA beside it.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("prometheus.yml");
    std::fs::copy(repo("deploy/prometheus/prometheus.yml"), &config).expect("copy prometheus.yml");
    for sub in ["dbwatch-rules", "secrets", "tls"] {
        std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
    }
    let rules = rule_files();
    for rule in &rules {
        std::fs::copy(
            rule,
            dir.path()
                .join("dbwatch-rules")
                .join(rule.file_name().expect("name")),
        )
        .expect("copy");
    }
    std::fs::write(
        dir.path().join("secrets/dbwatch-scrape-password"),
        "s3cret\n",
    )
    .expect("write secret");
    std::fs::write(dir.path().join("tls/dbwatch-ca.pem"), "").expect("write ca");

    let output = run(
        "promtool",
        &["check", "config", config.to_str().expect("utf-8 path")],
    );
    let report = text(&output);
    assert!(output.status.success(), "promtool check config:\n{report}");
    assert!(
        report.contains(&format!("SUCCESS: {} rule files found", rules.len())),
        "the rule_files glob must find every rule file:\n{report}"
    );

    let mut args = vec!["check".to_owned(), "rules".to_owned()];
    args.extend(rules.iter().map(|rule| rule.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run("promtool", &args);
    assert!(
        output.status.success(),
        "promtool check rules:\n{}",
        text(&output)
    );
}

#[test]
fn alertmanager_example_passes_amtool_and_routes_by_severity() {
    let config = repo("deploy/alertmanager/alertmanager.yml");
    let config = config.to_str().expect("utf-8 path");
    let output = run("amtool", &["check-config", config]);
    assert!(
        output.status.success(),
        "amtool check-config:\n{}",
        text(&output)
    );

    // The seed's routing: critical pages, warnings go to Slack and email.
    let route = |labels: &[&str]| {
        let mut args = vec!["config", "routes", "test", "--config.file", config];
        args.extend_from_slice(labels);
        let output = run("amtool", &args);
        assert!(
            output.status.success(),
            "amtool config routes test {labels:?}:\n{}",
            text(&output)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(
        route(&["alertname=connection_pool_exhausted", "severity=critical"]),
        "pagerduty"
    );
    assert_eq!(
        route(&["alertname=high_latency", "severity=warning"]),
        "slack-and-email"
    );
    assert_eq!(route(&["alertname=something_else"]), "team-email");
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    // systemd-analyze verify checks that ExecStart's binary exists: point it at the one just built.
    let unit = std::fs::read_to_string(repo("deploy/systemd/dbwatch.service")).expect("read unit");
    assert!(
        unit.contains("ExecStart=/usr/bin/dbwatch "),
        "the unit runs /usr/bin/dbwatch"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dbwatch.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/dbwatch", env!("CARGO_BIN_EXE_dbwatch")),
    )
    .expect("write unit");
    let path = path.to_str().expect("utf-8 path");

    let output = run("systemd-analyze", &["verify", path]);
    assert!(
        output.status.success(),
        "systemd-analyze verify:\n{}",
        text(&output)
    );
    // Warnings (an unknown key, a misspelt section) do not fail verify; they must not exist either.
    let warnings = text(&output);
    assert!(
        warnings.trim().is_empty(),
        "systemd-analyze verify warned:\n{warnings}"
    );

    let output = run(
        "systemd-analyze",
        &["security", "--offline=true", "--no-pager", path],
    );
    let report = text(&output);
    let exposure: f64 = report
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for dbwatch.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    // 0 is a fully locked-down unit, 10 an unprotected one; "OK" ends at 2.0 (IP access must stay open).
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0:\n{report}");
}

/// Every document of every manifest, with the file it came from.
fn manifests() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("deploy/kubernetes"))
        .expect("read deploy/kubernetes")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .filter(|path| !path.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read manifest");
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value =
                Value::deserialize(document).unwrap_or_else(|error| panic!("{name}: {error}"));
            docs.push((name.clone(), value));
        }
    }
    docs
}

use serde::Deserialize;

fn find<'a>(docs: &'a [(String, Value)], kind: &str) -> &'a Value {
    docs.iter()
        .find(|(_, doc)| doc["kind"] == kind)
        .map(|(_, doc)| doc)
        .unwrap_or_else(|| panic!("no {kind} in deploy/kubernetes"))
}

fn string<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is missing or not a string: {value:?}"))
}

#[test]
fn kubernetes_manifests_are_consistent() {
    let docs = manifests();
    for (file, doc) in &docs {
        string(&doc["apiVersion"], &format!("{file}: apiVersion"));
        string(&doc["kind"], &format!("{file}: kind"));
        string(&doc["metadata"]["name"], &format!("{file}: metadata.name"));
    }
    let kustomization: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo("deploy/kubernetes/kustomization.yaml"))
            .expect("read kustomization"),
    )
    .expect("parse kustomization");
    let listed: BTreeSet<&str> = kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let files: BTreeSet<&str> = docs.iter().map(|(file, _)| file.as_str()).collect();
    assert_eq!(listed, files, "kustomization.yaml lists every manifest");

    let deployment = find(&docs, "Deployment");
    assert_eq!(deployment["apiVersion"], "apps/v1");
    assert!(
        deployment["spec"]["replicas"].as_u64().unwrap_or(0) >= 2,
        "a pair, for availability"
    );
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], pod_labels);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap_or(0) > 0);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert!(
        container["resources"]["limits"]["memory"].is_string(),
        "a memory limit"
    );
    let port = string(&container["ports"][0]["name"], "container port name");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], port);
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&"--config.file=/etc/dbwatch/dbwatch.yml"),
        "{args:?}"
    );
    let listen = args
        .iter()
        .find_map(|arg| arg.strip_prefix("--web.listen-address="))
        .expect("listen address");
    assert!(listen.ends_with(&format!(
        ":{}",
        container["ports"][0]["containerPort"]
            .as_u64()
            .expect("port")
    )));

    // Volumes: the ConfigMap exists, the Secret is referenced (created outside), every mount has a volume.
    let volumes = pod["volumes"].as_sequence().expect("volumes");
    let volume_names: BTreeSet<&str> = volumes
        .iter()
        .filter_map(|volume| volume["name"].as_str())
        .collect();
    for mount in container["volumeMounts"].as_sequence().expect("mounts") {
        assert!(
            volume_names.contains(string(&mount["name"], "mount name")),
            "mount without volume: {mount:?}"
        );
    }
    let configmap = find(&docs, "ConfigMap");
    assert!(volumes
        .iter()
        .any(|volume| volume["configMap"]["name"] == configmap["metadata"]["name"]));
    assert!(
        volumes
            .iter()
            .any(|volume| volume["secret"]["secretName"].is_string()),
        "secret reference"
    );

    let service = find(&docs, "Service");
    assert_eq!(&service["spec"]["selector"], pod_labels);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], port);
    let monitor = find(&docs, "PodMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(&monitor["spec"]["selector"]["matchLabels"], pod_labels);
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"], port);
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"][0]["path"],
        "/metrics"
    );
    let budget = find(&docs, "PodDisruptionBudget");
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], pod_labels);

    // The configuration the ConfigMap carries is one dbwatch accepts.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("dbwatch.yml");
    std::fs::write(
        &config,
        string(
            &configmap["data"]["dbwatch.yml"],
            "ConfigMap data dbwatch.yml",
        ),
    )
    .expect("write");
    let output = run(
        env!("CARGO_BIN_EXE_dbwatch"),
        &["check-config", config.to_str().expect("utf-8 path")],
    );
    assert!(
        output.status.success(),
        "dbwatch check-config on the ConfigMap:\n{}",
        text(&output)
    );
    assert!(text(&output).contains("ok, 5 targets"), "{}", text(&output));
}

#[test]
fn container_file_is_multi_stage_and_runs_as_non_root() {
    let file = std::fs::read_to_string(repo("deploy/container/Containerfile"))
        .expect("read Containerfile");
    let instructions: Vec<(String, String)> = file
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(' '))
        .map(|(instruction, rest)| (instruction.to_uppercase(), rest.trim().to_owned()))
        .collect();
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(
        stages.len() >= 2,
        "multi-stage: {} FROM lines",
        stages.len()
    );
    let build_stage = instructions[stages[0]]
        .1
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    let last = &instructions[*stages.last().expect("a stage")..];
    assert!(
        last.iter()
            .any(|(op, rest)| op == "COPY" && rest.starts_with(&format!("--from={build_stage} "))),
        "the final stage copies from the build stage"
    );
    assert!(
        !last.iter().any(|(op, _)| op == "RUN"),
        "nothing runs in the final stage: no shell is needed"
    );
    let user = last
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, rest)| rest.as_str())
        .expect("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|uid| uid.parse().ok())
        .expect("numeric USER");
    assert!(uid > 0, "runs as non-root, numerically (for runAsNonRoot)");
    let entrypoint = last
        .iter()
        .find(|(op, _)| op == "ENTRYPOINT")
        .map(|(_, rest)| rest.clone())
        .expect("ENTRYPOINT");
    assert!(
        entrypoint.contains("/usr/local/bin/dbwatch"),
        "{entrypoint}"
    );
    // The flags the image passes are the ones the binary has.
    let help = text(&run(env!("CARGO_BIN_EXE_dbwatch"), &["--help"]));
    for flag in ["--config.file", "--web.listen-address"] {
        assert!(
            file.contains(&format!("\"{flag}=")) && help.contains(flag),
            "{flag}"
        );
    }
    // The build stage builds the locked dependency set of the root crate.
    assert!(file.contains("cargo build --release --locked -p dbwatch"));
}

#[test]
fn grafana_provisioning_points_at_the_dashboards() {
    let read = |path: &str| -> Value {
        serde_yaml::from_str(&std::fs::read_to_string(repo(path)).expect("read")).expect("parse")
    };
    let datasources = read("deploy/grafana/provisioning/datasources/dbwatch.yml");
    assert_eq!(datasources["apiVersion"], 1);
    assert_eq!(datasources["datasources"][0]["type"], "prometheus");
    let providers = read("deploy/grafana/provisioning/dashboards/dbwatch.yml");
    assert_eq!(providers["apiVersion"], 1);
    assert_eq!(providers["providers"][0]["type"], "file");
    assert!(providers["providers"][0]["options"]["path"].is_string());
}
