//! Reading numbers, dates and nested fields out of command answers, whatever BSON type the server chose.

use mongodb::bson::{Bson, Document};

/// An answer that lacks what a view needs, naming what is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Missing(pub &'static str);

impl From<&'static str> for Missing {
    fn from(what: &'static str) -> Self {
        Missing(what)
    }
}

/// A numeric field as f64. The same counter travels as int32, int64 or double depending on the server version
/// and its magnitude (opcounters went from int32 to int64 in 5.0), so every numeric type is accepted.
pub fn number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Int32(value) => Some(f64::from(*value)),
        Bson::Int64(value) => Some(*value as f64),
        Bson::Double(value) => Some(*value),
        Bson::Decimal128(value) => value.to_string().parse().ok(),
        _ => None,
    }
}

/// The value at a dotted path, `None` when any step is missing or not a document.
pub fn at<'a>(document: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut steps = path.split('.');
    let mut value = document.get(steps.next()?)?;
    for step in steps {
        value = value.as_document()?.get(step)?;
    }
    Some(value)
}

pub fn number_at(document: &Document, path: &str) -> Option<f64> {
    at(document, path).and_then(number)
}

pub fn str_at<'a>(document: &'a Document, path: &str) -> Option<&'a str> {
    at(document, path).and_then(Bson::as_str)
}

pub fn document_at<'a>(document: &'a Document, path: &str) -> Option<&'a Document> {
    at(document, path).and_then(Bson::as_document)
}

/// Milliseconds since the epoch of a date field. The epoch itself means "never" or "unknown" in server answers
/// (an unreachable member's optimeDate), so it reads as `None`, never as a date 55 years ago.
pub fn date_millis(value: &Bson) -> Option<i64> {
    match value {
        Bson::DateTime(date) => Some(date.timestamp_millis()).filter(|millis| *millis > 0),
        _ => None,
    }
}

pub fn date_millis_at(document: &Document, path: &str) -> Option<i64> {
    at(document, path).and_then(date_millis)
}

/// The seconds part of a BSON timestamp (oplog `ts`, optime `ts`); `None` for the zero timestamp.
pub fn timestamp_seconds_at(document: &Document, path: &str) -> Option<u32> {
    match at(document, path)? {
        Bson::Timestamp(timestamp) => Some(timestamp.time).filter(|seconds| *seconds > 0),
        _ => None,
    }
}

/// `database.collection` split at the first dot: database names cannot contain dots, collection names can.
pub fn split_namespace(namespace: &str) -> Option<(&str, &str)> {
    namespace
        .split_once('.')
        .filter(|(database, collection)| !database.is_empty() && !collection.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, DateTime, Timestamp};

    #[test]
    fn numbers_of_every_width_read_alike() {
        let answer = doc! { "a": { "b": 7_i32, "c": 7_i64, "d": 7.0, "e": "7" } };
        assert_eq!(number_at(&answer, "a.b"), Some(7.0));
        assert_eq!(number_at(&answer, "a.c"), Some(7.0));
        assert_eq!(number_at(&answer, "a.d"), Some(7.0));
        assert_eq!(number_at(&answer, "a.e"), None);
        assert_eq!(number_at(&answer, "a.b.c"), None);
        assert_eq!(number_at(&answer, "x"), None);
    }

    #[test]
    fn the_epoch_and_the_zero_timestamp_are_unknown() {
        let answer = doc! {
            "never": DateTime::from_millis(0),
            "then": DateTime::from_millis(1_000),
            "ts0": Timestamp { time: 0, increment: 0 },
            "ts": Timestamp { time: 12, increment: 3 },
        };
        assert_eq!(date_millis_at(&answer, "never"), None);
        assert_eq!(date_millis_at(&answer, "then"), Some(1_000));
        assert_eq!(timestamp_seconds_at(&answer, "ts0"), None);
        assert_eq!(timestamp_seconds_at(&answer, "ts"), Some(12));
    }

    #[test]
    fn namespaces_split_at_the_first_dot() {
        assert_eq!(
            split_namespace("test.system.views"),
            Some(("test", "system.views"))
        );
        assert_eq!(split_namespace("test"), None);
        assert_eq!(split_namespace(".x"), None);
    }
}
