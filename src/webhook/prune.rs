//! What of an AdmissionReview the webhook reads: the request's identity, the objects'
//! metadata and the parts of the pod spec the rules look at (containers' names, env, envFrom,
//! args, command, workingDir, volume mounts, the exec commands of lifecycle hooks and probes;
//! volumes; the ServiceAccount; the pod's annotations and labels, which the downward API can
//! expose). Everything else — managedFields, the rest of probes, resources, status — is skipped by the parser without building anything
//! ([`crate::detect::json::parse_pruned`]).
//!
//! Building a full `serde_json::Value` (an IndexMap per object, every key hashed) is about ten
//! times slower than scanning the same bytes, and most of a Deployment's bytes are fields no
//! rule reads. A field that is kept is kept whole, whatever its type, so malformed objects
//! still reach the rules and get their error with the field path.

use bumpalo::Bump;

use crate::detect::json::{self, Json, Want};

const MOUNT: Want = Want::Fields(&[
    ("name", Want::All),
    ("mountPath", Want::All),
    ("subPath", Want::All),
    ("subPathExpr", Want::All),
]);

/// A pod's annotations and labels: the downward API can put them in files and env vars.
const POD_METADATA: Want = Want::Fields(&[("annotations", Want::All), ("labels", Want::All)]);

/// A lifecycle hook or probe: only its exec command is run in the container with its env.
const HANDLER: Want = Want::Fields(&[("exec", Want::Fields(&[("command", Want::All)]))]);

const CONTAINER: Want = Want::Fields(&[
    ("name", Want::All),
    ("env", Want::All),
    ("envFrom", Want::All),
    ("args", Want::All),
    ("command", Want::All),
    ("workingDir", Want::All),
    ("volumeMounts", MOUNT),
    (
        "lifecycle",
        Want::Fields(&[("postStart", HANDLER), ("preStop", HANDLER)]),
    ),
    ("livenessProbe", HANDLER),
    ("readinessProbe", HANDLER),
    ("startupProbe", HANDLER),
]);

/// The fields of a pod spec the rules read, and `$extra` fields besides (one list for a pod
/// spec and a workload's spec, so the two cannot drift apart).
macro_rules! pod_spec {
    ($($extra:expr),* $(,)?) => {
        Want::Fields(&[
            ("serviceAccountName", Want::All),
            ("serviceAccount", Want::All),
            ("containers", CONTAINER),
            ("initContainers", CONTAINER),
            ("ephemeralContainers", CONTAINER),
            ("volumes", Want::All),
            $($extra),*
        ])
    };
}

const POD_SPEC: Want = pod_spec!();

const TEMPLATE: Want = Want::Fields(&[("metadata", POD_METADATA), ("spec", POD_SPEC)]);

/// The spec of any workload kind: a Pod's own fields, `template.spec` (Deployment, Job, …) and
/// `jobTemplate.spec.template.spec` (CronJob). Only the ones present end up in the value.
const WORKLOAD_SPEC: Want = pod_spec!(
    ("template", TEMPLATE),
    (
        "jobTemplate",
        Want::Fields(&[("spec", Want::Fields(&[("template", TEMPLATE)]))]),
    ),
);

const METADATA: Want = Want::Fields(&[
    ("name", Want::All),
    ("generateName", Want::All),
    ("namespace", Want::All),
    ("ownerReferences", Want::All),
    ("annotations", Want::All),
    ("labels", Want::All),
]);

const OBJECT: Want = Want::Fields(&[
    ("apiVersion", Want::All),
    ("kind", Want::All),
    ("metadata", METADATA),
    ("spec", WORKLOAD_SPEC),
]);

const USER_INFO: Want = Want::Fields(&[("username", Want::All)]);

const REQUEST: Want = Want::Fields(&[
    ("uid", Want::All),
    ("kind", Want::All),
    ("resource", Want::All),
    ("subResource", Want::All),
    ("requestKind", Want::All),
    ("requestResource", Want::All),
    ("requestSubResource", Want::All),
    ("name", Want::All),
    ("namespace", Want::All),
    ("operation", Want::All),
    ("userInfo", USER_INFO),
    ("object", OBJECT),
    ("oldObject", OBJECT),
    ("dryRun", Want::All),
]);

/// What an AdmissionReview body is pruned to.
pub const REVIEW: Want = Want::Fields(&[
    ("apiVersion", Want::All),
    ("kind", Want::All),
    ("request", REQUEST),
]);

/// Parses an AdmissionReview body into `arena`, keeping only what [`REVIEW`] asks for.
pub fn parse<'a>(body: &'a [u8], arena: &'a Bump) -> Result<Json<'a>, serde_json::Error> {
    json::parse_pruned(body, REVIEW, arena)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_what_the_rules_read_and_drops_the_rest() {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "operation": "CREATE", "userInfo": {"username": "a", "groups": ["x"]},
                "object": {"kind": "Deployment",
                    "metadata": {"name": "d", "labels": {"a": "b"}, "managedFields": [{"manager": "m"}]},
                    "spec": {"replicas": 3, "template": {"metadata": {"labels": {}}, "spec": {
                        "serviceAccountName": "sa",
                        "containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}],
                            "lifecycle": {"preStop": {"exec": {"command": ["sh"]}}, "postStart": {"httpGet": {"port": 80}}},
                            "readinessProbe": {"exec": {"command": ["cat"]}, "periodSeconds": 5},
                            "livenessProbe": {"httpGet": {"path": "/"}},
                            "resources": {"limits": {}}, "volumeMounts": [{"name": "v", "mountPath": "/p", "readOnly": true}]}],
                        "volumes": [{"name": "v", "secret": {"secretName": "s"}}],
                        "affinity": {}}}},
                    "status": {"replicas": 3}}}
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let arena = Bump::new();
        let pruned = parse(&bytes, &arena).unwrap();
        let expected = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "operation": "CREATE", "userInfo": {"username": "a"},
                "object": {"kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "b"}},
                    "spec": {"template": {"metadata": {"labels": {}}, "spec": {
                        "serviceAccountName": "sa",
                        "containers": [{"name": "c", "env": [{"name": "A", "value": "1"}],
                            "lifecycle": {"preStop": {"exec": {"command": ["sh"]}}, "postStart": {}},
                            "readinessProbe": {"exec": {"command": ["cat"]}},
                            "livenessProbe": {},
                            "volumeMounts": [{"name": "v", "mountPath": "/p"}]}],
                        "volumes": [{"name": "v", "secret": {"secretName": "s"}}]}}}}}
        });
        assert_eq!(pruned, Json::from_value(&expected, &arena));
    }

    #[test]
    fn keeps_malformed_kept_fields_whole_and_rejects_bad_json() {
        let body = br#"{"request":{"object":{"spec":{"containers":"oops","volumes":7}}}}"#;
        let arena = Bump::new();
        let pruned = parse(body, &arena).unwrap();
        let spec = pruned
            .get("request")
            .and_then(|r| r.get("object"))
            .and_then(|o| o.get("spec"))
            .unwrap();
        assert_eq!(spec.get("containers").and_then(Json::as_str), Some("oops"));
        assert_eq!(spec.get("volumes"), Some(&Json::Number));
        assert!(parse(b"{\"request\": ", &arena).is_err());
        assert!(parse(b"{} trailing", &arena).is_err());
    }
}
