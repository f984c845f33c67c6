//! Amazon SNS through the Query API's `Publish` (`sns_configs`): to a topic, a target (mobile endpoint) or a
//! phone number, with Alertmanager's default subject and message, its `attributes` as String message attributes
//! (plus `truncated` when the message was cut), a FIFO topic's deduplication and group ids the group key's hash
//! as in Alertmanager. Signed with SigV4 at send time (`sigv4.rs`) with the configured keys or the
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` environment. 2xx is an acceptance; 429, 5xx and throttling
//! errors are retried; other refusals (unknown topic, bad signature, invalid parameter) are permanent.
//! `subject`, `message` and the attributes' values are templates, as in Alertmanager, the limits applied to what
//! they render. Alertmanager also templates the target and the attributes' names; dbwatch refuses a template
//! there, by name, since the region and the FIFO ids are read from the target at load.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

use super::amtext::{annotated_blocks, subject, truncate_bytes, verbatim};
use super::http::{self, Exchange, Verdict};
use super::sigv4::{self, Credentials};
use super::{mismatch, read_secret, BoxFuture, Integration, Kind, Outcome};
use crate::fields::{http_config, plain, refuse, secret, Global};
use crate::render::{group_hash, truncate, Notice};
use crate::store::Payload;
use crate::template::{render_or, untemplated, TemplatedField};
use dbwatch_secret::PasswordSource;
use dbwatch_yaml::node::Node;
use dbwatch_yaml::read::{Fields, Reader};

/// SNS's limit on a whole message, attributes included.
pub const MESSAGE_MAX_BYTES: usize = 256 * 1024;
/// An SMS is cut at 1,600 characters (Alertmanager's limit too).
pub const SMS_MAX: usize = 1600;
/// Subjects are printable ASCII, no line breaks, under 100 characters.
pub const SUBJECT_MAX: usize = 99;
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Topic(String),
    Target(String),
    Phone(String),
}

/// Why a target is not a template: what dbwatch reads from it at load.
const TARGET_READ: &str = "the region and FIFO ids are read from it at load";

#[derive(Debug, Clone)]
pub struct SnsConfig {
    /// Without it, `https://sns.<region>.amazonaws.com/`.
    pub api_url: Option<String>,
    /// Without it, the topic ARN's region, then `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<PasswordSource>,
    pub target: Target,
    pub subject: Option<TemplatedField>,
    pub message: Option<TemplatedField>,
    /// Each value a template.
    pub attributes: BTreeMap<String, TemplatedField>,
    pub send_resolved: bool,
    pub http: http::Endpoint,
}

impl SnsConfig {
    fn region(&self) -> Option<String> {
        if let Some(region) = &self.region {
            return Some(region.clone());
        }
        if let Target::Topic(arn) | Target::Target(arn) = &self.target {
            if let Some(region) = arn.split(':').nth(3).filter(|region| !region.is_empty()) {
                return Some(region.to_owned());
            }
        }
        ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    }

    fn credentials(&self) -> Result<Credentials, Outcome> {
        if let (Some(access_key), Some(secret_key)) = (&self.access_key, &self.secret_key) {
            return Ok(Credentials {
                access_key: access_key.clone(),
                secret_key: read_secret(secret_key, "sns sigv4 secret_key")?,
                session_token: None,
            });
        }
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key), Some(secret_key)) => Ok(Credentials {
                access_key,
                secret_key,
                session_token: var("AWS_SESSION_TOKEN"),
            }),
            _ => Err(Outcome::Permanent {
                reason: "sns: no credentials: set sigv4 access_key and secret_key, or AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY"
                    .to_owned(),
            }),
        }
    }
}

impl Integration for SnsConfig {
    fn kind(&self) -> Kind {
        Kind::Sns
    }

    fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    fn render(&self, notice: &Notice<'_>) -> Payload {
        render(self, notice)
    }

