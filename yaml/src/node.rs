//! A YAML document as a tree of nodes that remember where they were written.
//!
//! serde's derive stops at the first error and forgets positions; dbwatch reports every problem of a file at
//! once, each with its line and column, so configuration is read from this tree instead.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in the source, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar as written; `quoted` tells `"15"` (a string) from `15`.
    Scalar {
        text: String,
        quoted: bool,
    },
    Sequence(Vec<Node>),
    /// Entries in source order; keys are scalars.
    Mapping(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub mark: Mark,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
}

impl Node {
    /// True for `~`, `null` and an empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, quoted: false } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn kind(&self) -> &'static str {
        match &self.value {
            _ if self.is_null() => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
        }
    }
}

/// A syntax error of the document itself.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub mark: Mark,
    pub message: String,
}

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, false)
        .map_err(|error| SyntaxError {
            mark: mark_of(error.marker()),
            message: error.info().to_owned(),
        })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Mapping(Vec::new()),
        mark: Mark { line: 1, column: 1 },
    }))
}

fn mark_of(marker: &Marker) -> Mark {
    Mark {
        line: marker.line(),
        column: marker.col() + 1,
    }
}

enum Frame {
    Sequence {
        items: Vec<Node>,
        mark: Mark,
        anchor: usize,
    },
    Mapping {
        entries: Vec<(Key, Node)>,
        pending_key: Option<Key>,
        mark: Mark,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Sequence { items, .. }) => items.push(node),
            Some(Frame::Mapping {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                Some(key) => entries.push((key, node)),
                None => match node.value {
                    Value::Scalar { text, .. } => {
                        *pending_key = Some(Key {
                            name: text,
                            mark: node.mark,
                        })
                    }
                    _ => {
                        self.error.get_or_insert(SyntaxError {
                            mark: node.mark,
                            message: "mapping keys must be plain strings".into(),
                        });
                    }
                },
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, marker: Marker) {
        let mark = mark_of(&marker);
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = !matches!(style, TScalarStyle::Plain);
                self.finish(
                    Node {
                        value: Value::Scalar { text, quoted },
                        mark,
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Sequence {
                items: Vec::new(),
                mark,
                anchor,
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Mapping {
                entries: Vec::new(),
                pending_key: None,
                mark,
                anchor,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Sequence {
                        items,
                        mark,
                        anchor,
                    }) => (
                        Node {
                            value: Value::Sequence(items),
                            mark,
                        },
                        anchor,
                    ),
                    Some(Frame::Mapping {
                        entries,
                        mark,
                        anchor,
                        ..
                    }) => (
                        Node {
                            value: Value::Mapping(entries),
                            mark,
                        },
                        anchor,
                    ),
                    None => return,
                };
                self.finish(node, anchor);
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor).cloned() {
                Some(node) => self.finish(node, 0),
                None => {
                    self.error.get_or_insert(SyntaxError {
                        mark,
                        message: "alias refers to an unknown anchor".into(),
                    });
                }
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_line_and_column() {
        let node = parse("global:\n  interval: 15s\ntargets:\n  - name: a\n").expect("valid yaml");
        let Value::Mapping(entries) = &node.value else {
            panic!("root is a mapping");
        };
        assert_eq!(entries[0].0.name, "global");
        let Value::Mapping(global) = &entries[0].1.value else {
            panic!("global is a mapping");
        };
        assert_eq!(global[0].0.mark, Mark { line: 2, column: 3 });
        assert_eq!(
            global[0].1.mark,
            Mark {
                line: 2,
                column: 13
            }
        );
    }

    #[test]
    fn aliases_resolve_to_their_anchor() {
        let node = parse("a: &x {k: v}\nb: *x\n").expect("valid yaml");
        let Value::Mapping(entries) = &node.value else {
            panic!("root is a mapping");
        };
        assert_eq!(entries[0].1.value, entries[1].1.value);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let error = parse("a: [1, 2\nb: 3\n").expect_err("unclosed flow sequence");
        assert!(error.mark.line >= 1);
    }
}
