//! `remote_write:` as Prometheus 2.42 writes it: a list of endpoints, each with its URL, headers, HTTP client
//! settings inline and a `queue_config`. Reading is pure and reports every problem with its key path; what
//! dbwatch does not do is refused by name with the reason, never ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dbwatch_httpclient::{read::refuse, read_inline, HttpSettings};
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

/// One endpoint, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWrite {
    /// The `remote` label of its metrics: `name`, or the URL's host and port.
    pub name: String,
    pub url: reqwest::Url,
    pub remote_timeout: Duration,
    pub headers: BTreeMap<String, String>,
    pub http: HttpSettings,
    pub queue: QueueConfig,
}

/// How much an endpoint buffers and how it sends. dbwatch sends with one connection per endpoint (its sample
/// rate is a scrape of one exporter, not a Prometheus server's): `capacity` is the whole buffer, where
/// Prometheus's is per shard.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Samples queued at most; past it the oldest are dropped and counted.
    pub capacity: usize,
    pub max_samples_per_send: usize,
    /// How long a sample waits for a batch to fill before it is sent anyway.
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub retry_on_http_429: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 10_000,
            max_samples_per_send: 2_000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: true,
        }
    }
}

/// The most samples one endpoint may buffer: ~150 bytes each, so 10 million is about 1.5 GB; a larger number
/// is a typo.
const MAX_CAPACITY: usize = 10_000_000;
/// Prometheus's own bound on a request is what receivers are sized for.
const MAX_PER_SEND: usize = 100_000;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers the protocol sets itself; Prometheus refuses them too.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "content-encoding",
    "content-length",
    "content-type",
    "host",
    "user-agent",
    "x-prometheus-remote-write-version",
];

/// Reads the `remote_write:` list.
pub fn read(reader: &mut Reader<'_>, node: &Node, path: &str) -> Vec<RemoteWrite> {
    let Some(items) = reader.sequence(node, path) else {
        return Vec::new();
    };
    let mut endpoints = Vec::new();
    let mut names = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let Some(endpoint) = read_endpoint(reader, item, &item_path) else {
            continue;
        };
        if !names.insert(endpoint.name.clone()) {
            reader.error(
                item.mark,
                &item_path,
                format!(
                    "two remote_write endpoints are named {:?}; set a distinct name on each",
                    endpoint.name
                ),
            );
            continue;
        }
        endpoints.push(endpoint);
    }
    endpoints
}

fn read_endpoint(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<RemoteWrite> {
    let mut fields = Fields::of(reader, node, path)?;
    for (key, why) in [
        (
            "write_relabel_configs",
            "relabeling is not supported; shape series with the targets' labels and global.external_labels",
        ),
        ("sigv4", "AWS Signature V4 is not supported for remote_write"),
        ("azuread", "Azure AD authentication is not supported"),
    ] {
        refuse(reader, &mut fields, key, why);
    }
    for key in ["send_exemplars", "send_native_histograms"] {
        let Some((flag, flag_path)) = fields.take(key) else {
            continue;
        };
        if let Some(true) = reader.boolean(flag, &flag_path) {
            reader.error(
                flag.mark,
                &flag_path,
                format!(
                    "{key} is not supported: dbwatch has neither exemplars nor native histograms"
                ),
            );
        }
    }
    if let Some((meta_node, meta_path)) = fields.take("metadata_config") {
        if let Some(mut meta) = Fields::of(reader, meta_node, &meta_path) {
            // Metadata is optional in the 1.0 protocol and dbwatch sends none; asking for it is refused so
            // that nobody counts on it.
            if let Some(true) = meta.boolean(reader, "send") {
                reader.error(
                    meta_node.mark,
                    &format!("{meta_path}.send"),
                    "sending metadata is not supported; set send: false",
                );
            }
            let _ = meta.duration(reader, "send_interval");
            let _ = meta.integer::<u64>(reader, "max_samples_per_send", "a count");
            meta.finish(reader);
        }
    }
    let url = match fields.take("url") {
        Some((url_node, url_path)) => reader.scalar(url_node, &url_path).and_then(|text| {
            match reqwest::Url::parse(&text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Some(url)
                }
                // The text may carry credentials: never repeat it.
                _ => {
                    reader.error(
                        url_node.mark,
                        &url_path,
                        "url must be an absolute http:// or https:// URL",
                    );
                    None
                }
            }
        }),
        None => {
            reader.error(node.mark, path, "missing key url");
            None
        }
    };
    let name = fields.string(reader, "name");
    let remote_timeout = fields
        .duration(reader, "remote_timeout")
        .unwrap_or(DEFAULT_TIMEOUT);
    if remote_timeout.is_zero() {
        reader.error(
            node.mark,
            &format!("{path}.remote_timeout"),
            "remote_timeout must be positive",
        );
    }
    let headers = read_headers(reader, &mut fields);
    let http = read_inline(reader, &mut fields, node.mark, path);
    let queue = match fields.take("queue_config") {
        Some((queue_node, queue_path)) => read_queue(reader, queue_node, &queue_path),
        None => QueueConfig::default(),
    };
    fields.finish(reader);
    let url = url?;
    let name = name.unwrap_or_else(|| match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    });
    Some(RemoteWrite {
        name,
        url,
        remote_timeout,
        headers,
        http,
        queue,
    })
}