    fn send<'a>(
        &'a self,
        client: &'a reqwest::Client,
        payload: &'a Payload,
        timeout: Duration,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let Payload::Sns { params } = payload else {
                return mismatch(Kind::Sns);
            };
            let Some(region) = self.region() else {
                return Outcome::Permanent {
                    reason: "sns: no region: set sigv4.region, or AWS_REGION".to_owned(),
                };
            };
            let credentials = match self.credentials() {
                Ok(credentials) => credentials,
                Err(outcome) => return outcome,
            };
            let url = self
                .api_url
                .clone()
                .unwrap_or_else(|| format!("https://sns.{region}.amazonaws.com/"));
            let Ok(parsed) = reqwest::Url::parse(&url) else {
                return Outcome::Permanent {
                    reason: format!("sns: api_url {url:?} is not a URL"),
                };
            };
            let Some(host) = parsed.host_str() else {
                return Outcome::Permanent {
                    reason: format!("sns: api_url {url:?} has no host"),
                };
            };
            let host = match parsed.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            let body = sigv4::form_encode(params).into_bytes();
            let signed = sigv4::sign(
                &credentials,
                &region,
                "sns",
                "POST",
                &host,
                parsed.path(),
                CONTENT_TYPE,
                &body,
                &sigv4::amz_date(SystemTime::now()),
            );
            let mut headers = vec![
                (reqwest::header::HOST, host),
                (
                    reqwest::header::HeaderName::from_static("x-amz-date"),
                    signed.amz_date,
                ),
                (reqwest::header::AUTHORIZATION, signed.authorization),
            ];
            if let Some(token) = credentials.session_token {
                headers.push((
                    reqwest::header::HeaderName::from_static("x-amz-security-token"),
                    token,
                ));
            }
            let exchange = Exchange {
                method: reqwest::Method::POST,
                url: &url,
                content_type: CONTENT_TYPE,
                body,
                headers,
                kind: Kind::Sns,
                classify,
                body_retry_after: None,
            };
            http::send(client, exchange, timeout, &self.http).await
        })
    }
}

/// 2xx accepted; 429, 5xx and AWS throttling codes (sent as 400) retried.
pub fn classify(status: StatusCode, body: &str) -> Verdict {
    if status.is_client_error() && body.contains("<Code>Throttl") {
        return Verdict::Retry;
    }
    Verdict::of(status, status.is_success())
}

pub fn read(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<Arc<dyn Integration>> {
    read_config(reader, node, path, global).map(|config| Arc::new(config) as Arc<dyn Integration>)
}

pub fn read_config(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    global: &Global,
) -> Option<SnsConfig> {
    let mut fields = Fields::of(reader, node, path)?;
    let http = http::Endpoint::new(http_config(reader, &mut fields, global));
    let (mut region, mut access_key, mut secret_key) = (None, None, None);
    if let Some((sigv4_node, sigv4_path)) = fields.take("sigv4") {
        if let Some(mut keys) = Fields::of(reader, sigv4_node, &sigv4_path) {
            for key in ["profile", "role_arn", "use_fips_sts_endpoint"] {
                refuse(
                    reader,
                    &mut keys,
                    key,
                    "dbwatch signs with access_key and secret_key, or AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY (profiles and assumed roles are not read)",
                );
            }
            region = plain(reader, &mut keys, "region");
            access_key = plain(reader, &mut keys, "access_key");
            secret_key = secret(reader, &mut keys, "secret_key", "secret_key_file");
            if access_key.is_some() != secret_key.is_some() {
                reader.error(
                    sigv4_node.mark,
                    &sigv4_path,
                    "access_key and secret_key go together",
                );
            }
            keys.finish(reader);
        }
    }
    let topic = untemplated(reader, &mut fields, "topic_arn", TARGET_READ).map(Target::Topic);
    let target = untemplated(reader, &mut fields, "target_arn", TARGET_READ).map(Target::Target);
    let phone = untemplated(reader, &mut fields, "phone_number", TARGET_READ).map(Target::Phone);
    let mut targets: Vec<Target> = [topic, target, phone].into_iter().flatten().collect();
    if targets.len() != 1 {
        reader.error(
            node.mark,
            path,
            "set exactly one of topic_arn, target_arn and phone_number",
        );
    }
    let attributes = match fields.take("attributes") {
        Some((attributes_node, attributes_path)) => {
            let attributes = reader
                .labels(attributes_node, &attributes_path)
                .unwrap_or_default();
            let mut templated = BTreeMap::new();
            for (key, value) in attributes {
                let key_path = format!("{attributes_path}.{key}");
                if key.contains("{{") {
                    reader.error(
                        attributes_node.mark,
                        &key_path,
                        "templated attribute names are not supported by dbwatch (their values are templates)",
                    );
                    continue;
                }
                match TemplatedField::parse(&format!("attributes.{key}"), &value, &global.templates)
                {
                    Ok(field) => {
                        templated.insert(key, field);
                    }
                    Err(error) => reader.error(attributes_node.mark, &key_path, error.to_string()),
                }
            }
            templated
        }
        None => BTreeMap::new(),
    };
    let config = SnsConfig {
        api_url: plain(reader, &mut fields, "api_url"),
        region,
        access_key,
        secret_key,
        target: (targets.len() == 1).then(|| targets.remove(0))?,
        subject: TemplatedField::read(reader, &mut fields, "subject", &global.templates),
        message: TemplatedField::read(reader, &mut fields, "message", &global.templates),
        attributes,
        send_resolved: fields.boolean(reader, "send_resolved").unwrap_or(true),
        http,
    };
    fields.finish(reader);
    Some(config)
}

/// SNS takes printable ASCII subjects without line breaks: anything else becomes a space or `?`.
fn clean_subject(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| match c {
            ' '..='~' => c,
            '\n' | '\r' | '\t' => ' ',
            _ => '?',
        })
        .collect();
    truncate_ascii(cleaned.trim(), SUBJECT_MAX)
}

