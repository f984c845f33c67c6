//! mysql collector (in progress).

use crate::metric::MetricDesc;

pub fn descriptors() -> Vec<&'static MetricDesc> {
    Vec::new()
}
