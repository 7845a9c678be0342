//! Shared credentials and config files: named by the env, or at the SDKs' default location.

use serde_json::{Value, json};

use super::*;

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
fn shared_credentials_file_in_unreadable_secret_is_denied() {
    // The Java SDK v1 reads AWS_CREDENTIAL_PROFILES_FILE for the same file.
    for var in [
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CREDENTIAL_PROFILES_FILE",
    ] {
        let obj = deployment(json!({
            "containers": [{"name": "velero",
                "env": [{"name": var, "value": "/credentials/cloud"}],
                "volumeMounts": [{"name": "creds", "mountPath": "/credentials"}]}],
            "volumes": [{"name": "creds", "secret": {"secretName": "cloud-credentials"}}]
        }));
        let e = eval(&obj);
        assert_eq!(rules(&e), ["shared-credentials-file"], "{var}");
        assert_eq!(
            e.findings[0].path,
            "spec.template.spec.containers[0].env[0]"
        );
        assert!(e.findings[0].message.contains("cannot read"));
    }
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
    for (mount, items, found) in [
        // items[].path at .aws/credentials under a mount at a home directory.
        (
            json!({"name": "v", "mountPath": "/home/app"}),
            json!([{"key": "aws", "path": ".aws/credentials"}]),
            true,
        ),
        // subPath into the volume: only the part below it is mounted.
        (
            json!({"name": "v", "mountPath": "/root", "subPath": "home"}),
            json!([{"key": "aws", "path": "home/.aws/config"}]),
            true,
        ),
        // The same item outside the subPath is not mounted there.
        (
            json!({"name": "v", "mountPath": "/root", "subPath": "home"}),
            json!([{"key": "aws", "path": "elsewhere/.aws/credentials"}]),
            false,
        ),
    ] {
        let e = eval_with(&pod(mount.clone(), items.clone()), &view);
        assert_eq!(
            rules(&e).contains(&"shared-credentials-file"),
            found,
            "{mount} {items}: {e:#?}"
        );
    }
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
