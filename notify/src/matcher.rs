//! Alertmanager label matchers: `name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"`, and the
//! deprecated `match`/`match_re` maps. Regular expressions are anchored at both ends, as in Alertmanager, and a
//! missing label reads as the empty string.

use std::collections::BTreeMap;

use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|error| format!("invalid regular expression {value:?}: {error}"))?,
            ),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (&self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(regex)) => regex.is_match(value),
            (MatchOp::NotRegex, Some(regex)) => !regex.is_match(value),
            // `new` always compiles the regex of a regex operator.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

/// True when every matcher matches (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|matcher| matcher.matches(labels))
}

/// Parses one entry of a `matchers` list. An entry may hold several comma-separated matchers, optionally in
/// braces (`{a="1", b=~"x|y"}`), as Alertmanager's parser accepts.
pub fn parse_matchers(text: &str) -> Result<Vec<Matcher>, String> {
    let trimmed = text.trim();
    let inner = match trimmed.strip_prefix('{') {
        Some(rest) => rest
            .strip_suffix('}')
            .ok_or_else(|| format!("missing closing brace in {text:?}"))?,
        None => trimmed,
    };
    let mut matchers = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (matcher, after) = parse_one(rest)?;
        matchers.push(matcher);
        rest = after.trim_start();
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("expected a comma after a matcher in {text:?}"));
        }
    }
    if matchers.is_empty() {
        return Err(format!("no matcher in {text:?}"));
    }
    Ok(matchers)
}

fn parse_one(text: &str) -> Result<(Matcher, &str), String> {
    let (name, rest) = if let Some(quoted) = text.strip_prefix('"') {
        let (name, after) =
            unquote(quoted).ok_or_else(|| format!("unterminated quote in {text:?}"))?;
        (name, after)
    } else {
        let end = text
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-'))
            .unwrap_or(text.len());
        (text[..end].to_owned(), &text[end..])
    };
    if name.is_empty() {
        return Err(format!("missing label name in {text:?}"));
    }
    let rest = rest.trim_start();
    let (op, rest) = if let Some(after) = rest.strip_prefix("=~") {
        (MatchOp::Regex, after)
    } else if let Some(after) = rest.strip_prefix("!~") {
        (MatchOp::NotRegex, after)
    } else if let Some(after) = rest.strip_prefix("!=") {
        (MatchOp::NotEqual, after)
    } else if let Some(after) = rest.strip_prefix('=') {
        (MatchOp::Equal, after)
    } else {
        return Err(format!(
            "expected one of =, !=, =~, !~ after {name:?} in {text:?}"
        ));
    };
    let rest = rest.trim_start();
    let (value, rest) = if let Some(quoted) = rest.strip_prefix('"') {
        unquote(quoted).ok_or_else(|| format!("unterminated quote in {text:?}"))?
    } else {
        let end = rest.find(',').unwrap_or(rest.len());
        (rest[..end].trim_end().to_owned(), &rest[end..])
    };
    Ok((Matcher::new(&name, op, &value)?, rest))
}

/// The text of a double-quoted string (after its opening quote) with `\"`, `\\` and `\n` unescaped, and what
/// follows the closing quote.
fn unquote(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[index + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            other => out.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_every_operator_quoted_and_bare() {
        let parsed =
            parse_matchers(r#"{alertname="high_latency", severity=~"warn.*", team!=db, x!~"a|b"}"#)
                .expect("valid matchers");
        let ops: Vec<MatchOp> = parsed.iter().map(|m| m.op).collect();
        assert_eq!(
            ops,
            [
                MatchOp::Equal,
                MatchOp::Regex,
                MatchOp::NotEqual,
                MatchOp::NotRegex
            ]
        );
        assert_eq!(parsed[2].value, "db");
        let alert = labels(&[("alertname", "high_latency"), ("severity", "warning")]);
        assert!(all_match(&parsed, &alert));
    }

    #[test]
    fn regexes_are_anchored_and_missing_labels_are_empty() {
        let matcher = &parse_matchers("severity=~crit").expect("valid")[0];
        assert!(!matcher.matches(&labels(&[("severity", "critical")])));
        let empty = &parse_matchers(r#"team="""#).expect("valid")[0];
        assert!(empty.matches(&labels(&[])));
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse_matchers("alertname").is_err());
        assert!(parse_matchers(r#"a="unterminated"#).is_err());
        assert!(parse_matchers("a=~(").is_err());
    }
}
