//! Deterministic role names and the ownership tags that say which binding owns a role.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Tag naming the cluster that owns a role.
pub const TAG_CLUSTER: &str = "hatrack.dev/cluster";
/// Tag naming the namespace of the owning binding.
pub const TAG_NAMESPACE: &str = "hatrack.dev/namespace";
/// Tag naming the owning binding.
pub const TAG_NAME: &str = "hatrack.dev/name";
/// Tag set on a role its binding left behind on purpose (`deletionPolicy: Retain`): the role
/// is not an orphan.
pub const TAG_RETAINED: &str = "hatrack.dev/retained";
/// Tag naming the ARN of the cluster that owns a role (set when the cluster's region is known).
pub const TAG_CLUSTER_ARN: &str = "hatrack.dev/cluster-arn";
/// An EKS cluster's ARN: `arn:<partition>:eks:<region>:<account>:cluster/<name>`.
pub fn cluster_arn(partition: &str, region: &str, account_id: &str, cluster_name: &str) -> String {
    format!("arn:{partition}:eks:{region}:{account_id}:cluster/{cluster_name}")
}

/// Prefix reserved for hatrack's own tags; bindings may not set tags under it.
pub const TAG_PREFIX: &str = "hatrack.dev/";

/// Length of the hash suffix in hex digits (48 bits: a collision needs ~16 million bindings).
const HASH_LEN: usize = 12;

/// The IAM role name for a binding: `<namespace>-<name>` shortened to fit, then a hash of
/// (cluster, namespace, name). The readable part helps humans; the hash makes the name unique
/// per cluster even where `a/b-c` and `a-b/c` read alike, or truncation cuts the difference off.
pub fn role_name(cluster: &str, namespace: &str, name: &str) -> String {
    let mut hasher = Sha256::new();
    // NUL cannot occur in any of the three, so the encoding is unambiguous.
    for part in [cluster, namespace, name] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let hash: String = digest
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .take(HASH_LEN)
        .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
        .collect();
    let readable: String = format!("{namespace}-{name}")
        .chars()
        .map(|c| {
            if crate::validate::is_role_name_char(c) {
                c
            } else {
                '-'
            }
        })
        .take(64 - 1 - HASH_LEN)
        .collect();
    let readable = readable.trim_end_matches(['-', '.']);
    format!("{readable}-{hash}")
}

/// The tags that mark a role as owned by this (cluster, namespace, name).
pub fn ownership_tags(cluster: &str, namespace: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_CLUSTER.to_string(), cluster.to_string()),
        (TAG_NAMESPACE.to_string(), namespace.to_string()),
        (TAG_NAME.to_string(), name.to_string()),
    ])
}

/// Whether `tags` carry exactly this owner's ownership tags.
pub fn is_owned_by(
    tags: &BTreeMap<String, String>,
    cluster: &str,
    namespace: &str,
    name: &str,
) -> bool {
    ownership_tags(cluster, namespace, name)
        .iter()
        .all(|(k, v)| tags.get(k) == Some(v))
}

/// Whether a role's `hatrack.dev/cluster-arn` tag lets the cluster `cluster_arn` own it: the
/// same ARN, or no ARN tag yet (a role made before clusters were known by ARN, which the first
/// cluster to reconcile it claims by tagging it).
pub fn arn_matches(tags: &BTreeMap<String, String>, cluster_arn: Option<&str>) -> bool {
    match (cluster_arn, tags.get(TAG_CLUSTER_ARN)) {
        (Some(ours), Some(theirs)) => ours == theirs,
        _ => true,
    }
}

/// The name of the role a binding has: keyed on the cluster's identity (its ARN), except for
/// a binding whose status names the role an earlier version made, keyed on the cluster's name
/// alone (`legacy_identity`): that role is kept and migrated in place, never recreated.
pub fn role_name_in_use(
    identity: &str,
    legacy_identity: Option<&str>,
    status_role_name: Option<&str>,
    namespace: &str,
    name: &str,
) -> String {
    let current = role_name(identity, namespace, name);
    if let Some(legacy) = legacy_identity.map(|l| role_name(l, namespace, name))
        && legacy != current
        && status_role_name == Some(legacy.as_str())
    {
        return legacy;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_deterministic_and_readable() {
        let a = role_name("prod", "payments", "reader");
        assert_eq!(a, role_name("prod", "payments", "reader"));
        assert!(a.starts_with("payments-reader-"), "{a}");
        assert_eq!(a.len(), "payments-reader-".len() + HASH_LEN);
    }

    #[test]
    fn dash_ambiguity_gives_different_names() {
        assert_ne!(role_name("c", "a", "b-c"), role_name("c", "a-b", "c"));
    }

    #[test]
    fn clusters_get_different_names() {
        assert_ne!(
            role_name("prod", "ns", "n"),
            role_name("staging", "ns", "n")
        );
    }

    #[test]
    fn long_names_are_shortened_but_stay_unique() {
        let ns = "n".repeat(63);
        let a = role_name("c", &ns, &"x".repeat(253));
        let b = role_name("c", &ns, &format!("{}y", "x".repeat(252)));
        assert!(a.len() <= 64 && b.len() <= 64);
        assert_ne!(a, b);
        crate::validate::role_name(&a).unwrap();
    }

    #[test]
    fn ownership_is_checked_on_all_three_tags() {
        let mut tags = ownership_tags("c", "ns", "n");
        assert!(is_owned_by(&tags, "c", "ns", "n"));
        assert!(!is_owned_by(&tags, "other", "ns", "n"));
        tags.remove(TAG_NAME);
        assert!(!is_owned_by(&tags, "c", "ns", "n"));
    }

    #[test]
    fn same_named_clusters_in_other_regions_get_other_names() {
        let eu = "arn:aws:eks:eu-west-1:111122223333:cluster/prod";
        let us = "arn:aws:eks:us-east-1:111122223333:cluster/prod";
        assert_ne!(role_name(eu, "ns", "n"), role_name(us, "ns", "n"));
        let mut tags = ownership_tags("prod", "ns", "n");
        assert!(
            arn_matches(&tags, Some(eu)),
            "an untagged legacy role may be claimed"
        );
        tags.insert(TAG_CLUSTER_ARN.into(), eu.into());
        assert!(arn_matches(&tags, Some(eu)));
        assert!(!arn_matches(&tags, Some(us)));
    }

    #[test]
    fn a_role_named_by_an_earlier_version_is_kept() {
        let arn = "arn:aws:eks:eu-west-1:111122223333:cluster/prod";
        let legacy = role_name("prod", "ns", "n");
        assert_eq!(
            role_name_in_use(arn, Some("prod"), Some(&legacy), "ns", "n"),
            legacy
        );
        // new bindings, and bindings already on the new scheme, use the ARN-keyed name
        let current = role_name(arn, "ns", "n");
        assert_eq!(
            role_name_in_use(arn, Some("prod"), None, "ns", "n"),
            current
        );
        assert_eq!(
            role_name_in_use(arn, Some("prod"), Some(&current), "ns", "n"),
            current
        );
        assert_eq!(
            role_name_in_use("prod", None, Some(&legacy), "ns", "n"),
            legacy
        );
    }

    proptest! {
        #[test]
        fn every_name_is_a_valid_iam_role_name(
            cluster in "[a-z0-9_-]{1,100}",
            ns in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
            name in "[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?",
        ) {
            let n = role_name(&cluster, &ns, &name);
            prop_assert!(crate::validate::role_name(&n).is_ok(), "{}", n);
        }
    }
}
