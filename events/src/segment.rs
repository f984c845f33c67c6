//! Segment files: `events-<first seq, 20 digits>.jsonl`, one JSON [`Event`] per line, in the `events/` folder
//! of the storage folder. Only the process that created a segment ever appends to it, and only at its end; a
//! new process starts a new segment, so a line torn by a crash is always the last one of its file and nothing
//! is ever written after it.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::event::Event;

const PREFIX: &str = "events-";
const SUFFIX: &str = ".jsonl";

pub(crate) fn name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:020}{SUFFIX}")
}

/// The first sequence number a segment's name carries; `None` for any other file.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, oldest first; an absent folder has none.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_name) {
            segments.push((first, entry.path()));
        }
    }
    segments.sort_unstable_by_key(|(first, _)| *first);
    Ok(segments)
}

/// What one segment holds.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub events: Vec<Event>,
    /// The file ended in a line without its newline that does not parse: a write cut by a crash.
    pub torn: bool,
    /// Complete lines that do not parse (damage on disk, or a hand edit).
    pub corrupt: usize,
}

/// Parses a segment's bytes, skipping what cannot be read: a damaged line costs that line only.
pub(crate) fn parse(bytes: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (line, complete) = match rest.iter().position(|byte| *byte == b'\n') {
            Some(end) => {
                let line = &rest[..end];
                rest = &rest[end + 1..];
                (line, true)
            }
            None => {
                let line = rest;
                rest = &[];
                (line, false)
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(event) => parsed.events.push(event),
            Err(_) if complete => parsed.corrupt += 1,
            Err(_) => parsed.torn = true,
        }
    }
    parsed
}

pub(crate) fn read(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path)
}

/// Makes a create, rename or removal in `dir` durable; a filesystem that cannot fsync a folder (EINVAL) gives
/// what it can.
pub(crate) fn sync_folder(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|folder| folder.sync_all()) {
        Err(error) if error.raw_os_error() == Some(22) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_other_files_are_not_segments() {
        assert_eq!(name(42), "events-00000000000000000042.jsonl");
        assert_eq!(parse_name(&name(42)), Some(42));
        for other in [
            "events-42.jsonl",
            "events-0000000000000000004x.jsonl",
            "events-00000000000000000042.jsonl.corrupt-20260101T000000Z",
            ".events-00000000000000000042.jsonl.1.0.tmp",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_torn_last_line_and_a_corrupt_line_cost_only_themselves() {
        let good = |seq: u64| {
            format!(
                "{{\"seq\":{seq},\"at\":1,\"kind\":\"reload\",\"success\":true,\"trigger\":\"http\",\"error\":null}}\n"
            )
        };
        let text = format!(
            "{}not json\n{}\n{}{{\"seq\":4,\"at\"",
            good(1),
            good(2),
            good(3)
        );
        let parsed = parse(text.as_bytes());
        let seqs: Vec<u64> = parsed.events.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(parsed.corrupt, 1);
        assert!(parsed.torn);

        // A complete last line missing only its newline is not torn.
        let parsed = parse(good(5).trim_end().as_bytes());
        assert_eq!(parsed.events.len(), 1);
        assert!(!parsed.torn);
    }
}
