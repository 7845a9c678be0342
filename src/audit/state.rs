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
//! findings it covers, and re-judges none.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use jiff::Timestamp;

use super::kinds::WorkloadKind;
use crate::detect::{self, Lookup, Mode, ObjectFacts, RefKind, ReferenceView, RuleId};
use crate::exemption::{self as ske, Reported};

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
struct Dep {
    kind: RefKind,
    name: Box<str>,
    facts: Option<Arc<ObjectFacts>>,
}

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

impl ReferenceView for Recording<'_> {
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

    fn namespace_mode(&self, namespace: &str) -> Option<Mode> {
        self.inner.namespace_mode(namespace)
    }

    fn partial(&self) -> bool {
        self.inner.partial()
    }

    fn exemption(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        now: jiff::Timestamp,
    ) -> Option<(crate::exemption::Exemption, crate::exemption::State)> {
        self.inner.exemption(kind, namespace, name, now)
    }
}

/// Judges one workload with the webhook's rules. A workload the rules cannot read (never the
/// case for objects the API server validated) is logged and counted as clean.
fn judge(w: &Workload<'_>, view: &dyn ReferenceView) -> (Vec<AuditFinding>, Vec<Dep>) {
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

    /// The exemption that applies to a workload now, if any covers it.
    fn exemption_of(&self, kind: WorkloadKind, namespace: &str, name: &str) -> Option<Reported> {
        let all = self.exemptions.values().map(|e| &**e);
        ske::applicable(all, kind.as_str(), namespace, name, self.now).map(|a| a.reported())
    }

    /// Re-evaluates the exemption of the workloads with findings that `changed` (exemptions
    /// that were created, deleted, edited or crossed their expiry) cover; marks their
    /// namespaces when a result changes. Returns how many workloads were re-evaluated.
    fn reapply(&mut self, changed: &[Arc<ske::Exemption>]) -> usize {
        let mut namespaces: Vec<&str> = changed.iter().map(|e| e.namespace.as_str()).collect();
        namespaces.sort();
        namespaces.dedup();
        let mut covered: Vec<Arc<str>> = Vec::new();
        for ns in namespaces {
            for uid in self.failing.get(ns).into_iter().flatten() {
                if let Some(e) = self.entries.get(uid)
                    && changed
                        .iter()
                        .any(|x| x.covers(e.kind.as_str(), &e.namespace, &e.name))
                {
                    covered.push(uid.clone());
                }
            }
        }
        for uid in &covered {
            let Some(e) = self.entries.get(uid) else {
                continue;
            };
            let now = self.exemption_of(e.kind, &e.namespace, &e.name);
            if now != e.exemption {
                let ns = e.namespace.clone();
                if let Some(e) = self.entries.get_mut(uid) {
                    e.exemption = now;
                }
                self.dirty.insert(ns);
            }
        }
        covered.len()
    }

    /// A StaticKeyExemption was created or changed. Returns how many workloads it (or its
    /// previous version) covered and were re-evaluated; none is judged again.
    pub fn apply_exemption(&mut self, e: ske::Exemption) -> usize {
        let e = Arc::new(e);
        let old = self.exemptions.insert(e.name.clone(), e.clone());
        if old.as_deref() == Some(&*e) {
            return 0;
        }
        let changed: Vec<_> = old.into_iter().chain([e]).collect();
        self.reapply(&changed)
    }

    /// A StaticKeyExemption was deleted. Returns how many workloads were re-evaluated.
    pub fn delete_exemption(&mut self, name: &str) -> usize {
        match self.exemptions.remove(name) {
            Some(old) => self.reapply(&[old]),
            None => 0,
        }
    }

    /// The StaticKeyExemptions were listed anew: the whole set. Re-evaluates only the
    /// workloads covered by the ones that differ.
    pub fn set_exemptions(&mut self, all: impl IntoIterator<Item = ske::Exemption>) -> usize {
        let mut fresh: HashMap<String, Arc<ske::Exemption>> = HashMap::new();
        for e in all {
            fresh.insert(e.name.clone(), Arc::new(e));
        }
        let mut changed: Vec<Arc<ske::Exemption>> = Vec::new();
        for (name, old) in &self.exemptions {
            if fresh.get(name).is_none_or(|new| new != old) {
                changed.push(old.clone());
            }
        }
        for (name, new) in &fresh {
            if self.exemptions.get(name).is_none_or(|old| old != new) {
                changed.push(new.clone());
            }
        }
        self.exemptions = fresh;
        if changed.is_empty() {
            0
        } else {
            self.reapply(&changed)
        }
    }

    /// Moves the audit's clock to `now`: exemptions that expired since (or, if the clock went
    /// back, are active again) re-evaluate the workloads they cover. Returns how many.
    pub fn advance(&mut self, now: Timestamp) -> usize {
        let then = std::mem::replace(&mut self.now, now);
        let (from, to) = if then <= now {
            (then, now)
        } else {
            (now, then)
        };
        let crossed: Vec<Arc<ske::Exemption>> = self
            .exemptions
            .values()
            .filter(|e| from < e.expires && e.expires <= to)
            .cloned()
            .collect();
        if crossed.is_empty() {
            0
        } else {
            self.reapply(&crossed)
        }
    }

    /// The audit's clock.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The next time an exemption expires (when [`Self::advance`] must be called again).
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.exemptions
            .values()
            .map(|e| e.expires)
            .filter(|t| *t > self.now)
            .min()
    }

    /// StaticKeyExemptions held: (active, expired) at the audit's clock.
    pub fn exemption_counts(&self) -> (usize, usize) {
        let active = self
            .exemptions
            .values()
            .filter(|e| e.state_at(self.now) == ske::State::Active)
            .count();
        (active, self.exemptions.len() - active)
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
mod tests {
    use super::*;
    use crate::detect::InMemoryView;
    use serde_json::json;

    const KEY_ID: &str = "AKIAZ7Q3EXAMPLEK3Y4N";

    fn deployment(env_from_secret: &str) -> Value {
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "envFrom": [{"secretRef": {"name": env_from_secret}}]}
        ]}}}})
    }

    fn w<'a>(uid: &'a str, rv: &'a str, body: &'a Value) -> Workload<'a> {
        Workload {
            kind: WorkloadKind::Deployment,
            namespace: "team",
            name: "app",
            uid,
            resource_version: rv,
            body,
        }
    }

    fn facts(data: &[(&str, &str)]) -> ObjectFacts {
        detect::classify_data(data.iter().map(|(k, v)| (*k, v.as_bytes())))
    }

    #[test]
    fn unchanged_workloads_are_not_judged_again_and_findings_mark_the_namespace() {
        let mut view = InMemoryView::new();
        view.insert(
            RefKind::Secret,
            "team",
            "creds",
            facts(&[("AWS_ACCESS_KEY_ID", KEY_ID)]),
        );
        let mut state = AuditState::new();
        let policy = AuditPolicy::default();
        let body = deployment("creds");
        assert!(state.upsert(&w("u1", "1", &body), true, &policy, &view));
        assert!(!state.upsert(&w("u1", "1", &body), true, &policy, &view));
        assert_eq!(state.judged, 1);
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
        let failing = state.failing_in("team");
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].findings[0].rule, RuleId::EnvFromCredentialKeys);
        assert_eq!(failing[0].findings[0].container.as_deref(), Some("app"));
        // A new resourceVersion with the same findings: judged, report untouched.
        assert!(state.upsert(&w("u1", "2", &body), true, &policy, &view));
        assert!(state.take_dirty().is_empty());
        assert_eq!(
            state.summary("team").by_rule,
            BTreeMap::from([(RuleId::EnvFromCredentialKeys, 1)])
        );
        state.remove("u1");
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
        assert!(state.failing_in("team").is_empty());
        assert!(state.readers.is_empty(), "reverse index emptied");
    }

    #[test]
    fn a_secret_that_gains_keys_makes_its_readers_stale_and_a_rotation_does_not() {
        let mut view = InMemoryView::new();
        view.insert(
            RefKind::Secret,
            "team",
            "creds",
            facts(&[("password", "x")]),
        );
        let mut state = AuditState::new();
        let policy = AuditPolicy::default();
        let body = deployment("creds");
        state.upsert(&w("u1", "1", &body), true, &policy, &view);
        assert!(state.failing_in("team").is_empty());
        // Same facts (another password): nothing to judge again.
        view.insert(
            RefKind::Secret,
            "team",
            "creds",
            facts(&[("password", "y")]),
        );
        assert!(
            state
                .stale_readers_of(RefKind::Secret, "team", "creds", &view)
                .is_empty()
        );
        view.insert(
            RefKind::Secret,
            "team",
            "creds",
            facts(&[("AWS_ACCESS_KEY_ID", KEY_ID)]),
        );
        let stale = state.stale_readers_of(RefKind::Secret, "team", "creds", &view);
        assert_eq!(stale.len(), 1);
        assert_eq!(state.all_stale(&view), stale);
        state.invalidate(&stale[0].uid);
        assert!(state.upsert(&w("u1", "1", &body), true, &policy, &view));
        assert_eq!(state.failing_in("team").len(), 1);
        assert!(state.all_stale(&view).is_empty());
    }

    #[test]
    fn a_missing_optional_secret_that_appears_is_judged() {
        let view0 = InMemoryView::new();
        let body = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "envFrom": [{"secretRef": {"name": "later", "optional": true}}]}
        ]}}}});
        let mut state = AuditState::new();
        state.upsert(&w("u1", "1", &body), true, &AuditPolicy::default(), &view0);
        assert!(state.failing_in("team").is_empty());
        let mut view = InMemoryView::new();
        view.insert(
            RefKind::Secret,
            "team",
            "later",
            facts(&[(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKE",
            )]),
        );
        assert_eq!(
            state
                .stale_readers_of(RefKind::Secret, "team", "later", &view)
                .len(),
            1
        );
    }

    #[test]
    fn relists_drop_what_is_gone_and_exempt_or_owned_workloads_are_not_kept() {
        let view = InMemoryView::new();
        let body = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": KEY_ID}]}
        ]}}}});
        let mut state = AuditState::new();
        let policy = AuditPolicy {
            exempt_namespaces: HashSet::from(["kube-system".to_string()]),
        };
        state.upsert(&w("u1", "1", &body), true, &policy, &view);
        state.upsert(&w("u2", "1", &body), true, &policy, &view);
        assert_eq!(state.failing_in("team").len(), 2);
        state.take_dirty();
        state.begin_relist(WorkloadKind::Deployment);
        state.upsert(&w("u1", "1", &body), true, &policy, &view);
        state.end_relist(WorkloadKind::Deployment);
        assert_eq!(state.len(), 1);
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
        assert_eq!(state.judged, 2, "the re-list judged nothing again");
        // Owned now: forgotten.
        state.upsert(&w("u1", "2", &body), false, &policy, &view);
        assert!(state.is_empty());
        let mut exempt = w("u3", "1", &body);
        exempt.namespace = "kube-system";
        assert!(!state.upsert(&exempt, true, &policy, &view));
        assert!(state.is_empty());
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn grant(name: &str, namespace: &str, workload: Option<&str>, expires: &str) -> ske::Exemption {
        ske::Exemption {
            name: name.into(),
            namespace: namespace.into(),
            kind: None,
            workload: workload.map(Into::into),
            granted_by: "platform@example.com".into(),
            reason: "TICKET-7 move to IRSA".into(),
            expires: t(expires),
        }
    }

    fn named<'a>(uid: &'a str, name: &'a str, body: &'a Value) -> Workload<'a> {
        Workload {
            name,
            ..w(uid, "1", body)
        }
    }

    fn state_of(e: &AuditState, uid: &str) -> Option<ske::State> {
        e.entries[uid].exemption.as_ref().map(|x| x.state)
    }

    /// Two leaky workloads and a clean one in "team", one leaky in "other".
    fn leaky_state(body: &Value, clean: &Value) -> AuditState {
        let view = InMemoryView::new();
        let policy = AuditPolicy::default();
        let mut state = AuditState::new();
        state.advance(t("2026-06-01T00:00:00Z"));
        state.upsert(&named("a", "a", body), true, &policy, &view);
        state.upsert(&named("b", "b", body), true, &policy, &view);
        state.upsert(&named("c", "c", clean), true, &policy, &view);
        let mut other = named("o", "a", body);
        other.namespace = "other";
        state.upsert(&other, true, &policy, &view);
        state.take_dirty();
        state
    }

    fn leaky_body() -> (Value, Value) {
        (
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": KEY_ID}]}
            ]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app"}]}}}}),
        )
    }

    #[test]
    fn an_exemption_reevaluates_only_what_it_covers_and_judges_nothing_again() {
        let (body, clean) = leaky_body();
        let mut state = leaky_state(&body, &clean);
        let judged = state.judged;
        // Covers "a" only: one workload re-evaluated, its namespace's report out of date.
        assert_eq!(
            state.apply_exemption(grant("x", "team", Some("a"), "2026-07-01T00:00:00Z")),
            1
        );
        assert_eq!(state_of(&state, "a"), Some(ske::State::Active));
        assert_eq!(state_of(&state, "b"), None);
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
        let s = state.summary("team");
        assert_eq!((s.failing, s.exempted, s.expired), (1, 1, 0));
        assert_eq!(s.by_rule, BTreeMap::from([(RuleId::EnvStaticKey, 1)]));
        // The same exemption again (a resync): nothing.
        assert_eq!(
            state.apply_exemption(grant("x", "team", Some("a"), "2026-07-01T00:00:00Z")),
            0
        );
        // Widened to the namespace: both leaky workloads of "team" (not the clean one, not
        // "other").
        assert_eq!(
            state.apply_exemption(grant("x", "team", None, "2026-07-01T00:00:00Z")),
            2
        );
        assert_eq!(state_of(&state, "b"), Some(ske::State::Active));
        assert_eq!(state_of(&state, "o"), None);
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
        // Deleted: enforced again.
        assert_eq!(state.delete_exemption("x"), 2);
        assert_eq!(state_of(&state, "a"), None);
        assert_eq!(state.summary("team").failing, 2);
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
        assert_eq!(state.delete_exemption("x"), 0);
        assert_eq!(state.judged, judged, "exemptions re-judge nothing");
    }

    #[test]
    fn an_exemption_expires_when_the_clock_passes_it_and_not_before() {
        let (body, clean) = leaky_body();
        let mut state = leaky_state(&body, &clean);
        state.apply_exemption(grant("x", "team", Some("a"), "2026-06-01T00:00:10Z"));
        state.apply_exemption(grant("later", "other", None, "2026-06-02T00:00:00Z"));
        state.take_dirty();
        assert_eq!(state.next_expiry(), Some(t("2026-06-01T00:00:10Z")));
        assert_eq!(state.exemption_counts(), (2, 0));
        assert_eq!(state.advance(t("2026-06-01T00:00:09Z")), 0);
        assert!(state.take_dirty().is_empty());
        // At the expiry itself (expired from that instant on, as the webhook judges).
        assert_eq!(state.advance(t("2026-06-01T00:00:10Z")), 1);
        assert_eq!(state_of(&state, "a"), Some(ske::State::Expired));
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("team")]);
        let s = state.summary("team");
        assert_eq!((s.failing, s.exempted, s.expired), (2, 0, 1));
        assert_eq!(state.next_expiry(), Some(t("2026-06-02T00:00:00Z")));
        assert_eq!(state.exemption_counts(), (1, 1));
        // Nothing more to do until then.
        assert_eq!(state.advance(t("2026-06-01T12:00:00Z")), 0);
        assert!(state.take_dirty().is_empty());
        assert_eq!(state.advance(t("2026-06-03T00:00:00Z")), 1);
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("other")]);
        assert_eq!(state.next_expiry(), None);
        // An exemption already expired when it arrives is reported as expired at once.
        assert_eq!(
            state.apply_exemption(grant("past", "team", Some("b"), "2020-01-01T00:00:00Z")),
            1
        );
        assert_eq!(state_of(&state, "b"), Some(ske::State::Expired));
    }

    #[test]
    fn a_relist_of_exemptions_reevaluates_only_what_differs_and_new_judgements_see_them() {
        let (body, clean) = leaky_body();
        let mut state = leaky_state(&body, &clean);
        let a = grant("a", "team", Some("a"), "2026-07-01T00:00:00Z");
        let o = grant("o", "other", None, "2026-07-01T00:00:00Z");
        assert_eq!(state.set_exemptions([a.clone(), o.clone()]), 2);
        state.take_dirty();
        assert_eq!(state.set_exemptions([a.clone(), o.clone()]), 0);
        // "o" gone while the watch was down: only "other" is re-evaluated.
        assert_eq!(state.set_exemptions([a.clone()]), 1);
        assert_eq!(state.take_dirty(), vec![Arc::<str>::from("other")]);
        // A workload judged anew (a new resourceVersion, a new workload) carries its exemption.
        let view = InMemoryView::new();
        let mut again = named("a", "a", &body);
        again.resource_version = "2";
        state.upsert(&again, true, &AuditPolicy::default(), &view);
        assert_eq!(state_of(&state, "a"), Some(ske::State::Active));
        assert!(
            state.take_dirty().is_empty(),
            "same findings, same exemption"
        );
        // A clean workload keeps no exemption.
        assert_eq!(
            state.apply_exemption(grant("all", "team", None, "2026-07-01T00:00:00Z")),
            2
        );
        assert_eq!(state_of(&state, "c"), None);
    }
}
