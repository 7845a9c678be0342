use serde_json::{Value, json};

use super::*;

const ID: &str = "AKIAZ7Q3EXAMPLEK3Y4N";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKE";

fn deployment(pod_spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "team"},
        "spec": {"template": {"metadata": {}, "spec": pod_spec}}
    })
}

fn eval_with(obj: &Value, refs: &dyn ReferenceView) -> Evaluation {
    evaluate_object(obj, "default", refs)
        .expect("evaluates")
        .expect("is a workload")
}

fn eval(obj: &Value) -> Evaluation {
    eval_with(obj, &NoLookups)
}

fn rules(e: &Evaluation) -> Vec<&'static str> {
    e.findings.iter().map(|f| f.rule.as_str()).collect()
}

fn secret(view: &mut InMemoryView, name: &str, data: &[(&str, &str)]) {
    let facts = classify_data(data.iter().map(|(k, v)| (*k, v.as_bytes())));
    view.insert(RefKind::Secret, "team", name, facts);
}

fn configmap(view: &mut InMemoryView, name: &str, data: &[(&str, &str)]) {
    let facts = classify_data(data.iter().map(|(k, v)| (*k, v.as_bytes())));
    view.insert(RefKind::ConfigMap, "team", name, facts);
}

#[test]
fn denies_credential_env_names_with_literal_or_reference() {
    let obj = deployment(json!({
        "serviceAccountName": "uploader",
        "containers": [{
            "name": "app",
            "env": [
                {"name": "AWS_REGION", "value": "eu-west-1"},
                {"name": "AWS_ACCESS_KEY_ID", "value": "x"},
                {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "aws", "key": "secret"}}},
                {"name": "AWS_SESSION_TOKEN", "valueFrom": {"configMapKeyRef": {"name": "tok", "key": "t"}}},
                {"name": "AWS_SECRET_KEY", "value": "y"},
                {"name": "AWS_ACCESS_KEY", "value": "z"}
            ]
        }]
    }));
    let e = eval(&obj);
    assert_eq!(rules(&e), ["env-static-key"; 5]);
    let f = &e.findings[1];
    assert_eq!(f.path, "spec.template.spec.containers[0].env[2]");
    assert_eq!(f.container.as_deref(), Some("app"));
    assert!(f.message.contains("AWS_SECRET_ACCESS_KEY"), "{}", f.message);
    assert!(
        f.message.contains("Secret 'aws' key 'secret'"),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("ServiceAccount 'uploader'"),
        "{}",
        f.message
    );
    assert!(f.message.contains("IAMRoleBinding"), "{}", f.message);
    assert_eq!(e.object.namespace.as_deref(), Some("team"));
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
fn empty_credential_env_values_are_not_keys() {
    let obj = deployment(json!({"containers": [{"name": "a", "env": [
        {"name": "AWS_ACCESS_KEY_ID", "value": ""},
        {"name": "AWS_SECRET_ACCESS_KEY"}
    ]}]}));
    assert!(eval(&obj).findings.is_empty());
}

