//! Which binding holds a ServiceAccount when several claim it: the conflict rule, in one place
//! for the controller, the binding webhook, `plan` and `check`.
//!
//! The rule: a ServiceAccount belongs to the **oldest** live binding that claims it, by
//! creation time, then input position (offline only), then name. Every other claimant is in
//! conflict. The controller judges a binding at its own age, so an existing binding never
//! loses its ServiceAccount to a newcomer, and the outcome survives restarts (it depends on
//! stored metadata only). Admission judges the binding under review as the newest
//! ([`Age::Newest`]): a CREATE or UPDATE that claims a ServiceAccount another live binding
//! claims is refused, because admitting it would either lose (a newcomer) or take the
//! ServiceAccount from the binding that holds it. `plan` and `check` judge the bindings of
//! their input in input order: a later binding claiming a ServiceAccount an earlier one claims
//! is refused as the webhook would refuse it when they are applied in that order.

use std::collections::HashMap;
use std::sync::Arc;

use crate::crd::IAMRoleBinding;

/// How old a claimant is, for the conflict rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Age {
    /// Stored metadata: creation time (a missing one sorts first: only offline), then the
    /// position in an offline input (0 in a cluster). Ties are broken by name.
    At {
        created: Option<jiff::Timestamp>,
        position: u32,
    },
    /// Younger than every claimant: a binding under admission.
    Newest,
}

impl Age {
    /// A binding's age in a cluster (its creation time).
    pub fn of(b: &IAMRoleBinding) -> Age {
        Age::at(b, 0)
    }

    /// A binding's age at `position` of an offline input.
    pub fn at(b: &IAMRoleBinding, position: u32) -> Age {
        Age::At {
            created: b.metadata.creation_timestamp.as_ref().map(|t| t.0),
            position,
        }
    }
}

/// A binding that claims a ServiceAccount, ordered by age.
#[derive(Debug, Clone)]
struct Claimant {
    age: Age,
    name: Name,
}

impl Claimant {
    fn is_older_than(&self, age: Age, name: &str) -> bool {
        (self.age, &*self.name) < (age, name)
    }
}

/// A ServiceAccount the judged binding cannot have: `holder` claims it and is older.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub service_account: String,
    pub holder: String,
}

/// A namespace, binding or ServiceAccount name. Shared: with 10,000 bindings, one copy of each
/// name among the index's maps instead of one per map saves ~2 MB of small allocations.
type Name = Arc<str>;

/// (namespace, name) of a binding or a ServiceAccount.
type Key = (Name, Name);

fn binding_key(b: &IAMRoleBinding) -> Key {
    (
        b.metadata.namespace.as_deref().unwrap_or_default().into(),
        b.metadata.name.as_deref().unwrap_or_default().into(),
    )
}

/// The ServiceAccount claims of all bindings not being deleted, indexed by ServiceAccount, so
/// a reconcile looks at the bindings naming its own ServiceAccounts instead of scanning all.
#[derive(Debug, Default)]
pub struct ClaimIndex {
    by_service_account: HashMap<Key, Vec<Claimant>>,
    /// binding → the ServiceAccounts it claims, to undo them when it changes or goes.
    by_binding: HashMap<Key, Box<[Name]>>,
    /// namespace → bindings not being deleted; its keys are the shared namespace names.
    live_in_namespace: HashMap<Name, usize>,
}

impl ClaimIndex {
    /// Records the binding as it is now (a binding being deleted claims nothing).
    pub fn upsert(&mut self, b: &IAMRoleBinding) {
        self.upsert_aged(b, Age::of(b));
    }

    /// [`upsert`](Self::upsert) with an age given by the caller (offline input order).
    pub fn upsert_aged(&mut self, b: &IAMRoleBinding, age: Age) {
        let key = binding_key(b);
        self.remove_key(&key);
        if b.metadata.deletion_timestamp.is_some() {
            return;
        }
        let ns = self
            .live_in_namespace
            .get_key_value(&key.0)
            .map_or(key.0, |(ns, _)| ns.clone());
        let me = Claimant { age, name: key.1 };
        let mut claimed: Vec<Name> = Vec::with_capacity(b.spec.service_accounts.len());
        for sa in &b.spec.service_accounts {
            if claimed.iter().any(|c| **c == **sa) {
                continue;
            }
            let sa: Name = sa.as_str().into();
            // Almost every ServiceAccount has one claimant: room for one, not Vec's default 4.
            self.by_service_account
                .entry((ns.clone(), sa.clone()))
                .or_insert_with(|| Vec::with_capacity(1))
                .push(me.clone());
            claimed.push(sa);
        }
        *self.live_in_namespace.entry(ns.clone()).or_default() += 1;
        self.by_binding
            .insert((ns, me.name), claimed.into_boxed_slice());
    }

