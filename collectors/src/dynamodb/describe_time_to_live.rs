//! DescribeTimeToLive: whether expired items are deleted automatically, and by which attribute.

use aws_sdk_dynamodb::operation::describe_time_to_live::DescribeTimeToLiveOutput;

use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};

use super::api_usage::{Api, PollUsage};
use super::client::{api_error, ApiError};

pub const VIEW: &str = "describe_time_to_live";

pub static TTL_ENABLED: MetricDesc = MetricDesc {
    name: "dynamodb_table_ttl_enabled",
    help: "1 when time to live is ENABLED on the table (attribute: the expiry attribute, empty when none), 0 otherwise",
    kind: MetricKind::Gauge,
    labels: &["table", "attribute"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&TTL_ENABLED];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeToLive {
    /// ENABLED only: ENABLING can take up to an hour and deletes nothing yet.
    pub enabled: bool,
    /// The expiry attribute; DynamoDB reports it while enabling, enabled and disabling.
    pub attribute: Option<String>,
}

pub async fn fetch(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    usage: &mut PollUsage,
) -> Result<TimeToLive, ApiError> {
    usage.call(Api::DescribeTimeToLive);
    let output = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|error| api_error(&error))?;
    Ok(TimeToLive::from_output(&output))
}

impl TimeToLive {
    pub fn from_output(output: &DescribeTimeToLiveOutput) -> TimeToLive {
        let description = output.time_to_live_description();
        TimeToLive {
            enabled: description
                .and_then(|ttl| ttl.time_to_live_status())
                .is_some_and(|status| status.as_str() == "ENABLED"),
            attribute: description
                .and_then(|ttl| ttl.attribute_name())
                .map(str::to_owned),
        }
    }

    pub fn samples(&self, table: &str, out: &mut Vec<Sample>) {
        let attribute = self.attribute.as_deref().unwrap_or("");
        out.push(TTL_ENABLED.sample_with([table, attribute], bool_value(self.enabled)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::{TimeToLiveDescription, TimeToLiveStatus};

    #[test]
    fn only_enabled_counts_as_enabled() {
        let enabled = DescribeTimeToLiveOutput::builder()
            .time_to_live_description(
                TimeToLiveDescription::builder()
                    .time_to_live_status(TimeToLiveStatus::Enabled)
                    .attribute_name("expires_at")
                    .build(),
            )
            .build();
        assert_eq!(
            TimeToLive::from_output(&enabled),
            TimeToLive {
                enabled: true,
                attribute: Some("expires_at".into())
            }
        );
        let enabling = DescribeTimeToLiveOutput::builder()
            .time_to_live_description(
                TimeToLiveDescription::builder()
                    .time_to_live_status(TimeToLiveStatus::Enabling)
                    .attribute_name("ttl")
                    .build(),
            )
            .build();
        assert!(!TimeToLive::from_output(&enabling).enabled);
        let disabled = DescribeTimeToLiveOutput::builder().build();
        assert_eq!(
            TimeToLive::from_output(&disabled),
            TimeToLive {
                enabled: false,
                attribute: None
            }
        );
    }
}