#[test]
fn role_based_and_harmless_aws_env_is_allowed() {
    let obj = deployment(json!({
        "containers": [{"name": "a", "env": [
            {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::123456789012:role/app"},
            {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
            {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://169.254.170.23/v1/credentials"},
            {"name": "AWS_REGION", "value": "us-east-1"},
            {"name": "AWS_S3_BUCKET", "value": "logs"},
            {"name": "AWS_ENDPOINT_URL", "value": "https://s3.us-east-1.amazonaws.com"},
            {"name": "AWS_CONFIG_FILE", "value": "/etc/aws/config"},
            {"name": "HELP", "value": "set aws_access_key_id and aws_secret_access_key in your profile"}
        ]}],
        "volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {"audience": "sts.amazonaws.com", "path": "token"}}]}}]
    }));
    let e = eval(&obj);
    assert!(e.findings.is_empty(), "{:#?}", e.findings);
    assert!(e.warnings.is_empty());
}

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
fn finds_literal_keys_in_env_values_of_other_names() {
    let obj = deployment(json!({"containers": [{"name": "a", "env": [
        {"name": "S3_URL", "value": format!("https://{ID}:{SECRET}@s3.amazonaws.com/b")},
        {"name": "CONFIG", "value": format!("storage:\n  s3:\n    secret_access_key: {SECRET}\n")}
    ]}]}));
    assert_eq!(
        rules(&eval(&obj)),
        ["literal-access-key", "literal-secret-key"]
    );
}

#[test]
fn judges_referenced_values_by_their_facts() {
    let mut view = InMemoryView::new();
    secret(&mut view, "s3", &[("id", ID), ("bucket", "logs")]);
    configmap(
        &mut view,
        "cfg",
        &[(
            "thanos.yaml",
            &format!("type: S3\nconfig:\n  access_key: {ID}\n"),
        )],
    );
    let obj = deployment(json!({"containers": [{"name": "a", "env": [
        {"name": "S3_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "id"}}},
        {"name": "BUCKET", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "bucket"}}},
        {"name": "OBJSTORE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "thanos.yaml"}}}
    ]}]}));
    let e = eval_with(&obj, &view);
    assert_eq!(
        rules(&e),
        [
            "credentials-in-referenced-secret",
            "credentials-in-referenced-configmap"
        ]
    );
    assert!(e.findings[0].message.contains("an AWS access key id"));
    // With lookups off the same harmless names pass silently.
    assert!(eval(&obj).findings.is_empty());
    assert!(eval(&obj).warnings.is_empty());
}

#[test]
fn env_from_with_credential_named_keys_is_denied_case_insensitively() {
    let mut view = InMemoryView::new();
    secret(
        &mut view,
        "aws",
        &[("aws_access_key_id", "whatever"), ("region", "x")],
    );
    secret(&mut view, "prefixed", &[("ACCESS_KEY_ID", "whatever")]);
    secret(
        &mut view,
        "material",
        &[(
            "credentials",
            &format!("[default]\naws_access_key_id={ID}\n"),
        )],
    );
    secret(&mut view, "clean", &[("password", "hunter2")]);
    let obj = deployment(json!({"containers": [{"name": "a", "envFrom": [
        {"secretRef": {"name": "aws"}},
        {"prefix": "AWS_", "secretRef": {"name": "prefixed"}},
        {"secretRef": {"name": "material"}},
        {"secretRef": {"name": "clean"}},
        {"configMapRef": {"name": "gone", "optional": true}}
    ]}]}));
    let e = eval_with(&obj, &view);
    assert_eq!(
        rules(&e),
        [
            "envfrom-credential-keys",
            "envfrom-credential-keys",
            "credentials-in-referenced-secret"
        ]
    );
    assert!(e.findings[1].message.contains("AWS_ACCESS_KEY_ID"));
    assert!(e.warnings.is_empty(), "optional missing ConfigMap is fine");
}

#[test]
fn forty_character_non_aws_secrets_are_allowed() {
    // Django SECRET_KEY, a reCAPTCHA secret, a JWT signing key, `openssl rand -base64 30`.
    let mut view = InMemoryView::new();
    secret(
        &mut view,
        "app",
        &[
            ("SECRET_KEY", SECRET),
            ("RECAPTCHA_SECRET_KEY", SECRET),
            ("jwt-secret-key", SECRET),
            ("secret_key", SECRET),
        ],
    );
    let obj = deployment(json!({"containers": [{"name": "a",
        "args": [format!("--jwt-secret-key={SECRET}")],
        "env": [
            {"name": "DJANGO_SETTINGS", "value": format!("SECRET_KEY = '{SECRET}'\nDEBUG = False\n")},
            {"name": "SECRET_KEY", "valueFrom": {"secretKeyRef": {"name": "app", "key": "SECRET_KEY"}}},
            {"name": "RECAPTCHA", "valueFrom": {"secretKeyRef": {"name": "app", "key": "RECAPTCHA_SECRET_KEY"}}}
        ],
        "envFrom": [{"secretRef": {"name": "app"}}],
        "volumeMounts": [{"name": "app", "mountPath": "/etc/app"}]
    }], "volumes": [{"name": "app", "secret": {"secretName": "app"}}]}));
    let e = eval_with(&obj, &view);
    assert!(e.findings.is_empty(), "{:#?}", e.findings);
    // The same secret with evidence that it is AWS's is a key.
    let obj = deployment(json!({"containers": [{"name": "a",
        "args": [format!("--s3-secret-key={SECRET}")],
        "env": [{"name": "CFG", "value": format!("access_key: minio\nsecret_key: {SECRET}\n")}]
    }]}));
    assert_eq!(
        rules(&eval(&obj)),
        ["literal-secret-key", "literal-secret-key"]
    );
}

#[test]
fn names_that_merely_contain_a_credential_name_need_key_material() {
    let obj = deployment(json!({"containers": [{"name": "a", "env": [
        {"name": "DISABLE_AWS_SESSION_TOKEN", "value": "true"},
        {"name": "USE_AWS_ACCESS_KEY_ID", "value": "false"},
        {"name": "TF_VAR_aws_secret_access_key", "value": SECRET}
    ]}]}));
    let e = eval(&obj);
    assert_eq!(rules(&e), ["env-static-key"]);
    assert!(
        e.findings[0]
            .message
            .contains("TF_VAR_aws_secret_access_key")
    );
    let mut view = InMemoryView::new();
    configmap(&mut view, "flags", &[("DISABLE_AWS_SESSION_TOKEN", "true")]);
    let obj = deployment(
        json!({"containers": [{"name": "a", "envFrom": [{"configMapRef": {"name": "flags"}}]}]}),
    );
    assert!(eval_with(&obj, &view).findings.is_empty());
}

#[test]
fn empty_values_under_aws_names_in_a_readable_secret_are_allowed() {
    // A chart's own Secret, rendered with IRSA values: the AWS names are there, empty.
    let mut view = InMemoryView::new();
    secret(
        &mut view,
        "chart",
        &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")],
    );
    let obj = deployment(json!({"containers": [{"name": "a",
        "env": [
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "chart", "key": "AWS_ACCESS_KEY_ID"}}},
            {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "chart", "key": "AWS_SECRET_ACCESS_KEY"}}}
        ],
        "envFrom": [{"secretRef": {"name": "chart"}}]
    }]}));
    let e = eval_with(&obj, &view);
    assert!(e.findings.is_empty(), "{:#?}", e.findings);
    // With lookups off the names still decide.
    assert_eq!(rules(&eval(&obj)), ["env-static-key", "env-static-key"]);
}