    /// Forgets a binding that is gone.
    pub fn remove(&mut self, b: &IAMRoleBinding) {
        self.remove_key(&binding_key(b));
    }

    fn remove_key(&mut self, key: &Key) {
        let Some(claimed) = self.by_binding.remove(key) else {
            return;
        };
        for sa in claimed {
            let sa_key = (key.0.clone(), sa);
            if let Some(claimants) = self.by_service_account.get_mut(&sa_key) {
                claimants.retain(|c| c.name != key.1);
                if claimants.is_empty() {
                    self.by_service_account.remove(&sa_key);
                }
            }
        }
        if let Some(n) = self.live_in_namespace.get_mut(&key.0) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.live_in_namespace.remove(&key.0);
            }
        }
    }

    /// The ServiceAccounts of `me` (in spec order, each once) that an older live binding of its
    /// namespace claims, each with its oldest such claimant: the conflict rule.
    pub fn conflicts(&self, me: &IAMRoleBinding, age: Age) -> Vec<Conflict> {
        let (ns, my_name) = binding_key(me);
        let mut out: Vec<Conflict> = Vec::new();
        for sa in &me.spec.service_accounts {
            if out.iter().any(|c| c.service_account == *sa) {
                continue;
            }
            let Some(claimants) = self
                .by_service_account
                .get(&(ns.clone(), sa.as_str().into()))
            else {
                continue;
            };
            let holder = claimants
                .iter()
                .filter(|c| c.name != my_name && c.is_older_than(age, &my_name))
                .min_by(|a, b| (a.age, &a.name).cmp(&(b.age, &b.name)));
            if let Some(h) = holder {
                out.push(Conflict {
                    service_account: sa.clone(),
                    holder: h.name.to_string(),
                });
            }
        }
        out
    }

    /// Live bindings of `me`'s namespace, `me` counted once whether the index holds it or not.
    pub fn live_with(&self, me: &IAMRoleBinding) -> usize {
        let key = binding_key(me);
        let listed = self.by_binding.contains_key(&key);
        self.live_in_namespace(&key.0) + usize::from(!listed)
    }

    /// Names of the bindings in `namespace` that claim ServiceAccount `sa`.
    pub fn claimants(&self, namespace: &str, sa: &str) -> Vec<String> {
        self.by_service_account
            .get(&(namespace.into(), sa.into()))
            .map(|cs| cs.iter().map(|c| c.name.to_string()).collect())
            .unwrap_or_default()
    }

    /// Bindings in `namespace` that are not being deleted.
    pub fn live_in_namespace(&self, namespace: &str) -> usize {
        self.live_in_namespace.get(namespace).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The first (binding name, ServiceAccount) where an older binding in the same namespace
    /// already claims one of `me`'s ServiceAccounts, by scanning `others`: the definition that
    /// [`ClaimIndex::conflicts`] answers without a scan (see [`first`]), kept as the tests'
    /// reference.
    fn conflicting_claim<'a>(
        me: &IAMRoleBinding,
        others: impl IntoIterator<Item = &'a IAMRoleBinding>,
    ) -> Option<(String, String)> {
        let my_ns = me.metadata.namespace.as_deref();
        let my_key = age_key(me);
        let mut found: Option<((Option<String>, String), String, String)> = None;
        for other in others {
            if other.metadata.namespace.as_deref() != my_ns
                || other.metadata.name == me.metadata.name
                || other.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            let key = age_key(other);
            if key >= my_key {
                continue;
            }
            if let Some(sa) = me
                .spec
                .service_accounts
                .iter()
                .find(|sa| other.spec.service_accounts.contains(sa))
            {
                let better = found.as_ref().is_none_or(|(k, _, _)| key < *k);
                if better {
                    found = Some((key.clone(), key.1.clone(), sa.clone()));
                }
            }
        }
        found.map(|(_, name, sa)| (name, sa))
    }

    /// The conflict of `me` whose holder is oldest, from the index.
    fn first(i: &ClaimIndex, me: &IAMRoleBinding) -> Option<(String, String)> {
        let ns: Name = me.metadata.namespace.as_deref().unwrap_or_default().into();
        i.conflicts(me, Age::of(me))
            .into_iter()
            .map(|c| {
                let holder = i.by_service_account[&(ns.clone(), c.service_account.as_str().into())]
                    .iter()
                    .find(|h| *h.name == *c.holder)
                    .map(|h| (h.age, h.name.clone()))
                    .unwrap();
                (holder, c)
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, c)| (c.holder, c.service_account))
    }

    fn age_key(b: &IAMRoleBinding) -> (Option<String>, String) {
        // RFC 3339 timestamps of one server compare correctly as strings; a missing one sorts
        // first, which only happens offline.
        let created = b
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string());
        (created, b.metadata.name.clone().unwrap_or_default())
    }

    fn b(name: &str, ns: &str, created: &str, sas: &[&str]) -> IAMRoleBinding {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {"serviceAccounts": sas}
        }))
        .unwrap()
    }

    #[test]
    fn the_index_keeps_one_copy_of_each_name() {
        let mut i = ClaimIndex::default();
        i.upsert(&b("a", "ns", "2026-01-01T00:00:00Z", &["api", "web"]));
        i.upsert(&b("c", "ns", "2026-01-01T00:00:00Z", &["db"]));
        let ((ns, name), sas) = i
            .by_binding
            .get_key_value(&("ns".into(), "a".into()))
            .unwrap();
        let ((other_ns, _), _) = i
            .by_binding
            .get_key_value(&("ns".into(), "c".into()))
            .unwrap();
        assert!(Arc::ptr_eq(ns, other_ns));
        assert_eq!(sas.len(), 2);
        for sa in sas.iter() {
            let ((sa_ns, sa_name), claimants) = i
                .by_service_account
                .get_key_value(&(ns.clone(), sa.clone()))
                .unwrap();
            assert!(Arc::ptr_eq(sa_ns, ns) && Arc::ptr_eq(sa_name, sa));
            assert!(Arc::ptr_eq(&claimants[0].name, name));
            assert_eq!(claimants.capacity(), 1);
        }
    }

    #[test]
    fn the_later_binding_loses() {
        let old = b("old", "ns", "2026-01-01T00:00:00Z", &["api", "x"]);
        let new = b("new", "ns", "2026-02-01T00:00:00Z", &["web", "api"]);
        assert_eq!(
            conflicting_claim(&new, [&old, &new]),
            Some(("old".into(), "api".into()))
        );
        assert_eq!(conflicting_claim(&old, [&old, &new]), None);
    }

    #[test]
    fn same_time_is_broken_by_name_and_other_namespaces_do_not_count() {
        let a = b("a", "ns", "2026-01-01T00:00:00Z", &["api"]);
        let z = b("z", "ns", "2026-01-01T00:00:00Z", &["api"]);
        let elsewhere = b("a", "other", "2025-01-01T00:00:00Z", &["api"]);
        assert!(conflicting_claim(&z, [&a]).is_some());
        assert!(conflicting_claim(&a, [&z, &elsewhere]).is_none());
    }

    #[test]
    fn a_binding_being_deleted_releases_its_claim() {
        let mut old = b("old", "ns", "2026-01-01T00:00:00Z", &["api"]);
        old.metadata.deletion_timestamp = old.metadata.creation_timestamp.clone();
        let new = b("new", "ns", "2026-02-01T00:00:00Z", &["api"]);
        assert!(conflicting_claim(&new, [&old]).is_none());
    }

    fn index(bindings: &[&IAMRoleBinding]) -> ClaimIndex {
        let mut i = ClaimIndex::default();
        for b in bindings {
            i.upsert(b);
        }
        i
    }

    #[test]
    fn the_index_agrees_with_the_scan() {
        let old = b("old", "ns", "2026-01-01T00:00:00Z", &["api", "x"]);
        let mid = b("mid", "ns", "2026-01-15T00:00:00Z", &["web"]);
        let new = b("new", "ns", "2026-02-01T00:00:00Z", &["web", "api"]);
        let same_time = b("a", "ns", "2026-01-01T00:00:00Z", &["x"]);
        let elsewhere = b("zzz", "other", "2025-01-01T00:00:00Z", &["api", "web"]);
        let all = [&old, &mid, &new, &same_time, &elsewhere];
        let i = index(&all);
        for me in all {
            assert_eq!(
                first(&i, me),
                conflicting_claim(me, all),
                "{:?}",
                me.metadata.name
            );
        }
        // "new" names web before api: web's oldest claimant is mid, api's is old (older).
        assert_eq!(first(&i, &new), Some(("old".into(), "api".into())));
        assert_eq!(i.live_in_namespace("ns"), 4);
        assert_eq!(i.claimants("ns", "web"), vec!["mid", "new"]);
    }

    #[test]
    fn the_index_follows_changes_deletion_and_removal() {
        let old = b("old", "ns", "2026-01-01T00:00:00Z", &["api"]);
        let new = b("new", "ns", "2026-02-01T00:00:00Z", &["api"]);
        let mut i = index(&[&old, &new]);
        assert!(first(&i, &new).is_some());

        // The old binding moves to another ServiceAccount: the claim is released.
        let moved = b("old", "ns", "2026-01-01T00:00:00Z", &["db"]);
        i.upsert(&moved);
        assert_eq!(first(&i, &new), None);
        assert_eq!(i.claimants("ns", "api"), vec!["new"]);

        // Back again, then marked for deletion: released, and no longer counted.
        i.upsert(&old);
        assert!(first(&i, &new).is_some());
        let mut deleting = old.clone();
        deleting.metadata.deletion_timestamp = deleting.metadata.creation_timestamp.clone();
        i.upsert(&deleting);
        assert_eq!(first(&i, &new), None);
        assert_eq!(i.live_in_namespace("ns"), 1);

        i.remove(&new);
        assert_eq!(i.live_in_namespace("ns"), 0);
        assert!(i.claimants("ns", "api").is_empty());
        assert!(i.by_service_account.is_empty() && i.by_binding.is_empty());
    }

    #[test]
    fn a_service_account_named_twice_is_one_claim() {
        let twice = b("twice", "ns", "2026-01-01T00:00:00Z", &["api", "api"]);
        let mut i = index(&[&twice]);
        assert_eq!(i.claimants("ns", "api"), vec!["twice"]);
        i.remove(&twice);
        assert!(i.by_service_account.is_empty());
    }

    #[test]
    fn each_service_account_reports_its_own_oldest_holder() {
        let old = b("old", "ns", "2026-01-01T00:00:00Z", &["api"]);
        let mid = b("mid", "ns", "2026-01-15T00:00:00Z", &["web", "api"]);
        let new = b(
            "new",
            "ns",
            "2026-02-01T00:00:00Z",
            &["web", "api", "web", "db"],
        );
        let i = index(&[&old, &mid, &new]);
        let got: Vec<(String, String)> = i
            .conflicts(&new, Age::of(&new))
            .into_iter()
            .map(|c| (c.service_account, c.holder))
            .collect();
        assert_eq!(
            got,
            [("web".into(), "mid".into()), ("api".into(), "old".into())]
        );
        assert!(i.conflicts(&old, Age::of(&old)).is_empty());
    }

    #[test]
    fn the_newest_loses_to_every_other_claimant_whatever_its_time() {
        let old = b("old", "ns", "2026-01-01T00:00:00Z", &["api"]);
        let i = index(&[&old]);
        // Created earlier than "old" (or by a smaller name): judged as the newest at admission.
        let early = b("a", "ns", "2025-01-01T00:00:00Z", &["api"]);
        assert!(i.conflicts(&early, Age::of(&early)).is_empty());
        assert_eq!(i.conflicts(&early, Age::Newest)[0].holder, "old");
        // The same binding under review is not its own rival.
        assert!(i.conflicts(&old, Age::Newest).is_empty());
        assert_eq!(i.live_with(&old), 1);
        assert_eq!(i.live_with(&early), 2);
    }

    #[test]
    fn offline_input_order_decides_when_no_creation_time_is_known() {
        let mk = |name: &str| -> IAMRoleBinding {
            serde_json::from_value(json!({
                "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"serviceAccounts": ["api"]}
            }))
            .unwrap()
        };
        let (z, a) = (mk("z"), mk("a"));
        let mut i = ClaimIndex::default();
        i.upsert_aged(&z, Age::at(&z, 0));
        i.upsert_aged(&a, Age::at(&a, 1));
        assert!(i.conflicts(&z, Age::at(&z, 0)).is_empty());
        assert_eq!(i.conflicts(&a, Age::at(&a, 1))[0].holder, "z");
    }
}
