//! Env vars and `envFrom`: credential names, literal values, referenced Secrets and ConfigMaps.

use serde_json::json;

use super::*;

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
fn other_sdks_names_and_aws_named_secrets_are_credentials_too() {
    // The Ruby SDK's AMAZON_ names are read like AWS_ ones; a literal under a name that says
    // it is AWS's secret key, in its shape, is one (as the same key in a ConfigMap would be).
    let obj = deployment(json!({"containers": [{"name": "app", "env": [
        {"name": "AMAZON_ACCESS_KEY_ID", "value": "x"},
        {"name": "AMAZON_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "AWS_S3_SECRET_ACCESS_KEY", "value": SECRET},
        // Not AWS's by its name: Django's SECRET_KEY has the same shape.
        {"name": "SECRET_KEY", "value": SECRET},
        // AWS's name, not a key's shape.
        {"name": "AWS_S3_SECRET_ACCESS_KEY_FILE", "value": "/run/secrets/s3"}
    ]}]}));
    let e = eval(&obj);
    assert_eq!(
        rules_and_paths(&e),
        [
            ("env-static-key", "spec.template.spec.containers[0].env[0]"),
            ("env-static-key", "spec.template.spec.containers[0].env[1]"),
            ("env-static-key", "spec.template.spec.containers[0].env[2]"),
        ]
    );
    assert!(
        e.findings[2].message.contains("AWS_S3_SECRET_ACCESS_KEY")
            && !e.findings[2].message.contains(SECRET),
        "{}",
        e.findings[2].message
    );
}

#[test]
fn a_longer_name_from_a_readable_value_counts_only_when_the_value_is_key_material() {
    // DISABLE_AWS_SESSION_TOKEN ends in a credential name; its value "true" is not one, read
    // from a ConfigMap as it would be written as a literal. AWS_SESSION_TOKEN itself counts
    // whatever the value.
    let mut view = InMemoryView::default();
    configmap(&mut view, "flags", &[("disable", "true"), ("token", "abc")]);
    let obj = deployment(json!({"containers": [{"name": "app", "env": [
        {"name": "DISABLE_AWS_SESSION_TOKEN", "valueFrom": {"configMapKeyRef": {"name": "flags", "key": "disable"}}},
        {"name": "DISABLE_AWS_SESSION_TOKEN_TOO", "value": "true"},
        {"name": "AWS_SESSION_TOKEN", "valueFrom": {"configMapKeyRef": {"name": "flags", "key": "token"}}}
    ]}]}));
    let e = eval_with(&obj, &view);
    assert_eq!(
        rules_and_paths(&e),
        [("env-static-key", "spec.template.spec.containers[0].env[2]")]
    );
    // Key material under the longer name, from a readable Secret: counted.
    let mut view = InMemoryView::default();
    secret(&mut view, "ci", &[("id", ID)]);
    let obj = deployment(json!({"containers": [{"name": "app", "env": [
        {"name": "TF_VAR_aws_access_key_id", "valueFrom": {"secretKeyRef": {"name": "ci", "key": "id"}}}
    ]}]}));
    assert_eq!(rules(&eval_with(&obj, &view)), ["env-static-key"]);
}
