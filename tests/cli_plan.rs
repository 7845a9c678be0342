//! The `hatrack plan` command-line contract: output shape, exit codes, messages.

use std::process::{Command, Output};

use serde_json::Value;

const CLUSTER: [&str; 4] = [
    "--cluster-name=prod-eu",
    "--cluster-region=eu-west-1",
    "--account-id=111122223333",
    "--oidc-issuer=https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE",
];

fn hatrack(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hatrack"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args(args);
    // Flags come from the command line only, never from the developer's environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("HATRACK_") || k == "TOKIO_WORKER_THREADS" {
            cmd.env_remove(k);
        }
    }
    match stdin {
        None => cmd.output().expect("hatrack runs"),
        Some(text) => {
            use std::io::Write;
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().expect("hatrack runs");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        }
    }
}

fn plan(paths: &[&str]) -> Output {
    let mut args = vec!["plan"];
    args.extend(CLUSTER);
    args.extend(paths);
    hatrack(&args, None)
}

/// The roles `plan` prints for `paths`, which it must plan with exit code 0.
fn planned(paths: &[&str]) -> Vec<Value> {
    roles_of(plan(paths))
}

/// The roles a `plan` that exited 0 printed.
fn roles_of(out: Output) -> Vec<Value> {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn plans_every_binding_in_a_directory() {
    let roles = planned(&["examples"]);
    assert_eq!(roles.len(), 2);
    let names: Vec<&str> = roles.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["exporter", "reader"]);
    let reader = &roles[1];
    for key in [
        "namespace",
        "name",
        "roleName",
        "path",
        "arn",
        "assumeRolePolicy",
        "inlinePolicies",
        "managedPolicyArns",
        "permissionsBoundary",
        "maxSessionDuration",
        "description",
        "tags",
    ] {
        assert!(reader.get(key).is_some(), "missing {key} in {reader}");
    }
    assert_eq!(reader["path"], "/hatrack/");
    assert!(
        reader["arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:iam::111122223333:role/hatrack/payments-reader-")
    );
    assert_eq!(
        reader["assumeRolePolicy"]["Statement"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        reader["inlinePolicies"]["put-receipts"]["Statement"][0]["Action"][0],
        "s3:PutObject"
    );
    assert_eq!(reader["tags"]["hatrack.dev/namespace"], "payments");
    // The cluster is known by its ARN: in the ownership tags and in Pod Identity trust.
    let arn = "arn:aws:eks:eu-west-1:111122223333:cluster/prod-eu";
    assert_eq!(reader["tags"]["hatrack.dev/cluster-arn"], arn);
    assert!(
        reader["assumeRolePolicy"].to_string().contains(arn),
        "{}",
        reader["assumeRolePolicy"]
    );
    // Pod Identity trust: one association per ServiceAccount, naming the role.
    let associations = reader["podIdentityAssociations"].as_array().unwrap();
    let reader_sas: Vec<&str> = associations
        .iter()
        .map(|a| a["serviceAccount"].as_str().unwrap())
        .collect();
    // examples/payments.yaml binds api and worker.
    assert_eq!(reader_sas, ["api", "worker"]);
    assert!(
        roles[0].get("podIdentityAssociations").is_none(),
        "an IRSA binding has none"
    );
    for a in associations {
        assert_eq!(a["roleArn"], reader["arn"]);
        assert_eq!(a["namespace"], "payments");
        assert_eq!(a["cluster"], "prod-eu");
        assert_eq!(a["tags"]["hatrack.dev/name"], "reader");
    }
    assert_eq!(roles[0]["permissionsBoundary"], Value::Null);
    assert_eq!(roles[0]["maxSessionDuration"], 3600);
}

#[test]
fn reads_stdin_and_applies_the_default_namespace() {
    let manifest = "apiVersion: hatrack.dev/v1alpha1\nkind: IAMRoleBinding\nmetadata: {name: solo}\nspec: {serviceAccounts: [app]}\n";
    let mut args = vec!["plan", "--default-namespace=team-a"];
    args.extend(CLUSTER);
    args.push("-");
    let roles = roles_of(hatrack(&args, Some(manifest)));
    assert_eq!(roles[0]["namespace"], "team-a");
    let sub = roles[0]["assumeRolePolicy"]["Statement"][0]["Condition"]["StringEquals"]["oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE:sub"].clone();
    assert_eq!(sub, "system:serviceaccount:team-a:app");
}

#[test]
fn a_later_binding_claiming_the_same_service_account_exits_1_naming_the_holder() {
    let manifest = "apiVersion: hatrack.dev/v1alpha1\nkind: IAMRoleBinding\nmetadata: {name: first}\nspec: {serviceAccounts: [app]}\n---\napiVersion: hatrack.dev/v1alpha1\nkind: IAMRoleBinding\nmetadata: {name: again}\nspec: {serviceAccounts: [app]}\n";
    let mut args = vec!["plan", "--default-namespace=team-a"];
    args.extend(CLUSTER);
    args.push("-");
    let out = hatrack(&args, Some(manifest));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"/again: spec.serviceAccounts: ServiceAccount "app" is already bound by IAMRoleBinding "first""#),
        "{err}"
    );
    assert!(!err.contains("/first:"), "{err}");
}

