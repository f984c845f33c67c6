//! Cross-site request forgery: a browser sends a user's basic-auth credentials with any form POST to this
//! server, wherever the form came from. So every write form carries a token only this server can compute for
//! that user — SHA-256 of a per-process random key and the user name (empty without users) — and a POST is
//! refused unless its token matches and, when the browser says where it comes from (`Origin`,
//! `Sec-Fetch-Site`), it comes from this origin. The key is new at every start: a page left open across a
//! restart asks to be reloaded.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use crate::web::serve::parse_basic;

#[derive(Clone)]
pub struct Csrf {
    key: Arc<[u8; 32]>,
}

impl std::fmt::Debug for Csrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csrf(..)")
    }
}

impl Default for Csrf {
    fn default() -> Csrf {
        Csrf {
            key: Arc::new(rand::random()),
        }
    }
}

/// Why a POST from the UI was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    CrossOrigin,
    BadToken,
}

impl Refused {
    pub fn message(self) -> &'static str {
        match self {
            Refused::CrossOrigin => "refused: the form was not sent from this server's own pages",
            Refused::BadToken => {
                "refused: the form's token does not match (the page is older than this dbwatch process, or \
                 was made for another user); reload the page and try again"
            }
        }
    }
}

/// The basic-auth user of a request, if it names one (the web server has already verified the password).
pub fn user(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_basic)
        .map(|(user, _)| user)
}

impl Csrf {
    /// The token of the forms shown to `user`.
    pub fn token(&self, user: Option<&str>) -> String {
        let user = user.unwrap_or("");
        let mut digest = Sha256::new();
        digest.update(self.key.as_slice());
        digest.update((user.len() as u64).to_le_bytes());
        digest.update(user.as_bytes());
        digest
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// Checks a POST's origin and token; returns the user it was made by.
    pub fn check(&self, headers: &HeaderMap, token: &str) -> Result<Option<String>, Refused> {
        if headers
            .get("sec-fetch-site")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|site| !matches!(site, "same-origin" | "none"))
        {
            return Err(Refused::CrossOrigin);
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let host = headers
                .get(header::HOST)
                .and_then(|host| host.to_str().ok());
            let same = origin
                .to_str()
                .ok()
                .and_then(|origin| origin.split_once("://"))
                .is_some_and(|(_, authority)| Some(authority) == host);
            if !same {
                return Err(Refused::CrossOrigin);
            }
        }
        let user = user(headers);
        let expected = self.token(user.as_deref());
        // Compared in full whatever differs first: the token is a secret.
        let same = expected.len() == token.len()
            && expected
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
        if same {
            Ok(user)
        } else {
            Err(Refused::BadToken)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn tokens_are_per_user_and_per_process_and_origins_must_match() {
        let csrf = Csrf::default();
        // "alice:pw" and "bob:pw".
        let alice = [
            ("authorization", "Basic YWxpY2U6cHc="),
            ("host", "dbwatch:9630"),
        ];
        let token = csrf.token(Some("alice"));
        assert_eq!(
            csrf.check(&headers(&alice), &token),
            Ok(Some("alice".into()))
        );
        assert_eq!(
            csrf.check(&headers(&[("authorization", "Basic Ym9iOnB3")]), &token),
            Err(Refused::BadToken)
        );
        assert_eq!(csrf.check(&headers(&alice), ""), Err(Refused::BadToken));
        assert_eq!(
            Csrf::default().check(&headers(&alice), &token),
            Err(Refused::BadToken),
            "another process's token"
        );
        let mut from_elsewhere = alice.to_vec();
        from_elsewhere.push(("origin", "https://evil.example"));
        assert_eq!(
            csrf.check(&headers(&from_elsewhere), &token),
            Err(Refused::CrossOrigin)
        );
        let mut same_origin = alice.to_vec();
        same_origin.push(("origin", "http://dbwatch:9630"));
        same_origin.push(("sec-fetch-site", "same-origin"));
        assert!(csrf.check(&headers(&same_origin), &token).is_ok());
        let mut cross_site = alice.to_vec();
        cross_site.push(("sec-fetch-site", "cross-site"));
        assert_eq!(
            csrf.check(&headers(&cross_site), &token),
            Err(Refused::CrossOrigin)
        );
    }
}
