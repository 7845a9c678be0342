use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    cluster: ClusterArgs,
}

fn parse(args: &[&str]) -> Result<Settings, SettingsError> {
    let mut argv = vec!["x"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv)
        .expect("clap parses")
        .cluster
        .settings()
}

#[test]
fn the_cluster_region_makes_the_arn_the_identity() {
    let base = [
        "--cluster-name",
        "prod",
        "--account-id",
        "111122223333",
        "--default-trust",
        "pod-identity",
    ];
    // Without a region the cluster would be known by its name alone: refused.
    assert_eq!(parse(&base).unwrap_err().flag, "cluster-region");
    let mut args = base.to_vec();
    args.extend(["--cluster-region", " "]);
    assert_eq!(parse(&args).unwrap_err().flag, "cluster-region");
    let mut args = base.to_vec();
    args.extend(["--cluster-region", "eu-west-1"]);
    let s = parse(&args).unwrap();
    assert_eq!(
        s.cluster_arn().as_deref(),
        Some("arn:aws:eks:eu-west-1:111122223333:cluster/prod")
    );
    assert_eq!(s.cluster_identity(), s.cluster_arn().unwrap());
    for bad in ["EU-WEST-1", "eu-west", "eu west 1", "eu-west-100"] {
        let mut args = base.to_vec();
        args.extend(["--cluster-region", bad]);
        assert_eq!(parse(&args).unwrap_err().flag, "cluster-region", "{bad}");
    }
    let mut args = base.to_vec();
    args.extend(["--cluster-region", "us-gov-west-1"]);
    assert!(parse(&args).is_ok());
}

#[test]
fn the_region_falls_back_to_one_given_explicitly_but_the_flag_wins() {
    let cli = |args: &[&str]| {
        let mut argv = vec![
            "x",
            "--cluster-name=prod",
            "--account-id=111122223333",
            "--default-trust=pod-identity",
        ];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("clap parses").cluster
    };
    let s = cli(&[]).settings_with_region(Some("eu-west-1")).unwrap();
    assert_eq!(
        s.cluster_arn().as_deref(),
        Some("arn:aws:eks:eu-west-1:111122223333:cluster/prod")
    );
    let s = cli(&["--cluster-region=us-east-2"])
        .settings_with_region(Some("eu-west-1"))
        .unwrap();
    assert_eq!(s.cluster_region.as_deref(), Some("us-east-2"));
    assert_eq!(
        cli(&[]).settings_with_region(None).unwrap_err().flag,
        "cluster-region"
    );
    assert_eq!(
        cli(&[])
            .settings_with_region(Some("nowhere"))
            .unwrap_err()
            .flag,
        "cluster-region"
    );
}

#[test]
fn parses_valid_flags_and_strips_issuer_scheme() {
    let s = parse(&[
        "--cluster-name=prod",
        "--account-id=111122223333",
        "--cluster-region=us-east-1",
        "--oidc-issuer=https://oidc.eks.us-east-1.amazonaws.com/id/ABC/",
    ])
    .unwrap();
    assert_eq!(
        s.oidc_issuer_host_path.as_deref(),
        Some("oidc.eks.us-east-1.amazonaws.com/id/ABC")
    );
    assert_eq!(
        s.oidc_provider_arn().unwrap(),
        "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"
    );
    assert_eq!(s.role_arn("r"), "arn:aws:iam::111122223333:role/hatrack/r");
}

#[test]
fn rejects_http_issuer_and_bad_account() {
    let e = parse(&[
        "--cluster-name=p",
        "--account-id=111122223333",
        "--oidc-issuer=http://x",
    ])
    .unwrap_err();
    assert_eq!(e.flag, "oidc-issuer");
    let e = parse(&[
        "--cluster-name=p",
        "--account-id=1234",
        "--oidc-issuer=https://x",
    ])
    .unwrap_err();
    assert_eq!(e.flag, "account-id");
}

#[test]
fn irsa_default_requires_an_issuer_but_pod_identity_does_not() {
    let e = parse(&["--cluster-name=p", "--account-id=111122223333"]).unwrap_err();
    assert_eq!(e.flag, "oidc-issuer");
    let s = parse(&[
        "--cluster-name=p",
        "--account-id=111122223333",
        "--cluster-region=eu-west-1",
        "--default-trust=pod-identity",
    ])
    .unwrap();
    assert_eq!(s.default_trust, vec![TrustMechanism::PodIdentity]);
}

#[test]
fn finding_roles_needs_neither_an_issuer_nor_valid_trust_flags() {
    let cli = |args: &[&str]| {
        let mut argv = vec!["x", "--cluster-name=p", "--account-id=111122223333"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("clap parses").cluster
    };
    // IRSA by default and no issuer: building roles is refused, finding them is not.
    let args = cli(&["--cluster-region=eu-west-1", "--oidc-issuer=http://x"]);
    assert_eq!(args.settings().unwrap_err().flag, "oidc-issuer");
    let s = args
        .settings_for(SettingsUse::FindRoles, None)
        .expect("finding roles ignores the trust flags");
    assert_eq!(
        s.cluster_arn().as_deref(),
        Some("arn:aws:eks:eu-west-1:111122223333:cluster/p")
    );
    assert_eq!(s.oidc_issuer_host_path, None);
    // The identity is still checked: the region (or its fallback) and the role path.
    let find = |args: &[&str], fallback| {
        cli(args)
            .settings_for(SettingsUse::FindRoles, fallback)
            .map_err(|e| e.flag)
    };
    assert_eq!(find(&[], None).unwrap_err(), "cluster-region");
    assert!(find(&[], Some("us-east-2")).is_ok());
    assert_eq!(
        find(&["--cluster-region=eu-west-1", "--role-path=x"], None).unwrap_err(),
        "role-path"
    );
}

#[test]
fn rejects_malformed_role_path() {
    let e = parse(&[
        "--cluster-name=p",
        "--account-id=111122223333",
        "--oidc-issuer=https://x",
        "--role-path=hatrack",
    ])
    .unwrap_err();
    assert_eq!(e.flag, "role-path");
}
