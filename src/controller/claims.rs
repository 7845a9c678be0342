//! Which binding owns a ServiceAccount when several claim it: the oldest (by creation time,
//! then name), so an existing binding never loses its ServiceAccount to a newcomer.

use std::collections::HashMap;
use std::sync::Arc;

use crate::crd::IAMRoleBinding;

/// A binding that claims a ServiceAccount, ordered by age.
#[derive(Debug, Clone)]
struct Claimant {
    created: Option<jiff::Timestamp>,
    name: Name,
}

impl Claimant {
    fn of(b: &IAMRoleBinding) -> Claimant {
        Claimant {
            created: b.metadata.creation_timestamp.as_ref().map(|t| t.0),
            name: b.metadata.name.as_deref().unwrap_or_default().into(),
        }
    }

    /// Older first; a missing creation time sorts first (only offline), then by name.
    fn is_older_than(&self, other: &Claimant) -> bool {
        (self.created, &self.name) < (other.created, &other.name)
    }
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
        let key = binding_key(b);
        self.remove_key(&key);
        if b.metadata.deletion_timestamp.is_some() {
            return;
        }
        let ns = self
            .live_in_namespace
            .get_key_value(&key.0)
            .map_or(key.0, |(ns, _)| ns.clone());
        let me = Claimant {
            created: b.metadata.creation_timestamp.as_ref().map(|t| t.0),
            name: key.1,
        };
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

    /// The first (binding name, ServiceAccount) where an older binding in the same namespace
    /// already claims one of `me`'s ServiceAccounts.
    pub fn conflicting_claim(&self, me: &IAMRoleBinding) -> Option<(String, String)> {
        let (ns, _) = binding_key(me);
        let mine = Claimant::of(me);
        let mut found: Option<(&Claimant, &str)> = None;
        for sa in &me.spec.service_accounts {
            let Some(claimants) = self
                .by_service_account
                .get(&(ns.clone(), sa.as_str().into()))
            else {
                continue;
            };
            for c in claimants {
                if c.name != mine.name
                    && c.is_older_than(&mine)
                    && found.is_none_or(|(best, _)| c.is_older_than(best))
                {
                    found = Some((c, sa));
                }
            }
        }
        found.map(|(c, sa)| (c.name.to_string(), sa.to_string()))
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
    /// [`ClaimIndex::conflicting_claim`] answers without a scan, kept as the tests' reference.
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
                i.conflicting_claim(me),
                conflicting_claim(me, all),
                "{:?}",
                me.metadata.name
            );
        }
        // "new" names web before api: web's oldest claimant is mid, api's is old (older).
        assert_eq!(
            i.conflicting_claim(&new),
            Some(("old".into(), "api".into()))
        );
        assert_eq!(i.live_in_namespace("ns"), 4);
        assert_eq!(i.claimants("ns", "web"), vec!["mid", "new"]);
    }

    #[test]
    fn the_index_follows_changes_deletion_and_removal() {
        let old = b("old", "ns", "2026-01-01T00:00:00Z", &["api"]);
        let new = b("new", "ns", "2026-02-01T00:00:00Z", &["api"]);
        let mut i = index(&[&old, &new]);
        assert!(i.conflicting_claim(&new).is_some());

        // The old binding moves to another ServiceAccount: the claim is released.
        let moved = b("old", "ns", "2026-01-01T00:00:00Z", &["db"]);
        i.upsert(&moved);
        assert_eq!(i.conflicting_claim(&new), None);
        assert_eq!(i.claimants("ns", "api"), vec!["new"]);

        // Back again, then marked for deletion: released, and no longer counted.
        i.upsert(&old);
        assert!(i.conflicting_claim(&new).is_some());
        let mut deleting = old.clone();
        deleting.metadata.deletion_timestamp = deleting.metadata.creation_timestamp.clone();
        i.upsert(&deleting);
        assert_eq!(i.conflicting_claim(&new), None);
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
}