#[test]
fn optional_credential_references_to_missing_secrets_set_nothing() {
    // The EBS CSI driver: AWS_* from an optional secretKeyRef to a Secret that IRSA installs
    // never create.
    let obj = deployment(json!({"containers": [{"name": "ebs-plugin", "env": [
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "aws-secret", "key": "key_id", "optional": true}}},
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "aws-secret", "key": "access_key", "optional": true}}}
    ]}]}));
    // Live (the webhook's cache sees the whole cluster): allowed, nothing to say.
    let live = InMemoryView::new();
    let e = eval_with(&obj, &live);
    assert!(e.findings.is_empty() && e.warnings.is_empty(), "{e:#?}");
    // Offline (`check`: the Secret is not in the input): a warning, not a finding.
    let mut offline = InMemoryView::new();
    offline.set_partial(true);
    let e = eval_with(&obj, &offline);
    assert!(e.findings.is_empty(), "{:#?}", e.findings);
    assert_eq!(e.warnings.len(), 1);
    assert!(
        e.warnings[0]
            .message
            .contains("optional Secret team/aws-secret is not in the input")
    );
    // Lookups off (whether the Secret exists is not knowable): judged as offline, a warning.
    let e = eval(&obj);
    assert!(e.findings.is_empty(), "{:#?}", e.findings);
    assert_eq!(e.warnings.len(), 1, "{:#?}", e.warnings);
    assert!(
        e.warnings[0]
            .message
            .contains("optional Secret team/aws-secret is not read (lookups are off)"),
        "{:#?}",
        e.warnings
    );
    // A reference that is not optional is still judged by the name.
    let required = deployment(json!({"containers": [{"name": "ebs-plugin", "env": [
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "aws-secret", "key": "access_key"}}}
    ]}]}));
    assert_eq!(rules(&eval(&required)), ["env-static-key"]);
    // When the Secret exists, the name decides again; a missing optional key sets nothing.
    let mut found = InMemoryView::new();
    secret(&mut found, "aws-secret", &[("key_id", ID)]);
    assert_eq!(rules(&eval_with(&obj, &found)), ["env-static-key"]);
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
    let got: Vec<_> = e
        .findings
        .iter()
        .map(|f| (f.rule.as_str(), f.path.as_str()))
        .collect();
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
    let got: Vec<_> = e
        .findings
        .iter()
        .map(|f| (f.rule.as_str(), f.path.as_str()))
        .collect();
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

