//! One task per endpoint: take a batch when a batch's worth is queued or the batch deadline passes, send it
//! snappy-compressed, and keep it until the endpoint accepts it (5xx, 429 and connection errors are retried
//! with exponential backoff, `Retry-After` honoured up to a bound) or refuses it (other 4xx: dropped, counted,
//! logged). New samples queue behind the batch in flight, bounded, so an outage costs the oldest samples once
//! the queue is full and never blocks a producer.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::RemoteWrite;
use crate::encode::Entry;
use crate::metrics::{RemoteWriteMetrics, DROPPED_QUEUE_FULL, DROPPED_REFUSED, DROPPED_SHUTDOWN};
use crate::queue::Queue;

/// The longest wait a `Retry-After` may impose: a hostile or broken header cannot hold the queue for long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// How long the last queued samples get to be sent once shutdown starts.
const FINAL_FLUSH: Duration = Duration::from_secs(5);
/// How much of a refusal's body is logged.
const LOGGED_BODY: usize = 256;

/// The endpoints producers push to; clones share them. Empty when `remote_write:` is not configured, and
/// pushing to it then costs nothing.
#[derive(Clone, Default)]
pub struct RemoteWriters {
    endpoints: Arc<[Arc<Endpoint>]>,
}

struct Endpoint {
    config: RemoteWrite,
    queue: Queue,
    metrics: RemoteWriteMetrics,
}

