//! Serving a router with the web configuration applied: TLS handshakes off the accept loop, basic auth against
//! bcrypt hashes with a read/write split (see `config.rs` for the rules), the configured security headers, and
//! bounds on what one client can hold:
//!
//! | Bound | Value | Why |
//! |---|---|---|
//! | connections (plain HTTP and TLS, handshakes included) | [`MAX_CONNECTIONS`] | each pins buffers and maybe a rendered `/metrics` |
//! | TLS handshake | [`HANDSHAKE_TIMEOUT`] | a client that never finishes it holds a slot |
//! | request head, and the idle time between keep-alive requests | [`HEADER_READ_TIMEOUT`] | slowloris |
//! | request, body included, until the response starts | [`REQUEST_TIMEOUT`] | a body sent a byte at a time |
//! | one connection's life, then closed after its current response | [`CONNECTION_MAX_AGE`] + [`CONNECTION_CLOSE_GRACE`] | a client reading a response a byte at a time |
//! | request body | [`MAX_BODY_BYTES`] | a silence is a few hundred bytes |
//! | request head | [`MAX_HEAD_BYTES`] | |
//!
//! Shutdown covers open connections: when `shutdown` is cancelled the listener closes, idle connections close at
//! once, busy ones after their response, and whatever is still open after [`DRAIN_TIMEOUT`] is dropped, so the
//! daemon exits within its 10 s deadline whatever its clients do.
//!
//! bcrypt costs tens of milliseconds of CPU by design. A successful verification is cached (the key is a SHA-256
//! of user, hash and password; [`CACHE_CAPACITY`] entries for [`CACHE_TTL`]), as the exporter-toolkit does, so a
//! scraper pays it once; failures are not cached. At most [`BCRYPT_CONCURRENCY`] verification runs at once, so a
//! flood of wrong passwords costs at most one core and leaves the other to the pollers and the rules engine
//! (which share the blocking pool); requests that wait longer than [`BCRYPT_QUEUE_TIMEOUT`] get 503.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::WebConfig;

/// Open connections at once, TLS handshakes included; beyond it new connections wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// A client that opens a connection and never finishes the handshake must not hold a slot for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// For a request's head to arrive; hyper also applies it to the wait for the next request on a kept-alive
/// connection, so it is the idle timeout too.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// From the request head to the response head: authentication, the body, the handler.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// After this a connection is closed once its current response is written...
pub const CONNECTION_MAX_AGE: Duration = Duration::from_secs(60);
/// ...and dropped if that takes longer than this.
pub const CONNECTION_CLOSE_GRACE: Duration = Duration::from_secs(10);
/// At shutdown, how long open connections get to finish before they are dropped. Well inside the daemon's
/// 10 s `SHUTDOWN_DEADLINE`, which the engine and notifier saves share.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(4);
/// Request bodies (only writes have one): a silence with every field at its limit fits.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Request line and headers.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Successful verifications remembered at once.
pub const CACHE_CAPACITY: usize = 1024;
/// How long a successful verification is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// bcrypt verifications running at once.
pub const BCRYPT_CONCURRENCY: usize = 1;
/// How long a request waits for a bcrypt slot before it is answered 503.
pub const BCRYPT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// Answered without authentication, so Kubernetes probes work with basic auth on.
const OPEN_PATHS: [&str; 2] = ["/-/healthy", "/-/ready"];

/// Serves `router` on `listener` until `shutdown` is cancelled: TLS when the configuration has it, basic auth
/// when it lists users, plain HTTP when there is no configuration at all. Returns once every connection is
/// closed, at most [`DRAIN_TIMEOUT`] after `shutdown`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: Option<WebConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let web = web.unwrap_or_default();
    let router = secure(router, &web);
    let tls = web.tls.clone().map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // A JoinSet so the connections still open after the drain are aborted with it.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => permit,
        };
        // The semaphore is never closed; an error would only mean it was.
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: retrying at once would spin.
                tracing::warn!(error = %error, "cannot accept a connection");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            connection(stream, peer, tls, router, shutdown).await;
        });
    }
    // New connections are refused from here on.
    drop(listener);
    let open = connections.len();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            of = open,
            timeout = %humantime::format_duration(DRAIN_TIMEOUT),
            "connections still open at shutdown after the drain; dropping them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// One accepted connection: the TLS handshake when there is TLS, then HTTP/1.1 until the client closes, a