#[test]
fn credentials_file_paths_are_compared_as_the_process_opens_them() {
    let mut view = InMemoryView::new();
    secret(
        &mut view,
        "aws",
        &[(
            "credentials",
            &format!("[default]\naws_access_key_id={ID}\n"),
        )],
    );
    let pod = |env: Value, working_dir: &str| {
        deployment(
            json!({"containers": [{"name": "a", "env": env, "workingDir": working_dir,
            "volumeMounts": [{"name": "creds", "mountPath": "/etc/aws/"}]}],
            "volumes": [{"name": "creds", "secret": {"secretName": "aws"}}]}),
        )
    };
    for (env, wd) in [
        (
            json!([{"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "/etc//aws/credentials"}]),
            "",
        ),
        (
            json!([{"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "/etc/./aws/credentials"}]),
            "",
        ),
        (
            json!([{"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "/tmp/../etc/aws/credentials"}]),
            "",
        ),
        (
            json!([{"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "credentials"}]),
            "/etc/aws",
        ),
        (
            json!([{"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "../aws/credentials"}]),
            "/etc/app",
        ),
        (
            json!([{"name": "DIR", "value": "/etc/aws"}, {"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "$(DIR)/credentials"}]),
            "",
        ),
        (
            // The SDKs read keys from the config file too; here it is the Secret's key.
            json!([{"name": "AWS_CONFIG_FILE", "value": "/etc/aws//credentials"}]),
            "",
        ),
    ] {
        let e = eval_with(&pod(env.clone(), wd), &view);
        let rules: Vec<_> = rules(&e);
        assert!(
            rules.contains(&"shared-credentials-file"),
            "{env} in {wd:?}: {:#?}",
            e.findings
        );
    }
    // Paths outside the mount are not in it.
    let e = eval_with(
        &pod(
            json!([{"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "/etc/aws/../awsx/credentials"}]),
            "",
        ),
        &view,
    );
    assert!(
        !rules(&e).contains(&"shared-credentials-file"),
        "{:#?}",
        e.findings
    );
}

#[test]
fn missing_referenced_secret_warns_and_is_judged_by_names() {
    let view = InMemoryView::new();
    let obj = deployment(json!({"containers": [{"name": "a",
        "env": [
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "db", "key": "id"}}}
        ],
        "envFrom": [{"secretRef": {"name": "db"}}]
    }]}));
    let e = eval_with(&obj, &view);
    assert_eq!(rules(&e), ["env-static-key"]);
    assert_eq!(e.warnings.len(), 1, "one warning per unreadable object");
    assert!(
        e.warnings[0]
            .message
            .contains("Secret team/db could not be read")
    );
}

#[test]
fn mounted_secret_with_credentials_is_denied_and_items_restrict_keys() {
    let mut view = InMemoryView::new();
    secret(
        &mut view,
        "cloud-credentials",
        &[
            (
                "cloud",
                &format!("[default]\naws_access_key_id={ID}\naws_secret_access_key={SECRET}\n"),
            ),
            ("ca.crt", "-----BEGIN CERTIFICATE-----"),
        ],
    );
    let obj = deployment(json!({
        "containers": [
            {"name": "velero", "volumeMounts": [{"name": "creds", "mountPath": "/credentials"}]},
            {"name": "sidecar", "volumeMounts": [{"name": "creds", "mountPath": "/c"}, {"name": "ca", "mountPath": "/ca"}]}
        ],
        "volumes": [
            {"name": "creds", "secret": {"secretName": "cloud-credentials"}},
            {"name": "ca", "secret": {"secretName": "cloud-credentials", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"name": "proj", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}, {"secret": {"name": "cloud-credentials"}}]}}
        ]
    }));
    let e = eval_with(&obj, &view);
    let got: Vec<_> = e
        .findings
        .iter()
        .map(|f| (f.rule.as_str(), f.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "credentials-in-referenced-secret",
                "spec.template.spec.volumes[0]"
            ),
            (
                "credentials-in-referenced-secret",
                "spec.template.spec.volumes[2].projected.sources[1]"
            ),
        ]
    );
    assert!(
        e.findings[0]
            .message
            .contains("containers 'velero', 'sidecar'"),
        "{}",
        e.findings[0].message
    );
    assert!(
        e.findings[1]
            .message
            .contains("not mounted by any container")
    );
}

#[test]
fn shared_credentials_file_in_unreadable_secret_is_denied() {
    let obj = deployment(json!({
        "containers": [{"name": "velero",
            "env": [{"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "/credentials/cloud"}],
            "volumeMounts": [{"name": "creds", "mountPath": "/credentials"}]}],
        "volumes": [{"name": "creds", "secret": {"secretName": "cloud-credentials"}}]
    }));
    let e = eval(&obj);
    assert_eq!(rules(&e), ["shared-credentials-file"]);
    assert_eq!(
        e.findings[0].path,
        "spec.template.spec.containers[0].env[0]"
    );
    assert!(e.findings[0].message.contains("cannot read"));
}

#[test]
fn shared_credentials_file_in_a_clean_secret_is_allowed() {
    let mut view = InMemoryView::new();
    secret(
        &mut view,
        "aws-config",
        &[("cloud", "[default]\ncredential_process = /bin/get-creds\n")],
    );
    let obj = deployment(json!({
        "containers": [{"name": "a",
            "env": [{"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "/credentials/cloud"}],
            "volumeMounts": [{"name": "creds", "mountPath": "/credentials/"}]}],
        "volumes": [{"name": "creds", "secret": {"secretName": "aws-config"}}]
    }));
    assert!(eval_with(&obj, &view).findings.is_empty());
}

#[test]
fn shared_credentials_file_outside_any_secret_mount_is_not_judged() {
    let obj = deployment(json!({
        "containers": [{"name": "a",
            "env": [{"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "/credentialsX/cloud"}],
            "volumeMounts": [{"name": "creds", "mountPath": "/credentials"}, {"name": "tmp", "mountPath": "/credentialsX"}]}],
        "volumes": [{"name": "creds", "secret": {"secretName": "c"}}, {"name": "tmp", "emptyDir": {}}]
    }));
    assert!(eval(&obj).findings.is_empty());
}

#[test]
fn secret_mounted_at_the_default_credentials_location_counts_as_a_credentials_file() {
    let obj = deployment(json!({
        "containers": [{"name": "a", "volumeMounts": [{"name": "aws", "mountPath": "/root/.aws"}, {"name": "cfg", "mountPath": "/home/app/.aws/"}]}],
        "volumes": [{"name": "aws", "secret": {"secretName": "aws"}}, {"name": "cfg", "configMap": {"name": "aws-config"}}]
    }));
    let e = eval(&obj);
    assert_eq!(rules(&e), ["shared-credentials-file"]);
    assert_eq!(
        e.findings[0].path,
        "spec.template.spec.containers[0].volumeMounts[0]"
    );
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

#[test]
fn default_credentials_files_are_found_through_items_subpath_and_home() {
    let mut view = InMemoryView::new();
    let file = format!("[default]\naws_access_key_id={ID}\naws_secret_access_key={SECRET}\n");
    secret(&mut view, "bundle", &[("aws", &file), ("other", "x")]);
    let pod = |mount: Value, items: Value| {
        deployment(
            json!({"containers": [{"name": "a", "volumeMounts": [mount]}],
            "volumes": [{"name": "v", "secret": {"secretName": "bundle", "items": items}}]}),
        )
    };
    // items[].path at .aws/credentials under a mount at a home directory.
    let e = eval_with(
        &pod(
            json!({"name": "v", "mountPath": "/home/app"}),
            json!([{"key": "aws", "path": ".aws/credentials"}]),
        ),
        &view,
    );
    assert!(rules(&e).contains(&"shared-credentials-file"), "{e:#?}");
    // subPath into the volume: only the part below it is mounted.
    let e = eval_with(
        &pod(
            json!({"name": "v", "mountPath": "/root", "subPath": "home"}),
            json!([{"key": "aws", "path": "home/.aws/config"}]),
        ),
        &view,
    );
    assert!(rules(&e).contains(&"shared-credentials-file"), "{e:#?}");
    // The same item outside the subPath is not mounted there.
    let e = eval_with(
        &pod(
            json!({"name": "v", "mountPath": "/root", "subPath": "home"}),
            json!([{"key": "aws", "path": "elsewhere/.aws/credentials"}]),
        ),
        &view,
    );
    assert!(!rules(&e).contains(&"shared-credentials-file"), "{e:#?}");
    // A clean key at the credentials path is no credentials file.
    let e = eval_with(
        &pod(
            json!({"name": "v", "mountPath": "/root"}),
            json!([{"key": "other", "path": ".aws/credentials"}]),
        ),
        &view,
    );
    assert!(e.findings.is_empty(), "{e:#?}");
}

#[test]
fn unknowable_volumes_at_the_sdks_paths_warn_with_what_is_known() {
    let pod = |env: Value, path: &str| {
        deployment(json!({"containers": [{"name": "a", "env": env,
            "volumeMounts": [{"name": "v", "mountPath": path}]}],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "home"}}]}))
    };
    for (env, path) in [
        (json!([]), "/root/.aws"),
        (json!([]), "/root"),
        (json!([{"name": "HOME", "value": "/data"}]), "/data"),
        (
            json!([{"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "/creds/file"}]),
            "/creds",
        ),
    ] {
        let e = eval(&pod(env.clone(), path));
        assert!(e.findings.is_empty(), "{env} {path}: {e:#?}");
        assert_eq!(e.warnings.len(), 1, "{env} {path}: {e:#?}");
        assert!(e.warnings[0].message.contains("persistentVolumeClaim"));
    }
    // Elsewhere, nothing.
    let e = eval(&pod(
        json!([{"name": "HOME", "value": "/home/app"}]),
        "/root",
    ));
    assert!(e.warnings.is_empty(), "{e:#?}");
}

#[test]
fn annotations_and_labels_count_only_when_the_downward_api_exposes_them() {
    let mut obj = deployment(json!({"containers": [{"name": "a",
        "env": [{"name": "K", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['k']"}}}]}]}));
    obj["spec"]["template"]["metadata"] = json!({"annotations": {"k": ID, "note": ID}});
    assert_eq!(rules(&eval(&obj)), ["literal-access-key"]);
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = json!([]);
    assert!(eval(&obj).findings.is_empty());
    obj["spec"]["template"]["spec"]["volumes"] = json!([{"name": "d", "downwardAPI": {"items": [
        {"path": "all", "fieldRef": {"fieldPath": "metadata.annotations"}}]}}]);
    assert_eq!(
        rules(&eval(&obj)),
        ["literal-access-key", "literal-access-key"]
    );
}
