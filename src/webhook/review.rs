//! From the bytes of an AdmissionReview to the AdmissionReview to answer: parsing, exemptions,
//! modes, UPDATE handling. Pure (no I/O), so it is tested and fuzzed without a server.

use std::collections::HashSet;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde_json::Value;

use crate::detect::{self, Evaluation, Mode, ReferenceView, RuleId, Target, Verdict};

/// The webhook's global settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub mode: Mode,
    pub exempt_namespaces: HashSet<String>,
}

/// A body that is not an AdmissionReview (answered with HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is not an AdmissionReview: {0}")]
    NotAReview(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
}

impl ReviewError {
    /// Low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReviewError::NotJson(_) => "not_json",
            ReviewError::NotAReview(_) => "not_a_review",
            ReviewError::NoRequest => "no_request",
        }
    }
}

/// How a review was decided, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `enforce`, `warn`, `audit`; `controller` for children created by a built-in controller
    /// (judged as audit); `exempt` / `skipped` when nothing was judged.
    pub mode: &'static str,
    pub verdict: Verdict,
    /// Rules of the findings (all findings, old ones included), one entry per rule.
    pub rules: Vec<RuleId>,
    /// Number of findings.
    pub findings: usize,
    /// Summaries of the findings, for the log.
    pub summaries: Vec<String>,
    /// The object could not be read.
    pub unreadable: Option<String>,
}

impl Outcome {
    fn new(uid: &str, kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            uid: uid.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            mode: "skipped",
            verdict: Verdict::Allow,
            rules: Vec::new(),
            findings: 0,
            summaries: Vec::new(),
            unreadable: None,
        }
    }
}

/// Answers one AdmissionReview body.
pub fn review(
    body: &[u8],
    policy: &Policy,
    refs: &dyn ReferenceView,
) -> Result<(AdmissionReview<DynamicObject>, Outcome), ReviewError> {
    let parsed: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return unreadable_review(body, &e, policy, refs),
    };
    let req: AdmissionRequest<DynamicObject> =
        parsed.try_into().map_err(|_| ReviewError::NoRequest)?;
    Ok(decide_request(&req, policy, refs))
}

/// A body that did not parse as `AdmissionReview<DynamicObject>`: if it still names a request
/// uid, answer that request (the object cannot be read); otherwise it is not a review.
fn unreadable_review(
    body: &[u8],
    err: &serde_json::Error,
    policy: &Policy,
    refs: &dyn ReferenceView,
) -> Result<(AdmissionReview<DynamicObject>, Outcome), ReviewError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ReviewError::NotJson(e.to_string()))?;
    let Some(request) = value.get("request").filter(|r| r.is_object()) else {
        return Err(
            if value.get("request").is_none() && value.get("kind").is_some() {
                ReviewError::NoRequest
            } else {
                ReviewError::NotAReview(err.to_string())
            },
        );
    };
    let Some(uid) = request.get("uid").and_then(Value::as_str) else {
        return Err(ReviewError::NotAReview(err.to_string()));
    };
    let s = |key: &str| request.get(key).and_then(Value::as_str).unwrap_or("");
    let kind = request
        .pointer("/kind/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    let namespace = s("namespace");
    let mut outcome = Outcome::new(uid, kind, namespace, s("name"));
    let message = format!("hatrack: cannot read the reviewed request: {err}");
    let mode = mode_for(namespace, policy, refs);
    outcome.mode = mode.as_str();
    outcome.unreadable = Some(message.clone());
    let mut response = AdmissionResponse::invalid(&message);
    response.uid = uid.to_string();
    if let Some(api_version) = value.get("apiVersion").and_then(Value::as_str) {
        response.types.api_version = api_version.to_string();
    }
    if mode == Mode::Audit {
        response.allowed = true;
    } else {
        outcome.verdict = Verdict::Deny;
    }
    Ok((response.into_review(), outcome))
}

