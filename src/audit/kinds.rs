//! The workload kinds the audit watches, and which objects it judges: each running workload
//! once, at the object a person edits (a Deployment, not its ReplicaSets and Pods).

use kube::api::ObjectMeta;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

/// A kind the audit lists and watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    ReplicationController,
    Job,
    CronJob,
    Pod,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 8] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::ReplicaSet,
        WorkloadKind::ReplicationController,
        WorkloadKind::Job,
        WorkloadKind::CronJob,
        WorkloadKind::Pod,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::ReplicationController => "ReplicationController",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::Pod => "Pod",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            WorkloadKind::Deployment
            | WorkloadKind::StatefulSet
            | WorkloadKind::DaemonSet
            | WorkloadKind::ReplicaSet => "apps/v1",
            WorkloadKind::Job | WorkloadKind::CronJob => "batch/v1",
            WorkloadKind::ReplicationController | WorkloadKind::Pod => "v1",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::DaemonSet => "daemonsets",
            WorkloadKind::ReplicaSet => "replicasets",
            WorkloadKind::ReplicationController => "replicationcontrollers",
            WorkloadKind::Job => "jobs",
            WorkloadKind::CronJob => "cronjobs",
            WorkloadKind::Pod => "pods",
        }
    }

    pub fn api_resource(self) -> ApiResource {
        let (group, version) = match self.api_version().split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version()),
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, self.as_str()),
            self.plural(),
        )
    }

    pub fn from_kind(kind: &str) -> Option<WorkloadKind> {
        WorkloadKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

/// The kind of an object's controller (its owner with `controller: true`).
pub fn controller_kind(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.kind.as_str())
}

/// Whether the audit judges this object itself. An object whose controller is a workload the
/// audit also judges is skipped: its pod template is the owner's, so the finding is reported
/// once, at the object a person can fix. Completed Pods (`phase`) no longer run anything.
pub fn judged_itself(kind: WorkloadKind, controller: Option<&str>, phase: Option<&str>) -> bool {
    match kind {
        WorkloadKind::Pod => {
            if matches!(phase, Some("Succeeded" | "Failed")) {
                return false;
            }
            !matches!(
                controller,
                Some("ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicationController")
            )
        }
        WorkloadKind::ReplicaSet => controller != Some("Deployment"),
        WorkloadKind::Job => controller != Some("CronJob"),
        _ => true,
    }
}

/// [`judged_itself`] for an object as listed: metadata and its body's `status.phase`.
pub fn judged_itself_object(kind: WorkloadKind, meta: &ObjectMeta, body: &Value) -> bool {
    let phase = body.pointer("/status/phase").and_then(Value::as_str);
    judged_itself(kind, controller_kind(meta), phase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn owned_objects_are_judged_at_their_owner() {
        use WorkloadKind::*;
        assert!(!judged_itself(ReplicaSet, Some("Deployment"), None));
        assert!(judged_itself(ReplicaSet, None, None));
        assert!(!judged_itself(Job, Some("CronJob"), None));
        assert!(judged_itself(Job, None, None));
        assert!(!judged_itself(Pod, Some("ReplicaSet"), None));
        assert!(!judged_itself(Pod, Some("DaemonSet"), None));
        // A Pod of an operator's custom resource is judged: nothing else would see it.
        assert!(judged_itself(Pod, Some("Workflow"), None));
        assert!(judged_itself(Pod, None, Some("Running")));
        assert!(!judged_itself(Pod, None, Some("Succeeded")));
        assert!(judged_itself(Deployment, Some("Something"), None));

        let meta: ObjectMeta = serde_json::from_value(json!({"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "u", "controller": false},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "v", "controller": true}
        ]}))
        .unwrap();
        assert_eq!(controller_kind(&meta), Some("ReplicaSet"));
        assert!(!judged_itself_object(Pod, &meta, &json!({})));
        assert!(judged_itself_object(
            Pod,
            &ObjectMeta::default(),
            &json!({"status": {"phase": "Pending"}})
        ));
    }

    #[test]
    fn api_resources_name_the_right_endpoints() {
        let r = WorkloadKind::CronJob.api_resource();
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.plural.as_str()),
            ("batch", "v1", "cronjobs")
        );
        let r = WorkloadKind::Pod.api_resource();
        assert_eq!((r.group.as_str(), r.api_version.as_str()), ("", "v1"));
        for k in WorkloadKind::ALL {
            assert_eq!(WorkloadKind::from_kind(k.as_str()), Some(k));
            assert!(crate::detect::is_workload_kind(k.as_str()));
        }
    }
}
