//! Where a field of a manifest is in its YAML source: line and column of a field path such as
//! `spec.template.spec.containers[0].env[2]`, for `check --format sarif|junit` (so code
//! scanning annotates the offending line).
//!
//! serde_yaml gives no positions for values, so the source is read a second time with
//! granit-parser (the event parser kube's own YAML support already brings in), into a tree of
//! positioned nodes. Documents are numbered as serde_yaml numbers them (empty ones count);
//! aliases point at their anchor's text (that is where the offending value is written) and
//! merge keys (`<<: *base`) are looked through the way YAML 1.1 merges them: a key written in
//! the mapping wins over a merged one, and earlier merged mappings win over later ones.

use std::collections::HashMap;
use std::rc::Rc;

use granit_parser::{Event, Parser, Span};
use serde_json::Value;

/// A one-based line and column (columns count Unicode code points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    fn of(span: &Span) -> Self {
        Self {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

#[derive(Debug)]
enum Kind {
    Scalar(String),
    Sequence(Vec<Rc<Node>>),
    /// Entries in source order: the key (when it is a scalar), where the key is, the value.
    Mapping(Vec<(Option<String>, Position, Rc<Node>)>),
}

#[derive(Debug)]
struct Node {
    at: Position,
    kind: Kind,
}

/// The positioned documents of one source file.
#[derive(Debug, Default)]
pub struct SourceMap {
    /// `None` for an empty document.
    documents: Vec<Option<Rc<Node>>>,
}

/// A collection being built: its start, anchor id, and children so far.
enum Open {
    Sequence(Position, usize, Vec<Rc<Node>>),
    /// A mapping alternates keys and values; `pending` holds a key awaiting its value.
    Mapping(
        Position,
        usize,
        Vec<(Option<String>, Position, Rc<Node>)>,
        Option<Rc<Node>>,
    ),
}

impl SourceMap {
    /// Reads the positions of every document of `text`. Fails only where serde_yaml would
    /// fail too (invalid YAML), with the parser's message.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut documents = Vec::new();
        let mut anchors: HashMap<usize, Rc<Node>> = HashMap::new();
        let mut stack: Vec<Open> = Vec::new();
        let mut root: Option<Rc<Node>> = None;
        for event in Parser::new_from_str(text) {
            let (event, span) = event.map_err(|e| e.to_string())?;
            let done = match event {
                Event::DocumentStart(..) => {
                    root = None;
                    anchors.clear();
                    continue;
                }
                Event::DocumentEnd => {
                    documents.push(root.take());
                    continue;
                }
                Event::Scalar(value, _, anchor, _) => {
                    let node = Rc::new(Node {
                        at: Position::of(&span),
                        kind: Kind::Scalar(value.into_owned()),
                    });
                    if anchor > 0 {
                        anchors.insert(anchor, node.clone());
                    }
                    node
                }
                Event::Alias(id) => match anchors.get(&id) {
                    Some(node) => node.clone(),
                    None => return Err(format!("unknown anchor (alias id {id})")),
                },
                Event::SequenceStart(_, anchor, _) => {
                    stack.push(Open::Sequence(Position::of(&span), anchor, Vec::new()));
                    continue;
                }
                Event::MappingStart(_, anchor, _) => {
                    stack.push(Open::Mapping(Position::of(&span), anchor, Vec::new(), None));
                    continue;
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (node, anchor) = match stack.pop() {
                        Some(Open::Sequence(at, anchor, items)) => (
                            Node {
                                at,
                                kind: Kind::Sequence(items),
                            },
                            anchor,
                        ),
                        Some(Open::Mapping(at, anchor, entries, _)) => (
                            Node {
                                at,
                                kind: Kind::Mapping(entries),
                            },
                            anchor,
                        ),
                        None => return Err("unbalanced collection events".into()),
                    };
                    let node = Rc::new(node);
                    if anchor > 0 {
                        anchors.insert(anchor, node.clone());
                    }
                    node
                }
                // Stream markers, comments, anchor names: no nodes.
                _ => continue,
            };
            match stack.last_mut() {
                None => root = Some(done),
                Some(Open::Sequence(_, _, items)) => items.push(done),
                Some(Open::Mapping(_, _, entries, pending)) => match pending.take() {
                    None => *pending = Some(done),
                    Some(key) => {
                        let name = match &key.kind {
                            Kind::Scalar(s) => Some(s.clone()),
                            _ => None,
                        };
                        entries.push((name, key.at, done));
                    }
                },
            }
        }
        Ok(Self { documents })
    }

    /// Where `path` (a finding's field path, relative to `object`) is in document `document`
    /// (zero-based, as [`crate::manifest::Document::index`]); `object` picks the item when
    /// the document is a `List`. A path that does not resolve fully gives the deepest field
    /// that does (at worst the object itself); `None` only when the document is not there.
    pub fn locate(&self, document: usize, object: &Value, path: &str) -> Option<Position> {
        let root = self.documents.get(document)?.as_ref()?;
        let node = find_item(root, object).unwrap_or(root);
        let mut here = node.at;
        let mut node = node.clone();
        for segment in segments(path) {
            let next = match (&segment, &node.kind) {
                (Segment::Key(k), Kind::Mapping(_)) => lookup(&node, k, 0),
                (Segment::Index(i), Kind::Sequence(items)) => {
                    items.get(*i).map(|n| (n.at, n.clone()))
                }
                _ => None,
            };
            let Some((at, child)) = next else { break };
            here = at;
            node = child;
        }
        Some(here)
    }
}