#[test]
fn an_invalid_binding_exits_1_naming_file_object_and_field() {
    let out = plan(&["tests/data/plan/invalid-effect.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tests/data/plan/invalid-effect.yaml"), "{err}");
    assert!(err.contains("IAMRoleBinding payments/maybe"), "{err}");
    assert!(err.contains(r#"spec.inlinePolicies.undecided.Statement[0].Effect: Effect must be Allow or Deny, got "Perhaps""#), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_wrongly_typed_field_exits_1_with_its_path() {
    let out = plan(&["tests/data/plan/wrong-type.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.serviceAccounts"), "{err}");
}

#[test]
fn unreadable_or_unparseable_input_exits_2() {
    let out = plan(&["tests/data/plan/does-not-exist.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does-not-exist.yaml"));
    let out = plan(&["tests/data/plan/unparseable.yaml.txt"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unparseable.yaml.txt") && err.contains("line"),
        "{err}"
    );
}

#[test]
fn bad_flags_exit_2_with_the_flag_named() {
    let out = hatrack(
        &[
            "plan",
            "--cluster-name=prod",
            "--account-id=12",
            "--oidc-issuer=https://x",
            "examples",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--account-id"));
}

#[test]
fn without_the_cluster_region_plan_exits_2_naming_the_flag() {
    let out = hatrack(
        &[
            "plan",
            "--cluster-name=prod",
            "--account-id=111122223333",
            "--oidc-issuer=https://x",
            "examples",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cluster-region") && err.contains("required"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn crd_subcommand_prints_the_checked_in_crds() {
    let out = hatrack(&["crd"], None);
    assert_eq!(out.status.code(), Some(0));
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/hatrack.dev.yaml"
    ))
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        checked_in,
        "crds/ drifted from the Rust types: run `cargo run -- crd > crds/hatrack.dev.yaml`"
    );
}

#[test]
fn plan_applies_guardrails_found_in_the_input_and_shows_the_enforced_boundary() {
    let roles = planned(&["tests/data/guardrails"]);
    assert_eq!(roles.len(), 1);
    assert_eq!(
        roles[0]["permissionsBoundary"],
        "arn:aws:iam::111122223333:policy/hatrack-boundary"
    );
}

#[test]
fn plan_exits_1_on_guardrail_violations_naming_guardrail_and_field() {
    let out = plan(&["tests/data/guardrails-violation"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("IAMRoleBinding sandbox/escalate: IAMGuardrail platform-defaults: spec.managedPolicyArns[0]: managed policy arn:aws:iam::aws:policy/AdministratorAccess is not allowed"), "{err}");
    assert!(
        err.contains(
            r#"spec.inlinePolicies.sneaky.Statement[0].Action[1]: "i*:Create*" could grant "iam:*""#
        ),
        "{err}"
    );
}

#[test]
fn a_bad_worker_thread_count_is_a_usage_error_not_a_panic() {
    for bad in ["abc", "0", "-1"] {
        let out = Command::new(env!("CARGO_BIN_EXE_hatrack"))
            .arg("crd")
            .env("TOKIO_WORKER_THREADS", bad)
            .output()
            .expect("hatrack runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--worker-threads"), "{bad}: {stderr}");
        assert!(!stderr.contains("panicked"), "{bad}: {stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_hatrack"))
        .args(["--worker-threads", "2", "crd"])
        .output()
        .expect("hatrack runs");
    assert!(out.status.success());
}

#[test]
fn pod_identity_in_another_account_plans_the_chaining_role_and_target_associations() {
    let manifest = r#"apiVersion: hatrack.dev/v1alpha1
kind: IAMAccount
metadata: {name: data}
spec:
  accountId: "222222222222"
  assumeRole: {roleArn: "arn:aws:iam::222222222222:role/hatrack-operator"}
  namespaceSelector: {}
---
apiVersion: hatrack.dev/v1alpha1
kind: IAMRoleBinding
metadata: {name: app, namespace: team-a}
spec:
  serviceAccounts: [api]
  account: data
  trust: {podIdentity: {}}
"#;
    let mut args = vec!["plan"];
    args.extend(CLUSTER);
    args.push("-");
    let roles = roles_of(hatrack(&args, Some(manifest)));
    let target = &roles[0];
    let target_arn = target["arn"].as_str().unwrap();
    assert!(target_arn.starts_with("arn:aws:iam::222222222222:role/hatrack/"));
    let chaining = &target["chainingRole"];
    let chaining_arn = chaining["arn"].as_str().unwrap();
    assert!(chaining_arn.starts_with("arn:aws:iam::111122223333:role/hatrack/"));
    assert_eq!(chaining["roleName"], target["roleName"]);
    assert_eq!(
        chaining["assumeRolePolicy"]["Statement"][0]["Principal"]["Service"],
        "pods.eks.amazonaws.com"
    );
    assert_eq!(
        target["assumeRolePolicy"]["Statement"][0]["Principal"]["AWS"],
        chaining_arn
    );
    let a = &target["podIdentityAssociations"][0];
    assert_eq!(a["roleArn"], chaining_arn);
    assert_eq!(a["targetRoleArn"], target_arn);
}
