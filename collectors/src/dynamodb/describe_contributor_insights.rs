//! DescribeContributorInsights: whether CloudWatch Contributor Insights is on for a table, and the names of its
//! rules. DynamoDB creates four rules per table (AWS CLI reference, describe-contributor-insights example):
//! `DynamoDBContributorInsights-PKC-<table>-<ts>` (most accessed partition keys), `-SKC-` (most accessed
//! partition + sort keys), `-PKT-` and `-SKT-` (the most throttled ones). Hot partitions are partition keys, so
//! the collector reads the PKC and PKT reports; the sort-key reports would double the cost for item-level detail.

use aws_sdk_dynamodb::operation::describe_contributor_insights::DescribeContributorInsightsOutput;

use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};

use super::api_usage::{Api, PollUsage};
use super::client::{api_error, ApiError};

pub const VIEW: &str = "describe_contributor_insights";

pub static ENABLED: MetricDesc = MetricDesc {
    name: "dynamodb_contributor_insights_enabled",
    help: "1 when CloudWatch Contributor Insights is ENABLED on the table, 0 otherwise",
    kind: MetricKind::Gauge,
    labels: &["table"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&ENABLED];

/// Which keys a rule ranks: the `kind` label of the hot-key series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Most accessed partition keys (PKC rules).
    Accessed,
    /// Most throttled partition keys (PKT rules).
    Throttled,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Accessed => "accessed",
            KeyKind::Throttled => "throttled",
        }
    }

    fn of_rule(rule: &str) -> Option<KeyKind> {
        if rule.contains("-PKC-") {
            Some(KeyKind::Accessed)
        } else if rule.contains("-PKT-") {
            Some(KeyKind::Throttled)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsightRule {
    pub name: String,
    pub kind: KeyKind,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContributorInsights {
    pub enabled: bool,
    /// The partition-key rules, only when enabled.
    pub rules: Vec<InsightRule>,
}

pub async fn fetch(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    usage: &mut PollUsage,
) -> Result<ContributorInsights, ApiError> {
    usage.call(Api::DescribeContributorInsights);
    let output = client
        .describe_contributor_insights()
        .table_name(table)
        .send()
        .await
        .map_err(|error| api_error(&error))?;
    Ok(ContributorInsights::from_output(&output))
}

impl ContributorInsights {
    pub fn from_output(output: &DescribeContributorInsightsOutput) -> ContributorInsights {
        let enabled = output
            .contributor_insights_status()
            .is_some_and(|status| status.as_str() == "ENABLED");
        if !enabled {
            return ContributorInsights::default();
        }
        let rules = output
            .contributor_insights_rule_list()
            .iter()
            .filter_map(|rule| {
                KeyKind::of_rule(rule).map(|kind| InsightRule {
                    name: rule.clone(),
                    kind,
                })
            })
            .collect();
        ContributorInsights { enabled, rules }
    }

    pub fn samples(&self, table: &str, out: &mut Vec<Sample>) {
        out.push(ENABLED.sample_with([table], bool_value(self.enabled)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::ContributorInsightsStatus;

    #[test]
    fn disabled_tables_have_no_rules() {
        let output = DescribeContributorInsightsOutput::builder()
            .table_name("T")
            .contributor_insights_status(ContributorInsightsStatus::Disabled)
            .contributor_insights_rule_list("DynamoDBContributorInsights-PKC-T-1")
            .build();
        assert_eq!(
            ContributorInsights::from_output(&output),
            ContributorInsights::default()
        );
    }
}
