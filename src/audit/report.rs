//! The PolicyReport of a namespace (`wgpolicyk8s.io/v1alpha2`, the policy working group's
//! format that Kyverno, Kubewarden, Trivy and Policy Reporter read): one result per finding,
//! naming the workload (`resources`), the container and field (`properties`), the rule and the
//! fix (`message`). Findings a StaticKeyExemption excuses are results `skip` naming it (who
//! granted it, why, until when); once it expired they `fail` again and say so. Pure: the
//! writer in [`super::live`] applies what this builds.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::state::{AuditFinding, Entry};
use crate::exemption::State;

pub const GROUP: &str = "wgpolicyk8s.io";
pub const VERSION: &str = "v1alpha2";
pub const KIND: &str = "PolicyReport";
pub const PLURAL: &str = "policyreports";
/// The one report hatrack writes in a namespace.
pub const REPORT_NAME: &str = "hatrack-static-keys";
/// `policy` of every result, and the report's `source`.
pub const POLICY: &str = "hatrack-static-keys";
pub const SOURCE: &str = "hatrack";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "hatrack";
/// Hash of the report's content, so an unchanged report is not written again, even by a
/// freshly started audit.
pub const HASH_ANNOTATION: &str = "hatrack.dev/report-hash";
/// Set when a namespace has more findings than a report holds.
pub const TRUNCATED_ANNOTATION: &str = "hatrack.dev/results-omitted";
/// Results kept in one report: an object must stay well under etcd's 1.5 MiB limit (a result
/// is about 600 bytes); `summary` still counts them all.
pub const MAX_RESULTS: usize = 1000;

pub fn api_resource() -> kube::core::ApiResource {
    kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk(GROUP, VERSION, KIND),
        PLURAL,
    )
}

fn result(e: &Entry, f: &AuditFinding) -> Value {
    let mut properties = serde_json::Map::new();
    if let Some(c) = &f.container {
        properties.insert("container".into(), json!(c));
    }
    properties.insert("path".into(), json!(f.path));
    let mut message = match &f.container {
        Some(c) => format!("container {c}: {}", f.message),
        None => f.message.to_string(),
    };
    let mut outcome = "fail";
    if let Some(x) = &e.exemption {
        let g = &x.exemption;
        // Who, why and until when first: UIs cut long messages.
        let why = match x.state {
            State::Active => {
                outcome = "skip";
                format!(
                    "exempt until {} by StaticKeyExemption {} (granted by {}: {})",
                    g.expires, g.name, g.granted_by, g.reason
                )
            }
            State::Expired => format!(
                "StaticKeyExemption {} (granted by {}: {}) expired at {}; enforced again",
                g.name, g.granted_by, g.reason, g.expires
            ),
        };
        message = format!("{why}; {message}");
        // `properties` is a map of strings in the PolicyReport schema.
        properties.insert("exemption".into(), json!(g.name));
        properties.insert("exemptionState".into(), json!(x.state.as_str()));
        properties.insert("exemptionGrantedBy".into(), json!(g.granted_by));
        properties.insert("exemptionReason".into(), json!(g.reason));
        properties.insert("exemptionExpires".into(), json!(g.expires.to_string()));
    }
    json!({
        "policy": POLICY,
        "rule": f.rule.as_str(),
        "result": outcome,
        "severity": "high",
        "category": "AWS credentials",
        "scored": true,
        "source": SOURCE,
        "message": message,
        "resources": [{
            "apiVersion": e.kind.api_version(),
            "kind": e.kind.as_str(),
            "namespace": &*e.namespace,
            "name": &*e.name,
            "uid": &*e.uid,
        }],
        "properties": properties,
    })
}

fn exempted(e: &Entry) -> bool {
    e.exemption
        .as_ref()
        .is_some_and(|x| x.state == State::Active)
}

/// The report of `namespace` for its workloads with findings (exempted ones included, as
/// `skip`), or `None` when it has none (the report is then deleted: no report means nothing
/// found).
pub fn build(namespace: &str, failing: &[&Entry]) -> Option<Value> {
    let total: usize = failing.iter().map(|e| e.findings.len()).sum();
    if total == 0 {
        return None;
    }
    let skip: usize = failing
        .iter()
        .filter(|e| exempted(e))
        .map(|e| e.findings.len())
        .sum();
    let results: Vec<Value> = failing
        .iter()
        .flat_map(|e| e.findings.iter().map(move |f| result(e, f)))
        .take(MAX_RESULTS)
        .collect();
    let body = json!({
        "scope": {"apiVersion": "v1", "kind": "Namespace", "name": namespace},
        "summary": {"pass": 0, "fail": total - skip, "warn": 0, "error": 0, "skip": skip},
        "results": results,
    });
    let hash = content_hash(&body);
    let mut annotations = serde_json::Map::new();
    annotations.insert(HASH_ANNOTATION.into(), json!(hash));
    if total > MAX_RESULTS {
        annotations.insert(
            TRUNCATED_ANNOTATION.into(),
            json!((total - MAX_RESULTS).to_string()),
        );
    }
    let mut report = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": KIND,
        "metadata": {
            "name": REPORT_NAME,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": annotations,
        },
    });
    if let (Some(r), Value::Object(b)) = (report.as_object_mut(), body) {
        r.extend(b);
    }
    Some(report)
}

/// The hash a built report carries in [`HASH_ANNOTATION`].
pub fn hash_of(report: &Value) -> Option<&str> {
    report
        .pointer("/metadata/annotations")?
        .get(HASH_ANNOTATION)?
        .as_str()
}

