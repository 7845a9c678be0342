//! What the audit knows, without I/O: per judged workload its findings and the facts of the
//! Secrets and ConfigMaps its judgement read, a reverse index from those objects to the
//! workloads that read them, and which namespaces' reports are out of date.
//!
//! A workload is judged again only when its `resourceVersion` changed, or when an object it
//! read now has other facts than the ones it was judged with (a Secret edited to hold keys, an
//! optional Secret that appeared). Secret edits that leave the facts as they were (a rotated
//! password) re-judge nothing.
//!
//! StaticKeyExemptions do not change a judgement: a workload under one is still judged (its
//! report results say what is exempted, as `skip`), and the exemption that applies is kept
//! beside its findings. An exemption created, changed or deleted, or one that expires (the
//! time is an argument: [`AuditState::advance`]), re-evaluates only the workloads with
//! findings it covers, and re-judges none (`state/exemptions.rs`). The judgement itself, and
//! what it read, is `super::judgement`.

mod exemptions;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use jiff::Timestamp;

use super::judgement::{Dep, judge};
use super::kinds::WorkloadKind;
use crate::detect::{Lookup, ObjectFacts, RefKind, ReferenceView, RuleId};
use crate::exemption::{self as ske, Reported};

pub use super::judgement::AuditFinding;

/// A judged workload.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: WorkloadKind,
    pub namespace: Arc<str>,
    pub name: Box<str>,
    pub uid: Arc<str>,
    resource_version: Box<str>,
    deps: Vec<Dep>,
    pub findings: Vec<AuditFinding>,
    /// The StaticKeyExemption that covers it and its state (kept only with findings).
    pub exemption: Option<Reported>,
    /// The re-list round of its kind in which it was last seen.
    epoch: u64,
}

/// A workload as a watch delivers it.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    pub kind: WorkloadKind,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub resource_version: &'a str,
    /// The object's body (at least `spec`).
    pub body: &'a Value,
}

/// Why a workload is not judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exemption {
    /// In `--exempt-namespaces`.
    Namespace,
    // StaticKeyExemptions are not here: they change over time and the workloads they cover are
    // still judged and reported (as `skip`), so [`AuditState`] applies them beside findings.
}

/// What decides whether and how workloads are judged.
#[derive(Debug, Clone, Default)]
pub struct AuditPolicy {
    pub exempt_namespaces: HashSet<String>,
}

impl AuditPolicy {
    /// Whether `w` is exempt from judgement, and why.
    pub fn exemption(&self, w: &Workload<'_>) -> Option<Exemption> {
        if self.exempt_namespaces.contains(w.namespace) {
            return Some(Exemption::Namespace);
        }
        None
    }
}

/// The workloads with findings of a namespace, as the metrics count them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceSummary {
    /// Workloads whose results fail (not under an active exemption).
    pub failing: usize,
    /// Workloads whose findings an active StaticKeyExemption excuses (results `skip`).
    pub exempted: usize,
    /// Of `failing`, those whose StaticKeyExemption expired.
    pub expired: usize,
    /// Per rule, the failing workloads with at least one finding of it.
    pub by_rule: BTreeMap<RuleId, u64>,
}

/// A workload to fetch and judge again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StaleReader {
    pub kind: WorkloadKind,
    pub namespace: Arc<str>,
    pub name: Box<str>,
    pub uid: Arc<str>,
}

type RefKey = (RefKind, Box<str>, Box<str>);

fn ref_key(kind: RefKind, namespace: &str, name: &str) -> RefKey {
    (kind, namespace.into(), name.into())
}

