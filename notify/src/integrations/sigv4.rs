//! AWS Signature Version 4 for one request with a body (the SNS integration's `Publish`): the canonical
//! request, the string to sign and the derived key, as AWS's "Create a signed AWS API request" describes.
//! HMAC-SHA256 is built here over `sha2` (RFC 2104), so the notifier needs neither the AWS SDK nor another
//! digest version.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// Credentials to sign with.
#[derive(Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA256 (RFC 2104, 64-byte blocks).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|byte| byte ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|byte| byte ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// `application/x-www-form-urlencoded` with AWS's encoding: everything but `A-Za-z0-9-_.~` percent-encoded.
pub fn form_encode(params: &[(String, String)]) -> String {
    let encode = |text: &str| {
        let mut out = String::with_capacity(text.len());
        for byte in text.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                out.push(char::from(byte));
            } else {
                let _ = write!(out, "%{byte:02X}");
            }
        }
        out
    };
    params
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What a signed request carries besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub amz_date: String,
    pub authorization: String,
}

/// Signs a request whose only signed headers are `content-type`, `host` and `x-amz-date` (and
/// `x-amz-security-token` with a session token), to `path` without a query string, at `amz_date`
/// (`YYYYMMDDTHHMMSSZ`).
#[allow(clippy::too_many_arguments)]
pub fn sign(
    credentials: &Credentials,
    region: &str,
    service: &str,
    method: &str,
    host: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    amz_date: &str,
) -> Signed {
    let date = &amz_date[..amz_date.len().min(8)];
    let mut headers = vec![
        ("content-type", content_type.to_owned()),
        ("host", host.to_owned()),
        ("x-amz-date", amz_date.to_owned()),
    ];
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token", token.clone()));
    }
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    let path = if path.is_empty() { "/" } else { path };
    let canonical_request = format!(
        "{method}\n{path}\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex(&Sha256::digest(body))
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let key = [region, service, "aws4_request"].iter().fold(
        hmac_sha256(
            format!("AWS4{}", credentials.secret_key).as_bytes(),
            date.as_bytes(),
        ),
        |key, part| hmac_sha256(&key, part.as_bytes()),
    );
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    Signed {
        amz_date: amz_date.to_owned(),
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key
        ),
    }
}

/// `YYYYMMDDTHHMMSSZ` for a time.
pub fn amz_date(at: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 and test case 6 (a key longer than the block).
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn the_signing_key_matches_awss_worked_example() {
        // AWS's "Examples of how to derive a signing key for Signature Version 4" (20120215, us-east-1, iam).
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let key = ["us-east-1", "iam", "aws4_request"].iter().fold(
            hmac_sha256(format!("AWS4{secret}").as_bytes(), b"20120215"),
            |key, part| hmac_sha256(&key, part.as_bytes()),
        );
        assert_eq!(
            hex(&key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn a_form_post_is_signed_as_in_awss_published_test_suite() {
        // AWS's Signature Version 4 test suite, "post-x-www-form-urlencoded".
        let credentials = Credentials {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let signed = sign(
            &credentials,
            "us-east-1",
            "service",
            "POST",
            "example.amazonaws.com",
            "/",
            "application/x-www-form-urlencoded",
            b"Param1=value1",
            "20150830T123600Z",
        );
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        );
        assert_eq!(
            amz_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160)),
            "20150830T123600Z"
        );
    }

    #[test]
    fn a_signature_names_its_scope_and_headers_and_changes_with_the_body() {
        let credentials = Credentials {
            access_key: "AKID".into(),
            secret_key: "secret".into(),
            session_token: None,
        };
        let sign_body = |body: &[u8]| {
            sign(
                &credentials,
                "us-east-1",
                "sns",
                "POST",
                "127.0.0.1:15000",
                "/",
                "application/x-www-form-urlencoded; charset=utf-8",
                body,
                "20240101T000000Z",
            )
        };
        let signed = sign_body(b"Action=Publish");
        assert!(signed.authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/sns/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
        ), "{}", signed.authorization);
        assert_ne!(signed, sign_body(b"Action=Publish&x=1"));
        assert_eq!(
            form_encode(&[("Message".into(), "a b&c=ü~".into())]),
            "Message=a%20b%26c%3D%C3%BC~"
        );
    }
}