fn truncate_ascii(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

pub fn render(config: &SnsConfig, notice: &Notice<'_>) -> Payload {
    let mut params: Vec<(String, String)> = vec![
        ("Action".into(), "Publish".into()),
        ("Version".into(), "2010-03-31".into()),
    ];
    match &config.target {
        Target::Topic(arn) => {
            params.push(("TopicArn".into(), arn.clone()));
            // A FIFO topic needs both; the group's hash makes a repeat a duplicate within SNS's window.
            if arn.ends_with(".fifo") {
                let hash = group_hash(notice.group_key);
                params.push(("MessageDeduplicationId".into(), hash.clone()));
                params.push(("MessageGroupId".into(), hash));
            }
        }
        Target::Target(arn) => params.push(("TargetArn".into(), arn.clone())),
        Target::Phone(number) => params.push(("PhoneNumber".into(), number.clone())),
    }
    let subject = clean_subject(&render_or(&config.subject, notice, || subject(notice)));
    if !subject.is_empty() {
        params.push(("Subject".into(), subject));
    }
    let message = render_or(&config.message, notice, || {
        annotated_blocks(notice, verbatim)
    });
    let mut attributes: BTreeMap<String, String> = config
        .attributes
        .iter()
        .map(|(key, value)| (key.clone(), value.render(notice, String::new)))
        .collect();
    let attribute_bytes: usize = attributes
        .iter()
        .map(|(key, value)| key.len() + value.len() + "String".len())
        .sum();
    let kept = match config.target {
        Target::Phone(_) => truncate(&message, SMS_MAX),
        // Room for the attributes and the `truncated` one this may add.
        _ => truncate_bytes(
            &message,
            MESSAGE_MAX_BYTES.saturating_sub(attribute_bytes + 64),
        ),
    };
    if kept != message {
        attributes.insert("truncated".into(), "true".into());
    }
    params.push(("Message".into(), kept));
    for (index, (name, value)) in attributes.iter().enumerate() {
        let entry = format!("MessageAttributes.entry.{}", index + 1);
        params.push((format!("{entry}.Name"), name.clone()));
        params.push((format!("{entry}.Value.DataType"), "String".into()));
        params.push((format!("{entry}.Value.StringValue"), value.clone()));
    }
    Payload::Sns { params }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::testkit::{
        errors, failed_fields, group, one, one_templated, read_with, TEAM,
    };

    const PHONE: &str = "    sns_configs:\n      - phone_number: '+15555550100'\n";

    fn publish(sns: &dyn Integration, notice: &Notice<'_>) -> Vec<(String, String)> {
        let Payload::Sns { params } = sns.render(notice) else {
            panic!("not an SNS payload");
        };
        params
    }

    #[test]
    fn subject_message_and_attribute_values_render_the_routing_files_templates_cut_after() {
        let sns = one_templated(
            &format!(concat!(
                "{}",
                "        subject: '{{{{ template \"team.title\" . }}}} {{{{ printf \"%200s\" \"\" }}}}'\n",
                "        message: '{{{{ template \"team.list\" . }}}}{{{{ if .Alerts.Firing }}}}{{{{ printf \"%2000s\" \"\" }}}}{{{{ end }}}}'\n",
                "        attributes: {{cluster: '{{{{ .CommonLabels.cluster }}}}'}}\n",
            ), PHONE),
            TEAM,
        );
        let firing = group(false);
        let notice = firing.notice();
        let params = publish(sns.as_ref(), &notice);
        // The padding is trimmed, as SNS takes no trailing blanks.
        assert_eq!(
            param(&params, "Subject"),
            Some("FIRING replication_lag (2 firing)")
        );
        let message = param(&params, "Message").expect("message");
        assert!(message.starts_with("r1:firing r2:firing   "), "{message:?}");
        assert_eq!(message.chars().count(), SMS_MAX);
        assert_eq!(
            param(&params, "MessageAttributes.entry.1.Name"),
            Some("cluster")
        );
        assert_eq!(
            param(&params, "MessageAttributes.entry.1.Value.StringValue"),
            Some("main")
        );
        assert_eq!(
            param(&params, "MessageAttributes.entry.2.Name"),
            Some("truncated")
        );
        assert!(failed_fields(&notice).is_empty());
        let resolved = group(true);
        let notice = resolved.notice();
        let params = publish(sns.as_ref(), &notice);
        assert_eq!(param(&params, "Subject"), Some("RESOLVED replication_lag"));
        assert_eq!(param(&params, "Message"), Some("r1:resolved r2:resolved "));
        assert_eq!(param(&params, "MessageAttributes.entry.2.Name"), None);
        assert!(failed_fields(&notice).is_empty());
    }

    #[test]
    fn a_failing_template_falls_back_and_is_recorded_and_templated_targets_are_refused() {
        let sns = one(
            &format!("{PHONE}        subject: '{{{{ .Alerts.Nope }}}}'\n        attributes: {{team: '{{{{ .Alerts.Nope }}}}'}}\n"),
            "",
        );
        let firing = group(false);
        let notice = firing.notice();
        let params = publish(sns.as_ref(), &notice);
        assert_eq!(
            param(&params, "Subject"),
            Some("[FIRING:2] replication_lag (main)")
        );
        assert_eq!(
            param(&params, "MessageAttributes.entry.1.Value.StringValue"),
            Some("")
        );
        assert_eq!(failed_fields(&notice), ["subject", "attributes.team"]);
        let found = errors(
            "    sns_configs:\n      - topic_arn: 'arn:{{ .Status }}'\n        attributes: {'{{ .Status }}': x}\n",
            "",
        );
        assert!(found.iter().any(|e| e.starts_with("receivers[0].sns_configs[0].topic_arn: a templated topic_arn is not supported by dbwatch")), "{found:?}");
        assert!(
            found
                .iter()
                .any(|e| e.contains("templated attribute names are not supported")),
            "{found:?}"
        );
    }

    fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn the_region_comes_from_sigv4_then_the_topic_arn() {
        let config = read_with(
            "  topic_arn: arn:aws:sns:eu-west-3:123456789012:db\n",
            "",
            read_config,
        );
        assert_eq!(config.region(), Some("eu-west-3".to_owned()));
        assert_eq!(config.api_url, None);
        let config = read_with(
            "  topic_arn: arn:aws:sns:eu-west-3:123456789012:db\n  sigv4: {region: us-east-2, access_key: AK, secret_key: SK}\n",
            "",
            read_config,
        );
        assert_eq!(config.region(), Some("us-east-2".to_owned()));
        assert_eq!(config.access_key.as_deref(), Some("AK"));
        assert!(config.send_resolved);
    }

    #[test]
    fn a_publish_carries_the_subject_message_and_attributes() {
        let sns = one(
            "    sns_configs:\n      - topic_arn: arn:aws:sns:us-east-1:123456789012:db.fifo\n        attributes: {severity: Sev2}\n",
            "",
        );
        assert_eq!(sns.kind().as_str(), "sns");
        let firing = group(false);
        let Payload::Sns { params } = sns.render(&firing.notice()) else {
            panic!("not an SNS payload");
        };
        assert_eq!(param(&params, "Action"), Some("Publish"));
        assert_eq!(
            param(&params, "TopicArn"),
            Some("arn:aws:sns:us-east-1:123456789012:db.fifo")
        );
        assert_eq!(
            param(&params, "Subject"),
            Some("[FIRING:2] replication_lag (main)")
        );
        assert!(param(&params, "Message")
            .expect("message")
            .starts_with("replica lagging\n\nAlerts Firing:\nLabels:\n"));
        assert_eq!(
            param(&params, "MessageAttributes.entry.1.Name"),
            Some("severity")
        );
        assert_eq!(
            param(&params, "MessageAttributes.entry.1.Value.StringValue"),
            Some("Sev2")
        );
        let hash = group_hash("{}:{alertname=\"replication_lag\"}");
        assert_eq!(param(&params, "MessageGroupId"), Some(hash.as_str()));
        assert_eq!(
            param(&params, "MessageDeduplicationId"),
            Some(hash.as_str())
        );
        let resolved = group(true);
        let Payload::Sns { params } = sns.render(&resolved.notice()) else {
            panic!("not an SNS payload");
        };
        assert_eq!(
            param(&params, "Subject"),
            Some("[RESOLVED] replication_lag (main)")
        );
    }

    #[test]
    fn an_sms_is_cut_and_marked_and_subjects_are_printable_ascii() {
        let sns = one(
            "    sns_configs:\n      - phone_number: '+15555550100'\n",
            "",
        );
        let mut firing = group(false);
        for alert in &mut firing.firing {
            alert
                .annotations
                .insert("description".into(), "d".repeat(2000));
        }
        let Payload::Sns { params } = sns.render(&firing.notice()) else {
            panic!("not an SNS payload");
        };
        assert_eq!(param(&params, "PhoneNumber"), Some("+15555550100"));
        assert_eq!(
            param(&params, "Message").expect("message").chars().count(),
            SMS_MAX
        );
        assert_eq!(
            param(&params, "MessageAttributes.entry.1.Name"),
            Some("truncated")
        );
        assert_eq!(clean_subject("ü\nx"), "? x");
        assert_eq!(clean_subject(&"s".repeat(200)).len(), SUBJECT_MAX);
    }

    #[test]
    fn targets_and_credentials_are_checked_by_path() {
        assert_eq!(
            errors("    sns_configs:\n      - subject: s\n", ""),
            ["receivers[0].sns_configs[0]: set exactly one of topic_arn, target_arn and phone_number"]
        );
        assert_eq!(
            errors(
                "    sns_configs:\n      - topic_arn: a\n        phone_number: '1'\n        sigv4: {access_key: AK, role_arn: arn:aws:iam::1:role/x}\n",
                ""
            ),
            [
                "receivers[0].sns_configs[0]: set exactly one of topic_arn, target_arn and phone_number",
                "receivers[0].sns_configs[0].sigv4: access_key and secret_key go together",
                "receivers[0].sns_configs[0].sigv4.role_arn: role_arn is not supported by dbwatch: dbwatch signs with access_key and secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (profiles and assumed roles are not read)",
            ]
        );
    }

    #[test]
    fn snss_answers_are_classified() {
        assert_eq!(
            classify(StatusCode::OK, "<PublishResponse/>"),
            Verdict::Accepted
        );
        assert_eq!(
            classify(
                StatusCode::BAD_REQUEST,
                "<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>"
            ),
            Verdict::Retry
        );
        assert_eq!(
            classify(
                StatusCode::NOT_FOUND,
                "<ErrorResponse><Error><Code>NotFound</Code></Error></ErrorResponse>"
            ),
            Verdict::Refused
        );
        assert_eq!(
            classify(
                StatusCode::FORBIDDEN,
                "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code></Error></ErrorResponse>"
            ),
            Verdict::Refused
        );
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, ""),
            Verdict::Retry
        );
    }
}
