//! Maps key paths (`bindings.app0.options.port`) to line and column in the YAML text.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Where a node is: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// Key and value positions of every node of every document in a YAML text.
#[derive(Debug, Default)]
pub struct PositionIndex {
    /// (document, path) -> (key position, value position).
    nodes: HashMap<(usize, String), (Option<Position>, Position)>,
}

impl PositionIndex {
    /// Indexes `text`; a text that does not parse gives an empty index.
    pub fn new(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut builder, true);
        PositionIndex {
            nodes: builder.nodes,
        }
    }

    /// The position of the value at `path` in document `doc`, or of the closest parent found.
    pub fn value(&self, doc: usize, path: &str) -> Option<Position> {
        self.find(doc, path).map(|(_, v)| v)
    }

    /// The position of the key of `path` (falls back to its value, then to a parent).
    pub fn key(&self, doc: usize, path: &str) -> Option<Position> {
        self.find(doc, path).map(|(k, v)| k.unwrap_or(v))
    }

    fn find(&self, doc: usize, path: &str) -> Option<(Option<Position>, Position)> {
        let mut p = path.to_string();
        loop {
            if let Some(found) = self.nodes.get(&(doc, p.clone())) {
                return Some(*found);
            }
            if p.is_empty() {
                return None;
            }
            p = parent(&p).to_string();
        }
    }
}

fn parent(path: &str) -> &str {
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    &path[..cut]
}

fn pos(m: Marker) -> Position {
    Position {
        line: m.line(),
        column: m.col() + 1,
    }
}

enum Frame {
    Map {
        path: String,
        key: Option<(String, Position)>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

#[derive(Default)]
struct Builder {
    doc: usize,
    stack: Vec<Frame>,
    nodes: HashMap<(usize, String), (Option<Position>, Position)>,
    started: bool,
}

impl Builder {
    /// Called for a value node (scalar or collection start); returns its path, or `None` when
    /// the node is a mapping key.
    fn enter_value(&mut self, at: Position, key_text: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => {
                self.nodes.insert((self.doc, String::new()), (None, at));
                Some(String::new())
            }
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                self.nodes.insert((self.doc, p.clone()), (None, at));
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    *key = Some((key_text.unwrap_or("").to_string(), at));
                    None
                }
                Some((k, kpos)) => {
                    let p = if path.is_empty() {
                        k
                    } else {
                        format!("{path}.{k}")
                    };
                    self.nodes.insert((self.doc, p.clone()), (Some(kpos), at));
                    Some(p)
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = pos(mark);
        match ev {
            Event::DocumentStart => {
                if self.started {
                    self.doc += 1;
                }
                self.started = true;
                self.stack.clear();
            }
            Event::Scalar(text, ..) => {
                self.enter_value(at, Some(&text));
            }
            Event::Alias(_) => {
                self.enter_value(at, None);
            }
            Event::MappingStart(..) => {
                let path = self.enter_value(at, None).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.enter_value(at, None).unwrap_or_default();
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_values_and_sequence_items() {
        let text = "name: x\nbindings:\n  app0:\n    type: tcp\n    routes:\n      - exit: b\n";
        let idx = PositionIndex::new(text);
        assert_eq!(idx.value(0, "name"), Some(Position { line: 1, column: 7 }));
        assert_eq!(
            idx.key(0, "bindings.app0.type"),
            Some(Position { line: 4, column: 5 })
        );
        assert_eq!(
            idx.value(0, "bindings.app0.routes[0].exit"),
            Some(Position {
                line: 6,
                column: 15
            })
        );
        // Unknown paths fall back to the closest parent.
        assert_eq!(
            idx.key(0, "bindings.app0.nope"),
            Some(Position { line: 3, column: 3 })
        );
    }

    #[test]
    fn counts_documents() {
        let idx = PositionIndex::new("name: a\n---\nname: b\n");
        assert_eq!(idx.value(1, "name"), Some(Position { line: 3, column: 7 }));
    }
}