/// Everything the audit knows.
#[derive(Debug, Default)]
pub struct AuditState {
    entries: HashMap<Arc<str>, Entry>,
    /// Secret/ConfigMap -> uids of the workloads whose judgement read it.
    readers: HashMap<RefKey, HashSet<Arc<str>>>,
    /// Namespace -> uids of its workloads with findings.
    failing: HashMap<Arc<str>, HashSet<Arc<str>>>,
    /// Namespaces whose report may be out of date.
    dirty: HashSet<Arc<str>>,
    epochs: HashMap<WorkloadKind, u64>,
    /// StaticKeyExemptions by name.
    exemptions: HashMap<String, Arc<ske::Exemption>>,
    /// The time exemptions are judged at (moved by [`Self::advance`]).
    now: Timestamp,
    /// Judgements made (a measure for tests and metrics: unchanged objects are not judged).
    pub judged: u64,
}

impl AuditState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A re-list of `kind` starts: workloads not seen again before [`Self::end_relist`] are gone.
    pub fn begin_relist(&mut self, kind: WorkloadKind) {
        *self.epochs.entry(kind).or_insert(0) += 1;
    }

    /// The re-list of `kind` is complete: drops its workloads that were not in it.
    pub fn end_relist(&mut self, kind: WorkloadKind) {
        let epoch = self.epochs.get(&kind).copied().unwrap_or(0);
        let gone: Vec<Arc<str>> = self
            .entries
            .values()
            .filter(|e| e.kind == kind && e.epoch != epoch)
            .map(|e| e.uid.clone())
            .collect();
        for uid in gone {
            self.remove(&uid);
        }
    }

    /// A workload was listed or changed. Judges it unless it is exempt, not judged itself
    /// (owned: see [`super::kinds::judged_itself`]), or unchanged since its last judgement.
    /// Returns whether it was judged.
    pub fn upsert(
        &mut self,
        w: &Workload<'_>,
        judged_itself: bool,
        policy: &AuditPolicy,
        view: &dyn ReferenceView,
    ) -> bool {
        let epoch = self.epochs.get(&w.kind).copied().unwrap_or(0);
        if !judged_itself || policy.exemption(w).is_some() {
            self.remove(w.uid);
            return false;
        }
        if let Some(e) = self.entries.get_mut(w.uid)
            && *e.resource_version == *w.resource_version
        {
            e.epoch = epoch;
            return false;
        }
        let (findings, deps) = judge(w, view);
        self.judged += 1;
        let uid: Arc<str> = w.uid.into();
        let exemption = if findings.is_empty() {
            None
        } else {
            self.exemption_of(w.kind, w.namespace, w.name)
        };
        let entry = Entry {
            kind: w.kind,
            namespace: w.namespace.into(),
            name: w.name.into(),
            uid: uid.clone(),
            resource_version: w.resource_version.into(),
            deps,
            findings,
            exemption,
            epoch,
        };
        self.put(entry);
        true
    }

    /// A workload was deleted.
    pub fn remove(&mut self, uid: &str) {
        let Some(old) = self.entries.remove(uid) else {
            return;
        };
        self.unindex(&old);
        if !old.findings.is_empty() {
            self.dirty.insert(old.namespace.clone());
        }
    }

    fn unindex(&mut self, e: &Entry) {
        for d in &e.deps {
            let key = ref_key(d.kind, &e.namespace, &d.name);
            if let Some(set) = self.readers.get_mut(&key) {
                set.remove(&e.uid);
                if set.is_empty() {
                    self.readers.remove(&key);
                }
            }
        }
        if let Some(set) = self.failing.get_mut(&e.namespace) {
            set.remove(&e.uid);
            if set.is_empty() {
                self.failing.remove(&e.namespace);
            }
        }
    }

    fn put(&mut self, entry: Entry) {
        let changed = match self.entries.remove(&entry.uid) {
            Some(old) => {
                self.unindex(&old);
                old.findings != entry.findings
                    || old.name != entry.name
                    || old.exemption != entry.exemption
            }
            None => !entry.findings.is_empty(),
        };
        for d in &entry.deps {
            self.readers
                .entry(ref_key(d.kind, &entry.namespace, &d.name))
                .or_default()
                .insert(entry.uid.clone());
        }
        if !entry.findings.is_empty() {
            self.failing
                .entry(entry.namespace.clone())
                .or_default()
                .insert(entry.uid.clone());
        }
        if changed {
            self.dirty.insert(entry.namespace.clone());
        }
        self.entries.insert(entry.uid.clone(), entry);
    }

    /// The workloads that read `kind namespace/name` and were judged with other facts than
    /// `view` has now: they must be judged again (their objects fetched anew).
    pub fn stale_readers_of(
        &self,
        kind: RefKind,
        namespace: &str,
        name: &str,
        view: &dyn ReferenceView,
    ) -> Vec<StaleReader> {
        let Some(uids) = self.readers.get(&ref_key(kind, namespace, name)) else {
            return Vec::new();
        };
        let now = match view.lookup(kind, namespace, name) {
            Lookup::Found(f) => Some(f),
            Lookup::Missing | Lookup::Disabled => None,
        };
        let same = |then: &Option<Arc<ObjectFacts>>| match (then, &now) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        };
        let mut out: Vec<_> = uids
            .iter()
            .filter_map(|uid| self.entries.get(uid))
            .filter(|e| {
                e.deps
                    .iter()
                    .any(|d| d.kind == kind && *d.name == *name && !same(&d.facts))
            })
            .map(|e| StaleReader {
                kind: e.kind,
                namespace: e.namespace.clone(),
                name: e.name.clone(),
                uid: e.uid.clone(),
            })
            .collect();
        out.sort();
        out
    }

    /// Every workload judged with facts that `view` no longer has (after a re-list of
    /// Secrets or ConfigMaps, when single changes were not seen).
    pub fn all_stale(&self, view: &dyn ReferenceView) -> Vec<StaleReader> {
        let mut out: Vec<_> = self
            .readers
            .keys()
            .flat_map(|(kind, ns, name)| self.stale_readers_of(*kind, ns, name, view))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Forgets the judgement of a workload so the next [`Self::upsert`] judges it, whatever
    /// its resourceVersion (its inputs changed elsewhere).
    pub fn invalidate(&mut self, uid: &str) {
        if let Some(e) = self.entries.get_mut(uid) {
            e.resource_version = "".into();
        }
    }

    /// Namespaces whose reports may need writing; cleared.
    pub fn take_dirty(&mut self) -> Vec<Arc<str>> {
        let mut out: Vec<_> = self.dirty.drain().collect();
        out.sort();
        out
    }

    /// Marks namespaces for a report check (after a failed write, or reports found at start).
    pub fn mark_dirty(&mut self, namespace: &str) {
        self.dirty.insert(namespace.into());
    }

    /// The workloads of `namespace` with findings, in a stable order.
    pub fn failing_in(&self, namespace: &str) -> Vec<&Entry> {
        let mut out: Vec<&Entry> = self
            .failing
            .get(namespace)
            .into_iter()
            .flatten()
            .filter_map(|uid| self.entries.get(uid))
            .collect();
        out.sort_by(|a, b| (a.kind, &a.name, &a.uid).cmp(&(b.kind, &b.name, &b.uid)));
        out
    }

    /// What the metrics of `namespace` show.
    pub fn summary(&self, namespace: &str) -> NamespaceSummary {
        let mut out = NamespaceSummary::default();
        for e in self.failing_in(namespace) {
            let state = e.exemption.as_ref().map(|x| x.state);
            if state == Some(ske::State::Active) {
                out.exempted += 1;
                continue;
            }
            out.failing += 1;
            if state == Some(ske::State::Expired) {
                out.expired += 1;
            }
            let mut rules: Vec<RuleId> = e.findings.iter().map(|f| f.rule).collect();
            rules.sort();
            rules.dedup();
            for r in rules {
                *out.by_rule.entry(r).or_insert(0) += 1;
            }
        }
        out
    }

    /// Namespaces with findings.
    pub fn failing_namespaces(&self) -> Vec<Arc<str>> {
        let mut out: Vec<_> = self.failing.keys().cloned().collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests;
