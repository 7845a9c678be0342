//! Which binding owns a ServiceAccount when several claim it: the oldest (by creation time,
//! then name), so an existing binding never loses its ServiceAccount to a newcomer.

use crate::crd::IAMRoleBinding;

/// The first (binding name, ServiceAccount) where an older binding in the same namespace already
/// claims one of `me`'s ServiceAccounts.
pub fn conflicting_claim<'a>(
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
    // RFC 3339 timestamps of one server compare correctly as strings; a missing one sorts first,
    // which only happens offline.
    let created = b
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string());
    (created, b.metadata.name.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b(name: &str, ns: &str, created: &str, sas: &[&str]) -> IAMRoleBinding {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {"serviceAccounts": sas}
        }))
        .unwrap()
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
}
