//! Static AWS key detection rules: a pure function from a workload (and a view of the
//! Secrets and ConfigMaps it references) to findings. Shared by the webhook and `check`;
//! neither has rules of its own.
//!
//! Entry points: [`evaluate`] (a workload given by kind, namespace, name and its JSON body)
//! and [`evaluate_object`] (a whole manifest object), then [`policy::decide`] to turn an
//! [`Evaluation`] into an admission [`Decision`].

mod args;
mod expand;
pub mod facts;
pub mod json;
pub mod policy;
pub mod scan;
pub mod templates;
mod workload;

use std::fmt;

use serde_json::Value;

pub use args::PolicyArgs;
pub use facts::{
    FactsIndex, InMemoryView, KeyClass, KeyFact, Lookup, MODE_LABEL, NoLookups, ObjectFacts,
    Overlay, Recorded, Recording, RefKind, ReferenceView, classify_data, classify_value,
};
pub use json::Json;
pub use policy::{Decision, Mode, Verdict, decide, labelled_mode, mode_in};
pub use templates::{PodTemplates, TemplatesError};

/// Stable rule ids, used in messages, JSON output and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    /// An env var named like an AWS credential (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_ACCESS_KEY`, `AWS_SECRET_KEY`, …) with a value or `valueFrom`.
    EnvStaticKey,
    /// An access key id in a literal: an env value, `args` or `command`.
    LiteralAccessKey,
    /// A secret access key or session token assigned in a literal (`aws_secret_access_key=…`).
    LiteralSecretKey,
    /// A referenced or mounted Secret holds AWS key material.
    CredentialsInReferencedSecret,
    /// A referenced or mounted ConfigMap holds AWS key material.
    CredentialsInReferencedConfigMap,
    /// `envFrom` imports a Secret or ConfigMap with credential-named keys.
    EnvFromCredentialKeys,
    /// A shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, or `~/.aws`) backed by a
    /// Secret that is not known to be free of keys.
    SharedCredentialsFile,
    /// An IAMRoleBinding in `check`'s input that is not valid.
    InvalidRoleBinding,
}

impl RuleId {
    pub const ALL: [RuleId; 8] = [
        RuleId::EnvStaticKey,
        RuleId::LiteralAccessKey,
        RuleId::LiteralSecretKey,
        RuleId::CredentialsInReferencedSecret,
        RuleId::CredentialsInReferencedConfigMap,
        RuleId::EnvFromCredentialKeys,
        RuleId::SharedCredentialsFile,
        RuleId::InvalidRoleBinding,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::EnvStaticKey => "env-static-key",
            RuleId::LiteralAccessKey => "literal-access-key",
            RuleId::LiteralSecretKey => "literal-secret-key",
            RuleId::CredentialsInReferencedSecret => "credentials-in-referenced-secret",
            RuleId::CredentialsInReferencedConfigMap => "credentials-in-referenced-configmap",
            RuleId::EnvFromCredentialKeys => "envfrom-credential-keys",
            RuleId::SharedCredentialsFile => "shared-credentials-file",
            RuleId::InvalidRoleBinding => "invalid-role-binding",
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The object a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    /// `namespace/name`, or `name` for objects without a namespace.
    pub fn display_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// One static key found in a workload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub rule: RuleId,
    #[serde(skip)]
    pub object: ObjectRef,
    /// The container it concerns; `None` for pod-level findings (volumes).
    pub container: Option<String>,
    /// Field path, e.g. `spec.template.spec.containers[0].env[2]`.
    pub path: String,
    /// What was found and how to fix it. Never contains a secret value.
    pub message: String,
    /// What the finding is about, independent of list positions (`env AWS_ACCESS_KEY_ID`,
    /// `volume creds`): with the rule and container, identifies a finding across an UPDATE.
    #[serde(skip)]
    pub subject: String,
}

impl Finding {
    /// Identity across UPDATEs (list positions may change, content does not).
    pub fn identity(&self) -> (RuleId, Option<&str>, &str) {
        (self.rule, self.container.as_deref(), &self.subject)
    }

    /// One line: `[rule] container 'c', path: message`.
    pub fn summary(&self) -> String {
        match &self.container {
            Some(c) => format!(
                "[{}] container '{}', {}: {}",
                self.rule, c, self.path, self.message
            ),
            None => format!("[{}] {}: {}", self.rule, self.path, self.message),
        }
    }
}

/// Something hatrack could not judge fully (e.g. a referenced Secret it could not read).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub container: Option<String>,
    pub path: String,
    pub message: String,
}

/// The result of evaluating one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub object: ObjectRef,
    /// The pod's ServiceAccount (`default` when unset): the one to bind a role to.
    pub service_account: String,
    pub findings: Vec<Finding>,
    pub warnings: Vec<Warning>,
}

/// A workload whose object cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error("{kind} {name}: {path}: expected {expected}, found {found}")]
    Malformed {
        kind: String,
        name: String,
        path: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{kind} {name}: has no pod template at {path}")]
    NoPodTemplate {
        kind: String,
        name: String,
        path: String,
    },
}

