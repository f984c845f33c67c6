//! Serving a router with the web configuration applied: TLS handshakes off the accept loop, basic auth against
//! bcrypt hashes, the configured security headers, and a graceful shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::WebConfig;

/// A client that opens a connection and never finishes the handshake must not hold a slot for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at once; beyond it new connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;
/// Verified against when the user is unknown, so an unknown user costs the same time as a wrong password and
/// user names cannot be probed by timing. Made once, at the cost most configured hashes use.
static DUMMY_HASH: LazyLock<Option<String>> =
    LazyLock::new(|| bcrypt::hash("dbwatch-unknown-user", 10).ok());

/// Serves `router` on `listener` until `shutdown` is cancelled: TLS when the configuration has it, basic auth
/// when it lists users, plain HTTP when there is no configuration at all.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: Option<WebConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let web = web.unwrap_or_default();
    let router = secure(router, &web);
    let graceful = shutdown.clone();
    let until_shutdown = async move { graceful.cancelled().await };
    match web.tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(until_shutdown)
                .await
        }
        Some(tls) => {
            let local = listener.local_addr()?;
            let (sender, receiver) = mpsc::channel(64);
            let acceptor = tokio::spawn(accept_tls(
                listener,
                TlsAcceptor::from(tls),
                sender,
                shutdown.clone(),
            ));
            let served = axum::serve(TlsListener { receiver, local }, router)
                .with_graceful_shutdown(until_shutdown)
                .await;
            shutdown.cancel();
            let _ = acceptor.await;
            served
        }
    }
}

/// Wraps the router in the authentication and header layers the configuration asks for.
fn secure(router: Router, web: &WebConfig) -> Router {
    let mut router = router;
    if web.basic_auth_enabled() {
        router = router.layer(middleware::from_fn_with_state(
            Arc::clone(&web.users),
            basic_auth,
        ));
    }
    if !web.headers.is_empty() {
        router = router.layer(middleware::from_fn_with_state(
            Arc::clone(&web.headers),
            add_headers,
        ));
    }
    router
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

async fn basic_auth(
    State(users): State<Arc<std::collections::BTreeMap<String, String>>>,
    request: Request,
    next: Next,
) -> Response {
    let credentials = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_basic);
    let Some((user, password)) = credentials else {
        return unauthorized();
    };
    let (hash, known) = match users.get(&user) {
        Some(hash) => (hash.clone(), true),
        None => (DUMMY_HASH.clone().unwrap_or_default(), false),
    };
    // bcrypt takes tens of milliseconds by design: off the async workers.
    let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false);
    if verified && known {
        next.run(request).await
    } else {
        unauthorized()
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"dbwatch\"")],
        Body::from("unauthorized\n"),
    )
        .into_response()
}

/// `Basic base64(user:password)` into its parts; None for any other scheme or a malformed value.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Accepts TCP connections and runs each TLS handshake in its own task, so one slow or hostile client cannot
/// stall the others; finished handshakes go to the HTTP server through the channel.
async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = Arc::clone(&slots).acquire_owned() => permit,
        };
        // The semaphore is never closed; an error would only mean it was.
        let Ok(permit) = permit else { return };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: retrying at once would spin.
                tracing::warn!(error = %error, "cannot accept a connection");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = sender.send((tls, peer)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(peer = %peer, error = %error, "TLS handshake failed");
                }
                Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
            }
        });
    }
}

/// The HTTP server's view of the TLS side: connections whose handshake is complete.
struct TlsListener {
    receiver: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.receiver.recv().await {
            Some(connection) => connection,
            // The acceptor stopped (shutdown): no more connections, the graceful shutdown ends the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
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
    fn the_dummy_hash_is_a_valid_bcrypt_hash() {
        let hash = DUMMY_HASH.clone().expect("dummy hash");
        assert_eq!(
            bcrypt::verify("dbwatch-unknown-user", &hash).ok(),
            Some(true)
        );
    }
}
