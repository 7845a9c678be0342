//! Reading Kubernetes manifests from files, directories and stdin, for the offline commands
//! (`plan`, `check`). Multi-document YAML and JSON; `kind: List` documents are unpacked.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One object read from the input, with where it came from (for error messages).
#[derive(Debug, Clone)]
pub struct Document {
    /// The file it came from (`-` for stdin).
    pub file: String,
    /// Zero-based index of the YAML document in the file (items of a `List` share it).
    pub index: usize,
    /// The object.
    pub object: Value,
}

impl Document {
    pub fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn api_version(&self) -> &str {
        self.object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }
    /// `file#doc` — where to look.
    pub fn location(&self) -> String {
        format!("{} (document {})", self.file, self.index + 1)
    }
}

/// Input that cannot be read or parsed (exit code 2 in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {message}")]
    Parse { path: String, message: String },
}

/// Reads every path (file, directory searched recursively for *.yaml, *.yml and *.json, or `-`
/// for stdin) and returns the objects in a stable order: paths in the given order, directory
/// entries sorted by name, documents in file order.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Document>, LoadError> {
    let mut docs = Vec::new();
    read_paths(paths, |name, text| {
        docs.extend(parse_documents(&name, &text)?);
        Ok(())
    })?;
    Ok(docs)
}

/// Reads every path as [`load_paths`] does, handing each file's name and text to `each` in
/// that order (stdin, `-`, is read once).
pub fn read_paths<P: AsRef<Path>>(
    paths: &[P],
    mut each: impl FnMut(String, String) -> Result<(), LoadError>,
) -> Result<(), LoadError> {
    for path in paths {
        let path = path.as_ref();
        if path == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| LoadError::Read {
                    path: "-".into(),
                    source,
                })?;
            each("-".into(), text)?;
            continue;
        }
        for file in expand(path)? {
            let name = file.display().to_string();
            let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Read {
                path: name.clone(),
                source,
            })?;
            each(name, text)?;
        }
    }
    Ok(())
}

/// The manifest files of `path`: itself, or a directory's *.yaml, *.yml and *.json, sorted.
pub fn expand(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            out.extend(expand(&entry)?);
        } else if is_manifest_file(&entry) {
            out.push(entry);
        }
    }
    Ok(out)
}

fn is_manifest_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Parses multi-document YAML (JSON is YAML) into objects. Empty documents are skipped;
/// `kind: List` (and `*List`) documents are replaced by their items.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Document>, LoadError> {
    let mut docs = Vec::new();
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let KubectlYaml(value) =
            serde::Deserialize::deserialize(de).map_err(|e| LoadError::Parse {
                path: file.to_string(),
                message: yaml_error_message(index, &e),
            })?;
        match value {
            Value::Null => continue,
            Value::Object(_) => {}
            other => {
                return Err(LoadError::Parse {
                    path: file.to_string(),
                    message: format!(
                        "document {}: expected a Kubernetes object (a mapping), got {}",
                        index + 1,
                        crate::json_type::name(&other)
                    ),
                });
            }
        }
        push_unpacking_lists(file, index, value, &mut docs)?;
    }
    Ok(docs)
}

/// A YAML node read the way kubectl reads it (sigs.k8s.io/yaml over go-yaml v2), so `check`
/// judges what the API server will be sent (compared with the real kubectl in
/// tests/check_kubectl.rs):
/// - merge keys (`<<: *anchor`, `<<: [*a, *b]`) are applied in place: the merged entries
///   overwrite keys written before the `<<`, keys after it overwrite them, and of a list of
///   merged mappings the first wins;
/// - a duplicate key takes the last value;
/// - a tagged value is its value (`!!binary` decoded), keys that are not strings are their
///   text (`1: x` is `"1"`).
///
/// Not reproduced: YAML 1.1 plain scalars that go-yaml v2 reads as booleans or octal numbers
/// (`on`, `yes`, `y`, `0755`) are read here as YAML 1.2 does (strings); the API server refuses
/// a boolean or number where a string belongs, so such an env value or Secret key never
/// reaches a pod either way (docs/webhook.md: "What `check` reads as kubectl does").
struct KubectlYaml(Value);

impl<'de> serde::Deserialize<'de> for KubectlYaml {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KubectlVisitor).map(KubectlYaml)
    }
}

struct KubectlVisitor;

