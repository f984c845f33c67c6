//! The deployment files under deploy/ checked by the tools that will read them: promtool (Prometheus
//! configuration and rules), amtool (Alertmanager configuration and routing), systemd-analyze (the unit and
//! its hardening), dbwatch itself (the configuration the Kubernetes ConfigMap carries), and structural checks
//! of the Kubernetes manifests, the container file and Grafana's provisioning without a cluster. Then each
//! shipped command line is started for real under a read-only root (see "Start what you ship" below).
//!
//! Needs promtool and amtool (Debian packages prometheus and prometheus-alertmanager), systemd-analyze
//! (package systemd) and bwrap (package bubblewrap), all installed by the fleet's tools component; fails
//! without them.

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
    // State in the unit's StateDirectory, the only place ProtectSystem=strict leaves writable; auth on.
    let launch = systemd_launch();
    assert_eq!(launch.state, "/var/lib/dbwatch");
    let exec = unit
        .lines()
        .find(|line| line.starts_with("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.contains(" --storage.path=${STATE_DIRECTORY}"),
        "{exec}"
    );
    assert_eq!(
        flag(&launch.argv, "--web.config.file").map(|(_, path)| path),
        Some("/etc/dbwatch/web.yml".to_owned())
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

    // A StatefulSet: each pod's state folder is its own claim, which follows it through reschedules.
    let workload = find(&docs, "StatefulSet");
    assert!(
        !docs.iter().any(|(_, doc)| doc["kind"] == "Deployment"),
        "the state needs a StatefulSet's claims, not a Deployment's emptyDir"
    );
    assert_eq!(workload["apiVersion"], "apps/v1");
    let replicas = workload["spec"]["replicas"].as_u64().unwrap_or(1);
    assert!(replicas >= 2, "a pair, for availability");
    let pod_labels = &workload["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&workload["spec"]["selector"]["matchLabels"], pod_labels);
    let pod = &workload["spec"]["template"]["spec"];
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

    // Volumes: the ConfigMap exists, the Secret is referenced (created outside), every mount has a volume or a
    // claim template; the state mount is a ReadWriteOnce claim and the storage path.
    let volumes = pod["volumes"].as_sequence().expect("volumes");
    let claims = workload["spec"]["volumeClaimTemplates"]
        .as_sequence()
        .expect("volumeClaimTemplates");
    let volume_names: BTreeSet<&str> = volumes
        .iter()
        .chain(claims)
        .filter_map(|volume| {
            volume["name"]
                .as_str()
                .or(volume["metadata"]["name"].as_str())
        })
        .collect();
    let state = claims
        .iter()
        .find(|claim| claim["metadata"]["name"] == "state")
        .expect("a claim template named state");
    assert_eq!(state["spec"]["accessModes"][0], "ReadWriteOnce");
    assert!(state["spec"]["resources"]["requests"]["storage"].is_string());
    assert!(
        !volumes.iter().any(|volume| volume["name"] == "state"),
        "the state is the claim, not a pod volume"
    );
    let state_mount = container["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .find(|mount| mount["name"] == "state")
        .expect("state mounted");
    assert_eq!(
        args.iter()
            .find_map(|arg| arg.strip_prefix("--storage.path=")),
        Some(string(&state_mount["mountPath"], "state mountPath"))
    );
    let web_config = args
        .iter()
        .find_map(|arg| arg.strip_prefix("--web.config.file="))
        .expect("--web.config.file: the endpoint needs authentication");
    let web_mount = container["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .find(|mount| {
            web_config.starts_with(&format!("{}/", string(&mount["mountPath"], "mountPath")))
        })
        .expect("the web config is mounted");
    assert!(
        volumes
            .iter()
            .any(|volume| volume["name"] == web_mount["name"]
                && volume["secret"]["secretName"].is_string()),
        "the web config (password hashes) comes from a Secret"
    );
    let headless = docs
        .iter()
        .map(|(_, doc)| doc)
        .find(|doc| {
            doc["kind"] == "Service" && doc["metadata"]["name"] == workload["spec"]["serviceName"]
        })
        .expect("the StatefulSet's governing Service");
    assert_eq!(headless["spec"]["clusterIP"], "None");
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

    // Silences and the notification log are per pod: dbwatch's own notifier only with one replica.
    let config: Value = serde_yaml::from_str(string(
        &configmap["data"]["dbwatch.yml"],
        "ConfigMap data dbwatch.yml",
    ))
    .expect("parse the ConfigMap's dbwatch.yml");
    assert!(
        replicas == 1 || config["alerting"]["config_file"].is_null(),
        "with {replicas} replicas leave notifications to Alertmanager: silences and the notification log are per pod"
    );
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
    // The flags the image passes are the ones the binary has; the state folder is the image's VOLUME.
    let help = text(&run(env!("CARGO_BIN_EXE_dbwatch"), &["--help"]));
    let image = image();
    assert_eq!(
        flag(&image.cmd, "--storage.path").map(|(_, path)| path),
        Some(image.state.clone())
    );
    assert!(file.contains(&format!("VOLUME [\"{}\"]", image.state)));
    for flag in [
        "--config.file",
        "--web.listen-address",
        "--web.config.file",
        "--storage.path",
    ] {
        assert!(
            file.contains(&format!("\"{flag}=")) && help.contains(flag),
            "{flag}"
        );
    }
    // The build stage builds the locked dependency set of the root crate, with the profile that ships, and
    // installs what that profile built.
    assert!(file.contains("cargo build --profile dist --locked -p dbwatch"));
    assert!(file.contains("target/dist/dbwatch /out/usr/local/bin/dbwatch"));
    let manifest = std::fs::read_to_string(repo("Cargo.toml")).expect("read Cargo.toml");
    assert!(
        manifest.contains("[profile.dist]"),
        "Cargo.toml defines the dist profile"
    );
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

// ---- Start what you ship ----------------------------------------------------------------------------------
//
// The systemd unit's ExecStart (and ExecStartPre), the image's ENTRYPOINT + CMD and the Kubernetes container's
// command line, each read from its file and run verbatim under bubblewrap: this machine's root read-only, the
// files' state folder the only writable place, the configuration bind-mounted read-only over /etc/dbwatch, the
// binary at the path the files name, the user the files name. Only the listen address is rewritten, to a free
// port on loopback (see `Launch::sandboxed`).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

/// The user and password of the test's web configuration.
const WEB_USER: &str = "prometheus";
const WEB_PASSWORD: &str = "start-test-password";

/// How one shipped file starts dbwatch.
#[derive(Debug, Clone)]
struct Launch {
    what: &'static str,
    /// Program and arguments as the file gives them, variables expanded the way its runtime does.
    argv: Vec<String>,
    /// Commands the runtime runs first (systemd's ExecStartPre), expanded likewise.
    pre: Vec<Vec<String>>,
    env: BTreeMap<String, String>,
    uid: u32,
    /// The folder the file provisions for state (StateDirectory=, the image's VOLUME, the pod's state volume).
    state: String,
}

/// systemd's command-line splitting (quotes) and expansion (`${NAME}` inside a word, `$NAME` as a word of its
/// own splits at whitespace), for the subset the unit uses; anything else fails the test rather than guessing.
fn systemd_words(line: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    assert!(!line.contains('%'), "specifiers are not handled: {line}");
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            for c in chars.by_ref() {
                if c == first {
                    break;
                }
                word.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                assert!(
                    c != '"' && c != '\'' && c != '\\',
                    "quoting inside a word: {line}"
                );
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    let lookup = |name: &str| -> String {
        env.get(name)
            .unwrap_or_else(|| panic!("${name} is not set for the unit"))
            .clone()
    };
    let mut expanded = Vec::new();
    for word in words {
        if let Some(name) = word.strip_prefix('$').filter(|name| !name.starts_with('{')) {
            expanded.extend(lookup(name).split_whitespace().map(str::to_owned));
            continue;
        }
        let mut out = String::new();
        let mut rest = word.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("closing brace") + start;
            out.push_str(&lookup(&rest[start + 2..end]));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        expanded.push(out);
    }
    expanded
}

fn systemd_launch() -> Launch {
    let unit = std::fs::read_to_string(repo("deploy/systemd/dbwatch.service")).expect("read unit");
    // What systemd gives every service: its default PATH, then what the unit asks for.
    let mut env = BTreeMap::from([(
        "PATH".to_owned(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin".to_owned(),
    )]);
    let mut exec = None;
    let mut pre = Vec::new();
    let mut state = None;
    let mut dynamic_user = false;
    for line in unit.lines().map(str::trim) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if line.starts_with('#') {
            continue;
        }
        match key {
            "StateDirectory" => {
                let dirs: Vec<String> = value
                    .split_whitespace()
                    .map(|dir| format!("/var/lib/{dir}"))
                    .collect();
                env.insert("STATE_DIRECTORY".into(), dirs.join(":"));
                state = dirs.first().cloned();
            }
            "LoadCredential" => {
                env.insert(
                    "CREDENTIALS_DIRECTORY".into(),
                    "/run/credentials/dbwatch.service".into(),
                );
            }
            "Environment" => {
                for assignment in systemd_words(value, &BTreeMap::new()) {
                    let (name, value) = assignment.split_once('=').expect("NAME=value");
                    env.insert(name.into(), value.into());
                }
            }
            "DynamicUser" => dynamic_user = value == "yes",
            "ExecStart" => {
                assert!(exec.is_none(), "one ExecStart");
                exec = Some(value.to_owned());
            }
            "ExecStartPre" => pre.push(value.to_owned()),
            _ => {}
        }
    }
    let exec = exec.expect("ExecStart");
    for line in pre.iter().chain([&exec]) {
        assert!(
            !line.starts_with(['-', '@', ':', '+', '!']),
            "exec prefixes are not handled: {line}"
        );
    }
    assert!(dynamic_user, "the unit runs as a dynamic user");
    Launch {
        what: "systemd ExecStart",
        argv: systemd_words(&exec, &env),
        pre: pre.iter().map(|line| systemd_words(line, &env)).collect(),
        uid: 61184, // the first uid of systemd's DynamicUser range
        state: state.expect("StateDirectory="),
        env,
    }
}

/// The final stage of the Containerfile, as (instruction, rest) pairs.
fn image_instructions() -> Vec<(String, String)> {
    let file = std::fs::read_to_string(repo("deploy/container/Containerfile"))
        .expect("read Containerfile");
    let instructions: Vec<(String, String)> = file
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(' '))
        .map(|(instruction, rest)| (instruction.to_uppercase(), rest.trim().to_owned()))
        .collect();
    let last = instructions
        .iter()
        .rposition(|(op, _)| op == "FROM")
        .expect("FROM");
    instructions[last..].to_vec()
}

fn json_array(instruction: &str, rest: &str) -> Vec<String> {
    serde_json::from_str(rest)
        .unwrap_or_else(|error| panic!("{instruction} must be a JSON array (exec form): {error}"))
}

struct Image {
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: BTreeMap<String, String>,
    uid: u32,
    state: String,
}

fn image() -> Image {
    let mut image = Image {
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        env: BTreeMap::new(),
        uid: 0,
        // Where the contract puts the container's state when the image declares no VOLUME.
        state: "/var/lib/dbwatch".into(),
    };
    for (op, rest) in image_instructions() {
        match op.as_str() {
            "ENTRYPOINT" => image.entrypoint = json_array(&op, &rest),
            "CMD" => image.cmd = json_array(&op, &rest),
            "ENV" => {
                let (name, value) = rest.split_once('=').expect("ENV NAME=value");
                image
                    .env
                    .insert(name.into(), value.trim_matches('"').into());
            }
            "USER" => {
                image.uid = rest
                    .split(':')
                    .next()
                    .and_then(|uid| uid.parse().ok())
                    .expect("numeric USER");
            }
            "VOLUME" => image.state = json_array(&op, &rest)[0].clone(),
            _ => {}
        }
    }
    image
        .env
        .entry("PATH".into())
        .or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    image
}

fn container_launch() -> Launch {
    let image = image();
    Launch {
        what: "container ENTRYPOINT + CMD",
        argv: image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
        pre: Vec::new(),
        env: image.env,
        uid: image.uid,
        state: image.state,
    }
}

fn kubernetes_launch() -> Launch {
    let image = image();
    let docs = manifests();
    let workload = docs
        .iter()
        .map(|(_, doc)| doc)
        .find(|doc| doc["kind"] == "StatefulSet" || doc["kind"] == "Deployment")
        .expect("a StatefulSet or Deployment");
    let pod = &workload["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let strings = |value: &Value| -> Option<Vec<String>> {
        value.as_sequence().map(|items| {
            items
                .iter()
                .map(|item| string(item, "command/args item").to_owned())
                .collect()
        })
    };
    // Kubernetes: `command` replaces the ENTRYPOINT, `args` the CMD.
    let command = strings(&container["command"]).unwrap_or(image.entrypoint);
    let args = strings(&container["args"]).unwrap_or(image.cmd);
    let mut env = image.env;
    for variable in container["env"].as_sequence().into_iter().flatten() {
        env.insert(
            string(&variable["name"], "env name").into(),
            string(&variable["value"], "env value").into(),
        );
    }
    let uid = container["securityContext"]["runAsUser"]
        .as_u64()
        .or(pod["securityContext"]["runAsUser"].as_u64())
        .unwrap_or(u64::from(image.uid));
    let state = container["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .find(|mount| mount["name"] == "state")
        .map(|mount| string(&mount["mountPath"], "state mountPath").to_owned())
        .expect("a volume named state");
    Launch {
        what: "Kubernetes container",
        argv: command.into_iter().chain(args).collect(),
        pre: Vec::new(),
        env,
        uid: u32::try_from(uid).expect("uid"),
        state,
    }
}

/// The value of `--flag=value` or `--flag value` in `args`, and its index.
fn flag(args: &[String], name: &str) -> Option<(usize, String)> {
    let prefix = format!("{name}=");
    args.iter().enumerate().find_map(|(i, arg)| {
        if let Some(value) = arg.strip_prefix(&prefix) {
            Some((i, value.to_owned()))
        } else if arg == name {
            args.get(i + 1).map(|value| (i + 1, value.clone()))
        } else {
            None
        }
    })
}

/// Mount points bubblewrap cannot create: the view's root is read-only, so a mount point that does not exist on
/// this machine (/etc/dbwatch, /var/lib/dbwatch, /usr/bin/dbwatch) needs its deepest existing ancestor replaced
/// by a tmpfs that re-binds that ancestor's entries read-only, and is made read-only again once mounted.
fn shadowed_parents(destinations: &[&str]) -> Vec<PathBuf> {
    let mut parents: Vec<PathBuf> = Vec::new();
    for destination in destinations {
        let mut path = Path::new(destination);
        if path.symlink_metadata().is_ok() {
            continue;
        }
        while path.symlink_metadata().is_err() {
            path = path.parent().expect("/ exists");
        }
        if !parents.iter().any(|parent| path.starts_with(parent)) {
            parents.retain(|parent| !parent.starts_with(path));
            parents.push(path.to_owned());
        }
    }
    parents
}

#[derive(Clone, Copy, PartialEq)]
enum StateMount {
    Writable,
    ReadOnly,
    Absent,
}

/// A launch ready to run: its files in place, its command rewritten only at the listen address.
struct Prepared {
    launch: Launch,
    /// The bwrap arguments, shadow re-binds collapsed, for the log.
    shown: String,
    bwrap: Vec<String>,
    port: u16,
    listen_shipped: String,
    web: bool,
    _etc: tempfile::TempDir,
}

fn prepare(launch: &Launch, state_dir: &Path, state: StateMount) -> Prepared {
    let mut launch = launch.clone();
    let args = launch.argv[1..].to_vec();
    // The configuration the command names, under /etc/dbwatch where every file puts it.
    let etc = tempfile::tempdir().expect("temp dir");
    let place = |path: &str, text: &str| {
        let relative = path
            .strip_prefix("/etc/dbwatch/")
            .unwrap_or_else(|| panic!("{path}: configuration outside /etc/dbwatch"));
        let file = etc.path().join(relative);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, text).expect("write");
    };
    let (_, config) = flag(&args, "--config.file").expect("--config.file");
    // A 1 s interval: the first poll starts at a random offset within it, and readiness waits for that poll.
    place(
        &config,
        "\
global:
  interval: 1s
  timeout: 900ms
  evaluation_interval: 1s
rule_files: [start-test-rules.yml]
targets:
  - name: closed
    type: postgres
    connection: {host: 127.0.0.1, port: 1, user: dbwatch, password: x}
",
    );
    place(
        &format!(
            "{}/start-test-rules.yml",
            Path::new(&config).parent().expect("dir").display()
        ),
        "groups:\n  - name: start\n    rules:\n      - alert: closed_target_down\n        expr: db_up == 0\n",
    );
    let web = match flag(&args, "--web.config.file") {
        Some((_, path)) => {
            let hash = bcrypt::hash(WEB_PASSWORD, 4).expect("bcrypt");
            place(
                &path,
                &format!("basic_auth_users:\n  {WEB_USER}: {hash}\nwrite_users: [{WEB_USER}]\n"),
            );
            true
        }
        None => false,
    };

    // The only rewrite: a free loopback port instead of 0.0.0.0:9630, since these tests run in parallel with
    // each other and with other test binaries on one machine (and a fixed port may be taken by a running demo).
    let (index, listen_shipped) =
        flag(&args, "--web.listen-address").expect("--web.listen-address");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    if launch.argv[index + 1].starts_with("--web.listen-address=") {
        launch.argv[index + 1] = format!("--web.listen-address={listen}");
    } else {
        launch.argv[index + 1] = listen;
    }

    let binary = launch.argv[0].clone();
    let mut destinations = vec!["/etc/dbwatch", binary.as_str()];
    if state != StateMount::Absent {
        destinations.push(&launch.state);
    }
    let shadowed = shadowed_parents(&destinations);
    let mut bwrap: Vec<String> = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        .map(str::to_owned)
        .to_vec();
    let mut shown = bwrap.join(" ");
    for parent in &shadowed {
        bwrap.extend(["--tmpfs".into(), parent.display().to_string()]);
        let mut count = 0;
        for entry in std::fs::read_dir(parent).expect("read dir").flatten() {
            let path = entry.path().display().to_string();
            match std::fs::read_link(entry.path()) {
                Ok(target) => {
                    bwrap.extend(["--symlink".into(), target.display().to_string(), path])
                }
                Err(_) => bwrap.extend(["--ro-bind-try".into(), path.clone(), path]),
            }
            count += 1;
        }
        shown.push_str(&format!(
            " --tmpfs {0} [{count} entries of {0} re-bound read-only]",
            parent.display()
        ));
    }
    let mut mounts = vec![
        "--ro-bind".to_owned(),
        env!("CARGO_BIN_EXE_dbwatch").to_owned(),
        binary.clone(),
        "--ro-bind".to_owned(),
        etc.path().display().to_string(),
        "/etc/dbwatch".to_owned(),
    ];
    match state {
        StateMount::Writable => mounts.extend([
            "--bind".to_owned(),
            state_dir.display().to_string(),
            launch.state.clone(),
        ]),
        StateMount::ReadOnly => mounts.extend([
            "--ro-bind".to_owned(),
            state_dir.display().to_string(),
            launch.state.clone(),
        ]),
        StateMount::Absent => {}
    }
    for parent in &shadowed {
        mounts.extend(["--remount-ro".into(), parent.display().to_string()]);
    }
    let uid = launch.uid.to_string();
    mounts.extend(
        [
            "--unshare-user",
            "--uid",
            &uid,
            "--gid",
            &uid,
            "--die-with-parent",
            "--chdir",
            "/",
            "--",
        ]
        .map(str::to_owned),
    );
    shown.push(' ');
    shown.push_str(&mounts.join(" "));
    bwrap.extend(mounts);
    Prepared {
        launch,
        shown,
        bwrap,
        port,
        listen_shipped,
        web,
        _etc: etc,
    }
}

/// A sandboxed process, killed with the test (bwrap's --die-with-parent takes dbwatch along).
struct Sandboxed {
    child: std::process::Child,
    stderr: PathBuf,
    _log: tempfile::TempDir,
}

impl Drop for Sandboxed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sandboxed {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Prepared {
    fn spawn(&self, argv: &[String]) -> Sandboxed {
        let log = tempfile::tempdir().expect("temp dir");
        let stderr = log.path().join("stderr");
        let child = Command::new("bwrap")
            .args(&self.bwrap)
            .args(argv)
            .env_clear()
            .envs(&self.launch.env)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|error| {
                panic!("bwrap is required (Debian's bubblewrap; `deploy/local/fleet up tools`): {error}")
            });
        Sandboxed {
            child,
            stderr,
            _log: log,
        }
    }

    fn run_to_end(&self, argv: &[String], within: Duration) -> (std::process::ExitStatus, String) {
        let mut process = self.spawn(argv);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = process.child.try_wait().expect("wait") {
                return (status, process.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not end within {within:?}:\n{}",
                argv.join(" "),
                process.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET `path` on the sandboxed daemon, with the test user's credentials when `authenticated` and the
    /// launch has a web config; the status code, or None while nothing answers.
    fn get(&self, path: &str, authenticated: bool) -> Option<u16> {
        use base64::Engine as _;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let auth = if self.web && authenticated {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{WEB_USER}:{WEB_PASSWORD}"))
            )
        } else {
            String::new()
        };
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split_whitespace().nth(1)?.parse().ok()
    }

    /// Starts the daemon and waits for `/-/ready` to answer 200; panics with its stderr if it exits first.
    fn start_ready(&self) -> (Sandboxed, Duration) {
        let started = Instant::now();
        let mut process = self.spawn(&self.launch.argv);
        let deadline = started + Duration::from_secs(30);
        loop {
            if let Some(status) = process.child.try_wait().expect("wait") {
                panic!(
                    "{}: dbwatch exited ({status}) before it was ready, started as\n  bwrap {} {}\nstderr:\n{}",
                    self.launch.what,
                    self.shown,
                    self.launch.argv.join(" "),
                    process.stderr()
                );
            }
            if self.get("/-/ready", false) == Some(200) {
                return (process, started.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "{}: not ready within 30 s:\n{}",
                self.launch.what,
                process.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Runs `launch` as shipped and requires readiness, its state in the provisioned folder, private files.
fn starts_as_shipped(launch: Launch) {
    let state = tempfile::tempdir().expect("temp dir");
    let prepared = prepare(&launch, state.path(), StateMount::Writable);
    assert_eq!(
        prepared.listen_shipped, "0.0.0.0:9630",
        "{}: the shipped listen address",
        launch.what
    );
    for pre in &prepared.launch.pre {
        let (status, stderr) = prepared.run_to_end(pre, Duration::from_secs(30));
        assert!(
            status.success(),
            "{}: {} failed:\n{stderr}",
            launch.what,
            pre.join(" ")
        );
    }
    let (process, ready_after) = prepared.start_ready();
    println!(
        "{}: ready after {ready_after:?} (uid {}), started as\n  bwrap {} {}",
        launch.what,
        launch.uid,
        prepared.shown,
        prepared.launch.argv.join(" ")
    );
    assert_eq!(mode(&state.path().join(".lock")), 0o600);
    // The rule fires at the first evaluation and the engine saves its state there, privately.
    let alerts = state.path().join("alerts.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !alerts.exists() {
        assert!(
            Instant::now() < deadline,
            "{}: no alerts.json in the state folder:\n{}",
            launch.what,
            process.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(mode(&alerts), 0o600);
    if prepared.web {
        // Authentication is on: the probes answered without credentials, the metrics need them.
        assert_eq!(prepared.get("/metrics", false), Some(401));
        assert_eq!(prepared.get("/metrics", true), Some(200));
    }
}

#[test]
fn the_systemd_unit_starts_as_shipped_under_a_read_only_root() {
    starts_as_shipped(systemd_launch());
}

#[test]
fn the_container_starts_as_shipped_under_a_read_only_root() {
    starts_as_shipped(container_launch());
}

#[test]
fn the_kubernetes_container_starts_as_shipped_under_a_read_only_root() {
    starts_as_shipped(kubernetes_launch());
}

/// The one line dbwatch prints before exiting 1.
fn fails_with_one_line(prepared: &Prepared) -> String {
    // A deadline, not a wait: the process ends at once when the folder is refused; CI machines loaded by the
    // parallel suite have taken over 10 s just to set the sandbox up.
    let (status, stderr) = prepared.run_to_end(&prepared.launch.argv, Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "exactly one line:\n{stderr}");
    stderr.trim_end().to_owned()
}

#[test]
fn a_state_folder_that_cannot_be_written_or_is_held_fails_the_start_with_one_line() {
    let launch = systemd_launch();
    let state = tempfile::tempdir().expect("temp dir");

    let read_only = prepare(&launch, state.path(), StateMount::ReadOnly);
    assert_eq!(
        fails_with_one_line(&read_only),
        format!(
            "dbwatch: storage folder {}: is not writable: Read-only file system (os error 30)",
            launch.state
        )
    );

    let missing = prepare(&container_launch(), state.path(), StateMount::Absent);
    assert_eq!(
        fails_with_one_line(&missing),
        format!(
            "dbwatch: storage folder {}: cannot be created: Read-only file system (os error 30)",
            missing.launch.state
        )
    );

    let first = prepare(&launch, state.path(), StateMount::Writable);
    let (_running, _) = first.start_ready();
    let second = prepare(&launch, state.path(), StateMount::Writable);
    assert_eq!(
        fails_with_one_line(&second),
        format!(
            "dbwatch: storage folder {0}: is in use by another dbwatch process (lock {0}/.lock is held)",
            launch.state
        )
    );
    // The first one is unharmed.
    assert_eq!(first.get("/-/ready", false), Some(200));
}

#[test]
fn the_shipped_web_config_grants_writes_to_a_listed_user_only() {
    // dbwatch itself accepts the file (bcrypt hashes, write_users among basic_auth_users).
    if let Err(error) = dbwatch::web::WebConfig::load(&repo("deploy/web/web.yml")) {
        panic!("deploy/web/web.yml: {error}");
    }
    let web: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo("deploy/web/web.yml")).expect("read deploy/web/web.yml"),
    )
    .expect("YAML");
    let users = web["basic_auth_users"]
        .as_mapping()
        .expect("basic_auth_users");
    let names: BTreeSet<&str> = users.keys().filter_map(Value::as_str).collect();
    for (user, hash) in users {
        let hash = string(hash, "bcrypt hash");
        assert!(
            hash.starts_with("$2") && hash.len() == 60,
            "{user:?}: not a bcrypt hash"
        );
    }
    let writers: Vec<&str> = web["write_users"]
        .as_sequence()
        .expect("write_users")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!writers.is_empty());
    assert!(
        writers.iter().all(|writer| names.contains(writer)),
        "{writers:?} ⊄ {names:?}"
    );
    // The scrape user of deploy/prometheus/prometheus.yml exists and cannot mute pages.
    assert!(names.contains("prometheus") && !writers.contains(&"prometheus"));
    // Every shipped command line points at it.
    for launch in [systemd_launch(), container_launch(), kubernetes_launch()] {
        assert!(
            flag(&launch.argv, "--web.config.file").is_some(),
            "{}: no --web.config.file",
            launch.what
        );
    }
}
