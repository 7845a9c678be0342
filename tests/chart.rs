//! The Helm chart: lints, renders in every mode, validates against the Kubernetes versions
//! we support, rejects bad values, and renders what the operator needs (least-privilege
//! RBAC, a webhook that cannot lock the cluster out, restricted pods).
//!
//! Uses the real `helm` and `kubernetes-validate` (`scripts/install-test-deps.sh`); a
//! missing tool fails the tests instead of skipping them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

/// Kubernetes versions the chart supports (README.md and docs/deploy.md, "Installing with Helm",
/// say the same; the real-API tests in tests/real_chart.rs install it into kube-apiserver 1.34).
const KUBERNETES_VERSIONS: [&str; 4] = ["1.31.0", "1.32.0", "1.33.0", "1.34.0"];
const NAMESPACE: &str = "hatrack-system";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tool(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(default));
    assert!(
        path.is_file(),
        "{} not found (set {env} or run scripts/install-test-deps.sh)",
        path.display()
    );
    path
}

fn helm() -> Command {
    Command::new(tool("HATRACK_HELM", ".tools/helm"))
}

fn chart() -> PathBuf {
    root().join("charts/hatrack")
}

fn values(name: &str) -> PathBuf {
    root().join("tests/data/chart").join(name)
}

/// `helm template` with the given extra arguments; Err(stderr) when helm refuses.
fn try_render(args: &[&str]) -> Result<String, String> {
    let out = helm()
        .args(["template", "hr"])
        .arg(chart())
        .args(["--namespace", NAMESPACE])
        .args(args)
        .output()
        .expect("run helm");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn render_file(values_file: &str, extra: &[&str]) -> String {
    let file = values(values_file);
    let mut args = vec!["-f", file.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    try_render(&args).unwrap_or_else(|e| panic!("helm template -f {values_file}: {e}"))
}

fn docs(rendered: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(rendered)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn args_of(deployment: &Value) -> Vec<String> {
    strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"])
}

/// Every rule of every Role and ClusterRole, with the role's name.
fn rules(docs: &[Value]) -> Vec<(String, Value)> {
    docs.iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
        .flat_map(|d| {
            let name = d["metadata"]["name"].as_str().unwrap_or("").to_string();
            d["rules"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |r| (name.clone(), r))
        })
        .collect()
}

/// `kubernetes-validate --strict` of `files` for Kubernetes `version`.
fn kubernetes_validate(version: &str, files: &[PathBuf]) -> std::process::Output {
    Command::new(tool(
        "HATRACK_KUBERNETES_VALIDATE",
        ".venv/bin/kubernetes-validate",
    ))
    .args(["--strict", "--quiet", "-k", version])
    .args(files)
    .output()
    .expect("run kubernetes-validate")
}

/// Fails with `what` and the command's output unless it succeeded.
fn assert_success(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn chart_passes_helm_lint_strict() {
    for file in ["required.yaml", "custom.yaml", "cert-manager.yaml"] {
        let out = helm()
            .args(["lint", "--strict"])
            .arg(chart())
            .arg("-f")
            .arg(values(file))
            .output()
            .expect("run helm");
        assert_success(&out, &format!("helm lint --strict -f {file}"));
    }
}

#[test]
fn every_rendering_validates_against_supported_kubernetes_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let renderings = [
        ("defaults", render_file("required.yaml", &[])),
        (
            "self-managed-certs",
            render_file("required.yaml", &["--set", "certManager.enabled=false"]),
        ),
        ("cert-manager", render_file("cert-manager.yaml", &[])),
        (
            "cert-manager-issuer",
            render_file("cert-manager-issuer.yaml", &[]),
        ),
        ("custom", render_file("custom.yaml", &[])),
    ];
    let mut files = Vec::new();
    for (name, rendered) in &renderings {
        assert!(docs(rendered).len() >= 10, "{name}: too few objects");
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, rendered).expect("write rendering");
        files.push(path);
    }
    for version in KUBERNETES_VERSIONS {
        let out = kubernetes_validate(version, &files);
        assert_success(&out, &format!("kubernetes-validate -k {version}"));
    }
}

#[test]
fn kubernetes_validate_catches_a_bad_manifest() {
    // The validation test above is worth something only if the validator fails on errors.
    let rendered = render_file("required.yaml", &[]);
    let broken = rendered.replacen("sideEffects: None", "sideEffects: None\n    bogus: 1", 1);
    assert_ne!(broken, rendered);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, broken).expect("write");
    let out = kubernetes_validate(KUBERNETES_VERSIONS[0], &[path]);
    assert!(!out.status.success(), "an unknown field was not rejected");
}

#[test]
fn rendering_without_cluster_name_or_account_id_fails_with_a_clear_message() {
    let err = try_render(&[]).expect_err("rendered without cluster.name");
    assert!(err.contains("cluster.name is required"), "{err}");
    let err = try_render(&["--set", "cluster.name=demo"]).expect_err("rendered without accountId");
    assert!(err.contains("cluster.accountId"), "{err}");
    // IRSA (the default trust) cannot work without the issuer: the controller would refuse
    // to start, so the chart refuses to render.
    let err = try_render(&[
        "--set",
        "cluster.name=demo",
        "--set-string",
        "cluster.accountId=111122223333",
        "--set",
        "cluster.region=eu-west-1",
    ])
    .expect_err("rendered without oidcIssuer");
    assert!(err.contains("cluster.oidcIssuer is required"), "{err}");
    // Without its region the cluster would be known by its name alone, which a same-named
    // cluster elsewhere shares: refused, and not guessed from aws.region's default.
    let err = try_render(&[
        "--set",
        "cluster.name=demo",
        "--set-string",
        "cluster.accountId=111122223333",
        "--set",
        "controller.defaultTrust={pod-identity}",
    ])
    .expect_err("rendered without cluster.region");
    assert!(err.contains("cluster.region is required"), "{err}");
    let d = docs(
        &try_render(&[
            "--set",
            "cluster.name=demo",
            "--set-string",
            "cluster.accountId=111122223333",
            "--set",
            "cluster.region=ap-southeast-2",
            "--set",
            "controller.defaultTrust={pod-identity}",
        ])
        .expect("Pod Identity needs no issuer"),
    );
    for deployment in ["hr-hatrack-controller", "hr-hatrack-webhook"] {
        assert!(
            args_of(named(&d, "Deployment", deployment))
                .contains(&"--cluster-region=ap-southeast-2".to_string()),
            "{deployment}"
        );
    }
}

#[test]
fn schema_rejects_bad_values() {
    let required = values("required.yaml");
    let required = required.to_str().expect("utf-8 path");
    for (set, expected) in [
        ("webhook.timeoutSeconds=30", "timeoutSeconds"),
        ("controller.replicas=two", "controller.replicas"),
        ("surprise=1", "surprise"),
        ("webhook.mode=block", "webhook.mode"),
        ("webhook.failurePolicy=Maybe", "failurePolicy"),
        ("webhook.replicas=1", "webhook.replicas"),
        ("webhook.lookups=sometimes", "webhook.lookups"),
        ("cluster.accountId=12345", "cluster.accountId"),
        ("cluster.region=EU-WEST-1", "cluster.region"),
        ("controller.defaultTrust={saml}", "defaultTrust"),
        ("controller.trustPolicyMaxChars=100", "trustPolicyMaxChars"),
        ("controller.leaderElection.bogus=true", "bogus"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        // The API server refuses these webhook URLs only after every other object of the
        // release was created (tests/real_chart.rs): the schema refuses them first.
        ("webhook.url=http://127.0.0.1:8443", "webhook.url"),
        ("webhook.url=https://me@127.0.0.1:8443", "webhook.url"),
        ("webhook.url=https://127.0.0.1:8443/?x=1", "webhook.url"),
        ("webhook.url=https://127.0.0.1:8443/#top", "webhook.url"),
        ("webhook.url=https://127.0.0.1:https", "webhook.url"),
        ("webhook.url=https://", "webhook.url"),
    ] {
        // --set-string would hide type errors; --set parses "two" as a string, 30 as a number.
        let setter = if set.starts_with("cluster.accountId") {
            "--set-string"
        } else {
            "--set"
        };
        let err =
            try_render(&["-f", required, setter, set]).expect_err(&format!("{set} was accepted"));
        assert!(
            err.contains("schema") && err.contains(expected),
            "{set}: expected a schema error naming {expected}, got: {err}"
        );
    }
}

#[test]
fn unquoted_lookups_off_is_understood() {
    // YAML 1.1 reads a bare `off` as false; the chart must still mean "off".
    let d = docs(&render_file(
        "required.yaml",
        &["--set", "webhook.lookups=false"],
    ));
    let webhook = named(&d, "Deployment", "hr-hatrack-webhook");
    assert!(args_of(webhook).contains(&"--lookups=off".to_string()));
}

#[test]
fn rbac_has_no_wildcards_and_no_cluster_wide_secret_writes() {
    for file in ["required.yaml", "custom.yaml", "cert-manager.yaml"] {
        let d = docs(&render_file(file, &[]));
        let all = rules(&d);
        assert!(all.len() >= 8, "{file}: too few rules");
        for (role, rule) in &all {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                assert!(
                    !strings(&rule[field]).iter().any(|s| s.contains('*')),
                    "{file}: {role} has a wildcard in {field}: {rule:?}"
                );
            }
        }
        for cr in of_kind(&d, "ClusterRole") {
            for rule in cr["rules"].as_sequence().into_iter().flatten() {
                let secrets = strings(&rule["resources"]).contains(&"secrets".to_string());
                let writes = strings(&rule["verbs"])
                    .iter()
                    .any(|v| !["get", "list", "watch"].contains(&v.as_str()));
                assert!(
                    !(secrets && writes),
                    "{file}: cluster-wide Secret write in {:?}",
                    cr["metadata"]["name"]
                );
            }
        }
    }
}

/// Releases of the same name in two namespaces share no cluster-scoped object: helm refuses
/// to install over an object another release owns (tests/real_chart.rs shows it on a real
/// API server).
#[test]
fn cluster_scoped_names_carry_the_release_namespace() {
    const CLUSTER_SCOPED: [&str; 3] = [
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
    ];
    let names = |ns: &str| -> Vec<String> {
        let file = values("required.yaml");
        let rendered = try_render(&["-f", file.to_str().unwrap(), "--namespace", ns])
            .unwrap_or_else(|e| panic!("helm template --namespace {ns}: {e}"));
        let d = docs(&rendered);
        let names: Vec<String> = d
            .iter()
            .filter(|x| CLUSTER_SCOPED.iter().any(|k| x["kind"] == *k))
            .map(|x| {
                let name = x["metadata"]["name"].as_str().unwrap_or_default();
                format!("{}/{name}", x["kind"].as_str().unwrap_or_default())
            })
            .collect();
        assert_eq!(names.len(), 5, "{ns}: {names:?}");
        names
    };
    let (a, b) = (names("team-a"), names("team-b"));
    for name in &a {
        assert!(
            name.contains("team-a"),
            "{name} does not name its namespace"
        );
        assert!(!b.contains(name), "{name} rendered in both namespaces");
    }
    // The ClusterRoleBindings point at their own namespace's ClusterRoles.
    let file = values("required.yaml");
    let d = docs(&try_render(&["-f", file.to_str().unwrap(), "--namespace", "team-a"]).unwrap());
    for crb in of_kind(&d, "ClusterRoleBinding") {
        let role = crb["roleRef"]["name"].as_str().unwrap_or_default();
        named(&d, "ClusterRole", role);
        assert_eq!(crb["subjects"][0]["namespace"], "team-a");
    }
}

#[test]
fn controller_rbac_is_what_the_controller_uses() {
    let d = docs(&render_file("required.yaml", &[]));
    let cr = named(&d, "ClusterRole", "hr-hatrack-hatrack-system-controller");
    let find = |resource: &str| -> Vec<String> {
        cr["rules"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|r| strings(&r["resources"]).contains(&resource.to_string()))
            .map(|r| strings(&r["verbs"]))
            .unwrap_or_default()
    };
    assert_eq!(find("iamrolebindings"), ["get", "list", "watch", "patch"]);
    assert_eq!(find("iamrolebindings/status"), ["get", "patch"]);
    assert!(find("iamrolebindings/finalizers").is_empty());
    assert_eq!(find("iamguardrails/status"), ["get", "patch"]);
    assert_eq!(find("iamguardrails"), ["get", "list", "watch"]);
    assert_eq!(find("serviceaccounts"), ["get", "list", "watch", "patch"]);
    assert_eq!(find("events"), ["create", "patch"]);
    assert!(
        find("secrets").is_empty(),
        "the controller reads no Secrets"
    );

    let lease_role = named(&d, "Role", "hr-hatrack-controller-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], NAMESPACE);
    assert_eq!(strings(&lease_role["rules"][0]["resources"]), ["leases"]);
    assert_eq!(
        strings(&lease_role["rules"][0]["verbs"]),
        ["get", "create", "update"]
    );
}

#[test]
fn self_managed_certs_get_flags_an_emptydir_and_rbac_by_name() {
    let d = docs(&render_file("required.yaml", &[]));
    let webhook = named(&d, "Deployment", "hr-hatrack-webhook");
    let args = args_of(webhook);
    for flag in [
        "--self-managed-certs",
        "--cert-secret=hr-hatrack-webhook-tls",
        "--webhook-service=hr-hatrack-webhook",
        "--webhook-configuration=hr-hatrack-hatrack-system",
        "--cert-dir=/certs",
        "--tls-cert=/certs/tls.crt",
        "--tls-key=/certs/tls.key",
    ] {
        assert!(
            args.contains(&flag.to_string()),
            "missing {flag} in {args:?}"
        );
    }
    let volume = &webhook["spec"]["template"]["spec"]["volumes"][0];
    assert!(volume["emptyDir"].is_mapping(), "{volume:?}");

    let role = named(&d, "Role", "hr-hatrack-webhook-certs");
    let rules = role["rules"].as_sequence().expect("rules");
    let create = rules
        .iter()
        .find(|r| strings(&r["verbs"]) == ["create"])
        .expect("create rule");
    assert!(
        create["resourceNames"].is_null(),
        "create cannot take names"
    );
    let by_name = rules
        .iter()
        .find(|r| strings(&r["verbs"]) == ["get", "update", "patch"])
        .expect("get/update/patch rule");
    assert_eq!(
        strings(&by_name["resourceNames"]),
        ["hr-hatrack-webhook-tls"]
    );

    let cr = named(&d, "ClusterRole", "hr-hatrack-hatrack-system-webhook");
    let vwc_rule = cr["rules"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|r| strings(&r["resources"]) == ["validatingwebhookconfigurations"])
        .expect("webhook configuration rule");
    assert_eq!(
        strings(&vwc_rule["resourceNames"]),
        ["hr-hatrack-hatrack-system"]
    );
    assert_eq!(strings(&vwc_rule["verbs"]), ["get", "patch", "update"]);
    named(
        &d,
        "ValidatingWebhookConfiguration",
        "hr-hatrack-hatrack-system",
    );
}

#[test]
fn cert_manager_mode_injects_the_ca_and_mounts_the_issued_secret() {
    let d = docs(&render_file("cert-manager.yaml", &[]));
    let vwc = &of_kind(&d, "ValidatingWebhookConfiguration")[0];
    assert_eq!(
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "hatrack-system/hr-hatrack-webhook"
    );
    let cert = named(&d, "Certificate", "hr-hatrack-webhook");
    assert_eq!(
        strings(&cert["spec"]["dnsNames"]),
        [
            "hr-hatrack-webhook.hatrack-system.svc",
            "hr-hatrack-webhook.hatrack-system.svc.cluster.local"
        ]
    );
    assert_eq!(cert["spec"]["issuerRef"]["name"], "hr-hatrack-webhook-ca");
    assert_eq!(of_kind(&d, "Issuer").len(), 2, "self-signed + CA issuer");

    let webhook = named(&d, "Deployment", "hr-hatrack-webhook");
    let args = args_of(webhook);
    assert!(!args.iter().any(|a| a.starts_with("--self-managed-certs")));
    assert!(args.contains(&"--tls-cert=/certs/tls.crt".to_string()));
    let volume = &webhook["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(volume["secret"]["secretName"], cert["spec"]["secretName"]);
    // cert-manager injects the CA: the webhook needs no write access at all.
    assert!(
        of_kind(&d, "Role")
            .iter()
            .all(|r| { r["metadata"]["name"] != "hr-hatrack-webhook-certs" })
    );
    assert!(
        !serde_yaml::to_string(named(
            &d,
            "ClusterRole",
            "hr-hatrack-hatrack-system-webhook"
        ))
        .expect("yaml")
        .contains("validatingwebhookconfigurations")
    );

    let d = docs(&render_file("cert-manager-issuer.yaml", &[]));
    assert!(
        of_kind(&d, "Issuer").is_empty(),
        "an existing issuer is used"
    );
    let cert = named(&d, "Certificate", "hr-hatrack-webhook");
    assert_eq!(cert["spec"]["issuerRef"]["name"], "corporate-ca");
    assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
}

#[test]
fn webhook_configuration_guards_workloads_and_ephemeral_containers() {
    let d = docs(&render_file("required.yaml", &[]));
    let vwc = &of_kind(&d, "ValidatingWebhookConfiguration")[0];
    let hooks = vwc["webhooks"].as_sequence().expect("webhooks");
    assert_eq!(hooks.len(), 3);
    let workloads = &hooks[0];
    // The system entry judges the same kinds as the workload entry.
    assert_eq!(hooks[1]["rules"], workloads["rules"]);
    assert_eq!(
        hooks[1]["clientConfig"]["service"]["path"],
        "/validate/workloads"
    );
    assert_eq!(
        workloads["clientConfig"]["service"]["path"],
        "/validate/workloads"
    );
    let resources: Vec<String> = workloads["rules"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|r| strings(&r["resources"]))
        .collect();
    for r in [
        "pods",
        "pods/ephemeralcontainers",
        "deployments",
        "statefulsets",
        "daemonsets",
        "replicasets",
        "replicationcontrollers",
        "jobs",
        "cronjobs",
    ] {
        assert!(resources.contains(&r.to_string()), "{r} is not checked");
    }
    let bindings = &hooks[2];
    assert_eq!(
        bindings["clientConfig"]["service"]["path"],
        "/validate/iamrolebindings"
    );
    assert_eq!(strings(&bindings["rules"][0]["apiGroups"]), ["hatrack.dev"]);
    for hook in hooks {
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(strings(&hook["admissionReviewVersions"]), ["v1"]);
        assert_eq!(hook["matchPolicy"], "Equivalent");
        assert_eq!(hook["timeoutSeconds"], 5);
        let system = hook["name"] == "system-workloads.hatrack.dev";
        assert_eq!(
            hook["failurePolicy"],
            if system { "Ignore" } else { "Fail" }
        );
        assert!(
            hook["clientConfig"]["caBundle"].is_null(),
            "left to the injector"
        );
        for rule in hook["rules"].as_sequence().into_iter().flatten() {
            assert_eq!(strings(&rule["operations"]), ["CREATE", "UPDATE"]);
        }
    }
}

#[test]
fn system_namespaces_get_their_own_ignore_entry_and_bindings_no_exemption() {
    const SYSTEM: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];
    for (file, exempt) in [
        ("required.yaml", vec![NAMESPACE]),
        ("custom.yaml", vec![NAMESPACE, "monitoring", "istio-system"]),
    ] {
        let d = docs(&render_file(file, &[]));
        let vwc = &of_kind(&d, "ValidatingWebhookConfiguration")[0];
        let hook = |name: &str| {
            vwc["webhooks"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|h| h["name"] == name)
                .unwrap_or_else(|| panic!("{file}: no webhook {name}"))
        };
        let selector = |name: &str| {
            let expr = &hook(name)["namespaceSelector"]["matchExpressions"][0];
            assert_eq!(expr["key"], "kubernetes.io/metadata.name");
            (
                expr["operator"].as_str().unwrap_or("").to_string(),
                strings(&expr["values"]),
            )
        };
        let mut not_in = exempt.clone();
        not_in.extend(SYSTEM);
        assert_eq!(
            selector("workloads.hatrack.dev"),
            (
                "NotIn".into(),
                not_in.iter().map(|s| s.to_string()).collect()
            ),
            "{file}"
        );
        assert_eq!(
            selector("system-workloads.hatrack.dev"),
            ("In".into(), SYSTEM.iter().map(|s| s.to_string()).collect()),
            "{file}"
        );
        assert_eq!(
            hook("system-workloads.hatrack.dev")["failurePolicy"],
            "Ignore"
        );
        // The binding webhook inherits none of the workload webhook's exemptions.
        assert!(
            hook("iamrolebindings.hatrack.dev")["namespaceSelector"].is_null(),
            "{file}"
        );
        let webhook = of_kind(&d, "Deployment")
            .into_iter()
            .find(|x| {
                x["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-webhook"))
            })
            .expect("webhook deployment");
        let args = args_of(webhook);
        assert!(
            args.contains(&format!("--exempt-namespaces={}", exempt.join(","))),
            "{file}: the server exempts what the selector exempts: {args:?}"
        );
        assert!(
            args.contains(&format!("--system-namespaces={}", SYSTEM.join(","))),
            "{args:?}"
        );
        assert!(args.contains(&"--system-mode=warn".to_string()), "{args:?}");
    }
    // Installed in kube-system: exempt there, so the system entry covers only the others.
    let d = docs(&render_file(
        "required.yaml",
        &["--namespace", "kube-system"],
    ));
    let vwc = &of_kind(&d, "ValidatingWebhookConfiguration")[0];
    let system = &vwc["webhooks"][1];
    assert_eq!(system["name"], "system-workloads.hatrack.dev");
    assert_eq!(
        strings(&system["namespaceSelector"]["matchExpressions"][0]["values"]),
        ["kube-public", "kube-node-lease"]
    );
    // No system namespaces: no second entry.
    let d = docs(&render_file(
        "required.yaml",
        &["--set-json", "webhook.systemNamespaces=[]"],
    ));
    let vwc = &of_kind(&d, "ValidatingWebhookConfiguration")[0];
    assert_eq!(vwc["webhooks"].as_sequence().map(Vec::len), Some(2));
}

#[test]
fn pods_run_restricted_with_probes_and_downward_env() {
    for file in ["required.yaml", "custom.yaml", "cert-manager.yaml"] {
        let d = docs(&render_file(file, &[]));
        let deployments = of_kind(&d, "Deployment");
        assert_eq!(deployments.len(), 2, "{file}");
        for dep in deployments {
            let pod = &dep["spec"]["template"]["spec"];
            let name = dep["metadata"]["name"].as_str().unwrap_or("?");
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"],
                "RuntimeDefault"
            );
            assert!(pod["terminationGracePeriodSeconds"].as_u64().is_some());
            let c = &pod["containers"][0];
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["runAsNonRoot"], true, "{name}");
            assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{name}");
            assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
            assert!(c["resources"]["requests"]["memory"].is_string(), "{name}");
            assert!(c["resources"]["limits"]["memory"].is_string(), "{name}");
            let env: Vec<&str> = c["env"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"].as_str())
                .collect();
            assert!(
                env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE"),
                "{name}"
            );
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
            if name.ends_with("-webhook") {
                assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
                assert_eq!(c["readinessProbe"]["httpGet"]["port"], "https");
            } else {
                assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");
            }
        }
    }
}

