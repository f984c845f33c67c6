//! Secrets that never print: passwords and keys travel in [`Secret`], read from the config or a file; URLs are
//! printed through [`redact_url`], which drops the credentials they can carry.

mod redact;

pub use redact::redact_url;

use std::fmt;
use std::path::PathBuf;

/// A secret string. `Debug` prints `<redacted>` and there is no `Display`, so a secret cannot end up in a log
/// line, an error message or a metric by accident; [`Secret::expose`] is the one, greppable, way out.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a password comes from. A file is read at each connection attempt, so a rotated secret is picked up
/// on the next reconnect without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    Inline(Secret),
    File(PathBuf),
}

impl PasswordSource {
    /// The password, trailing newline of a file removed.
    pub fn read(&self) -> std::io::Result<Secret> {
        match self {
            PasswordSource::Inline(secret) => Ok(secret.clone()),
            PasswordSource::File(path) => {
                let contents = std::fs::read_to_string(path)?;
                Ok(Secret(contents.trim_end_matches(['\n', '\r']).to_owned()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let source = PasswordSource::Inline(Secret::new("hunter2".into()));
        assert!(!format!("{source:?}").contains("hunter2"));
        assert_eq!(format!("{:?}", Secret::new("hunter2".into())), "<redacted>");
    }

    #[test]
    fn file_source_strips_the_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("dbwatch-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("password");
        std::fs::write(&path, "s3cret\n").expect("write secret");
        let secret = PasswordSource::File(path).read().expect("read secret");
        assert_eq!(secret.expose(), "s3cret");
    }
}
