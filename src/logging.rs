//! The daemon's log: `tracing` to stderr, filtered by `RUST_LOG` or `--log.level`, with the HTTP client's own
//! records held below debug whatever the filter says.
//!
//! Why the cap: reqwest, hyper and h2 log through `log` and `tracing` at debug and trace, and what they log
//! (connections, request lines, frames) can carry a Slack incoming-webhook URL or a webhook `url_file` URL,
//! which are the secrets. An operator raising the level to debug to chase a delivery problem must not print
//! them; dbwatch's own delivery logs say what happened without the URL.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

/// Crates whose records are kept at info and above.
const HTTP_CLIENT_CRATES: &[&str] = &[
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tokio_rustls",
];

fn is_http_client(target: &str) -> bool {
    HTTP_CLIENT_CRATES.iter().any(|name| {
        target
            .strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// The filter from `RUST_LOG`, else `fallback`, else `info`, with the HTTP client's crates at info appended
/// after the user's directives.
pub fn env_filter(fallback: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(fallback))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    for name in HTTP_CLIENT_CRATES {
        if let Ok(directive) = format!("{name}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the global subscriber (stderr) and the bridge for `log` records. A directive more specific than
/// the appended ones (`reqwest::connect=trace`) would still win inside the `EnvFilter`, so a second, global
/// filter drops every record of those crates above info, whatever the directives.
pub fn init(fallback: &str) {
    let cap = tracing_subscriber::filter::filter_fn(|metadata| {
        !(is_http_client(metadata.target()) && *metadata.level() > Level::INFO)
    });
    let _ = tracing_subscriber::registry()
        .with(env_filter(fallback))
        .with(cap)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour codes only for a person at a terminal: journald, a container runtime or a file gets
                // plain lines a log pipeline can parse.
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_http_client_crates_are_capped() {
        assert!(is_http_client("reqwest"));
        assert!(is_http_client("reqwest::connect"));
        assert!(is_http_client("hyper_util::client::legacy"));
        assert!(is_http_client("h2::codec"));
        assert!(!is_http_client("hyperloglog"));
        assert!(!is_http_client("dbwatch_notify"));
    }
}