impl RemoteWriters {
    /// Starts one sender per endpoint on `tracker`; each stops when `shutdown` is cancelled, after a bounded
    /// final flush. Fails when a client cannot be built (an invalid certificate file, say).
    pub fn start(
        configs: Vec<RemoteWrite>,
        metrics: &RemoteWriteMetrics,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Result<RemoteWriters, dbwatch_httpclient::ClientError> {
        let mut endpoints = Vec::with_capacity(configs.len());
        for config in configs {
            let client = dbwatch_httpclient::build(&config.http, config.remote_timeout)?;
            metrics
                .capacity
                .with_label_values(&[&config.name])
                .set(i64::try_from(config.queue.capacity).unwrap_or(i64::MAX));
            let endpoint = Arc::new(Endpoint {
                queue: Queue::new(config.queue.capacity, config.queue.max_samples_per_send),
                config,
                metrics: metrics.clone(),
            });
            tracker.spawn(Arc::clone(&endpoint).run(client, shutdown.clone()));
            endpoints.push(endpoint);
        }
        Ok(RemoteWriters {
            endpoints: endpoints.into(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Queues `entries` on every endpoint. Never waits.
    pub fn push(&self, entries: &[Entry]) {
        for endpoint in self.endpoints.iter() {
            let name = endpoint.config.name.as_str();
            let dropped = endpoint.queue.push(entries);
            if dropped > 0 {
                endpoint
                    .metrics
                    .dropped
                    .with_label_values(&[name, DROPPED_QUEUE_FULL])
                    .inc_by(dropped as u64);
            }
            endpoint
                .metrics
                .pending
                .with_label_values(&[name])
                .add(entries.len() as i64 - dropped as i64);
        }
    }
}

/// What one request came to.
enum Sent {
    Accepted,
    Retry(Option<Duration>),
    Refused,
}

impl Endpoint {
    async fn run(self: Arc<Self>, client: reqwest::Client, shutdown: CancellationToken) {
        let queue = &self.config.queue;
        let mut deadline = tokio::time::interval(queue.batch_send_deadline);
        deadline.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.queue.filled() => {}
                _ = deadline.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            // Full batches first; a partial one only when the deadline is what woke us.
            loop {
                let batch = self.queue.take(queue.max_samples_per_send);
                if batch.is_empty() {
                    break;
                }
                let partial = batch.len() < queue.max_samples_per_send;
                if !self.deliver(&client, batch, &shutdown).await {
                    break;
                }
                if partial {
                    break;
                }
            }
        }
        self.flush(&client).await;
    }

    /// Sends `batch` until it is accepted or refused; `false` when shutdown came first (the batch is counted as
    /// dropped).
    async fn deliver(
        &self,
        client: &reqwest::Client,
        batch: Vec<Entry>,
        shutdown: &CancellationToken,
    ) -> bool {
        let name = self.config.name.as_str();
        let body = compress(&batch);
        let mut backoff = self.config.queue.min_backoff;
        loop {
            let wait = match self.send(client, &body).await {
                Sent::Accepted => {
                    self.settled(&batch, true);
                    return true;
                }
                Sent::Refused => {
                    self.settled(&batch, false);
                    return true;
                }
                Sent::Retry(retry_after) => {
                    self.metrics
                        .retried
                        .with_label_values(&[name])
                        .inc_by(batch.len() as u64);
                    retry_after.map_or(backoff, |after| after.min(MAX_RETRY_AFTER))
                }
            };
            backoff = (backoff * 2).min(self.config.queue.max_backoff);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {
                    self.dropped(batch.len(), DROPPED_SHUTDOWN);
                    return false;
                }
            }
        }
    }

    /// At shutdown: one bounded attempt at what is queued; what is left is counted as dropped.
    async fn flush(&self, client: &reqwest::Client) {
        let flushing = async {
            loop {
                let batch = self.queue.take(self.config.queue.max_samples_per_send);
                if batch.is_empty() {
                    return;
                }
                match self.send(client, &compress(&batch)).await {
                    Sent::Accepted => self.settled(&batch, true),
                    Sent::Refused => self.settled(&batch, false),
                    Sent::Retry(_) => {
                        self.dropped(batch.len(), DROPPED_SHUTDOWN);
                        return;
                    }
                }
            }
        };
        if tokio::time::timeout(FINAL_FLUSH, flushing).await.is_err() {
            tracing::warn!(remote = %self.config.name, "remote_write: the final flush did not finish in time");
        }
        let left = self.queue.take(usize::MAX).len();
        self.dropped(left, DROPPED_SHUTDOWN);
    }

    async fn send(&self, client: &reqwest::Client, body: &[u8]) -> Sent {
        let name = self.config.name.as_str();
        let request = client
            .post(self.config.url.clone())
            .timeout(self.config.remote_timeout)
            .header(CONTENT_ENCODING, "snappy")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body.to_vec());
        let mut request = request;
        for (header, value) in &self.config.headers {
            // Checked at load.
            if let (Ok(header), Ok(value)) = (
                HeaderName::try_from(header.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                request = request.header(header, value);
            }
        }
        let request = match dbwatch_httpclient::authorize(&self.config.http, request) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(remote = %name, error = %error, "remote_write: cannot authorize the request");
                return self.outcome("retry", Sent::Retry(None));
            }
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                // Without the URL: it may carry credentials.
                tracing::warn!(remote = %name, error = %error.without_url(), "remote_write: no answer");
                return self.outcome("retry", Sent::Retry(None));
            }
        };
        let status = response.status();
        if status.is_success() {
            return self.outcome("sent", Sent::Accepted);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let retry = status.is_server_error()
            || (status == StatusCode::TOO_MANY_REQUESTS && self.config.queue.retry_on_http_429);
        if retry {
            tracing::warn!(remote = %name, status = status.as_u16(), "remote_write: the endpoint answered with an error; retrying");
            return self.outcome("retry", Sent::Retry(retry_after));
        }
        let body = response.text().await.unwrap_or_default();
        let excerpt: String = body.chars().take(LOGGED_BODY).collect();
        tracing::warn!(remote = %name, status = status.as_u16(), answer = %excerpt.escape_debug(), "remote_write: the endpoint refused a batch; its samples are dropped");
        self.outcome("refused", Sent::Refused)
    }

    fn outcome(&self, outcome: &str, sent: Sent) -> Sent {
        self.metrics
            .requests
            .with_label_values(&[self.config.name.as_str(), outcome])
            .inc();
        sent
    }

    fn settled(&self, batch: &[Entry], accepted: bool) {
        let name = self.config.name.as_str();
        self.metrics
            .pending
            .with_label_values(&[name])
            .sub(batch.len() as i64);
        if !accepted {
            self.metrics
                .dropped
                .with_label_values(&[name, DROPPED_REFUSED])
                .inc_by(batch.len() as u64);
            return;
        }
        self.metrics
            .sent
            .with_label_values(&[name])
            .inc_by(batch.len() as u64);
        if let Some(newest) = batch.iter().map(|entry| entry.timestamp_ms).max() {
            let gauge = self.metrics.highest_sent.with_label_values(&[name]);
            let newest = newest as f64 / 1000.0;
            if newest > gauge.get() {
                gauge.set(newest);
            }
        }
    }

    fn dropped(&self, count: usize, reason: &str) {
        if count == 0 {
            return;
        }
        let name = self.config.name.as_str();
        self.metrics
            .dropped
            .with_label_values(&[name, reason])
            .inc_by(count as u64);
        self.metrics
            .pending
            .with_label_values(&[name])
            .sub(count as i64);
    }
}

fn compress(batch: &[Entry]) -> Vec<u8> {
    let mut request = Vec::with_capacity(batch.iter().map(|entry| entry.bytes.len()).sum());
    for entry in batch {
        request.extend_from_slice(&entry.bytes);
    }
    // Compressing a buffer in memory fails only past snappy's 4 GiB input limit, which a batch (bounded by
    // max_samples_per_send) never reaches; an empty body is then refused by the endpoint and counted.
    snap::raw::Encoder::new()
        .compress_vec(&request)
        .unwrap_or_default()
}
