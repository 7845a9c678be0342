use super::*;
use crate::detect::NoLookups;
use serde_json::{Value, json};

fn policy(mode: Mode) -> Policy {
    Policy {
        mode,
        exempt_namespaces: ["kube-system".to_string()].into(),
        templates: Default::default(),
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

/// A view holding StaticKeyExemptions (and nothing else).
struct Exempting(Vec<crate::exemption::Exemption>);

impl ReferenceView for Exempting {
    fn lookup(&self, _: detect::RefKind, _: &str, _: &str) -> detect::Lookup {
        detect::Lookup::Disabled
    }
    fn exemption(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        now: jiff::Timestamp,
    ) -> Option<(crate::exemption::Exemption, ExemptionState)> {
        crate::exemption::applicable(&self.0, kind, namespace, name, now)
            .map(|a| (a.exemption.clone(), a.state))
    }
}

fn exempting(expires: &str) -> Exempting {
    Exempting(vec![crate::exemption::Exemption {
        name: "legacy-app".into(),
        namespace: "team".into(),
        kind: Some("Deployment".into()),
        workload: Some("app".into()),
        granted_by: "alice@platform".into(),
        reason: "TICKET-7 IRSA migration".into(),
        expires: expires.parse().unwrap(),
    }])
}

#[test]
fn an_active_exemption_admits_with_a_warning_naming_who_why_and_until_when() {
    let body = review_body(
        "CREATE",
        "team",
        deployment(json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}])),
        None,
    );
    let view = exempting("2999-01-01T00:00:00Z");
    let (review, outcome) = review(&body, &policy(Mode::Enforce), &view).unwrap();
    let r = serde_json::to_value(review).unwrap();
    assert_eq!(r["response"]["allowed"], true);
    let warning = r["response"]["warnings"][0].as_str().unwrap();
    for part in [
        "2999-01-01T00:00:00Z",
        "legacy-app",
        "alice@platform",
        "TICKET-7 IRSA migration",
        "1 static-key finding",
    ] {
        assert!(warning.contains(part), "{warning}");
    }
    assert_eq!(outcome.mode, "exemption");
    assert_eq!(
        outcome.exemption,
        Some(("legacy-app".into(), ExemptionState::Active))
    );
    assert_eq!(outcome.rules, [RuleId::EnvStaticKey]);
}

#[test]
fn an_expired_exemption_is_enforced_and_the_denial_says_it_expired() {
    let body = review_body(
        "CREATE",
        "team",
        deployment(json!([{"name": "AWS_ACCESS_KEY_ID", "value": "x"}])),
        None,
    );
    let view = exempting("2020-01-01T00:00:00Z");
    let (review, outcome) = review(&body, &policy(Mode::Enforce), &view).unwrap();
    let r = serde_json::to_value(review).unwrap();
    assert_eq!(r["response"]["allowed"], false);
    let msg = r["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("StaticKeyExemption legacy-app")
            && msg.contains("expired at 2020-01-01T00:00:00Z"),
        "{msg}"
    );
    assert_eq!(outcome.verdict, Verdict::Deny);
    assert_eq!(
        outcome.exemption,
        Some(("legacy-app".into(), ExemptionState::Expired))
    );
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