fn content_hash(body: &Value) -> String {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::super::kinds::WorkloadKind;
    use super::super::state::{AuditPolicy, AuditState, Workload};
    use super::*;
    use crate::detect::InMemoryView;

    fn state_with(n: usize) -> AuditState {
        let view = InMemoryView::new();
        let body = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": "AKIAZ7Q3EXAMPLEK3Y4N"}]}
        ]}}}});
        let mut state = AuditState::new();
        for i in 0..n {
            let name = format!("app-{i:04}");
            let uid = format!("uid-{i}");
            state.upsert(
                &Workload {
                    kind: WorkloadKind::Deployment,
                    namespace: "team",
                    name: &name,
                    uid: &uid,
                    resource_version: "1",
                    body: &body,
                },
                true,
                &AuditPolicy::default(),
                &view,
            );
        }
        state
    }

    #[test]
    fn a_report_names_workload_container_rule_and_fix() {
        let state = state_with(1);
        let report = build("team", &state.failing_in("team")).unwrap();
        assert_eq!(report["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(report["metadata"]["name"], REPORT_NAME);
        assert_eq!(report["scope"]["kind"], "Namespace");
        assert_eq!(report["summary"]["fail"], 1, "{report:#}");
        let results = report["results"].as_array().unwrap();
        let rules: Vec<&str> = results
            .iter()
            .map(|r| r["rule"].as_str().unwrap())
            .collect();
        assert_eq!(rules, ["env-static-key"]);
        let r = &results[0];
        assert_eq!(r["resources"][0]["kind"], "Deployment");
        assert_eq!(r["resources"][0]["name"], "app-0000");
        assert_eq!(r["resources"][0]["uid"], "uid-0");
        assert_eq!(r["properties"]["container"], "app");
        assert_eq!(r["source"], "hatrack");
        let message = r["message"].as_str().unwrap();
        assert!(message.starts_with("container app: "), "{message}");
        assert!(message.contains("IAMRoleBinding"), "the fix: {message}");
        assert!(!message.contains("AKIAZ7Q3"), "no key in the report");
        assert!(hash_of(&report).is_some());
        assert!(build("other", &state.failing_in("other")).is_none());
    }

    #[test]
    fn the_hash_follows_the_content_and_large_namespaces_are_capped() {
        let a = state_with(2);
        let b = state_with(3);
        let ra = build("team", &a.failing_in("team")).unwrap();
        let ra2 = build("team", &a.failing_in("team")).unwrap();
        let rb = build("team", &b.failing_in("team")).unwrap();
        assert_eq!(hash_of(&ra), hash_of(&ra2));
        assert_ne!(hash_of(&ra), hash_of(&rb));
        let big = state_with(2 * MAX_RESULTS);
        let r = build("team", &big.failing_in("team")).unwrap();
        assert_eq!(r["results"].as_array().unwrap().len(), MAX_RESULTS);
        assert_eq!(r["summary"]["fail"], 2 * MAX_RESULTS);
        assert_eq!(
            r["metadata"]["annotations"][TRUNCATED_ANNOTATION],
            MAX_RESULTS.to_string()
        );
    }

    #[test]
    fn exempted_findings_skip_naming_the_exemption_and_expired_ones_fail_saying_so() {
        let mut state = state_with(2);
        state.advance("2026-06-01T00:00:00Z".parse().unwrap());
        let exemption = |expires: &str| crate::exemption::Exemption {
            name: "legacy-backup".into(),
            namespace: "team".into(),
            kind: Some("Deployment".into()),
            workload: Some("app-0000".into()),
            granted_by: "platform@example.com".into(),
            reason: "TICKET-7 move to IRSA".into(),
            expires: expires.parse().unwrap(),
        };
        state.apply_exemption(exemption("2026-06-01T00:00:30Z"));
        let active = build("team", &state.failing_in("team")).unwrap();
        assert_eq!(active["summary"]["fail"], 1, "{active:#}");
        assert_eq!(active["summary"]["skip"], 1);
        let results = active["results"].as_array().unwrap();
        let skipped = &results[0];
        assert_eq!(skipped["resources"][0]["name"], "app-0000");
        assert_eq!(skipped["result"], "skip");
        let message = skipped["message"].as_str().unwrap();
        for part in [
            "exempt until 2026-06-01T00:00:30Z",
            "StaticKeyExemption legacy-backup",
            "platform@example.com",
            "TICKET-7 move to IRSA",
            "container app: ",
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
        assert_eq!(skipped["properties"]["exemption"], "legacy-backup");
        assert_eq!(skipped["properties"]["exemptionState"], "active");
        assert_eq!(
            skipped["properties"]["exemptionGrantedBy"],
            "platform@example.com"
        );
        assert_eq!(
            skipped["properties"]["exemptionExpires"],
            "2026-06-01T00:00:30Z"
        );
        assert_eq!(results[1]["result"], "fail");
        assert!(results[1]["properties"].get("exemption").is_none());

        state.advance("2026-06-01T00:00:30Z".parse().unwrap());
        let expired = build("team", &state.failing_in("team")).unwrap();
        assert_eq!(expired["summary"]["fail"], 2, "{expired:#}");
        assert_eq!(expired["summary"]["skip"], 0);
        let r = &expired["results"][0];
        assert_eq!(r["result"], "fail");
        assert_eq!(r["properties"]["exemptionState"], "expired");
        let message = r["message"].as_str().unwrap();
        assert!(
            message.contains("StaticKeyExemption legacy-backup")
                && message.contains("expired at 2026-06-01T00:00:30Z"),
            "{message}"
        );
        assert_ne!(hash_of(&active), hash_of(&expired));
        // The report depends on the exemption's state, not on the clock.
        state.advance("2026-06-01T01:00:00Z".parse().unwrap());
        let later = build("team", &state.failing_in("team")).unwrap();
        assert_eq!(hash_of(&later), hash_of(&expired));
    }
}
