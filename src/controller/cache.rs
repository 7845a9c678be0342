//! The IAMRoleBinding as the controller's cache holds it: the metadata as it came (less what
//! `strip_binding` drops), the spec, status and resourceVersion as one compact JSON text.
//!
//! Why: a deserialized spec is mostly allocator overhead. Each `BTreeMap` (inline policies,
//! tags) costs a whole B-tree node even with one entry, and each inline policy document is a
//! tree of `serde_json` maps and vectors; as text, the same spec and status take a fraction of
//! that (figures: BENCHMARKS.md, "Figures behind design choices"). A reconcile parses the
//! text back ([`CachedBinding::to_binding`]), which is cheap next to its IAM calls.

use std::borrow::Cow;

use kube::Resource;
use kube::api::ObjectMeta;
use serde::{Deserialize, Deserializer, Serialize};

use crate::crd::{IAMRoleBinding, IAMRoleBindingSpec, IAMRoleBindingStatus};

/// A cached IAMRoleBinding. Same kind, group, version and metadata (but the resourceVersion,
/// kept in the body) as the binding it was made from; [`CachedBinding::to_binding`] gives that
/// binding back.
#[derive(Clone, Debug)]
pub struct CachedBinding {
    pub metadata: ObjectMeta,
    /// `{"spec": …, "status": …, "resourceVersion": …}`, as serialised by [`BodyRef`].
    body: Box<str>,
}

#[derive(Serialize)]
struct BodyRef<'a> {
    spec: &'a IAMRoleBindingSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: &'a Option<IAMRoleBindingStatus>,
    #[serde(rename = "resourceVersion", skip_serializing_if = "Option::is_none")]
    resource_version: &'a Option<String>,
}

#[derive(Deserialize)]
struct Body {
    spec: IAMRoleBindingSpec,
    #[serde(default)]
    status: Option<IAMRoleBindingStatus>,
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
}

/// The cached spec text does not parse back (it was written by [`CachedBinding::from`], so
/// this is a bug, not bad input).
#[derive(Debug, thiserror::Error)]
#[error("cached IAMRoleBinding {name}: {source}")]
pub struct CacheError {
    name: String,
    #[source]
    source: serde_json::Error,
}

impl From<IAMRoleBinding> for CachedBinding {
    fn from(b: IAMRoleBinding) -> Self {
        let mut metadata = b.metadata;
        // The resourceVersion goes into the body, not the metadata: kube copies the
        // metadata's into the store's and the scheduler's key of every binding. The status
        // write sends it back as its precondition (a pass on a stale copy must not overwrite
        // a newer status).
        let resource_version = metadata.resource_version.take();
        let body = serde_json::to_string(&BodyRef {
            spec: &b.spec,
            status: &b.status,
            resource_version: &resource_version,
        })
        // Serialising our own spec and status types (string keys only) cannot fail.
        .unwrap_or_default();
        CachedBinding {
            metadata,
            body: body.into_boxed_str(),
        }
    }
}

impl CachedBinding {
    /// The binding this was made from.
    pub fn to_binding(&self) -> Result<IAMRoleBinding, CacheError> {
        let body: Body = serde_json::from_str(&self.body).map_err(|source| CacheError {
            name: format!(
                "{}/{}",
                self.metadata.namespace.as_deref().unwrap_or_default(),
                self.metadata.name.as_deref().unwrap_or_default()
            ),
            source,
        })?;
        Ok(IAMRoleBinding {
            metadata: ObjectMeta {
                resource_version: body.resource_version,
                ..self.metadata.clone()
            },
            spec: body.spec,
            status: body.status,
        })
    }
}

/// Parsed as an IAMRoleBinding (so an object that is not one fails exactly as before), then
/// compacted.
impl<'de> Deserialize<'de> for CachedBinding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IAMRoleBinding::deserialize(d).map(CachedBinding::from)
    }
}

