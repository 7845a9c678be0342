//! `command`, `args`, lifecycle hooks and probes, and the kubelet's `$(VAR)` expansion.

use serde_json::json;

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
