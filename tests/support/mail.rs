//! The messages the fleet's SMTP server (deploy/local/receivers) stored, for the tests that send email.

#![allow(dead_code)] // each test crate uses its own subset

use std::path::PathBuf;

use serde_json::Value;

/// Messages stored for `recipient` in `$DBWATCH_SMTP_MAILDIR`, oldest first: JSON with `mail_from`, `rcpt_tos`,
/// `auth_user`, `tls` and the raw `data`.
pub fn messages_for(recipient: &str) -> Vec<Value> {
    let dir = std::env::var("DBWATCH_SMTP_MAILDIR").unwrap_or_else(|_| {
        panic!("DBWATCH_SMTP_MAILDIR is not set: run `deploy/local/fleet up receivers` and `eval \"$(deploy/local/fleet env)\"`")
    });
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot read {dir}: {error}"))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        // The server writes a dot-file first and renames it when complete.
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "json")
                && path
                    .file_name()
                    .is_some_and(|name| !name.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|path| serde_json::from_slice::<Value>(&std::fs::read(path).ok()?).ok())
        .filter(|mail| {
            mail["rcpt_tos"]
                .as_array()
                .is_some_and(|to| to.iter().any(|r| r == recipient))
        })
        .collect()
}

/// A header's value (unfolded) from raw RFC 5322 text.
pub fn header(data: &str, name: &str) -> Option<String> {
    let head = data.split("\r\n\r\n").next()?;
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}
