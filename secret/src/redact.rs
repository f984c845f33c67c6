//! What of a URL may be printed: logs and error messages show where dbwatch talks to, never the credentials
//! a URL can carry in its userinfo (`https://user:password@am:9093`).

/// `url` with any `user:password@` replaced by `***@`, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***@{}{path}", &authority[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_url("https://user:pa:ss@am.example:9093/prefix?x=1"),
            "https://***@am.example:9093/prefix?x=1"
        );
        assert_eq!(
            redact_url("http://am.example:9093/a@b"),
            "http://am.example:9093/a@b"
        );
        assert_eq!(redact_url("http://am:9093"), "http://am:9093");
        assert_eq!(redact_url("not a url @ all"), "not a url @ all");
    }
}
