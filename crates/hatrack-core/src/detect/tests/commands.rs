//! `command`, `args`, lifecycle hooks and probes, and the kubelet's `$(VAR)` expansion.

use serde_json::{Value, json};

use super::*;

#[test]
fn finds_keys_in_args_and_command_of_every_container_kind() {
    let obj = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "initContainers": [{"name": "init", "command": ["sh", "-c", format!("aws configure set aws_access_key_id {ID}")]}],
            "containers": [{"name": "main", "args": ["--s3", format!("s3://{ID}:{SECRET}@bucket/x")]}],
            "ephemeralContainers": [{"name": "debug", "args": [format!("--s3-secret-key={SECRET}")]}]
        }
    });
    let e = eval(&obj);
    let got: Vec<_> = e
        .findings
        .iter()
        .map(|f| {
            (
                f.rule.as_str(),
                f.container.as_deref().unwrap_or(""),
                f.path.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("literal-access-key", "main", "spec.containers[0].args[1]"),
            (
                "literal-access-key",
                "init",
                "spec.initContainers[0].command[2]"
            ),
            (
                "literal-secret-key",
                "debug",
                "spec.ephemeralContainers[0].args[0]"
            ),
        ]
    );
    assert_eq!(e.object.namespace.as_deref(), Some("default"));
    for f in &e.findings {
        assert!(!f.message.contains(SECRET), "secret leaked: {}", f.message);
        assert!(!f.message.contains(ID), "full id leaked: {}", f.message);
    }
}

#[test]
fn finds_keys_in_lifecycle_hooks_and_probe_exec_commands() {
    let obj = deployment(json!({"containers": [{"name": "a",
        "lifecycle": {
            "postStart": {"exec": {"command": ["sh", "-c", format!("aws configure set aws_access_key_id {ID}")]}},
            "preStop": {"exec": {"command": ["sh", "-c", format!("AWS_SECRET_ACCESS_KEY={SECRET} aws s3 cp /state s3://b/")]}}
        },
        "livenessProbe": {"exec": {"command": ["check", format!("--key={ID}")]}},
        "readinessProbe": {"exec": {"command": ["check", format!("--s3-secret-key={SECRET}")]}},
        "startupProbe": {"exec": {"command": ["check", format!("s3://{ID}:x@b")]}, "periodSeconds": 3}
    }]}));
    let e = eval(&obj);
    let got = rules_and_paths(&e);
    let p = "spec.template.spec.containers[0]";
    assert_eq!(
        got,
        [
            (
                "literal-access-key",
                &*format!("{p}.lifecycle.postStart.exec.command[2]")
            ),
            (
                "literal-secret-key",
                &*format!("{p}.lifecycle.preStop.exec.command[2]")
            ),
            (
                "literal-access-key",
                &*format!("{p}.livenessProbe.exec.command[1]")
            ),
            (
                "literal-secret-key",
                &*format!("{p}.readinessProbe.exec.command[1]")
            ),
            (
                "literal-access-key",
                &*format!("{p}.startupProbe.exec.command[1]")
            ),
        ]
    );
    // A malformed exec command is an error with its path.
    let bad = deployment(
        json!({"containers": [{"name": "a", "readinessProbe": {"exec": {"command": "ls"}}}]}),
    );
    let err = evaluate_object(&bad, "default", &NoLookups).unwrap_err();
    assert!(
        err.to_string()
            .contains("containers[0].readinessProbe.exec.command"),
        "{err}"
    );
}

#[test]
fn finds_keys_assembled_by_the_kubelets_var_expansion() {
    let (id_a, id_b) = ID.split_at(10);
    let (s_a, s_b) = SECRET.split_at(17);
    let obj = deployment(json!({"containers": [{"name": "a",
        "env": [
            {"name": "P1", "value": id_a},
            {"name": "P2", "value": id_b},
            {"name": "S1", "value": s_a},
            {"name": "S2", "value": format!("{s_b}")},
            {"name": "SK", "value": "$(S1)$(S2)"},
            {"name": "BOTO", "value": "[default]\naws_access_key_id=$(P1)$(P2)\n"},
            {"name": "ESCAPED", "value": "$$(P1)$$(P2)"}
        ],
        "command": ["sh", "-c", "AWS_SECRET_ACCESS_KEY=$(SK) exec app"],
        "args": ["--s3-secret-key=$(S1)$(S2)"],
        "readinessProbe": {"exec": {"command": ["probe", "--id=$(P1)$(P2)"]}},
        "lifecycle": {"preStop": {"exec": {"command": ["stop", "--id=$(P1)$(P2)"]}}}
    }]}));
    let e = eval(&obj);
    let got = rules_and_paths(&e);
    let p = "spec.template.spec.containers[0]";
    assert_eq!(
        got,
        [
            ("literal-access-key", &*format!("{p}.env[5]")),
            ("literal-secret-key", &*format!("{p}.command[2]")),
            ("literal-secret-key", &*format!("{p}.args[0]")),
            (
                "literal-access-key",
                &*format!("{p}.readinessProbe.exec.command[1]")
            ),
        ],
        "{:#?}",
        e.findings
    );
    assert!(
        e.findings[0]
            .message
            .contains("after the kubelet's $(VAR) expansion")
    );
    assert!(!e.findings[1].message.contains(SECRET));
    // A credential name whose value is assembled by expansion: by its name, as always.
    let obj = deployment(json!({"containers": [{"name": "a", "env": [
        {"name": "A", "value": "abc"},
        {"name": "USE_AWS_SECRET_ACCESS_KEY", "value": "$(A)"},
        {"name": "S1", "value": s_a}, {"name": "S2", "value": s_b},
        {"name": "TF_VAR_aws_secret_access_key", "value": "$(S1)$(S2)"}
    ]}]}));
    assert_eq!(rules(&eval(&obj)), ["env-static-key"]);
}

