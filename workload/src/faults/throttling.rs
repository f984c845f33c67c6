//! The DynamoDB throttling fault.

use super::*;

/// The data points one minute of throttling publishes, as (metric, operation dimension or none).
pub const THROTTLE_METRICS: [(&str, Option<&str>); 4] = [
    ("ThrottledRequests", Some("GetItem")),
    ("ThrottledRequests", Some("PutItem")),
    ("ReadThrottleEvents", None),
    ("WriteThrottleEvents", None),
];

/// Minutes back-filled at start.
pub(super) const BACKFILL_MINUTES: i64 = 5;

pub(super) async fn publish_minute(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    table: &str,
    minute_start: i64,
    per_minute: f64,
) -> anyhow::Result<()> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    let mut request = cloudwatch.put_metric_data().namespace("AWS/DynamoDB");
    for (metric, operation) in THROTTLE_METRICS {
        let mut dimensions = vec![Dimension::builder().name("TableName").value(table).build()];
        if let Some(operation) = operation {
            dimensions.push(
                Dimension::builder()
                    .name("Operation")
                    .value(operation)
                    .build(),
            );
        }
        request = request.metric_data(
            MetricDatum::builder()
                .metric_name(metric)
                .set_dimensions(Some(dimensions))
                .timestamp(DateTime::from_secs(minute_start + 30))
                .value(per_minute)
                .unit(StandardUnit::Count)
                .build(),
        );
    }
    request
        .send()
        .await
        .map_err(|error| {
            anyhow::anyhow!("{}", aws_sdk_cloudwatch::error::DisplayErrorContext(error))
        })
        .context("PutMetricData")?;
    Ok(())
}

pub(super) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

pub(super) async fn hold_throttling(args: &FaultArgs) -> anyhow::Result<()> {
    let config = crate::dynamodb::sdk_config(args.aws_endpoint_url.as_deref(), TIMEOUT).await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    let per_minute = args.throttle_rate * 60.0;
    let current = now_secs() - now_secs().rem_euclid(60);
    for minutes_back in (0..=BACKFILL_MINUTES).rev() {
        publish_minute(
            &cloudwatch,
            &args.table,
            current - minutes_back * 60,
            per_minute,
        )
        .await?;
    }
    ready(&format!(
        "publishing {}/s throttled requests of {} every minute",
        args.throttle_rate, args.table
    ));
    let mut published = current;
    loop {
        let next = published + 60;
        let wait = Duration::from_secs((next - now_secs()).max(0) as u64 + 1);
        tokio::select! {
            _ = shutdown_signal() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
        match publish_minute(&cloudwatch, &args.table, next, per_minute).await {
            Ok(()) => published = next,
            Err(error) => tracing::warn!("dynamodb-throttling: {error:#}; retrying"),
        }
    }
}
