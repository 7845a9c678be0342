use base64::Engine;

use super::*;

fn docs(yaml: &str) -> Vec<Document> {
    manifest::parse_documents("t.yaml", yaml).unwrap()
}

const WORKLOAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: team}
spec:
  template:
    spec:
      containers:
      - name: app
        envFrom:
        - secretRef: {name: creds}
"#;

#[test]
fn resolves_secrets_from_the_input_and_denies() {
    let input = format!(
        "{WORKLOAD}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: team}}\ndata:\n  AWS_ACCESS_KEY_ID: {}\n",
        base64::engine::general_purpose::STANDARD.encode("AKIAZ7Q3EXAMPLEK3Y4N")
    );
    let report = check_documents(&docs(&input), &CheckOptions::default());
    assert_eq!(report.results.len(), 1);
    assert_eq!(report.results[0].verdict, Verdict::Deny);
    assert_eq!(
        report.results[0].findings[0].rule,
        RuleId::EnvFromCredentialKeys
    );
    assert_eq!(report.ignored, 1);
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn warns_when_a_referenced_secret_is_not_in_the_input() {
    let report = check_documents(&docs(WORKLOAD), &CheckOptions::default());
    assert_eq!(report.results[0].verdict, Verdict::Warn);
    assert_eq!(report.exit_code(), 0);
    assert!(render_text(&report, false).contains("could not be read"));
}

#[test]
fn namespace_label_in_the_input_sets_the_mode() {
    let input = format!(
        "{WORKLOAD}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n  labels: {{hatrack.dev/static-keys: audit}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: team}}\nstringData: {{aws_secret_access_key: x}}\n"
    );
    let report = check_documents(&docs(&input), &CheckOptions::default());
    assert_eq!(report.results[0].mode, Some(Mode::Audit));
    assert_eq!(report.results[0].verdict, Verdict::Allow);
    assert_eq!(report.results[0].findings.len(), 1);
}

#[test]
fn invalid_base64_in_a_secret_is_an_input_error() {
    let input = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '!!!'}\n";
    let report = check_documents(&docs(input), &CheckOptions::default());
    assert_eq!(report.exit_code(), 2);
    assert!(
        report.errors[0]
            .message
            .contains("data.k: not valid base64")
    );
    assert_eq!(report.errors[0].document, Some(1));
}

#[test]
fn base64_wrapped_across_lines_is_read_as_the_api_server_reads_it() {
    // `base64` wraps at 76 columns; pasted into a block scalar, the breaks stay.
    use base64::Engine;
    let file = "[default]\naws_access_key_id = AKIAZ7Q3EXAMPLEK3Y4N\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKE\n";
    let encoded = base64::engine::general_purpose::STANDARD.encode(file);
    let wrapped: Vec<String> = (encoded.as_bytes().chunks(76))
        .map(|c| format!("    {}", String::from_utf8_lossy(c)))
        .collect();
    assert!(wrapped.len() > 1);
    let input = format!(
        "{WORKLOAD}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: team}}\ndata:\n  aws_secret_access_key: |\n{}\n",
        wrapped.join("\n")
    );
    let report = check_documents(&docs(&input), &CheckOptions::default());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.results[0].verdict, Verdict::Deny);
}

#[test]
fn role_binding_findings_deny_and_render() {
    let d = docs(
        "apiVersion: hatrack.dev/v1alpha1\nkind: IAMRoleBinding\nmetadata: {name: rb, namespace: team}\n",
    );
    let f = role_binding_finding(&d[0], "spec.serviceAccountName", "must not be empty".into());
    assert_eq!(f.rule, RuleId::InvalidRoleBinding);
    assert_eq!(f.object.name, "rb");
    // A binding without a spec is invalid, as `plan` says.
    let report = check_documents(&d, &CheckOptions::default());
    assert_eq!(report.results[0].kind, "IAMRoleBinding");
    assert_eq!(report.results[0].verdict, Verdict::Deny);
    let finding = &report.results[0].findings[0];
    assert_eq!(
        (finding.path.as_str(), finding.message.as_str()),
        ("object", "missing field `spec`")
    );
}

