//! Tests of the static-key rules, through the public entry points; one file per job of
//! `workload` (env, commands, credentials files, volumes), workload-level tests here.

use serde_json::{Value, json};

use super::*;

mod commands;
mod env;
mod files;
mod volumes;

pub(super) const ID: &str = "AKIAZ7Q3EXAMPLEK3Y4N";
pub(super) const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKE";

pub(super) fn deployment(pod_spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "team"},
        "spec": {"template": {"metadata": {}, "spec": pod_spec}}
    })
}

pub(super) fn eval_with(obj: &Value, refs: &dyn ReferenceView) -> Evaluation {
    evaluate_object(obj, "default", refs)
        .expect("evaluates")
        .expect("is a workload")
}

pub(super) fn eval(obj: &Value) -> Evaluation {
    eval_with(obj, &NoLookups)
}

pub(super) fn rules(e: &Evaluation) -> Vec<&'static str> {
    e.findings.iter().map(|f| f.rule.as_str()).collect()
}

/// (rule, field path) of each finding.
pub(super) fn rules_and_paths(e: &Evaluation) -> Vec<(&'static str, &str)> {
    e.findings
        .iter()
        .map(|f| (f.rule.as_str(), f.path.as_str()))
        .collect()
}

pub(super) fn secret(view: &mut InMemoryView, name: &str, data: &[(&str, &str)]) {
    let facts = classify_data(data.iter().map(|(k, v)| (*k, v.as_bytes())));
    view.insert(RefKind::Secret, "team", name, facts);
}

pub(super) fn configmap(view: &mut InMemoryView, name: &str, data: &[(&str, &str)]) {
    let facts = classify_data(data.iter().map(|(k, v)| (*k, v.as_bytes())));
    view.insert(RefKind::ConfigMap, "team", name, facts);
}