#[test]
fn defaults_run_two_controllers_with_leader_election_and_a_spread_webhook() {
    let d = docs(&render_file("required.yaml", &[]));
    let controller = named(&d, "Deployment", "hr-hatrack-controller");
    assert_eq!(controller["spec"]["replicas"], 2);
    let args = args_of(controller);
    for flag in [
        "controller",
        "--cluster-name=demo",
        "--account-id=111122223333",
        "--leader-election",
        "--lease-name=hr-hatrack-controller",
        "--metrics-listen=0.0.0.0:8080",
    ] {
        assert!(
            args.contains(&flag.to_string()),
            "missing {flag} in {args:?}"
        );
    }
    let webhook = named(&d, "Deployment", "hr-hatrack-webhook");
    assert_eq!(webhook["spec"]["replicas"], 2);
    let anti = &webhook["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
    assert!(anti["preferredDuringSchedulingIgnoredDuringExecution"].is_sequence());
    let pdb = named(&d, "PodDisruptionBudget", "hr-hatrack-webhook");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        webhook["spec"]["selector"]["matchLabels"]
    );
    let svc = named(&d, "Service", "hr-hatrack-webhook");
    assert_eq!(
        svc["spec"]["selector"],
        webhook["spec"]["selector"]["matchLabels"]
    );
    assert!(of_kind(&d, "ServiceMonitor").is_empty());
    assert!(of_kind(&d, "NetworkPolicy").is_empty());

    let d = docs(&render_file(
        "required.yaml",
        &["--set", "controller.leaderElection.enabled=false"],
    ));
    let controller = named(&d, "Deployment", "hr-hatrack-controller");
    assert!(!args_of(controller).contains(&"--leader-election".to_string()));
    assert_eq!(controller["spec"]["strategy"]["type"], "Recreate");
    assert!(of_kind(&d, "Role").iter().all(|r| {
        !r["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("leader-election"))
    }));
}

#[test]
fn custom_values_reach_flags_labels_and_scheduling() {
    let d = docs(&render_file("custom.yaml", &[]));
    let controller = named(&d, "Deployment", "acme-hatrack-controller");
    let args = args_of(controller);
    for flag in [
        "--account-id=012345678901",
        "--oidc-issuer=https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE",
        "--role-path=/platform/hatrack/",
        "--default-trust=irsa,pod-identity",
        "--trust-policy-max-chars=4096",
        "--max-managed-policies=20",
        "--resync-seconds=300",
        "--concurrency=8",
        "--watch-namespace=payments",
        "--aws-region=eu-west-1",
        "--iam-endpoint=https://iam.amazonaws.com",
        "--iam-calls-per-second=5",
        "--iam-max-attempts=8",
        "--lease-name=acme-leader",
    ] {
        assert!(
            args.contains(&flag.to_string()),
            "missing {flag} in {args:?}"
        );
    }
    let pod = &controller["spec"]["template"];
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "registry.example.com/platform/hatrack:1.2.3"
    );
    assert_eq!(pod["spec"]["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(pod["spec"]["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["metadata"]["labels"]["tier"], "control");
    assert_eq!(pod["metadata"]["labels"]["team"], "platform");
    assert_eq!(pod["metadata"]["annotations"]["example.com/scrape"], "true");
    let sa = named(&d, "ServiceAccount", "acme-hatrack-controller");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::012345678901:role/hatrack-controller"
    );
    assert_eq!(
        sa["metadata"]["annotations"]["owner"],
        "platform@example.com"
    );

    let webhook = named(&d, "Deployment", "acme-hatrack-webhook");
    let args = args_of(webhook);
    for flag in [
        "--mode=warn",
        "--lookups=off",
        "--listen=0.0.0.0:9443",
        "--metrics-listen=0.0.0.0:9091",
        "--cert-secret=acme-webhook-certs",
        "--cert-renew-before-days=45",
        "--cert-check-seconds=600",
    ] {
        assert!(
            args.contains(&flag.to_string()),
            "missing {flag} in {args:?}"
        );
    }
    assert_eq!(
        webhook["spec"]["template"]["spec"]["serviceAccountName"],
        "acme-webhook"
    );
    assert!(
        webhook["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]
            .is_sequence()
    );
    // lookups off: no Secret or ConfigMap reads anywhere outside the certificate Role.
    let cr = named(&d, "ClusterRole", "acme-hatrack-hatrack-system-webhook");
    let text = serde_yaml::to_string(cr).expect("yaml");
    assert!(
        !text.contains("secrets") && !text.contains("configmaps"),
        "{text}"
    );
    let vwc = &of_kind(&d, "ValidatingWebhookConfiguration")[0];
    assert_eq!(vwc["webhooks"][0]["failurePolicy"], "Ignore");
    assert_eq!(vwc["webhooks"][0]["timeoutSeconds"], 10);
    assert_eq!(vwc["webhooks"][0]["clientConfig"]["service"]["port"], 8443);
    assert_eq!(
        named(&d, "ServiceMonitor", "acme-hatrack")["metadata"]["labels"]["release"],
        "prometheus"
    );
    assert_eq!(of_kind(&d, "NetworkPolicy").len(), 2);
}

#[test]
fn lookups_on_grants_read_only_secret_and_configmap_access() {
    let d = docs(&render_file("required.yaml", &[]));
    let webhook = named(&d, "Deployment", "hr-hatrack-webhook");
    assert!(args_of(webhook).contains(&"--lookups=on".to_string()));
    let cr = named(&d, "ClusterRole", "hr-hatrack-hatrack-system-webhook");
    let rule = cr["rules"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|r| strings(&r["resources"]) == ["secrets", "configmaps"])
        .expect("lookup rule");
    assert_eq!(strings(&rule["verbs"]), ["get", "list", "watch"]);
}

#[test]
fn notes_tell_what_to_do_next() {
    // helm prints NOTES.txt only on install (which needs a cluster): render it through a
    // copy of the chart where a ConfigMap carries the notes as its data.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("hatrack");
    let status = Command::new("cp")
        .arg("-r")
        .arg(chart())
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    let notes = std::fs::read_to_string(copy.join("templates/NOTES.txt")).expect("NOTES.txt");
    std::fs::write(
        copy.join("templates/zz-notes.yaml"),
        format!(
            "{{{{- define \"test.notes\" }}}}{notes}{{{{- end }}}}\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: notes}}\n\
             data:\n  notes: {{{{ include \"test.notes\" . | quote }}}}\n"
        ),
    )
    .expect("write notes template");
    let out = helm()
        .args(["template", "hr"])
        .arg(&copy)
        .args([
            "--namespace",
            NAMESPACE,
            "--show-only",
            "templates/zz-notes.yaml",
        ])
        .arg("-f")
        .arg(values("required.yaml"))
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = docs(&String::from_utf8_lossy(&out.stdout));
    let text = d[0]["data"]["notes"].as_str().expect("notes").to_string();
    assert!(text.contains("kubectl get irb"), "{text}");
    assert!(text.contains("kind: IAMRoleBinding"), "{text}");
    assert!(text.contains("-n hatrack-system get deploy"), "{text}");
    assert!(
        text.contains("role-arn") && text.contains("Pod Identity"),
        "no hint on the controller's IAM role: {text}"
    );
}

/// The flags the chart passes must parse with the real clap types: a renamed flag fails
/// here, not in a crash-looping pod. (The webhook's own flags belong to `WebhookArgs`,
/// parsed by the webhook's tests; here its certificate flags.)
#[test]
fn chart_flags_parse_with_the_real_command_line_types() {
    use clap::Parser;

    #[derive(Parser)]
    struct Controller {
        #[command(flatten)]
        controller: hatrack::controller::ControllerArgs,
    }
    #[derive(Parser)]
    struct WebhookCerts {
        #[command(flatten)]
        certs: hatrack::certs::CertArgs,
    }
    #[derive(Parser)]
    struct Webhook {
        #[command(flatten)]
        webhook: hatrack::webhook::WebhookArgs,
    }
    const CERT_FLAGS: [&str; 7] = [
        "--self-managed-certs",
        "--cert-secret=",
        "--webhook-service=",
        "--webhook-configuration=",
        "--cert-dir=",
        "--cert-renew-before-days=",
        "--cert-check-seconds=",
    ];

    for file in ["required.yaml", "custom.yaml"] {
        let d = docs(&render_file(file, &[]));
        let deployments = of_kind(&d, "Deployment");
        let controller = deployments
            .iter()
            .find(|x| args_of(x).first().map(String::as_str) == Some("controller"))
            .expect("controller deployment");
        let args = args_of(controller);
        let parsed = Controller::try_parse_from(
            std::iter::once("hatrack-controller".to_string()).chain(args[1..].iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("{file}: controller flags {args:?}: {e}"));
        assert!(parsed.controller.leader.leader_election);

        let webhook = deployments
            .iter()
            .find(|x| args_of(x).first().map(String::as_str) == Some("webhook"))
            .expect("webhook deployment");
        let cert_args: Vec<String> = args_of(webhook)
            .into_iter()
            .filter(|a| CERT_FLAGS.iter().any(|f| a.starts_with(f)))
            .collect();
        assert_eq!(cert_args.len(), CERT_FLAGS.len(), "{file}: {cert_args:?}");
        let parsed = WebhookCerts::try_parse_from(
            std::iter::once("hatrack-webhook".to_string()).chain(cert_args.iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("{file}: certificate flags {cert_args:?}: {e}"));
        assert!(parsed.certs.self_managed_certs);
        assert_eq!(
            parsed.certs.cert_path(),
            std::path::Path::new("/certs/tls.crt"),
            "the chart's --tls-cert is where the certificate manager writes"
        );
        // Every webhook flag the chart passes parses with the real type, and the cluster
        // settings it passes are valid.
        let all = args_of(webhook);
        let parsed = Webhook::try_parse_from(
            std::iter::once("hatrack-webhook".to_string()).chain(all[1..].iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("{file}: webhook flags {all:?}: {e}"));
        parsed
            .webhook
            .cluster
            .settings()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(parsed.webhook.certs.self_managed_certs);
        assert!(args_of(webhook).contains(&"--tls-cert=/certs/tls.crt".to_string()));
        assert!(args_of(webhook).contains(&"--tls-key=/certs/tls.key".to_string()));
    }
}

/// `audit.enabled`: the auditor's Deployment, its flags (parsed with the real type), its
/// Service, and RBAC that reads workloads, Secrets, ConfigMaps and StaticKeyExemptions and
/// writes only PolicyReports. Off by default.
#[test]
fn audit_renders_only_when_enabled_with_flags_rbac_and_metrics() {
    use clap::Parser;
    #[derive(Parser)]
    struct Auditor {
        #[command(flatten)]
        auditor: hatrack::audit::AuditorArgs,
    }

    let off = docs(&render_file("required.yaml", &[]));
    assert!(
        !off.iter().any(|d| d["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.contains("audit"))),
        "nothing of the audit by default"
    );

    let d = docs(&render_file(
        "required.yaml",
        &[
            "--set",
            "audit.enabled=true",
            "--set",
            "audit.replicas=2",
            "--set",
            "webhook.exemptNamespaces={legacy}",
        ],
    ));
    let audit = named(&d, "Deployment", "hr-hatrack-audit");
    assert_eq!(audit["spec"]["replicas"], 2);
    let args = args_of(audit);
    assert_eq!(args[0], "auditor");
    let parsed = Auditor::try_parse_from(
        std::iter::once("hatrack-auditor".to_string()).chain(args[1..].iter().cloned()),
    )
    .unwrap_or_else(|e| panic!("auditor flags {args:?}: {e}"));
    assert!(parsed.auditor.leader.leader_election);
    assert_eq!(parsed.auditor.leader.lease_name, "hr-hatrack-audit");
    let exempt = parsed.auditor.policy.exempt_namespace_set();
    for ns in [NAMESPACE, "legacy"] {
        assert!(exempt.contains(ns), "the webhook's exemptions: {exempt:?}");
    }
    let service = named(&d, "Service", "hr-hatrack-audit-metrics");
    assert_eq!(service["metadata"]["labels"]["hatrack.dev/metrics"], "true");

    let role = named(&d, "ClusterRole", &format!("hr-hatrack-{NAMESPACE}-audit"));
    let mut writes = Vec::new();
    for rule in role["rules"].as_sequence().unwrap() {
        let verbs = strings(&rule["verbs"]);
        for resource in strings(&rule["resources"]) {
            if verbs
                .iter()
                .any(|v| !["get", "list", "watch"].contains(&v.as_str()))
            {
                writes.push(resource.clone());
            }
        }
    }
    assert_eq!(
        writes,
        ["policyreports"],
        "the audit writes only its reports"
    );
    // It honours StaticKeyExemptions: reads and watches them (and only reads).
    let reads_exemptions = role["rules"].as_sequence().unwrap().iter().any(|rule| {
        strings(&rule["apiGroups"]) == ["hatrack.dev"]
            && strings(&rule["resources"]).contains(&"statickeyexemptions".to_string())
            && ["list", "watch"]
                .iter()
                .all(|v| strings(&rule["verbs"]).contains(&v.to_string()))
    });
    assert!(
        reads_exemptions,
        "the audit watches StaticKeyExemptions: {role:#?}"
    );
    let lease = named(&d, "Role", "hr-hatrack-audit-leader-election");
    assert_eq!(strings(&lease["rules"][0]["resources"]), ["leases"]);
}

#[test]
fn pod_template_kinds_get_webhook_rules_and_reach_the_webhook() {
    let rendered = docs(&render_file("required.yaml", &[]));
    // The chart's list is the one the binary ships (check uses the shipped list by default).
    let cm = named(&rendered, "ConfigMap", "hr-hatrack-webhook-pod-templates");
    let text = cm["data"]["pod-templates.yaml"]
        .as_str()
        .expect("pod-templates.yaml");
    let chart_list = hatrack::detect::PodTemplates::from_yaml("chart", text).expect("valid list");
    assert_eq!(chart_list, hatrack::detect::PodTemplates::default());
    let vwc = of_kind(&rendered, "ValidatingWebhookConfiguration")[0];
    let workloads = &vwc["webhooks"][0];
    let rules = workloads["rules"].as_sequence().expect("rules");
    for k in chart_list.kinds() {
        assert!(
            rules.iter().any(|r| {
                strings(&r["apiGroups"]) == [k.group.clone()]
                    && strings(&r["resources"]) == [k.resource.clone()]
                    && strings(&r["operations"]) == ["CREATE", "UPDATE"]
            }),
            "no rule for {} {}",
            k.group,
            k.resource
        );
    }
    let deployment = named(&rendered, "Deployment", "hr-hatrack-webhook");
    assert!(
        args_of(deployment).contains(&"--pod-templates=/etc/hatrack/pod-templates.yaml".into())
    );
    // A custom entry gets its rule.
    let rendered = docs(&render_file(
        "required.yaml",
        &[
            "--set-json",
            r#"podTemplates=[{"group":"example.com","kind":"Job2","resource":"job2s","pods":[{"path":"spec.template.spec"}]}]"#,
        ],
    ));
    let vwc = of_kind(&rendered, "ValidatingWebhookConfiguration")[0];
    let rules = vwc["webhooks"][0]["rules"].as_sequence().unwrap();
    assert!(rules.iter().any(|r| strings(&r["resources"]) == ["job2s"]));
    assert!(
        !rules
            .iter()
            .any(|r| strings(&r["resources"]) == ["rollouts"])
    );
}
