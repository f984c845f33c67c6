//! DescribeLimits: the account's per-table throughput quota, the ceiling of an on-demand table that has no
//! maximum throughput of its own. The Developer Guide ("DynamoDB maximum throughput for on-demand tables",
//! <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/on-demand-capacity-mode-max-throughput.html>):
//! "By default, maximum throughput settings don't apply and your on-demand throughput rate is bounded by 40,000
//! table-level read and write throughput AWS service quota". DescribeLimits reports that quota as
//! TableMaxReadCapacityUnits / TableMaxWriteCapacityUnits.

use aws_sdk_dynamodb::operation::describe_limits::DescribeLimitsOutput;

use crate::metric::{MetricDesc, MetricKind, Sample};

use super::api_usage::{Api, PollUsage};
use super::client::{api_error, ApiError};
use super::describe_table::Direction;

pub const VIEW: &str = "describe_limits";

pub static TABLE_QUOTA: MetricDesc = MetricDesc {
    name: "dynamodb_account_table_max_units_per_second",
    help: "The account's per-table read or write throughput quota in this region (DescribeLimits TableMax*CapacityUnits)",
    kind: MetricKind::Gauge,
    labels: &["operation"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&TABLE_QUOTA];

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TableQuota {
    pub read: Option<f64>,
    pub write: Option<f64>,
}

pub async fn fetch(
    client: &aws_sdk_dynamodb::Client,
    usage: &mut PollUsage,
) -> Result<TableQuota, ApiError> {
    usage.call(Api::DescribeLimits);
    let output = client
        .describe_limits()
        .send()
        .await
        .map_err(|error| api_error(&error))?;
    Ok(TableQuota::from_output(&output))
}

impl TableQuota {
    pub fn from_output(output: &DescribeLimitsOutput) -> TableQuota {
        let positive =
            |units: Option<i64>| units.filter(|units| *units > 0).map(|units| units as f64);
        TableQuota {
            read: positive(output.table_max_read_capacity_units()),
            write: positive(output.table_max_write_capacity_units()),
        }
    }

    pub fn get(&self, direction: Direction) -> Option<f64> {
        match direction {
            Direction::Read => self.read,
            Direction::Write => self.write,
        }
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        for direction in Direction::BOTH {
            out.push(TABLE_QUOTA.sample_with(
                [direction.as_str()],
                self.get(direction).unwrap_or(f64::NAN),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_reads_the_table_limits() {
        let output = DescribeLimitsOutput::builder()
            .account_max_read_capacity_units(80_000)
            .account_max_write_capacity_units(80_000)
            .table_max_read_capacity_units(40_000)
            .table_max_write_capacity_units(40_000)
            .build();
        let quota = TableQuota::from_output(&output);
        assert_eq!(quota.get(Direction::Read), Some(40_000.0));
        assert_eq!(quota.get(Direction::Write), Some(40_000.0));
        assert_eq!(
            TableQuota::from_output(&DescribeLimitsOutput::builder().build()),
            TableQuota::default()
        );
    }
}