/// The identities of Kubernetes' built-in workload controllers (kube-controller-manager, with
/// and without `--use-service-account-credentials`).
const CONTROLLER_USERS: [&str; 8] = [
    "system:kube-controller-manager",
    "system:serviceaccount:kube-system:deployment-controller",
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:serviceaccount:kube-system:statefulset-controller",
    "system:serviceaccount:kube-system:daemon-set-controller",
    "system:serviceaccount:kube-system:job-controller",
    "system:serviceaccount:kube-system:cronjob-controller",
    "system:serviceaccount:kube-system:replication-controller",
];

/// A Pod, ReplicaSet or Job that a built-in controller creates for its owner (a Deployment's
/// ReplicaSets and Pods, a CronJob's Jobs). The owner was judged when it was created or
/// updated; judging its children again would stop an existing violator from scaling or
/// rolling out, so their findings are only logged and counted.
fn created_by_controller(req: &AdmissionRequest<DynamicObject>, obj: &DynamicObject) -> bool {
    let user = req.user_info.username.as_deref().unwrap_or("");
    CONTROLLER_USERS.contains(&user)
        && obj
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true))
}

fn mode_for(namespace: &str, policy: &Policy, refs: &dyn ReferenceView) -> Mode {
    refs.namespace_mode(namespace).unwrap_or(policy.mode)
}

fn target<'a>(
    kind: &'a str,
    namespace: &'a str,
    req_name: &'a str,
    obj: &'a DynamicObject,
) -> Target<'a> {
    let name = if req_name.is_empty() {
        obj.metadata
            .name
            .as_deref()
            .or(obj.metadata.generate_name.as_deref())
            .unwrap_or("")
    } else {
        req_name
    };
    Target {
        kind,
        namespace,
        name,
        object: &obj.data,
    }
}

/// Decides a parsed request.
pub fn decide_request(
    req: &AdmissionRequest<DynamicObject>,
    policy: &Policy,
    refs: &dyn ReferenceView,
) -> (AdmissionReview<DynamicObject>, Outcome) {
    let kind = req.kind.kind.as_str();
    let namespace = req
        .namespace
        .as_deref()
        .or_else(|| {
            req.object
                .as_ref()
                .and_then(|o| o.metadata.namespace.as_deref())
        })
        .unwrap_or("default");
    let mut outcome = Outcome::new(&req.uid, kind, namespace, &req.name);
    let response = AdmissionResponse::from(req);

    if matches!(req.operation, Operation::Delete | Operation::Connect)
        || !detect::is_workload_kind(kind)
    {
        return (response.into_review(), outcome);
    }
    if policy.exempt_namespaces.contains(namespace) {
        outcome.mode = "exempt";
        return (response.into_review(), outcome);
    }
    let mode = mode_for(namespace, policy, refs);
    outcome.mode = mode.as_str();

    let Some(obj) = req.object.as_ref() else {
        return cannot_read(
            response,
            outcome,
            mode,
            format!("{kind} {namespace}/{}: the request has no object", req.name),
        );
    };
    let mode = if created_by_controller(req, obj) {
        outcome.mode = "controller";
        Mode::Audit
    } else {
        mode
    };
    let new_target = target(kind, namespace, &req.name, obj);
    outcome.name = new_target.name.to_string();
    let eval = match detect::evaluate(&new_target, refs) {
        Ok(Some(eval)) => eval,
        Ok(None) => return (response.into_review(), outcome),
        Err(e) => return cannot_read(response, outcome, mode, e.to_string()),
    };
    // The old object of an UPDATE: if it cannot be read, every finding counts as new.
    let old: Option<Evaluation> = match (&req.operation, req.old_object.as_ref()) {
        (Operation::Update, Some(old)) => {
            detect::evaluate(&target(kind, namespace, &req.name, old), refs)
                .ok()
                .flatten()
        }
        _ => None,
    };
    let decision = detect::decide(mode, &eval, old.as_ref());

    let mut rules: Vec<RuleId> = eval.findings.iter().map(|f| f.rule).collect();
    rules.sort();
    rules.dedup();
    outcome.rules = rules;
    outcome.findings = eval.findings.len();
    outcome.summaries = eval.findings.iter().map(|f| f.summary()).collect();
    outcome.verdict = decision.verdict;

    let mut response = response;
    if !eval.findings.is_empty() {
        let ids: Vec<&str> = outcome.rules.iter().map(|r| r.as_str()).collect();
        response
            .audit_annotations
            .insert("static-keys".into(), ids.join(","));
    }
    if !decision.warnings.is_empty() {
        response.warnings = Some(decision.warnings);
    }
    if let Some(message) = decision.message {
        response = forbid(response, message);
    }
    (response.into_review(), outcome)
}

