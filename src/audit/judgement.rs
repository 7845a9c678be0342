//! One judgement of a workload by the audit: the webhook's rules over its body, through a
//! view that records every Secret and ConfigMap the rules read (and the facts they had), so
//! [`super::state::AuditState`] knows which changes make the judgement stale.

use std::sync::Arc;

use super::state::Workload;
use crate::detect::{
    self, Lookup, ObjectFacts, Recorded, Recording, RefKind, ReferenceView, RuleId,
};

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

/// What a judgement read: each object once, with the facts it had then.
fn deps_of(records: Vec<Recorded>) -> Vec<Dep> {
    let mut deps: Vec<Dep> = (records.into_iter())
        .map(|r| Dep {
            kind: r.kind,
            name: r.name.into(),
            facts: match r.answer {
                Lookup::Found(f) => Some(f),
                Lookup::Missing | Lookup::Disabled => None,
            },
        })
        .collect();
    deps.sort_by(|a, b| (a.kind as u8, &a.name).cmp(&(b.kind as u8, &b.name)));
    deps.dedup_by(|a, b| a.kind == b.kind && a.name == b.name);
    deps
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
    (findings, deps_of(recording.into_records()))
}