impl Resource for CachedBinding {
    type DynamicType = ();
    type Scope = <IAMRoleBinding as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        IAMRoleBinding::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        IAMRoleBinding::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        IAMRoleBinding::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        IAMRoleBinding::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rich_binding() -> IAMRoleBinding {
        serde_json::from_value(json!({
            "apiVersion": "hatrack.dev/v1alpha1", "kind": "IAMRoleBinding",
            "metadata": {"name": "app", "namespace": "team", "generation": 3, "uid": "u-1",
                         "resourceVersion": "42", "finalizers": ["hatrack.dev/cleanup"],
                         "labels": {"tier": "web"},
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "serviceAccounts": ["app", "app-worker"],
                "trust": {"irsa": {"audience": "sts.amazonaws.com"}, "podIdentity": {}},
                "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"],
                // Key order inside a document is kept (serde_json's preserve_order).
                "inlinePolicies": {"z-last": {"Version": "2012-10-17", "Statement": [
                    {"Sid": "b", "Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "*",
                     "Condition": {"NumericLessThan": {"s3:max-keys": 10.5}}}]},
                                   "a-first": {"Statement": [], "Version": "2012-10-17"}},
                "permissionsBoundary": "arn:aws:iam::123456789012:policy/boundary",
                "maxSessionDuration": 7200,
                "description": "the app",
                "tags": {"team": "team", "cost-center": "42"},
                "deletionPolicy": "Retain"
            },
            "status": {
                "roleName": "hatrack-c-team-app", "roleArn": "arn:aws:iam::123456789012:role/x",
                "observedGeneration": 3, "lastSyncTime": "2026-01-02T03:04:05Z",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Synced",
                                "message": "in sync", "observedGeneration": 3,
                                "lastTransitionTime": "2026-01-02T03:04:05Z"}]
            }
        }))
        .unwrap()
    }

    /// IAMRoleBinding itself has no PartialEq (kube's derive); its parts do.
    fn assert_same(a: &IAMRoleBinding, b: &IAMRoleBinding) {
        assert_eq!(a.metadata, b.metadata);
        assert_eq!(a.spec, b.spec);
        assert_eq!(a.status, b.status);
    }

    #[test]
    fn a_cached_binding_gives_back_the_binding_it_was_made_from() {
        let b = rich_binding();
        let cached = CachedBinding::from(b.clone());
        let back = cached.to_binding().unwrap();
        assert_same(&back, &b);
        assert_eq!(
            serde_json::to_string(&back.spec.inline_policies).unwrap(),
            serde_json::to_string(&b.spec.inline_policies).unwrap()
        );
        let mut no_status = b.clone();
        no_status.status = None;
        assert_same(
            &CachedBinding::from(no_status.clone()).to_binding().unwrap(),
            &no_status,
        );
    }

    #[test]
    fn a_cached_binding_is_deserialized_as_an_iamrolebinding() {
        let json = serde_json::to_value(rich_binding()).unwrap();
        let cached: CachedBinding = serde_json::from_value(json.clone()).unwrap();
        assert_same(&cached.to_binding().unwrap(), &rich_binding());
        assert_eq!(cached.meta().name.as_deref(), Some("app"));
        let mut bad = json;
        bad["spec"]["serviceAccounts"] = json!("not a list");
        assert!(serde_json::from_value::<CachedBinding>(bad).is_err());
    }

    #[test]
    fn a_cached_binding_is_the_same_resource_as_an_iamrolebinding() {
        assert_eq!(CachedBinding::kind(&()), IAMRoleBinding::kind(&()));
        assert_eq!(
            CachedBinding::api_version(&()),
            IAMRoleBinding::api_version(&())
        );
        assert_eq!(
            CachedBinding::url_path(&(), Some("ns")),
            IAMRoleBinding::url_path(&(), Some("ns"))
        );
    }

    #[test]
    fn the_cache_keeps_the_spec_and_status_as_text_and_the_metadata_as_it_is() {
        let b = rich_binding();
        let cached = CachedBinding::from(b.clone());
        assert_eq!(cached.metadata.resource_version, None);
        assert_eq!(
            ObjectMeta {
                resource_version: b.metadata.resource_version.clone(),
                ..cached.metadata.clone()
            },
            b.metadata
        );
        let body: serde_json::Value = serde_json::from_str(&cached.body).unwrap();
        assert_eq!(
            body,
            json!({"spec": serde_json::to_value(&b.spec).unwrap(),
                   "status": serde_json::to_value(&b.status).unwrap(),
                   "resourceVersion": "42"})
        );
        // Compact: no whitespace between tokens.
        assert!(!cached.body.contains(": ") && !cached.body.contains(", "));
    }
}