fn forbid(response: AdmissionResponse, message: String) -> AdmissionResponse {
    let mut response = response.deny(&message);
    response.result.code = 403;
    response.result.reason = "Forbidden".into();
    response
}

fn cannot_read(
    response: AdmissionResponse,
    mut outcome: Outcome,
    mode: Mode,
    detail: String,
) -> (AdmissionReview<DynamicObject>, Outcome) {
    let message = format!("hatrack: cannot read the object: {detail}");
    outcome.unreadable = Some(message.clone());
    if mode == Mode::Audit {
        return (response.into_review(), outcome);
    }
    outcome.verdict = Verdict::Deny;
    let mut response = response.deny(&message);
    response.result.code = 400;
    response.result.reason = "BadRequest".into();
    (response.into_review(), outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::NoLookups;
    use serde_json::json;

    fn policy(mode: Mode) -> Policy {
        Policy {
            mode,
            exempt_namespaces: ["kube-system".to_string()].into(),
        }
    }

    fn review_body(op: &str, ns: &str, object: Value, old: Option<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "name": "app",
                "namespace": ns,
                "operation": op,
                "userInfo": {"username": "alice"},
                "object": object,
                "oldObject": old,
                "dryRun": false
            }
        }))
        .unwrap()
    }

    fn deployment(env: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": "team"},
               "spec": {"template": {"spec": {"serviceAccountName": "app", "containers": [{"name": "c", "env": env}]}}}})
    }

    fn response(body: &[u8], mode: Mode) -> (Value, Outcome) {
        let (review, outcome) = review(body, &policy(mode), &NoLookups).expect("a review");
        (serde_json::to_value(review).unwrap(), outcome)
    }

    #[test]
    fn denies_deployment_with_credential_env_and_echoes_the_uid() {
        let body = review_body(
            "CREATE",
            "team",
            deployment(json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}])),
            None,
        );
        let (r, outcome) = response(&body, Mode::Enforce);
        assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(r["kind"], "AdmissionReview");
        assert_eq!(r["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(r["response"]["allowed"], false);
        assert_eq!(r["response"]["status"]["code"], 403);
        let msg = r["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("[env-static-key]") && msg.contains("ServiceAccount 'app'"),
            "{msg}"
        );
        assert_eq!(outcome.rules, [RuleId::EnvStaticKey]);
        assert_eq!(
            r["response"]["auditAnnotations"]["static-keys"],
            "env-static-key"
        );
    }

    #[test]
    fn warn_mode_allows_with_warnings_and_audit_mode_allows_silently() {
        let body = review_body(
            "CREATE",
            "team",
            deployment(json!([{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}])),
            None,
        );
        let (r, _) = response(&body, Mode::Warn);
        assert_eq!(r["response"]["allowed"], true);
        assert_eq!(r["response"]["warnings"].as_array().unwrap().len(), 1);
        let (r, outcome) = response(&body, Mode::Audit);
        assert_eq!(r["response"]["allowed"], true);
        assert!(r["response"].get("warnings").is_none());
        assert_eq!(outcome.mode, "audit");
        assert_eq!(outcome.findings, 1);
    }

    #[test]
    fn update_of_an_existing_violator_is_allowed_with_warnings() {
        let env = json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]);
        let mut new = deployment(env.clone());
        new["spec"]["replicas"] = json!(5);
        let body = review_body("UPDATE", "team", new, Some(deployment(env)));
        let (r, outcome) = response(&body, Mode::Enforce);
        assert_eq!(r["response"]["allowed"], true, "{r}");
        assert!(
            r["response"]["warnings"][0]
                .as_str()
                .unwrap()
                .contains("already present")
        );
        assert_eq!(outcome.verdict, Verdict::Warn);
    }

    #[test]
    fn update_adding_a_key_is_denied() {
        let old = deployment(json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]));
        let new = deployment(
            json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}, {"name": "AWS_SECRET_ACCESS_KEY", "value": "y"}]),
        );
        let (r, _) = response(
            &review_body("UPDATE", "team", new, Some(old)),
            Mode::Enforce,
        );
        assert_eq!(r["response"]["allowed"], false);
        let msg = r["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("AWS_SECRET_ACCESS_KEY") && !msg.contains("env AWS_ACCESS_KEY_ID"),
            "{msg}"
        );
    }

    #[test]
    fn children_created_by_builtin_controllers_are_audited_not_denied() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "app-7d9f", "namespace": "team", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-7d9f", "uid": "1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]}]}});
        let body = |pod: &Value, user: &str| {
            let mut v: Value =
                serde_json::from_slice(&review_body("CREATE", "team", pod.clone(), None)).unwrap();
            v["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
            v["request"]["userInfo"] = json!({"username": user});
            serde_json::to_vec(&v).unwrap()
        };
        let (r, outcome) = response(
            &body(
                &pod,
                "system:serviceaccount:kube-system:replicaset-controller",
            ),
            Mode::Enforce,
        );
        assert_eq!(r["response"]["allowed"], true);
        assert_eq!(outcome.mode, "controller");
        assert_eq!(outcome.findings, 1);
        // The same Pod from a person, or from the controller without an owner, is denied.
        let (r, _) = response(&body(&pod, "alice"), Mode::Enforce);
        assert_eq!(r["response"]["allowed"], false);
        pod["metadata"]["ownerReferences"] = json!([]);
        let (r, _) = response(
            &body(
                &pod,
                "system:serviceaccount:kube-system:replicaset-controller",
            ),
            Mode::Enforce,
        );
        assert_eq!(r["response"]["allowed"], false);
    }

    #[test]
    fn exempt_namespaces_and_deletes_are_allowed_without_judging() {
        let bad = deployment(json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]));
        let (r, outcome) = response(
            &review_body("CREATE", "kube-system", bad.clone(), None),
            Mode::Enforce,
        );
        assert_eq!(r["response"]["allowed"], true);
        assert_eq!(outcome.mode, "exempt");
        let (r, _) = response(
            &review_body("DELETE", "team", Value::Null, Some(bad)),
            Mode::Enforce,
        );
        assert_eq!(r["response"]["allowed"], true);
    }

    #[test]
    fn unreadable_object_is_denied_with_its_uid_or_allowed_in_audit() {
        let body = review_body(
            "CREATE",
            "team",
            json!({"kind": "Deployment", "metadata": {"name": 7}}),
            None,
        );
        let (r, outcome) = response(&body, Mode::Enforce);
        assert_eq!(r["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(r["response"]["allowed"], false);
        assert!(
            r["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot read")
        );
        assert!(outcome.unreadable.is_some());
        let (r, _) = response(&body, Mode::Audit);
        assert_eq!(r["response"]["allowed"], true);

        let body = review_body("CREATE", "team", deployment(json!("not a list")), None);
        let (r, _) = response(&body, Mode::Enforce);
        assert_eq!(r["response"]["allowed"], false);
        assert!(
            r["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("env: expected an array")
        );
    }

    #[test]
    fn bodies_that_are_not_reviews_are_errors() {
        assert!(matches!(
            review(b"nope", &policy(Mode::Enforce), &NoLookups),
            Err(ReviewError::NotJson(_))
        ));
        assert!(matches!(
            review(
                b"{\"kind\":\"AdmissionReview\"}",
                &policy(Mode::Enforce),
                &NoLookups
            ),
            Err(ReviewError::NoRequest)
        ));
        assert!(matches!(
            review(b"[1,2]", &policy(Mode::Enforce), &NoLookups),
            Err(ReviewError::NotAReview(_))
        ));
        assert!(matches!(
            review(
                b"{\"request\":{\"uid\":5}}",
                &policy(Mode::Enforce),
                &NoLookups
            ),
            Err(ReviewError::NotAReview(_))
        ));
    }
}