/// The built-in workload kinds: (kind, API group, where the pod spec is).
const BUILTIN_WORKLOADS: [(&str, &str, &[&str]); 8] = [
    ("Pod", "", &["spec"]),
    ("ReplicationController", "", &["spec", "template", "spec"]),
    ("Deployment", "apps", &["spec", "template", "spec"]),
    ("StatefulSet", "apps", &["spec", "template", "spec"]),
    ("DaemonSet", "apps", &["spec", "template", "spec"]),
    ("ReplicaSet", "apps", &["spec", "template", "spec"]),
    ("Job", "batch", &["spec", "template", "spec"]),
    (
        "CronJob",
        "batch",
        &["spec", "jobTemplate", "spec", "template", "spec"],
    ),
];

fn builtin_workload(
    kind: &str,
) -> Option<&'static (&'static str, &'static str, &'static [&'static str])> {
    BUILTIN_WORKLOADS.iter().find(|(k, _, _)| *k == kind)
}

/// The workload kinds and where their pod spec is.
pub fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    builtin_workload(kind).map(|(_, _, path)| *path)
}

/// Whether objects of this kind are judged.
pub fn is_workload_kind(kind: &str) -> bool {
    builtin_workload(kind).is_some()
}

/// The API group of the built-in workload `kind` (`apps` for a Deployment), if it is one.
pub fn builtin_group(kind: &str) -> Option<&'static str> {
    builtin_workload(kind).map(|(_, group, _)| *group)
}

/// Whether `group` is where Kubernetes serves the built-in workload `kind` (the old
/// `extensions` group included). A kind name alone says little: a `batch.volcano.sh` Job or
/// an `apps.kruise.io` StatefulSet is another resource with another layout, judged only
/// through the pod-templates list.
pub fn is_builtin_workload(group: &str, kind: &str) -> bool {
    match builtin_group(kind) {
        Some("apps") => matches!(group, "apps" | "extensions"),
        Some(builtin) => group == builtin,
        None => false,
    }
}

/// A workload to evaluate. `object` holds at least `spec` (a whole manifest, or the object of
/// an admission request, possibly pruned to what the rules read); kind, namespace and name come
/// from the caller (the admission request, or the manifest).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub object: &'a Json<'a>,
}

/// Evaluates a workload. `Ok(None)` for kinds that are not workloads; an error for a workload
/// whose object cannot be read (wrong types where the rules look). Never panics.
pub fn evaluate(
    target: &Target<'_>,
    refs: &dyn ReferenceView,
) -> Result<Option<Evaluation>, DetectError> {
    match pod_spec_path(target.kind) {
        Some(path) => workload::evaluate(target, path, None, refs).map(Some),
        None => Ok(None),
    }
}

/// Evaluates a built-in workload (in its own API group: [`is_builtin_workload`]) or one of a
/// kind `templates` knows (`group` is the object's API group); `Ok(None)` for anything else.
/// A custom kind's pod specs are judged together as one workload; the ones absent from the
/// object are skipped.
pub fn evaluate_with(
    target: &Target<'_>,
    group: &str,
    templates: &PodTemplates,
    refs: &dyn ReferenceView,
) -> Result<Option<Evaluation>, DetectError> {
    if is_builtin_workload(group, target.kind) {
        return evaluate(target, refs);
    }
    let Some(entry) = templates.find(group, target.kind) else {
        return Ok(None);
    };
    let mut merged: Option<Evaluation> = None;
    for pod in &entry.pods {
        let path: Vec<&str> = pod.path.split('.').collect();
        let containers = (!pod.containers.is_empty()).then_some(pod.containers.as_slice());
        let eval = match workload::evaluate(target, &path, containers, refs) {
            Ok(e) => e,
            Err(DetectError::NoPodTemplate { .. }) => continue,
            Err(e) => return Err(e),
        };
        match &mut merged {
            None => merged = Some(eval),
            Some(m) => {
                m.findings.extend(eval.findings);
                m.warnings.extend(eval.warnings);
            }
        }
    }
    Ok(Some(merged.unwrap_or_else(|| Evaluation {
        object: ObjectRef {
            kind: target.kind.to_string(),
            namespace: Some(target.namespace.to_string()),
            name: target.name.to_string(),
        },
        service_account: "default".into(),
        findings: Vec::new(),
        warnings: Vec::new(),
    })))
}

/// Evaluates a whole manifest object, taking kind, namespace and name from it
/// (`default_namespace` when it has none).
pub fn evaluate_object(
    object: &Value,
    default_namespace: &str,
    refs: &dyn ReferenceView,
) -> Result<Option<Evaluation>, DetectError> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(default_namespace);
    let name = object_name(object);
    let arena = bumpalo::Bump::new();
    let json = Json::from_value(object, &arena);
    evaluate(
        &Target {
            kind,
            namespace,
            name,
            object: &json,
        },
        refs,
    )
}

/// `metadata.name`, or `metadata.generateName` (for pods created by controllers).
pub fn object_name(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .or_else(|| {
            object
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
        })
        .unwrap_or("")
}

#[cfg(test)]
mod tests;
