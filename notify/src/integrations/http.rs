//! Sending JSON to an HTTP receiver and classifying its answer: delivered, worth retrying (with the server's
//! `Retry-After` when it gave one), or permanently refused. Each integration says which answers mean
//! "accepted"; the rest is the same for all.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::StatusCode;

use dbwatch_httpclient::{ClientError, HttpSettings};

use super::{Kind, Outcome};

/// Where an HTTP integration sends: the daemon's shared client, or, with an `http_config`, a client of its
/// own (proxy, TLS, redirects), built at the first send and kept; plus the authorization it adds.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    settings: Option<HttpSettings>,
    client: Arc<OnceLock<reqwest::Client>>,
}

impl Endpoint {
    pub fn new(settings: Option<HttpSettings>) -> Endpoint {
        Endpoint {
            settings,
            client: Arc::new(OnceLock::new()),
        }
    }

    /// The client to send with. A file that cannot be read is retried (it may be mid-rotation); contents that
    /// are not valid are permanent.
    fn client(
        &self,
        shared: &reqwest::Client,
        timeout: Duration,
    ) -> Result<reqwest::Client, Outcome> {
        let Some(settings) = &self.settings else {
            return Ok(shared.clone());
        };
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let client = dbwatch_httpclient::build(settings, timeout).map_err(outcome)?;
        Ok(self.client.get_or_init(|| client).clone())
    }

    /// Adds `basic_auth` or `authorization` to the request.
    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        let Some(settings) = &self.settings else {
            return Ok(request);
        };
        dbwatch_httpclient::authorize(settings, request).map_err(outcome)
    }
}

fn outcome(error: ClientError) -> Outcome {
    let reason = format!("http_config: {error}");
    if error.is_transient() {
        Outcome::Retry {
            reason,
            retry_after: None,
        }
    } else {
        Outcome::Permanent { reason }
    }
}

/// How long a receiver's `Retry-After` may hold a destination back. Slack and PagerDuty ask for seconds to a
/// minute; an hour still honours any real rate-limit window or maintenance hint, while a broken or hostile
/// header (`Retry-After: 9300000000000000000`, or a date years ahead) can delay a page by an hour at most, and
/// never past the notification's own give-up time (`DeliveryOptions::max_age`).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What an answer means, once the integration said whether its status and body are an acceptance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// 429 or 5xx: the receiver may take it later.
    Retry,
    /// Any other refusal: the configuration or the payload is wrong, a repeat would be refused the same way.
    Refused,
}

impl Verdict {
    pub fn of(status: StatusCode, accepted: bool) -> Verdict {
        if accepted {
            Verdict::Accepted
        } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Verdict::Retry
        } else {
            Verdict::Refused
        }
    }

    pub fn outcome(self, reason: String, retry_after: Option<Duration>) -> Outcome {
        match self {
            Verdict::Accepted => Outcome::Delivered,
            Verdict::Retry => Outcome::Retry {
                reason,
                retry_after,
            },
            Verdict::Refused => Outcome::Permanent { reason },
        }
    }
}

/// What a status and body mean: each integration's own rule, most built on [`Verdict::of`].
pub type Classify = fn(StatusCode, &str) -> Verdict;

/// Any 2xx is an acceptance.
pub fn any_success(status: StatusCode, _body: &str) -> Verdict {
    Verdict::of(status, status.is_success())
}

/// How much of a receiver's answer is read. Only the first 500 characters are kept for `last_error` and only a
/// prefix is classified, so a larger body (a proxy's error page, or a peer streaming gigabytes) is cut off here
/// instead of being buffered whole.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// Characters of an answer kept in `last_error` and dead-letter reasons.
const REASON_BODY_CHARS: usize = 500;

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3), relative to `now`, capped at
/// [`MAX_RETRY_AFTER`]. A date in the past means "now"; a value that is neither is ignored (the backoff applies).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time": capped like any other large value.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let now = chrono::DateTime::<chrono::Utc>::from(now);
    let ahead = date.signed_duration_since(now);
    Some(
        ahead
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// A request error with its causes (`error sending request: client error (Connect): tcp connect error:
/// Connection refused (os error 111)`, or the certificate problem), without the URL: for Slack and webhooks the
/// URL is the secret.
fn describe(error: reqwest::Error, url: &str) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // hyper repeats its inner error's text in its own; skip the echo.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    // No cause is known to print the URL; a redaction costs nothing and keeps it that way.
    if !url.is_empty() {
        text = text.replace(url, "<url>");
    }
    text
}

/// Reads at most `limit` bytes of the body, chunk by chunk, within `timeout`; true when the body was longer (or
/// did not finish in time).
async fn read_capped(
    response: &mut reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    let read = async {
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = limit.saturating_sub(body.len());
                    if chunk.len() > room {
                        body.extend_from_slice(&chunk[..room]);
                        return true;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return false,
                // A body cut short still tells what it managed to say.
                Err(_) => return true,
            }
        }
    };
    let truncated = tokio::time::timeout(timeout, read).await.unwrap_or(true);
    (body, truncated)
}

/// The answer's body as text for a reason: the first [`REASON_BODY_CHARS`] characters, marked when cut.
pub(crate) async fn answer_text(
    response: &mut reqwest::Response,
    timeout: Duration,
    chars: usize,
) -> (String, String) {
    let (bytes, truncated) = read_capped(response, MAX_RESPONSE_BODY, timeout).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut shown: String = text.chars().take(chars).collect();
    if truncated {
        shown.push_str(" … (body cut at 64 KiB)");
    } else if text.chars().nth(chars).is_some() {
        shown.push('…');
    }
    (text, shown)
}