/// The entry for `key` in a mapping: (where its key is written, its value).
fn lookup(node: &Rc<Node>, key: &str, depth: usize) -> Option<(Position, Rc<Node>)> {
    // Merges of merges are rare; the bound keeps a hostile file from recursing deeply.
    if depth > 16 {
        return None;
    }
    let Kind::Mapping(entries) = &node.kind else {
        return None;
    };
    if let Some((_, at, value)) = entries
        .iter()
        .rev()
        .find(|(k, _, _)| k.as_deref() == Some(key))
    {
        return Some((*at, value.clone()));
    }
    for (k, _, value) in entries {
        if k.as_deref() != Some("<<") {
            continue;
        }
        let sources: Vec<Rc<Node>> = match &value.kind {
            Kind::Mapping(_) => vec![value.clone()],
            Kind::Sequence(items) => items.clone(),
            Kind::Scalar(_) => Vec::new(),
        };
        for source in sources {
            if let Some(found) = lookup(&source, key, depth + 1) {
                return Some(found);
            }
        }
    }
    None
}

fn scalar<'a>(node: &'a Rc<Node>, key: &str) -> Option<&'a str> {
    // Borrowing through the Rc of `lookup` is not possible; search the entries directly.
    let Kind::Mapping(entries) = &node.kind else {
        return None;
    };
    entries.iter().rev().find_map(|(k, _, v)| match &v.kind {
        Kind::Scalar(s) if k.as_deref() == Some(key) => Some(s.as_str()),
        _ => None,
    })
}

/// The item of a `List` document that is `object` (same kind, name and namespace).
fn find_item<'a>(node: &'a Rc<Node>, object: &Value) -> Option<&'a Rc<Node>> {
    let is_list = scalar(node, "kind").is_some_and(|k| k.ends_with("List"));
    if !is_list {
        return None;
    }
    let Kind::Mapping(entries) = &node.kind else {
        return None;
    };
    let items = entries.iter().rev().find_map(|(k, _, v)| match &v.kind {
        Kind::Sequence(items) if k.as_deref() == Some("items") => Some(items),
        _ => None,
    })?;
    let want = |p: &str| object.pointer(p).and_then(Value::as_str);
    for item in items {
        if let Some(found) = find_item(item, object) {
            return Some(found);
        }
        let metadata = match &item.kind {
            Kind::Mapping(entries) => entries
                .iter()
                .rev()
                .find(|(k, _, _)| k.as_deref() == Some("metadata"))
                .map(|(_, _, v)| v),
            _ => None,
        };
        let name = metadata.and_then(|m| scalar(m, "name"));
        let namespace = metadata.and_then(|m| scalar(m, "namespace"));
        // `check` gives objects without a namespace its default one.
        if scalar(item, "kind") == want("/kind")
            && name == want("/metadata/name")
            && (namespace.is_none() || namespace == want("/metadata/namespace"))
        {
            return Some(item);
        }
    }
    None
}

