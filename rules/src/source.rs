//! What the rules engine reads: the latest samples of every target, as a Prometheus server scrapes them. The
//! daemon's snapshot store is one [`SampleSource`]; tests, benches and `rules test` hand samples in directly
//! through [`Latest`]. The engine knows nothing of how the samples were collected.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use dbwatch_metric::Sample;

/// One target's latest samples: what a scrape of that target would return.
pub trait TargetSamples: Send + Sync + fmt::Debug {
    fn target(&self) -> &str;
    fn db(&self) -> &str;
    /// The target's configured labels, carried by every series besides `target` and `db`.
    fn labels(&self) -> &BTreeMap<String, String>;
    fn samples(&self) -> &[Sample];
}

/// Where the engine reads every target's latest samples at each evaluation.
pub trait SampleSource: Send + Sync {
    /// The latest samples of every target that has any, in target-name order.
    fn latest(&self) -> Vec<Arc<dyn TargetSamples>>;
    /// How many targets have samples, against how many are expected: the engine waits (a bounded time) for
    /// every target's first poll before its first evaluation, so a restart does not read "no data" as healthy.
    fn progress(&self) -> (usize, usize);
}

/// One target's samples as plain data.
#[derive(Debug, Clone)]
pub struct TargetScrape {
    pub target: String,
    pub db: String,
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl TargetSamples for TargetScrape {
    fn target(&self) -> &str {
        &self.target
    }
    fn db(&self) -> &str {
        &self.db
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

/// A [`SampleSource`] holding what it is handed, by target name.
#[derive(Debug, Default)]
pub struct Latest {
    scrapes: RwLock<BTreeMap<String, Arc<TargetScrape>>>,
    expected: usize,
}

impl Latest {
    pub fn new(expected: usize) -> Self {
        Latest {
            scrapes: RwLock::new(BTreeMap::new()),
            expected,
        }
    }

    pub fn publish(&self, scrape: TargetScrape) {
        let mut scrapes = self.scrapes.write().unwrap_or_else(PoisonError::into_inner);
        scrapes.insert(scrape.target.clone(), Arc::new(scrape));
    }
}

impl SampleSource for Latest {
    fn latest(&self) -> Vec<Arc<dyn TargetSamples>> {
        let scrapes = self.scrapes.read().unwrap_or_else(PoisonError::into_inner);
        scrapes
            .values()
            .map(|scrape| Arc::clone(scrape) as Arc<dyn TargetSamples>)
            .collect()
    }

    fn progress(&self) -> (usize, usize) {
        let scrapes = self.scrapes.read().unwrap_or_else(PoisonError::into_inner);
        (scrapes.len(), self.expected)
    }
}