impl<'de> serde::de::Visitor<'de> for KubectlVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(KubectlYaml(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(KubectlYaml(key)) = map.next_key()? {
            let KubectlYaml(value) = map.next_value()?;
            let key = match key {
                Value::String(s) => s,
                Value::Null => "null".to_string(),
                other => other.to_string(),
            };
            if key == "<<" {
                let merged = match value {
                    Value::Object(m) => vec![m],
                    // go-yaml applies a list of merged mappings last to first: the first wins.
                    Value::Array(items) => items
                        .into_iter()
                        .rev()
                        .map(|i| match i {
                            Value::Object(m) => Ok(m),
                            _ => Err(serde::de::Error::custom(
                                "map merge requires map or sequence of maps as the value",
                            )),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => {
                        return Err(serde::de::Error::custom(
                            "map merge requires map or sequence of maps as the value",
                        ));
                    }
                };
                for m in merged {
                    for (k, v) in m {
                        out.insert(k, v);
                    }
                }
                continue;
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        use base64::Engine;
        use serde::de::VariantAccess;
        let (tag, variant): (String, _) = data.variant()?;
        let KubectlYaml(value) = variant.newtype_variant()?;
        if (tag == "!!binary" || tag == "tag:yaml.org,2002:binary")
            && let Value::String(s) = &value
        {
            let clean: String = s.split_whitespace().collect();
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(clean) {
                return Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
        Ok(value)
    }
}

fn push_unpacking_lists(
    file: &str,
    index: usize,
    value: Value,
    docs: &mut Vec<Document>,
) -> Result<(), LoadError> {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || (k.ends_with("List") && value.get("items").is_some()));
    if !is_list {
        docs.push(Document {
            file: file.to_string(),
            index,
            object: value,
        });
        return Ok(());
    }
    let items = match value.get("items") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => {
            return Err(LoadError::Parse {
                path: file.to_string(),
                message: format!(
                    "document {}: List items must be an array, got {}",
                    index + 1,
                    crate::json_type::name(other)
                ),
            });
        }
    };
    for item in items {
        if !item.is_object() {
            return Err(LoadError::Parse {
                path: file.to_string(),
                message: format!(
                    "document {}: List item must be an object, got {}",
                    index + 1,
                    crate::json_type::name(&item)
                ),
            });
        }
        push_unpacking_lists(file, index, item, docs)?;
    }
    Ok(())
}

fn yaml_error_message(index: usize, e: &serde_yaml::Error) -> String {
    match e.location() {
        Some(loc) => format!(
            "document {}: line {} column {}: {}",
            index + 1,
            loc.line(),
            loc.column(),
            e
        ),
        None => format!("document {}: {}", index + 1, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_yaml_and_skips_empty_documents() {
        let docs = parse_documents(
            "f.yaml",
            "---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n---\nkind: Pod\nmetadata: {name: b}\n",
        )
        .unwrap();
        let names: Vec<_> = docs.iter().map(|d| d.name()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(docs[1].index, 2);
    }

    #[test]
    fn unpacks_list_documents() {
        let docs = parse_documents(
            "f.json",
            r#"{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"a"}},{"kind":"ConfigMapList","items":[{"kind":"ConfigMap","metadata":{"name":"b"}}]}]}"#,
        )
        .unwrap();
        let kinds: Vec<_> = docs.iter().map(|d| d.kind()).collect();
        assert_eq!(kinds, ["Pod", "ConfigMap"]);
    }

    #[test]
    fn reports_file_and_line_of_a_parse_error() {
        let err = parse_documents("bad.yaml", "kind: Pod\nmetadata: {name: a\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bad.yaml"), "{msg}");
        assert!(msg.contains("line"), "{msg}");
    }

    #[test]
    fn rejects_scalar_documents() {
        let err = parse_documents("s.yaml", "just a string\n").unwrap_err();
        assert!(err.to_string().contains("expected a Kubernetes object"));
    }

    #[test]
    fn reads_directories_recursively_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            "kind: Pod\nmetadata: {name: b}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("a.yml"), "kind: Pod\nmetadata: {name: a}\n").unwrap();
        std::fs::write(
            dir.path().join("sub/c.json"),
            r#"{"kind":"Pod","metadata":{"name":"c"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        let docs = load_paths(&[dir.path()]).unwrap();
        let names: Vec<_> = docs.iter().map(|d| d.name()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn missing_path_is_a_read_error() {
        let err = load_paths(&["/nonexistent/x.yaml"]).unwrap_err();
        assert!(matches!(err, LoadError::Read { .. }));
    }
}