#[test]
fn role_bindings_are_validated_like_plan_including_guardrails() {
    let valid = "apiVersion: hatrack.dev/v1alpha1\nkind: IAMRoleBinding\nmetadata: {name: rb, namespace: team}\nspec: {serviceAccounts: [api], managedPolicyArns: [arn:aws:iam::aws:policy/AdministratorAccess]}\n";
    let report = check_documents(&docs(valid), &CheckOptions::default());
    assert_eq!(report.results[0].verdict, Verdict::Allow);
    let guarded = format!(
        "{valid}---\napiVersion: hatrack.dev/v1alpha1\nkind: IAMGuardrail\nmetadata: {{name: no-admin}}\nspec: {{allowedManagedPolicyArns: [\"arn:aws:iam::aws:policy/ReadOnly*\"]}}\n"
    );
    let report = check_documents(&docs(&guarded), &CheckOptions::default());
    let rb = report
        .results
        .iter()
        .find(|r| r.kind == "IAMRoleBinding")
        .unwrap();
    assert_eq!(rb.verdict, Verdict::Deny);
    assert_eq!(rb.findings[0].path, "spec.managedPolicyArns[0]");
    assert!(
        rb.findings[0]
            .message
            .contains("violates IAMGuardrail no-admin"),
        "{}",
        rb.findings[0].message
    );
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn a_later_binding_claiming_a_claimed_service_account_is_denied_as_the_webhook_would() {
    let rb = |name: &str, ns: &str, sas: &str| {
        format!(
            "---\napiVersion: hatrack.dev/v1alpha1\nkind: IAMRoleBinding\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{serviceAccounts: [{sas}]}}\n"
        )
    };
    // "b" sorts before "z" by name, but comes later in the input: input order decides.
    let input = [
        rb("z", "team", "api"),
        rb("b", "team", "web, api"),
        rb("c", "other", "api"),
        rb("d", "team", "db"),
    ]
    .concat();
    let report = check_documents(&docs(&input), &CheckOptions::default());
    let verdicts: Vec<(&str, Verdict)> = report
        .results
        .iter()
        .map(|r| (r.name.as_str(), r.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("z", Verdict::Allow),
            ("b", Verdict::Deny),
            ("c", Verdict::Allow),
            ("d", Verdict::Allow)
        ]
    );
    let finding = &report.results[1].findings[0];
    assert_eq!(finding.path, "spec.serviceAccounts");
    assert!(
        finding
            .message
            .contains(r#"ServiceAccount "api" is already bound by IAMRoleBinding "z""#),
        "{}",
        finding.message
    );
    assert_eq!(report.results[1].findings.len(), 1);
}

#[derive(clap::Parser)]
struct CheckCli {
    #[command(flatten)]
    args: CheckArgs,
}

fn parse_check(argv: &[&str]) -> CheckOptions {
    use clap::Parser;
    let cli =
        CheckCli::try_parse_from(std::iter::once("check").chain(argv.iter().copied())).unwrap();
    CheckOptions::from_args(&cli.args).unwrap()
}

#[test]
fn check_flags_default_to_the_offline_options_and_share_the_webhook_policy_flags() {
    let defaults = parse_check(&["deploy/"]);
    let expected = CheckOptions::default();
    assert_eq!(defaults.mode, expected.mode);
    assert_eq!(defaults.exempt_namespaces, expected.exempt_namespaces);
    assert_eq!(defaults.default_namespace, expected.default_namespace);
    // The cluster flags are optional for `check` and default to placeholders.
    assert_eq!(defaults.settings.cluster_name, "cluster");
    assert_eq!(defaults.settings.account_id, "000000000000");
    assert_eq!(
        defaults.settings.oidc_issuer_host_path.as_deref(),
        Some("oidc.eks.us-east-1.amazonaws.com/id/00000000000000000000000000000000")
    );

    let set = parse_check(&[
        "--mode",
        "warn",
        "--exempt-namespaces",
        "a, ,b",
        "--cluster-name",
        "prod",
        "--account-id",
        "111122223333",
        "--trust-policy-max-chars",
        "4096",
        "x.yaml",
    ]);
    assert_eq!(set.mode, Mode::Warn);
    assert_eq!(
        set.exempt_namespaces,
        HashSet::from(["a".to_string(), "b".to_string()])
    );
    assert_eq!(set.settings.cluster_name, "prod");
    assert_eq!(set.settings.account_id, "111122223333");
    assert_eq!(set.settings.trust_policy_max_chars, 4096);
}

#[test]
fn kube_system_is_judged_by_default() {
    let input = format!(
        "{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: kube-system}}\nstringData: {{AWS_ACCESS_KEY_ID: AKIAZ7Q3EXAMPLEK3Y4N}}\n",
        WORKLOAD.replace("namespace: team", "namespace: kube-system")
    );
    let report = check_documents(&docs(&input), &CheckOptions::default());
    assert!(!report.results[0].exempt);
    assert_eq!(report.results[0].verdict, Verdict::Deny);
    assert!(parse_check(&["x.yaml"]).exempt_namespaces.is_empty());
}

#[test]
fn null_secret_values_are_read_as_empty() {
    let input = format!(
        "{WORKLOAD}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: team}}\ndata: {{AWS_ACCESS_KEY_ID: null, other: null}}\nstringData: {{x: null}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {{k: null}}\n"
    );
    let report = check_documents(&docs(&input), &CheckOptions::default());
    assert_eq!(report.exit_code(), 0, "{:?}", report.errors);
    assert_eq!(report.results[0].verdict, Verdict::Allow);
}

#[test]
fn exempt_namespaces_are_not_judged() {
    let input = WORKLOAD.replace("namespace: team", "namespace: kube-system");
    let opts = CheckOptions {
        exempt_namespaces: HashSet::from(["kube-system".to_string()]),
        ..CheckOptions::default()
    };
    let report = check_documents(&docs(&input), &opts);
    assert!(report.results[0].exempt);
    assert_eq!(report.results[0].verdict, Verdict::Allow);
    assert!(report.results[0].warnings.is_empty());
}

fn exemption(name: &str, target: &str, expires: &str) -> String {
    format!(
        "---\napiVersion: hatrack.dev/v1alpha1\nkind: StaticKeyExemption\nmetadata: {{name: {name}}}\nspec: {{namespace: team, {target}grantedBy: alice@platform, reason: TICKET-7 IRSA migration, expires: '{expires}'}}\n"
    )
}

const KEYS: &str = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: team}\nstringData: {AWS_ACCESS_KEY_ID: AKIAZ7Q3EXAMPLEK3Y4N}\n";

#[test]
fn an_active_exemption_of_the_input_admits_and_an_expired_one_is_enforced() {
    let active = format!(
        "{WORKLOAD}{KEYS}{}",
        exemption(
            "legacy",
            "kind: Deployment, name: app, ",
            "2999-01-01T00:00:00Z"
        )
    );
    let report = check_documents(&docs(&active), &CheckOptions::default());
    let r = &report.results[0];
    assert_eq!(r.verdict, Verdict::Allow);
    assert_eq!(r.findings.len(), 1, "findings are still reported");
    let e = r.exemption.as_ref().unwrap();
    assert_eq!(e.state, crate::exemption::State::Active);
    assert_eq!(report.exit_code(), 0);
    let text = render_text(&report, false);
    assert!(
        text.contains("exempt until 2999-01-01T00:00:00Z by StaticKeyExemption legacy, granted by alice@platform: TICKET-7 IRSA migration"),
        "{text}"
    );
    assert!(render_json(&report).contains("\"grantedBy\": \"alice@platform\""));

    let expired = format!(
        "{WORKLOAD}{KEYS}{}",
        exemption("legacy", "", "2020-01-01T00:00:00Z")
    );
    let report = check_documents(&docs(&expired), &CheckOptions::default());
    let r = &report.results[0];
    assert_eq!(r.verdict, Verdict::Deny);
    assert_eq!(
        r.exemption.as_ref().unwrap().state,
        crate::exemption::State::Expired
    );
    assert!(render_text(&report, false).contains("expired at 2020-01-01T00:00:00Z"));

    // Another workload's exemption changes nothing.
    let other = format!(
        "{WORKLOAD}{KEYS}{}",
        exemption("other", "name: other, ", "2999-01-01T00:00:00Z")
    );
    let report = check_documents(&docs(&other), &CheckOptions::default());
    assert_eq!(report.results[0].verdict, Verdict::Deny);
    assert!(report.results[0].exemption.is_none());
}

#[test]
fn role_bindings_are_never_exempt() {
    let input = format!(
        "apiVersion: hatrack.dev/v1alpha1\nkind: IAMRoleBinding\nmetadata: {{name: rb, namespace: team}}\n{}",
        exemption(
            "rb",
            "kind: IAMRoleBinding, name: rb, ",
            "2999-01-01T00:00:00Z"
        )
    );
    let report = check_documents(&docs(&input), &CheckOptions::default());
    assert_eq!(report.results[0].verdict, Verdict::Deny);
    assert!(report.results[0].exemption.is_none());
}

#[test]
fn an_unreadable_exemption_is_an_input_error() {
    let input = "apiVersion: hatrack.dev/v1alpha1\nkind: StaticKeyExemption\nmetadata: {name: x}\nspec: {namespace: team}\n";
    let report = check_documents(&docs(input), &CheckOptions::default());
    assert_eq!(report.exit_code(), 2);
    assert!(report.errors[0].message.contains("StaticKeyExemption x"));
}

#[test]
fn malformed_workload_is_an_input_error_with_position() {
    let input = "kind: Pod\nmetadata: {name: p}\nspec: {containers: 5}\n";
    let report = check_documents(&docs(input), &CheckOptions::default());
    assert_eq!(report.exit_code(), 2);
    let text = render_errors(&report, false);
    assert!(
        text.contains("error: t.yaml (document 1): Pod p: spec.containers: expected an array"),
        "{text}"
    );
}