fn read_headers(reader: &mut Reader<'_>, fields: &mut Fields<'_>) -> BTreeMap<String, String> {
    let Some((node, path)) = fields.take("headers") else {
        return BTreeMap::new();
    };
    let headers = reader.labels(node, &path).unwrap_or_default();
    headers
        .into_iter()
        .filter(|(name, value)| {
            let key_path = format!("{path}.{name}");
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                reader.error(
                    node.mark,
                    &key_path,
                    format!("{name} is set by the protocol or by the authorization settings"),
                );
                return false;
            }
            let valid = reqwest::header::HeaderName::try_from(name.as_str()).is_ok()
                && reqwest::header::HeaderValue::try_from(value.as_str()).is_ok();
            if !valid {
                reader.error(
                    node.mark,
                    &key_path,
                    "not a valid HTTP header name and value",
                );
            }
            valid
        })
        .collect()
}

fn read_queue(reader: &mut Reader<'_>, node: &Node, path: &str) -> QueueConfig {
    let mut queue = QueueConfig::default();
    let Some(mut fields) = Fields::of(reader, node, path) else {
        return queue;
    };
    // Sharding is how a Prometheus server keeps up with millions of samples per second; dbwatch sends its
    // few thousand with one connection, so shard counts change nothing and are accepted as written.
    for key in ["min_shards", "max_shards"] {
        let _ = fields.integer::<u64>(reader, key, "a count");
    }
    let bounded =
        |reader: &mut Reader<'_>, fields: &mut Fields<'_>, key: &'static str, max: usize| {
            let value = fields.integer::<usize>(reader, key, "a count")?;
            if value == 0 || value > max {
                reader.error(
                    node.mark,
                    &format!("{path}.{key}"),
                    format!("{key} must be between 1 and {max}"),
                );
                return None;
            }
            Some(value)
        };
    if let Some(capacity) = bounded(reader, &mut fields, "capacity", MAX_CAPACITY) {
        queue.capacity = capacity;
    }
    if let Some(per_send) = bounded(reader, &mut fields, "max_samples_per_send", MAX_PER_SEND) {
        queue.max_samples_per_send = per_send;
    }
    for (key, slot) in [
        ("batch_send_deadline", &mut queue.batch_send_deadline),
        ("min_backoff", &mut queue.min_backoff),
        ("max_backoff", &mut queue.max_backoff),
    ] {
        if let Some(value) = fields.duration(reader, key) {
            if value.is_zero() {
                reader.error(
                    node.mark,
                    &format!("{path}.{key}"),
                    format!("{key} must be positive"),
                );
            } else {
                *slot = value;
            }
        }
    }
    if queue.min_backoff > queue.max_backoff {
        reader.error(node.mark, path, "min_backoff must not exceed max_backoff");
    }
    if let Some(retry) = fields.boolean(reader, "retry_on_http_429") {
        queue.retry_on_http_429 = retry;
    }
    fields.finish(reader);
    queue
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Vec<RemoteWrite>, Vec<String>> {
        let root = dbwatch_yaml::node::parse(text).expect("YAML");
        let no_env = |_: &str| None;
        let mut reader = Reader::new(&no_env);
        let mut fields = Fields::of(&mut reader, &root, "").expect("a mapping");
        let (node, path) = fields.take("remote_write").expect("remote_write");
        let endpoints = read(&mut reader, node, &path);
        if reader.errors.is_empty() {
            Ok(endpoints)
        } else {
            Err(reader
                .errors
                .iter()
                .map(|error| {
                    format!(
                        "{}:{} {}: {}",
                        error.line, error.column, error.path, error.message
                    )
                })
                .collect())
        }
    }

    #[test]
    fn prometheus_remote_write_sections_load_with_their_defaults() {
        let endpoints = load(
            "remote_write:
  - url: https://mimir.example/api/v1/push
    headers: {X-Scope-OrgID: shop}
    basic_auth: {username: agent, password_file: /run/secrets/mimir}
    queue_config: {capacity: 50000, max_shards: 10, max_samples_per_send: 500, retry_on_http_429: false}
    metadata_config: {send: false}
  - url: http://127.0.0.1:8428/api/v1/write
    name: victoria
    remote_timeout: 10s
",
        )
        .expect("valid");
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[0].name, "mimir.example");
        assert_eq!(endpoints[0].headers["X-Scope-OrgID"], "shop");
        assert_eq!(
            endpoints[0]
                .http
                .basic_auth
                .as_ref()
                .map(|(user, _)| user.as_str()),
            Some("agent")
        );
        assert_eq!(endpoints[0].queue.capacity, 50_000);
        assert_eq!(endpoints[0].queue.max_samples_per_send, 500);
        assert!(!endpoints[0].queue.retry_on_http_429);
        assert_eq!(endpoints[0].remote_timeout, Duration::from_secs(30));
        assert_eq!(endpoints[1].name, "victoria");
        assert_eq!(endpoints[1].queue, QueueConfig::default());
        assert_eq!(endpoints[1].remote_timeout, Duration::from_secs(10));
    }

    #[test]
    fn what_dbwatch_does_not_do_is_refused_by_name_where_it_is_written() {
        let errors = load(
            "remote_write:
  - url: 'http://user:hunter2@[bad'
    write_relabel_configs: [{action: drop}]
    headers: {Content-Type: text/plain}
    queue_config: {capacity: 0, min_backoff: 10s, max_backoff: 1s}
    metadata_config: {send: true}
    send_exemplars: true
  - url: http://a:1/
  - url: http://a:1/
  - name: no-url
",
        )
        .expect_err("invalid");
        let all = errors.join("\n");
        for expected in [
            "2:10 remote_write[0].url: url must be an absolute http:// or https:// URL",
            "3:28 remote_write[0].write_relabel_configs: write_relabel_configs is not supported by dbwatch: relabeling",
            "remote_write[0].headers.Content-Type: Content-Type is set by the protocol",
            "remote_write[0].queue_config.capacity: capacity must be between 1 and 10000000",
            "remote_write[0].queue_config: min_backoff must not exceed max_backoff",
            "remote_write[0].metadata_config.send: sending metadata is not supported",
            "7:21 remote_write[0].send_exemplars: send_exemplars is not supported",
            "remote_write[2]: two remote_write endpoints are named \"a:1\"",
            "remote_write[3]: missing key url",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert!(
            !all.contains("hunter2"),
            "a URL's credentials are never repeated:\n{all}"
        );
    }
}
