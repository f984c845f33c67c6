//! The AWS clients of one target: built lazily from the standard credential chain, kept across polls, dropped
//! after connection-level failures and rebuilt with backoff.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::ProvideCredentials;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::error::{CollectError, ErrorKind};
use crate::view::ViewError;

/// How to reach AWS. Credentials are deliberately absent: they come from the standard chain (environment,
/// shared profile, web identity, container or instance metadata), never from dbwatch's own configuration.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub target: String,
    pub endpoint_url: Option<String>,
    pub region: String,
    pub profile: Option<String>,
    pub connect_timeout: Duration,
    pub api_timeout: Duration,
    pub max_attempts: u32,
}

/// One DynamoDB and one CloudWatch client. Both share the SDK config's HTTP client, so the connection pool is
/// one per target; calls are sequential, so in practice one connection per endpoint is open.
#[derive(Debug, Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

pub struct AwsSession {
    settings: ClientSettings,
    clients: Option<Clients>,
    backoff: Backoff,
}

impl AwsSession {
    pub fn new(settings: ClientSettings) -> Self {
        AwsSession {
            settings,
            clients: None,
            backoff: Backoff::default(),
        }
    }

    /// The clients, building them first when there are none and the backoff allows it. The bool is true when
    /// this call built them, so per-connection facts (capabilities) must be re-detected.
    pub async fn clients(&mut self) -> Result<(Clients, bool), CollectError> {
        if let Some(clients) = &self.clients {
            return Ok((clients.clone(), false));
        }
        self.backoff.ready(&self.settings.target)?;
        match self.build().await {
            Ok(clients) => {
                self.clients = Some(clients.clone());
                Ok((clients, true))
            }
            Err(error) => {
                self.backoff.record_failure(Instant::now());
                Err(error)
            }
        }
    }

    /// The first call of a poll answered: the endpoint and the credentials work.
    pub fn record_success(&mut self) {
        self.backoff.record_success();
    }

    /// The endpoint could not be reached or refused the credentials: forget the clients and back off.
    pub fn record_failure(&mut self) {
        self.clients = None;
        self.backoff.record_failure(Instant::now());
    }

    pub fn drop_clients(&mut self) {
        self.clients = None;
    }

    async fn build(&self) -> Result<Clients, CollectError> {
        let settings = &self.settings;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(settings.connect_timeout)
            .operation_attempt_timeout(settings.api_timeout)
            .operation_timeout(
                settings
                    .api_timeout
                    .saturating_mul(settings.max_attempts.max(1)),
            )
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)));
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        // Loading reads the shared config files and may ask instance metadata for defaults: bounded like a call.
        let Ok(config) = tokio::time::timeout(settings.api_timeout, loader.load()).await else {
            return Err(CollectError::Connect {
                target: settings.target.clone(),
                source: format!(
                    "AWS configuration not loaded within {}ms",
                    settings.api_timeout.as_millis()
                )
                .into(),
            });
        };

        // Resolving the credentials once here turns "no credentials anywhere in the chain" into an auth failure
        // of the target, instead of the same failure dressed as a network error on every call.
        let Some(provider) = config.credentials_provider() else {
            return Err(self.auth_error("no credentials provider in the chain".into()));
        };
        match tokio::time::timeout(settings.api_timeout, provider.provide_credentials()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(self.auth_error(DisplayErrorContext(&error).to_string())),
            Err(_) => {
                return Err(CollectError::Connect {
                    target: settings.target.clone(),
                    source: format!(
                        "credentials not resolved within {}ms",
                        settings.api_timeout.as_millis()
                    )
                    .into(),
                })
            }
        }

        Ok(Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
        })
    }

    fn auth_error(&self, reason: String) -> CollectError {
        CollectError::Auth {
            target: self.settings.target.clone(),
            source: format!("cannot resolve AWS credentials: {reason}").into(),
        }
    }
}

/// An AWS API failure reduced to what the collector acts on: its bounded class and a message for the log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub reason: String,
    /// An HTTP 500 without an AWS error code: a transient fault (a proxy, AWS itself) the first time, but
    /// also how emulators answer an action they lack; see [`BARE_500S_FOR_UNSUPPORTED`].
    pub bare_server_error: bool,
}

/// How many 500s without an error code in a row, with no success between, make an API unsupported.
/// One is a transient fault and must not turn a capability off until the clients are rebuilt (L11); an
/// emulator that lacks the action answers every call that way, so two in a row is the sign. The collector
/// calls each per-table API once per table, so against moto the capability is still known in the first poll.
pub const BARE_500S_FOR_UNSUPPORTED: u32 = 2;