#[derive(Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `a.b[0].c` → `a`, `b`, `0`, `c`. Anything that is not a path (`object`, as plan calls the
/// whole object) resolves to nothing, i.e. to the object.
fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key.to_string()));
        }
        for index in rest.split('[').filter(|s| !s.is_empty()) {
            match index.trim_end_matches(']').parse() {
                Ok(i) => out.push(Segment::Index(i)),
                Err(_) => return out,
            }
        }
    }
    if out == [Segment::Key("object".into())] {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    const TWO_DOCS: &str = "\
# leading comment
apiVersion: v1
kind: Secret
metadata: {name: s}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  template:
    spec:
      containers:
      - name: app
        env:
        - name: A
          value: x
        - name: AWS_ACCESS_KEY_ID
          value: AKIA
";

    #[test]
    fn finds_fields_in_the_right_document() {
        let map = SourceMap::parse(TWO_DOCS).unwrap();
        let obj = json!({});
        assert_eq!(
            map.locate(1, &obj, "spec.template.spec.containers[0].env[1]"),
            at(18, 11)
        );
        assert_eq!(
            map.locate(1, &obj, "spec.template.spec.containers[0].env[1].value"),
            at(19, 11)
        );
        assert_eq!(map.locate(0, &obj, "metadata.name"), at(4, 12));
        // The whole object, and a path that resolves only in part.
        assert_eq!(map.locate(1, &obj, "object"), at(6, 1));
        assert_eq!(
            map.locate(1, &obj, "spec.template.spec.volumes[0]"),
            at(12, 5)
        );
        assert_eq!(map.locate(2, &obj, "spec"), None);
    }

    #[test]
    fn empty_documents_count_like_serde_yaml_counts_them() {
        let text = "---\nkind: A\n---\n---\nkind: B\nspec: {x: 1}\n";
        let docs = crate::manifest::parse_documents("f", text).unwrap();
        let map = SourceMap::parse(text).unwrap();
        assert_eq!(docs[1].index, 2);
        assert_eq!(
            map.locate(docs[1].index, &docs[1].object, "spec.x"),
            at(6, 8)
        );
    }

    #[test]
    fn flow_style_positions_are_columns_within_the_line() {
        let text = "kind: Pod\nspec: {containers: [{name: a, env: [{name: X, value: y}, {name: AWS_SECRET_ACCESS_KEY, value: z}]}]}\n";
        let map = SourceMap::parse(text).unwrap();
        let p = map
            .locate(0, &json!({}), "spec.containers[0].env[1]")
            .unwrap();
        assert_eq!(p.line, 2);
        assert_eq!(&text.lines().nth(1).unwrap()[p.column - 1..][..5], "{name");
        assert_eq!(
            text.lines().nth(1).unwrap()[p.column - 1..].find("AWS_SECRET"),
            Some(7)
        );
    }

    #[test]
    fn aliases_point_at_the_anchor_and_merge_keys_are_looked_through() {
        let text = "\
base: &env
  - name: AWS_ACCESS_KEY_ID
    value: AKIA
common: &common
  image: x
  env: *env
kind: Pod
spec:
  containers:
  - <<: *common
    name: app
  - <<: [{image: y}, *common]
    image: z
";
        let map = SourceMap::parse(text).unwrap();
        let obj = json!({});
        assert_eq!(map.locate(0, &obj, "spec.containers[0].env[0]"), at(2, 5));
        assert_eq!(map.locate(0, &obj, "spec.containers[0].name"), at(11, 5));
        assert_eq!(map.locate(0, &obj, "spec.containers[0].image"), at(5, 3));
        // A key written in the mapping wins; then the first merged mapping that has it.
        assert_eq!(map.locate(0, &obj, "spec.containers[1].image"), at(13, 5));
        assert_eq!(map.locate(0, &obj, "spec.containers[1].env"), at(6, 3));
    }

    #[test]
    fn list_items_are_found_by_kind_name_and_namespace() {
        let text = "kind: List\nitems:\n- kind: Pod\n  metadata: {name: a}\n  spec: {x: 1}\n- kind: Pod\n  metadata: {name: b, namespace: n}\n  spec:\n    x: 2\n";
        let map = SourceMap::parse(text).unwrap();
        let b = json!({"kind": "Pod", "metadata": {"name": "b", "namespace": "n"}});
        assert_eq!(map.locate(0, &b, "spec.x"), at(9, 5));
        let a = json!({"kind": "Pod", "metadata": {"name": "a"}});
        assert_eq!(map.locate(0, &a, "spec.x"), at(5, 10));
    }

    #[test]
    fn json_sources_have_positions_too() {
        let text = "{\n  \"kind\": \"Pod\",\n  \"spec\": {\n    \"containers\": [\n      {\"name\": \"a\"}\n    ]\n  }\n}\n";
        let map = SourceMap::parse(text).unwrap();
        assert_eq!(
            map.locate(0, &json!({}), "spec.containers[0].name"),
            at(5, 8)
        );
    }

    #[test]
    fn invalid_yaml_and_unknown_aliases_are_errors_not_panics() {
        assert!(SourceMap::parse("a: [1, 2\n").is_err());
        assert!(SourceMap::parse("a: *nope\n").is_err());
        assert!(SourceMap::parse("").unwrap().documents.is_empty());
    }

    #[test]
    fn path_segments() {
        assert_eq!(
            segments("a.b[0][1].c"),
            [
                Segment::Key("a".into()),
                Segment::Key("b".into()),
                Segment::Index(0),
                Segment::Index(1),
                Segment::Key("c".into())
            ]
        );
        assert!(segments("object").is_empty());
        assert_eq!(segments("a[x].b"), [Segment::Key("a".into())]);
    }
}