#[test]
fn var_expansion_is_bounded_and_warns() {
    // Each var doubles the last: 2^40 bytes if expanded without bounds.
    let mut env = vec![json!({"name": "V0", "value": "x".repeat(64)})];
    for i in 1..40 {
        env.push(json!({"name": format!("V{i}"), "value": format!("$(V{})$(V{})", i - 1, i - 1)}));
    }
    let obj = deployment(json!({"containers": [{"name": "a", "env": env, "args": ["$(V39)"]}]}));
    let e = eval(&obj);
    assert!(e.findings.is_empty());
    assert_eq!(e.warnings.len(), 1);
    assert!(
        e.warnings[0]
            .message
            .contains("exceeds what Linux passes to a process")
    );
}

fn evaluate_custom(obj: &Value) -> Option<Evaluation> {
    let templates = templates::PodTemplates::default();
    let group = templates::group_of(obj["apiVersion"].as_str().unwrap_or(""));
    let arena = bumpalo::Bump::new();
    let json = Json::from_value(obj, &arena);
    let target = Target {
        kind: obj["kind"].as_str().unwrap_or(""),
        namespace: "team",
        name: "x",
        object: &json,
    };
    evaluate_with(&target, group, &templates, &NoLookups).expect("evaluates")
}

#[test]
fn keys_in_the_scripts_custom_kinds_run_are_found() {
    // A Tekton step's `script` and an Argo script template's `source` are run like `command`.
    let task = json!({"apiVersion": "tekton.dev/v1", "kind": "Task", "metadata": {"name": "upload"},
        "spec": {"steps": [{"name": "s", "image": "amazon/aws-cli",
            "script": format!("#!/bin/sh\nexport AWS_ACCESS_KEY_ID={ID}\naws s3 cp x s3://b\n")}]}});
    let workflow = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
        "metadata": {"name": "w"},
        "spec": {"templates": [{"name": "t", "script": {"image": "python", "command": ["python"],
            "source": format!("import boto3\nboto3.client('s3', aws_secret_access_key='{SECRET}')\n")}}]}});
    let task_eval = evaluate_custom(&task).expect("a workload");
    assert_eq!(rules(&task_eval), ["literal-access-key"]);
    assert!(
        task_eval.findings[0].path.ends_with(".script"),
        "{:?}",
        task_eval.findings
    );
    let workflow_eval = evaluate_custom(&workflow).expect("a workload");
    assert_eq!(rules(&workflow_eval), ["literal-secret-key"]);
    assert!(
        workflow_eval.findings[0].path.ends_with(".source"),
        "{:?}",
        workflow_eval.findings
    );
    // A script without keys is clean.
    let mut clean = task.clone();
    clean["spec"]["steps"][0]["script"] = json!("aws s3 cp x s3://b");
    assert!(
        evaluate_custom(&clean)
            .expect("a workload")
            .findings
            .is_empty()
    );
}

#[test]
fn a_kind_named_like_a_builtin_in_another_group_is_not_judged_as_one() {
    // A Volcano Job has no spec.template; judged as a batch Job it would be "malformed".
    let volcano = json!({"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
        "metadata": {"name": "train"},
        "spec": {"tasks": [{"name": "t", "template": {"spec": {"containers": [{"name": "c"}]}}}]}});
    assert!(evaluate_custom(&volcano).is_none());
    // The built-in Job is judged.
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"containers": [{"name": "c",
            "env": [{"name": "AWS_ACCESS_KEY_ID", "value": ID}]}]}}}});
    assert_eq!(
        rules(&evaluate_custom(&job).expect("a workload")),
        ["env-static-key"]
    );
}

#[test]
fn inline_tekton_task_specs_and_kruise_workloads_are_judged() {
    let run = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": "r"},
        "spec": {"pipelineSpec": {"tasks": [{"name": "build", "taskSpec": {"steps": [
            {"name": "push", "image": "amazon/aws-cli",
             "env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]}]}}],
            "finally": [{"name": "notify", "taskSpec": {"steps": [{"name": "n", "image": "curl",
                "script": format!("curl https://x/?k={ID}")}]}}]}}});
    let e = evaluate_custom(&run).expect("a workload");
    assert_eq!(rules(&e), ["env-static-key", "literal-access-key"]);
    let task_run = json!({"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": "t"},
        "spec": {"taskSpec": {"steps": [{"name": "s", "image": "x", "args": [ID]}]}}});
    assert_eq!(
        rules(&evaluate_custom(&task_run).expect("a workload")),
        ["literal-access-key"]
    );
    let kruise = json!({"apiVersion": "apps.kruise.io/v1beta1", "kind": "StatefulSet", "metadata": {"name": "s"},
        "spec": {"template": {"spec": {"containers": [{"name": "c",
            "env": [{"name": "AWS_ACCESS_KEY_ID", "value": ID}]}]}}}});
    assert_eq!(
        rules(&evaluate_custom(&kruise).expect("a workload")),
        ["env-static-key"]
    );
}