#[test]
fn names_the_default_service_account_when_unset() {
    let obj = deployment(
        json!({"containers": [{"name": "a", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": ID}]}]}),
    );
    let e = eval(&obj);
    assert_eq!(e.service_account, "default");
    assert!(e.findings[0].message.contains("ServiceAccount 'default'"));
    // One finding per env entry: the literal id is not reported a second time.
    assert_eq!(e.findings.len(), 1);
}

#[test]
fn all_workload_kinds_are_read_from_their_pod_template() {
    let pod_spec = json!({"containers": [{"name": "a", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]}]});
    let template = json!({"template": {"spec": pod_spec}});
    for (kind, spec, path) in [
        ("Pod", pod_spec.clone(), "spec.containers[0].env[0]"),
        (
            "Deployment",
            template.clone(),
            "spec.template.spec.containers[0].env[0]",
        ),
        (
            "StatefulSet",
            template.clone(),
            "spec.template.spec.containers[0].env[0]",
        ),
        (
            "DaemonSet",
            template.clone(),
            "spec.template.spec.containers[0].env[0]",
        ),
        (
            "ReplicaSet",
            template.clone(),
            "spec.template.spec.containers[0].env[0]",
        ),
        (
            "ReplicationController",
            template.clone(),
            "spec.template.spec.containers[0].env[0]",
        ),
        (
            "Job",
            template.clone(),
            "spec.template.spec.containers[0].env[0]",
        ),
        (
            "CronJob",
            json!({"jobTemplate": {"spec": template.clone()}}),
            "spec.jobTemplate.spec.template.spec.containers[0].env[0]",
        ),
    ] {
        let obj = json!({"kind": kind, "metadata": {"name": "x"}, "spec": spec});
        let e = eval(&obj);
        assert_eq!(e.findings.len(), 1, "{kind}");
        assert_eq!(e.findings[0].path, path, "{kind}");
        assert_eq!(e.object.kind, kind);
    }
}

#[test]
fn other_kinds_are_not_judged() {
    let obj = json!({"kind": "Secret", "metadata": {"name": "x"}, "stringData": {"id": ID}});
    assert_eq!(evaluate_object(&obj, "default", &NoLookups), Ok(None));
}

#[test]
fn malformed_workloads_are_errors_with_the_field_path() {
    for (spec, needle) in [
        (
            json!({"containers": "nope"}),
            "spec.template.spec.containers: expected an array, found a string",
        ),
        (
            json!({"containers": [{"name": "a", "env": [{"name": 5}]}]}),
            "containers[0].env[0].name: expected a string, found a number",
        ),
        (
            json!({"containers": [{"name": "a", "args": [1]}]}),
            "containers[0].args[0]: expected a string",
        ),
        (
            json!({"containers": [7]}),
            "containers[0]: expected a mapping",
        ),
        (
            json!({"volumes": [{"name": "v", "secret": {"secretName": "s", "optional": "yes"}}]}),
            "volumes[0].secret.optional: expected a boolean",
        ),
        (
            json!({"containers": [{"name": "a", "env": [{"name": "X", "valueFrom": {"secretKeyRef": []}}]}]}),
            "valueFrom.secretKeyRef: expected a mapping",
        ),
    ] {
        let err = evaluate_object(&deployment(spec), "default", &NoLookups).unwrap_err();
        assert!(err.to_string().contains(needle), "{err} !~ {needle}");
    }
    let err = evaluate_object(
        &json!({"kind": "Deployment", "metadata": {"name": "d"}, "spec": {}}),
        "default",
        &NoLookups,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Deployment d: has no pod template at spec.template"
    );
    let err =
        evaluate_object(&json!({"kind": "Pod", "spec": 3}), "default", &NoLookups).unwrap_err();
    assert!(
        err.to_string()
            .contains("spec: expected a mapping, found a number"),
        "{err}"
    );
}

#[test]
fn update_denies_only_new_findings_and_warns_about_old_ones() {
    let old = deployment(json!({"containers": [{"name": "a", "image": "v1", "env": [
        {"name": "AWS_ACCESS_KEY_ID", "value": "x"}
    ]}]}));
    let scaled = deployment(json!({"containers": [{"name": "a", "image": "v2", "env": [
        {"name": "FOO", "value": "bar"},
        {"name": "AWS_ACCESS_KEY_ID", "value": "x"}
    ]}]}));
    let worse = deployment(json!({"containers": [{"name": "a", "env": [
        {"name": "AWS_ACCESS_KEY_ID", "value": "x"},
        {"name": "AWS_SECRET_ACCESS_KEY", "value": "y"}
    ]}]}));
    let old_e = eval(&old);
    let d = decide(Mode::Enforce, &eval(&scaled), Some(&old_e));
    assert_eq!(d.verdict, Verdict::Warn);
    assert!(
        d.warnings[0].contains("already present"),
        "{:?}",
        d.warnings
    );

    let d = decide(Mode::Enforce, &eval(&worse), Some(&old_e));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.denied.len(), 1);
    assert!(
        d.message
            .as_deref()
            .unwrap()
            .contains("AWS_SECRET_ACCESS_KEY")
    );
    assert!(
        !d.message
            .as_deref()
            .unwrap()
            .contains("env AWS_ACCESS_KEY_ID sets")
    );
    assert_eq!(d.warnings.len(), 1);
}

#[test]
fn modes_decide_deny_warn_and_audit() {
    let e = eval(&deployment(
        json!({"containers": [{"name": "a", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]}]}),
    ));
    let d = decide(Mode::Enforce, &e, None);
    assert!(!d.allowed());
    let msg = d.message.unwrap();
    assert!(msg.contains("Deployment team/app"), "{msg}");
    assert!(msg.contains("[env-static-key]"), "{msg}");
    let d = decide(Mode::Warn, &e, None);
    assert_eq!(d.verdict, Verdict::Warn);
    assert_eq!(d.warnings.len(), 1);
    let d = decide(Mode::Audit, &e, None);
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(d.warnings.is_empty());
    let clean = eval(&deployment(json!({"containers": [{"name": "a"}]})));
    assert_eq!(decide(Mode::Enforce, &clean, None).verdict, Verdict::Allow);
}

#[test]
fn modes_parse_from_label_values() {
    assert_eq!("warn".parse::<Mode>(), Ok(Mode::Warn));
    assert!("off".parse::<Mode>().is_err());
}

#[test]
fn rule_ids_are_unique_and_kebab_case() {
    let ids: std::collections::HashSet<_> = RuleId::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(ids.len(), RuleId::ALL.len());
    assert!(
        ids.iter()
            .all(|id| id.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
    );
}