/// timeout, the connection's age or the shutdown ends it.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    shutdown: CancellationToken,
) {
    match tls {
        None => http(stream, peer, router, shutdown).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                _ = shutdown.cancelled() => return,
                handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => handshake,
            };
            match handshake {
                Ok(Ok(tls)) => http(tls, peer, router, shutdown).await,
                Ok(Err(error)) => {
                    tracing::debug!(peer = %peer, error = %error, "TLS handshake failed");
                }
                Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn http<I>(io: I, peer: SocketAddr, router: Router, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        // The server drops this task if the drain takes too long.
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        _ = tokio::time::sleep(CONNECTION_MAX_AGE) => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(CONNECTION_CLOSE_GRACE, connection).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::debug!(peer = %peer, "connection dropped: its response outlived the connection's age");
                    return;
                }
            }
        }
    };
    if let Err(error) = result {
        // Timeouts, resets and malformed requests: the client's problem, worth a line only when debugging.
        tracing::debug!(peer = %peer, error = %error, "connection ended with an error");
    }
}

/// Wraps the router in the authentication, limit and header layers the configuration asks for.
fn secure(router: Router, web: &WebConfig) -> Router {
    let auth = Arc::new(Auth {
        users: Arc::clone(&web.users),
        writers: Arc::clone(&web.writers),
        dummy_hash: Arc::clone(&web.dummy_hash),
        unauthenticated_writes: web.unauthenticated_writes.clone(),
        cache: VerifiedCache::default(),
        bcrypt: Arc::new(Semaphore::new(BCRYPT_CONCURRENCY)),
    });
    let mut router = router
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(auth, authorize));
    if !web.headers.is_empty() {
        router = router.layer(middleware::from_fn_with_state(
            Arc::clone(&web.headers),
            add_headers,
        ));
    }
    router.layer(middleware::from_fn(request_timeout))
}

async fn request_timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            format!(
                "request not completed within {}\n",
                humantime::format_duration(REQUEST_TIMEOUT)
            ),
        )
            .into_response(),
    }
}

async fn add_headers(
    State(headers): State<Arc<Vec<(header::HeaderName, HeaderValue)>>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    for (name, value) in headers.iter() {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// Who may read and who may write, and the bcrypt machinery to tell.
struct Auth {
    users: Arc<std::collections::BTreeMap<String, String>>,
    writers: Arc<std::collections::BTreeSet<String>>,
    dummy_hash: Arc<str>,
    unauthenticated_writes: Option<Arc<Vec<String>>>,
    cache: VerifiedCache,
    bcrypt: Arc<Semaphore>,
}

enum Verified {
    Yes,
    No,
    /// No bcrypt slot within the queue timeout.
    Busy,
}

impl Auth {
    async fn verify(&self, user: &str, password: String) -> Verified {
        let (hash, known) = match self.users.get(user) {
            Some(hash) => (hash.clone(), true),
            None => (self.dummy_hash.to_string(), false),
        };
        let key = cache_key(user, &hash, &password);
        if known && self.cache.contains(&key, Instant::now()) {
            return Verified::Yes;
        }
        let permit = match tokio::time::timeout(
            BCRYPT_QUEUE_TIMEOUT,
            Arc::clone(&self.bcrypt).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            _ => return Verified::Busy,
        };
        // Off the async workers; the permit goes with the work, so a request that times out while bcrypt
        // runs still frees its slot only when bcrypt is done.
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bcrypt::verify(password, &hash)
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false);
        if verified && known {
            self.cache.insert(key, Instant::now());
            Verified::Yes
        } else {
            Verified::No
        }
    }
}

/// SHA-256 of the user, the stored hash and the password, each length-prefixed so no two triples collide; the
/// hash is in the key so a changed hash never matches an old entry.
fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut digest = Sha256::new();
    for part in [user, hash, password] {
        digest.update((part.len() as u64).to_le_bytes());
        digest.update(part.as_bytes());
    }
    digest.finalize().into()
}

/// Successful verifications, bounded and expiring.
#[derive(Default)]
struct VerifiedCache {
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

impl VerifiedCache {
    fn contains(&self, key: &[u8; 32], now: Instant) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key) {
            Some(expires) if *expires > now => true,
            Some(_) => {
                entries.remove(key);
                false
            }
            None => false,
        }
    }

    fn insert(&self, key: [u8; 32], now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CACHE_CAPACITY && !entries.contains_key(&key) {
            entries.retain(|_, expires| *expires > now);
            // Still full: forget the entry closest to expiry. O(capacity), and only on a miss that verified.
            if entries.len() >= CACHE_CAPACITY {
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, expires)| **expires)
                    .map(|(key, _)| *key)
                {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(key, now + CACHE_TTL);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

const NO_WRITES: &str = "writes are disabled: no basic_auth_users are configured. List users under \
     basic_auth_users and the ones who may write under write_users in --web.config.file, or start dbwatch \
     with --web.enable-unauthenticated-writes to let anyone who can reach it write";

async fn authorize(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !write && OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    if auth.users.is_empty() {
        if !write {
            return next.run(request).await;
        }
        return match &auth.unauthenticated_writes {
            None => forbidden(NO_WRITES.to_owned()),
            Some(hosts) if trusted_host(&request, hosts) => next.run(request).await,
            Some(_) => forbidden(
                "a write without authentication must name this server by IP address, localhost or the \
                 --web.external-url host in its Host header (a defence against DNS rebinding); or configure \
                 basic_auth_users and write_users in --web.config.file"
                    .to_owned(),
            ),
        };
    }
    let credentials = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_basic);
    let Some((user, password)) = credentials else {
        return unauthorized(write);
    };
    match auth.verify(&user, password).await {
        Verified::Yes => {}
        Verified::No => return unauthorized(write),
        Verified::Busy => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                "too many password verifications in progress; try again\n",
            )
                .into_response()
        }
    }
    if write && !auth.writers.contains(&user) {
        return forbidden(format!(
            "user {user:?} may read but not write: list it under write_users in --web.config.file"
        ));
    }
    next.run(request).await
}

