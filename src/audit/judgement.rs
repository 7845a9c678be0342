//! One judgement of a workload by the audit: the webhook's rules over its body, through a
//! view that records every Secret and ConfigMap the rules read (and the facts they had), so
//! [`super::state::AuditState`] knows which changes make the judgement stale.

use std::sync::{Arc, Mutex};

use super::state::Workload;
use crate::detect::{self, Lookup, ObjectFacts, Overlay, RefKind, ReferenceView, RuleId};

/// One finding as the audit keeps it (what a report result shows).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuditFinding {
    pub rule: RuleId,
    pub container: Option<Box<str>>,
    pub path: Box<str>,
    /// What was found and the fix (`…; fix`), never a secret value.
    pub message: Box<str>,
}

/// An object a judgement read, and the facts it had then (`None`: it did not exist).
#[derive(Debug, Clone)]
pub(super) struct Dep {
    pub(super) kind: RefKind,
    pub(super) name: Box<str>,
    pub(super) facts: Option<Arc<ObjectFacts>>,
}

/// A view that remembers what was looked up, so a judgement knows what it depended on.
pub struct Recording<'a> {
    inner: &'a dyn ReferenceView,
    seen: Mutex<Vec<Dep>>,
}

impl<'a> Recording<'a> {
    pub fn new(inner: &'a dyn ReferenceView) -> Self {
        Recording {
            inner,
            seen: Mutex::new(Vec::new()),
        }
    }

    fn into_deps(self) -> Vec<Dep> {
        let mut seen = self.seen.into_inner().unwrap_or_default();
        seen.sort_by(|a, b| (a.kind as u8, &a.name).cmp(&(b.kind as u8, &b.name)));
        seen.dedup_by(|a, b| a.kind == b.kind && a.name == b.name);
        seen
    }
}

impl Overlay for Recording<'_> {
    fn inner(&self) -> &dyn ReferenceView {
        self.inner
    }

    fn lookup(&self, kind: RefKind, namespace: &str, name: &str) -> Lookup {
        let found = self.inner.lookup(kind, namespace, name);
        let facts = match &found {
            Lookup::Found(f) => Some(f.clone()),
            Lookup::Missing | Lookup::Disabled => None,
        };
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(Dep {
                kind,
                name: name.into(),
                facts,
            });
        }
        found
    }
}

/// Judges one workload with the webhook's rules. A workload the rules cannot read (never the
/// case for objects the API server validated) is logged and counted as clean.
pub(super) fn judge(w: &Workload<'_>, view: &dyn ReferenceView) -> (Vec<AuditFinding>, Vec<Dep>) {
    let recording = Recording::new(view);
    let arena = bumpalo::Bump::new();
    let json = detect::Json::from_value(w.body, &arena);
    let target = detect::Target {
        kind: w.kind.as_str(),
        namespace: w.namespace,
        name: w.name,
        object: &json,
    };
    let findings = match detect::evaluate(&target, &recording) {
        Ok(Some(eval)) => eval
            .findings
            .into_iter()
            .map(|f| AuditFinding {
                rule: f.rule,
                container: f.container.map(String::into_boxed_str),
                path: f.path.into_boxed_str(),
                message: f.message.into_boxed_str(),
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!(kind = w.kind.as_str(), namespace = w.namespace, name = w.name,
                error = %e, "cannot judge workload");
            Vec::new()
        }
    };
    let mut findings: Vec<AuditFinding> = findings;
    findings.sort();
    findings.dedup();
    (findings, recording.into_deps())
}