/// POSTs `body` as JSON to `url` within `timeout`, and classifies the answer with `classify`.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    timeout: Duration,
    kind: Kind,
    classify: Classify,
    endpoint: &Endpoint,
) -> Outcome {
    let exchange = match Exchange::json(reqwest::Method::POST, url, body, kind, classify) {
        Ok(exchange) => exchange,
        Err(outcome) => return outcome,
    };
    send(client, exchange, timeout, endpoint).await
}

/// A delay an answer's body asks for (Telegram's `parameters.retry_after`), for services that say it there
/// rather than in `Retry-After`.
pub type BodyRetryAfter = fn(&str) -> Option<Duration>;

/// One request to a receiver and how to read its answer: the general form of [`post`], for services that take
/// another method (Opsgenie's `PUT`), another body (SNS's form), or a header of their own (Opsgenie's
/// `GenieKey`, SNS's signature).
pub struct Exchange<'a> {
    pub method: reqwest::Method,
    pub url: &'a str,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Set after `http_config`'s authorization, replacing a header of the same name; values are marked
    /// sensitive, so they never print.
    pub headers: Vec<(reqwest::header::HeaderName, String)>,
    pub kind: Kind,
    pub classify: Classify,
    pub body_retry_after: Option<BodyRetryAfter>,
}

impl<'a> Exchange<'a> {
    /// A JSON body; an encoding failure is permanent.
    pub fn json(
        method: reqwest::Method,
        url: &'a str,
        body: &serde_json::Value,
        kind: Kind,
        classify: Classify,
    ) -> Result<Exchange<'a>, Outcome> {
        let bytes = serde_json::to_vec(body).map_err(|error| Outcome::Permanent {
            reason: format!("cannot encode the {kind} payload: {error}"),
        })?;
        Ok(Exchange {
            method,
            url,
            content_type: "application/json",
            body: bytes,
            headers: Vec::new(),
            kind,
            classify,
            body_retry_after: None,
        })
    }
}

/// Sends one exchange within `timeout` and classifies the answer.
pub async fn send(
    client: &reqwest::Client,
    exchange: Exchange<'_>,
    timeout: Duration,
    endpoint: &Endpoint,
) -> Outcome {
    let Exchange {
        method,
        url,
        content_type,
        body,
        headers,
        kind,
        classify,
        body_retry_after,
    } = exchange;
    let client = match endpoint.client(client, timeout) {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    let started = tokio::time::Instant::now();
    let request = client
        .request(method, url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .timeout(timeout);
    let request = match endpoint.authorize(request) {
        Ok(request) => request,
        Err(outcome) => return outcome,
    };
    let mut request = match request.build() {
        Ok(request) => request,
        Err(error) => {
            return Outcome::Permanent {
                reason: format!("cannot build the {kind} request: {}", describe(error, url)),
            }
        }
    };
    for (name, value) in headers {
        let Ok(mut value) = reqwest::header::HeaderValue::from_str(&value) else {
            return Outcome::Permanent {
                reason: format!("the {kind} {name} header is not valid header text"),
            };
        };
        value.set_sensitive(true);
        request.headers_mut().insert(name, value);
    }
    let response = client.execute(request).await;
    let mut response = match response {
        Ok(response) => response,
        // The URL is a secret for Slack and webhooks: describe the failure without it, with its causes.
        Err(error) => {
            let what = if error.is_timeout() {
                "timed out"
            } else if error.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            return Outcome::Retry {
                reason: format!("{kind} {what}: {}", describe(error, url)),
                retry_after: None,
            };
        }
    };
    let status = response.status();
    let header_retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, std::time::SystemTime::now()));
    // The body gets what is left of the request's time budget.
    let left = timeout.saturating_sub(started.elapsed());
    let (text, shown) = answer_text(&mut response, left, REASON_BODY_CHARS).await;
    let retry_after = header_retry_after.or_else(|| {
        body_retry_after
            .and_then(|read| read(&text))
            .map(|delay| delay.min(MAX_RETRY_AFTER))
    });
    let reason = format!("{kind} answered {}: {shown}", status.as_u16());
    classify(status, &text).outcome(reason, retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn retry_after_is_seconds_or_a_date_and_always_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21T07:28:00Z
        let seconds = |value: &str| parse_retry_after(value, now);
        assert_eq!(seconds("120"), Some(Duration::from_secs(120)));
        assert_eq!(seconds(" 0 "), Some(Duration::ZERO));
        // The review's panic, a value past u64, and a year: all capped at an hour.
        assert_eq!(seconds("9300000000000000000"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            seconds("99999999999999999999999999999"),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(seconds("31536000"), Some(MAX_RETRY_AFTER));
        // HTTP dates: ahead, past (now), far ahead (capped).
        assert_eq!(
            seconds("Wed, 21 Oct 2015 07:30:00 GMT"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            seconds("Wed, 21 Oct 2015 07:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            seconds("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_RETRY_AFTER)
        );
        // Garbage is ignored: the backoff applies.
        for garbage in ["", "-5", "1.5", "soon", "12 s", "\u{1F4A5}"] {
            assert_eq!(seconds(garbage), None, "{garbage:?}");
        }
    }
}
