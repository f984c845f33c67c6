//! Reading everything the daemon runs on: the configuration file, the rule files it names and the routing
//! file. `dbwatch check-config`, the start and every reload go through [`load`], so a set of files that passes
//! the check is a set the daemon starts and reloads with.

use std::path::{Path, PathBuf};

use crate::config::{self, Config};
use dbwatch_notify::{self as notify, NotifyConfig};
use dbwatch_rules::{self as rules, RuleSet};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] config::LoadError),
    #[error("{file}: rule_files: {message}")]
    RulePattern { file: PathBuf, message: String },
    #[error(transparent)]
    Rules(#[from] rules::RuleErrors),
    #[error(transparent)]
    Routing(#[from] notify::NotifyConfigErrors),
}

/// Everything the daemon runs on, read and checked before anything starts.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub rule_files: Vec<PathBuf>,
    pub rules: RuleSet,
    /// The routing file's receivers and routes; `None` when the configuration names none.
    pub routing: Option<NotifyConfig>,
}

/// Reads the configuration file and the rule files it names. `check-config` and the daemon share it, so a
/// file that passes the check is a file the daemon starts with.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let config = config::load_file(path)?;
    let rule_files = rules::resolve_rule_files(&config.rules.patterns, &config.rules.base_dir)
        .map_err(|message| LoadError::RulePattern {
            file: path.to_owned(),
            message,
        })?;
    let rules = if rule_files.is_empty() {
        RuleSet::default()
    } else {
        rules::load_rule_files_within(
            &rule_files,
            rules::LoadLimits {
                history: Some(config.rules.history_limit),
            },
        )?
    };
    let routing = match &config.alerting.routing_file {
        Some(file) => Some(notify::load_file(file)?),
        None => None,
    };
    Ok(Loaded {
        config,
        rule_files,
        rules,
        routing,
    })
}
