//! Problems found in a file, each with where it was written.

use std::fmt;
use std::path::PathBuf;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub column: usize,
    /// The key path, e.g. `targets[2].timeout`.
    pub path: String,
    pub message: String,
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        write!(
            f,
            "{} has {count} problem{}",
            self.file.display(),
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.errors {
            write!(
                f,
                "\n  {}:{}:{}: {}: {}",
                self.file.display(),
                error.line,
                error.column,
                if error.path.is_empty() {
                    "(document)"
                } else {
                    &error.path
                },
                error.message
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
