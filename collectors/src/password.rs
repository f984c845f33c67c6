//! Reading a target's password when connecting, the same way for every engine: a password file is read at each
//! connect, so a rotated secret is picked up at the next reconnect.

use crate::error::CollectError;
use crate::secret::{PasswordSource, Secret};

/// A password file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the password: {source}")]
pub struct PasswordUnreadable {
    #[source]
    source: std::io::Error,
}

/// The password, if one is configured; a file that cannot be read fails the connect as `auth`.
pub fn read_password(
    target: &str,
    password: Option<&PasswordSource>,
) -> Result<Option<Secret>, CollectError> {
    password
        .map(|source| {
            source.read().map_err(|source| CollectError::Auth {
                target: target.to_owned(),
                source: Box::new(PasswordUnreadable { source }),
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_file_is_an_auth_failure_naming_the_target_and_keeping_the_cause() {
        let missing = PasswordSource::File("/nonexistent/dbwatch-password".into());
        let error = read_password("pg-main", Some(&missing)).expect_err("unreadable");
        assert_eq!(error.kind(), crate::ErrorKind::Auth);
        assert!(
            error
                .to_string()
                .starts_with("authentication to pg-main failed: cannot read the password: "),
            "{error}"
        );
        let cause = std::error::Error::source(&error).expect("a cause");
        assert!(cause.is::<PasswordUnreadable>(), "{cause:?}");
        assert!(read_password("pg-main", None).expect("none").is_none());
    }
}