/// True when the request's `Host` names this server by an IP address, `localhost` or one of `hosts`; a
/// rebinding attacker's page can only send its own domain name. A request without `Host` (HTTP/1.0) is no
/// browser's.
fn trusted_host(request: &Request, hosts: &[String]) -> bool {
    let Some(host) = request.headers().get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // [::1]:9630
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<IpAddr>().is_ok())
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name))
}

/// 401; a write gets the reason as a JSON string (Alertmanager's error shape, which amtool prints).
fn unauthorized(write: bool) -> Response {
    let challenge = [(header::WWW_AUTHENTICATE, "Basic realm=\"dbwatch\"")];
    if write {
        (
            StatusCode::UNAUTHORIZED,
            challenge,
            Json(
                "a write needs the user and password of a user listed under write_users in \
                 --web.config.file",
            ),
        )
            .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            challenge,
            Body::from("unauthorized\n"),
        )
            .into_response()
    }
}

fn forbidden(message: String) -> Response {
    (StatusCode::FORBIDDEN, Json(message)).into_response()
}

/// `Basic base64(user:password)` into its parts; None for any other scheme or a malformed value.
pub(crate) fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        // "prometheus:s3cr:et" — the password may contain ':'.
        assert_eq!(
            parse_basic("Basic cHJvbWV0aGV1czpzM2NyOmV0"),
            Some(("prometheus".to_owned(), "s3cr:et".to_owned()))
        );
        assert_eq!(parse_basic("Basic YTpi"), Some(("a".into(), "b".into())));
        assert_eq!(parse_basic("Bearer YTpi"), None);
        assert_eq!(parse_basic("Basic !!!!"), None);
        assert_eq!(parse_basic("Basic YTpiYw"), None);
    }

    #[test]
    fn cache_keys_separate_their_parts() {
        assert_ne!(cache_key("ab", "h", "c"), cache_key("a", "h", "bc"));
        assert_ne!(cache_key("a", "h1", "p"), cache_key("a", "h2", "p"));
        assert_eq!(cache_key("a", "h", "p"), cache_key("a", "h", "p"));
    }

    #[test]
    fn the_cache_expires_and_stays_bounded() {
        let cache = VerifiedCache::default();
        let start = Instant::now();
        cache.insert([1; 32], start);
        assert!(cache.contains(&[1; 32], start + CACHE_TTL / 2));
        assert!(!cache.contains(&[1; 32], start + CACHE_TTL));
        assert_eq!(cache.len(), 0, "an expired entry is removed when seen");
        for index in 0..CACHE_CAPACITY + 10 {
            let mut key = [0; 32];
            key[..8].copy_from_slice(&(index as u64).to_le_bytes());
            cache.insert(key, start + Duration::from_millis(index as u64));
        }
        assert_eq!(cache.len(), CACHE_CAPACITY);
        // The oldest went first; the newest is kept.
        let mut newest = [0; 32];
        newest[..8].copy_from_slice(&((CACHE_CAPACITY + 9) as u64).to_le_bytes());
        assert!(cache.contains(&newest, start));
        assert!(!cache.contains(&[0; 32], start));
    }

    fn request(host: Option<&str>) -> Request {
        let mut builder = Request::builder().method("POST").uri("/api/v2/silences");
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        builder.body(Body::empty()).expect("request")
    }

    #[test]
    fn unauthenticated_writes_need_a_host_that_cannot_be_rebound() {
        let hosts = vec!["dbwatch.example".to_owned()];
        for host in [
            "127.0.0.1:9630",
            "10.1.2.3",
            "[::1]:9630",
            "localhost:9630",
            "LOCALHOST",
            "dbwatch.example:9630",
        ] {
            assert!(trusted_host(&request(Some(host)), &hosts), "{host}");
        }
        assert!(trusted_host(&request(None), &hosts));
        for host in [
            "evil.example:9630",
            "127.0.0.1.evil.example",
            "[evil]:1",
            "localhost.evil",
        ] {
            assert!(!trusted_host(&request(Some(host)), &hosts), "{host}");
        }
    }
}