impl ApiError {
    pub fn decode(reason: impl Into<String>) -> Self {
        ApiError {
            kind: ErrorKind::Decode,
            reason: reason.into(),
            bare_server_error: false,
        }
    }
}

/// A call of a view. The class is decided when the error is made (and may be raised to unsupported by the
/// collector's count of bare 500s), so the runner reads it as it is.
impl ViewError for ApiError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }

    fn into_collect_error(self, target: &str, view: &'static str) -> CollectError {
        match self.kind {
            ErrorKind::Connect | ErrorKind::Tls => CollectError::ConnectionLost {
                view,
                source: Box::new(self),
            },
            ErrorKind::Auth => CollectError::Auth {
                target: target.to_owned(),
                source: format!("{view}: {}", self.reason).into(),
            },
            ErrorKind::Timeout => CollectError::Timeout { view },
            ErrorKind::Decode => CollectError::Decode {
                view,
                source: Box::new(self),
            },
            ErrorKind::Query | ErrorKind::Unsupported => CollectError::Query {
                view,
                source: Box::new(self),
            },
        }
    }
}

/// Classifies any SDK call failure of either service.
pub fn api_error<E>(error: &SdkError<E, HttpResponse>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let bare_server_error = matches!(error, SdkError::ServiceError(service)
        if error.code().is_none() && service.raw().status().as_u16() == 500);
    let kind = match error {
        SdkError::TimeoutError(_) => ErrorKind::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => ErrorKind::Timeout,
        SdkError::DispatchFailure(_) => ErrorKind::Connect,
        SdkError::ResponseError(_) => ErrorKind::Decode,
        SdkError::ServiceError(service) => {
            classify_code(error.code(), service.raw().status().as_u16())
        }
        _ => ErrorKind::Query,
    };
    ApiError {
        kind,
        reason: DisplayErrorContext(error).to_string(),
        bare_server_error,
    }
}

/// The bounded class of an AWS error code; the codes are those of the DynamoDB and CloudWatch API references'
/// "Common Errors" pages.
///
/// An API the endpoint does not implement is Unsupported: AWS-compatible servers say so with
/// UnknownOperationException (DynamoDB Local), or with a 404 or 501 carrying no AWS error code (moto answers
/// 404 for a protocol it does not route). A 500 with no code is a query error here: one such answer may be a
/// proxy's or a transient fault; moto answers every unimplemented action that way, so the collector treats
/// [`BARE_500S_FOR_UNSUPPORTED`] of them in a row as unsupported. AWS itself always names its errors
/// (ResourceNotFoundException, InternalServerError), so those stay query errors.
pub fn classify_code(code: Option<&str>, http_status: u16) -> ErrorKind {
    match code {
        Some(
            "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "ExpiredTokenException"
            | "ExpiredToken"
            | "MissingAuthenticationToken"
            | "IncompleteSignature"
            | "NotAuthorized",
        ) => ErrorKind::Auth,
        Some("UnknownOperationException" | "InvalidAction" | "NotImplemented") => {
            ErrorKind::Unsupported
        }
        Some("RequestTimeout" | "RequestTimeoutException") => ErrorKind::Timeout,
        None if matches!(http_status, 404 | 501) => ErrorKind::Unsupported,
        _ => ErrorKind::Query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_bounded_kinds() {
        assert_eq!(
            classify_code(Some("AccessDeniedException"), 400),
            ErrorKind::Auth
        );
        assert_eq!(
            classify_code(Some("ExpiredTokenException"), 400),
            ErrorKind::Auth
        );
        assert_eq!(
            classify_code(Some("UnknownOperationException"), 400),
            ErrorKind::Unsupported
        );
        assert_eq!(classify_code(None, 501), ErrorKind::Unsupported);
        // One bare 500 is transient (L11); the collector counts repeats (BARE_500S_FOR_UNSUPPORTED).
        assert_eq!(classify_code(None, 500), ErrorKind::Query);
        assert_eq!(classify_code(None, 404), ErrorKind::Unsupported);
        assert_eq!(classify_code(None, 400), ErrorKind::Query);
        assert_eq!(
            classify_code(Some("InternalServerError"), 500),
            ErrorKind::Query
        );
        assert_eq!(
            classify_code(Some("ThrottlingException"), 400),
            ErrorKind::Query
        );
        assert_eq!(
            classify_code(Some("ResourceNotFoundException"), 400),
            ErrorKind::Query
        );
    }
}
