//! Reading `check`'s input: the Secrets, ConfigMaps, Namespaces and StaticKeyExemptions among
//! the documents, as the webhook's watch caches would hold them.

use base64::Engine;
use serde_json::Value;

use super::InputError;
use crate::detect::{self, InMemoryView, MODE_LABEL, Mode, RefKind};
use crate::manifest::Document;

/// The StaticKeyExemptions of the input; one that cannot be read is an input error.
pub(super) fn exemptions_from_documents(
    docs: &[Document],
    errors: &mut Vec<InputError>,
) -> Vec<crate::exemption::Exemption> {
    let mut out = Vec::new();
    for doc in docs {
        if doc.kind() != "StaticKeyExemption" || !doc.api_version().starts_with("hatrack.dev/") {
            continue;
        }
        match serde_json::from_value::<crate::crd::StaticKeyExemption>(doc.object.clone()) {
            Ok(e) => out.push(crate::exemption::Exemption::from_resource(&e)),
            Err(e) => errors.push(InputError {
                file: doc.file.clone(),
                document: Some(doc.index + 1),
                message: format!("StaticKeyExemption {}: {e}", doc.name()),
            }),
        }
    }
    out
}

/// The Secrets, ConfigMaps and Namespace modes of the input, as facts (what the webhook's
/// watch caches would hold), and the documents among them that cannot be read.
pub fn view_from_documents(
    docs: &[Document],
    default_namespace: &str,
) -> (InMemoryView, Vec<InputError>) {
    let mut view = InMemoryView::new();
    // The input is not the whole cluster: a Secret it does not hold may exist.
    view.set_partial(true);
    let mut errors = Vec::new();
    for doc in docs {
        let ns = doc.namespace().unwrap_or(default_namespace);
        let mut fail = |message: String| {
            errors.push(InputError {
                file: doc.file.clone(),
                document: Some(doc.index + 1),
                message,
            })
        };
        match doc.kind() {
            "Secret" => match secret_data(&doc.object) {
                Ok(data) => view.insert(
                    RefKind::Secret,
                    ns,
                    doc.name(),
                    detect::classify_data(data.iter().map(|(k, v)| (k.as_str(), v.as_slice()))),
                ),
                Err(msg) => fail(format!("Secret {}: {msg}", doc.name())),
            },
            "ConfigMap" => match configmap_data(&doc.object) {
                Ok(data) => view.insert(
                    RefKind::ConfigMap,
                    ns,
                    doc.name(),
                    detect::classify_data(data.iter().map(|(k, v)| (k.as_str(), v.as_slice()))),
                ),
                Err(msg) => fail(format!("ConfigMap {}: {msg}", doc.name())),
            },
            "Namespace" => {
                let label = doc
                    .object
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(MODE_LABEL));
                match label.map(|l| l.as_str().map(str::parse::<Mode>)) {
                    None => {}
                    Some(Some(Ok(mode))) => view.set_namespace_mode(doc.name(), mode),
                    Some(Some(Err(e))) => {
                        fail(format!("Namespace {}: label {MODE_LABEL}: {e}", doc.name()))
                    }
                    Some(None) => fail(format!(
                        "Namespace {}: label {MODE_LABEL} must be a string",
                        doc.name()
                    )),
                }
            }
            _ => {}
        }
    }
    (view, errors)
}

type Data = Vec<(String, Vec<u8>)>;

fn string_map(object: &Value, field: &str, out: &mut Data, decode: bool) -> Result<(), String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) => {
            for (k, v) in m {
                // The API server accepts a null value and stores the key with an empty one.
                if v.is_null() {
                    out.push((k.clone(), Vec::new()));
                    continue;
                }
                let Some(s) = v.as_str() else {
                    return Err(format!(
                        "{field}.{k}: expected a string, found {}",
                        crate::json_type::name(v)
                    ));
                };
                let bytes = if decode {
                    // As the API server decodes it (Go's base64 skips line breaks): `base64`
                    // wraps its output at 76 columns, and a YAML block keeps the breaks.
                    let unwrapped: String =
                        s.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
                    base64::engine::general_purpose::STANDARD
                        .decode(unwrapped.trim())
                        .map_err(|e| format!("{field}.{k}: not valid base64: {e}"))?
                } else {
                    s.as_bytes().to_vec()
                };
                out.push((k.clone(), bytes));
            }
            Ok(())
        }
        Some(other) => Err(format!(
            "{field}: expected a mapping, found {}",
            crate::json_type::name(other)
        )),
    }
}

fn secret_data(object: &Value) -> Result<Data, String> {
    let mut out = Vec::new();
    string_map(object, "data", &mut out, true)?;
    let mut string_data = Vec::new();
    string_map(object, "stringData", &mut string_data, false)?;
    // The API server writes stringData over data: a key in both holds the stringData value.
    for (k, v) in string_data {
        match out.iter_mut().find(|(name, _)| *name == k) {
            Some(entry) => entry.1 = v,
            None => out.push((k, v)),
        }
    }
    Ok(out)
}

fn configmap_data(object: &Value) -> Result<Data, String> {
    let mut out = Vec::new();
    string_map(object, "data", &mut out, false)?;
    string_map(object, "binaryData", &mut out, true)?;
    Ok(out)
}
