//! The operator's own IAM policy (`docs/operator-iam-policy*.json`), evaluated against every
//! call the controller makes (allowed) and against escalation attempts (refused).

use hatrack::policy::eval::{Decision, Request, evaluate};
use hatrack::policy::{self, DocumentKind};
use serde_json::Value;

const ACCOUNT: &str = "111122223333";
const CLUSTER: &str = "prod-eu";
const BOUNDARY: &str = "arn:aws:iam::111122223333:policy/hatrack-boundary";
const CLUSTER_ARN: &str = "arn:aws:eks:eu-west-1:111122223333:cluster/prod-eu";
const OWN_ROLE: &str = "arn:aws:iam::111122223333:role/hatrack/payments-reader-0123456789ab";

fn load(file: &str) -> Value {
    let text =
        std::fs::read_to_string(format!("{}/docs/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let text = text
        .replace("${ACCOUNT_ID}", ACCOUNT)
        .replace("${CLUSTER_NAME}", CLUSTER)
        .replace("${CLUSTER_ARN}", CLUSTER_ARN)
        .replace("${BOUNDARY_ARN}", BOUNDARY);
    serde_json::from_str(&text).unwrap()
}

fn req(action: &str, resource: &str) -> Request {
    Request {
        action: format!("iam:{action}"),
        resource: Some(resource.into()),
        ..Request::default()
    }
}

fn owned(r: Request) -> Request {
    r.with("aws:ResourceTag/hatrack.dev/cluster", CLUSTER)
        .with("aws:ResourceTag/hatrack.dev/cluster-arn", CLUSTER_ARN)
        .with("aws:ResourceTag/hatrack.dev/namespace", "payments")
        .with("aws:ResourceTag/hatrack.dev/name", "reader")
}

fn creating(r: Request, boundary: Option<&str>) -> Request {
    let mut r = r
        .with("aws:RequestTag/hatrack.dev/cluster", CLUSTER)
        .with("aws:RequestTag/hatrack.dev/namespace", "payments")
        .with("aws:RequestTag/hatrack.dev/name", "reader")
        .with("aws:RequestTag/team", "payments");
    for k in [
        "hatrack.dev/cluster",
        "hatrack.dev/namespace",
        "hatrack.dev/name",
        "team",
    ] {
        r = r.with("aws:TagKeys", k);
    }
    match boundary {
        Some(b) => r.with("iam:PermissionsBoundary", b),
        None => r,
    }
}

/// The request the controller sends for one operation on its own role.
fn controller_call(op: &str, boundary: Option<&str>) -> Request {
    match op {
        "GetOpenIDConnectProvider" => req(
            op,
            "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/X",
        ),
        // Guardrails read attached managed policies, AWS's and the account's own.
        "GetPolicy" => req(op, "arn:aws:iam::aws:policy/IAMFullAccess"),
        "GetPolicyVersion" => req(op, "arn:aws:iam::111122223333:policy/team-payments"),
        "CreateRole" => creating(req(op, OWN_ROLE), boundary),
        "PutRolePermissionsBoundary" => {
            let r = owned(req(op, OWN_ROLE));
            match boundary {
                Some(b) => r.with("iam:PermissionsBoundary", b),
                None => r.with(
                    "iam:PermissionsBoundary",
                    "arn:aws:iam::111122223333:policy/any",
                ),
            }
        }
        "TagRole" => owned(req(op, OWN_ROLE))
            .with("aws:RequestTag/team", "ledger")
            .with("aws:TagKeys", "team"),
        "UntagRole" => owned(req(op, OWN_ROLE)).with("aws:TagKeys", "hand-made"),
        _ => owned(req(op, OWN_ROLE)),
    }
}

fn decide(doc: &Value, r: &Request) -> Decision {
    evaluate(doc, r).unwrap()
}

#[test]
fn the_policies_are_valid_iam_documents() {
    for file in [
        "operator-iam-policy.json",
        "operator-iam-policy-without-boundary.json",
    ] {
        policy::parse(&load(file), DocumentKind::Identity)
            .unwrap_or_else(|e| panic!("{file}: {e:?}"));
    }
}

#[test]
fn every_call_the_controller_makes_is_allowed() {
    for (file, boundary) in [
        ("operator-iam-policy.json", Some(BOUNDARY)),
        ("operator-iam-policy-without-boundary.json", None),
    ] {
        let doc = load(file);
        for op in hatrack::iam::IAM_OPERATIONS {
            assert_eq!(
                decide(&doc, &controller_call(op, boundary)),
                Decision::Allow,
                "{file}: {op} refused"
            );
        }
        // Migrating a role an earlier version made (no cluster-arn tag yet): tag it, fix trust.
        for op in ["TagRole", "UpdateAssumeRolePolicy"] {
            let legacy = req(op, OWN_ROLE)
                .with("aws:ResourceTag/hatrack.dev/cluster", CLUSTER)
                .with("aws:RequestTag/hatrack.dev/cluster-arn", CLUSTER_ARN)
                .with("aws:TagKeys", "hatrack.dev/cluster-arn");
            assert_eq!(
                decide(&doc, &legacy),
                Decision::Allow,
                "{file}: {op} of a legacy role"
            );
        }
        // Creating with tags also authorises iam:TagRole with the request's tags.
        assert_eq!(
            decide(&doc, &creating(req("TagRole", OWN_ROLE), boundary)),
            Decision::Allow,
            "{file}: TagRole at creation"
        );
    }
}

#[test]
fn escalation_attempts_are_refused() {
    let doc = load("operator-iam-policy.json");
    let foreign = "arn:aws:iam::111122223333:role/hatrack/someone-elses";
    let outside = "arn:aws:iam::111122223333:role/admin";
    let other_cluster = |r: Request| r.with("aws:ResourceTag/hatrack.dev/cluster", "staging");
    let attempts: Vec<(&str, Request)> = vec![
        (
            "create outside the hatrack path",
            creating(req("CreateRole", outside), Some(BOUNDARY)),
        ),
        (
            "create without ownership tags",
            req("CreateRole", OWN_ROLE).with("iam:PermissionsBoundary", BOUNDARY),
        ),
        (
            "create for another cluster",
            req("CreateRole", OWN_ROLE)
                .with("aws:RequestTag/hatrack.dev/cluster", "staging")
                .with("aws:RequestTag/hatrack.dev/namespace", "n")
                .with("aws:RequestTag/hatrack.dev/name", "n")
                .with("iam:PermissionsBoundary", BOUNDARY),
        ),
        (
            "create without the boundary",
            creating(req("CreateRole", OWN_ROLE), None),
        ),
        (
            "create with another boundary",
            creating(
                req("CreateRole", OWN_ROLE),
                Some("arn:aws:iam::aws:policy/AdministratorAccess"),
            ),
        ),
        (
            "remove a boundary",
            owned(req("DeleteRolePermissionsBoundary", OWN_ROLE)),
        ),
        (
            "swap the boundary",
            owned(req("PutRolePermissionsBoundary", OWN_ROLE)).with(
                "iam:PermissionsBoundary",
                "arn:aws:iam::aws:policy/AdministratorAccess",
            ),
        ),
        (
            "attach a policy to an untagged role",
            req("AttachRolePolicy", foreign),
        ),
        (
            "attach a policy outside the path",
            owned(req("AttachRolePolicy", outside)),
        ),
        (
            "edit another cluster's trust",
            other_cluster(req("UpdateAssumeRolePolicy", foreign)),
        ),
        ("delete an untagged role", req("DeleteRole", foreign)),
        (
            "edit the trust of a same-named cluster's role in another region",
            req("UpdateAssumeRolePolicy", foreign)
                .with("aws:ResourceTag/hatrack.dev/cluster", CLUSTER)
                .with(
                    "aws:ResourceTag/hatrack.dev/cluster-arn",
                    "arn:aws:eks:us-east-1:111122223333:cluster/prod-eu",
                ),
        ),
        (
            "delete a same-named cluster's role in another account's cluster",
            req("DeleteRole", foreign)
                .with("aws:ResourceTag/hatrack.dev/cluster", CLUSTER)
                .with(
                    "aws:ResourceTag/hatrack.dev/cluster-arn",
                    "arn:aws:eks:eu-west-1:444455556666:cluster/prod-eu",
                ),
        ),
        (
            "retag another cluster's role as ours",
            other_cluster(creating(req("TagRole", foreign), Some(BOUNDARY))),
        ),
        (
            "release ownership of an own role",
            owned(req("UntagRole", OWN_ROLE)).with("aws:TagKeys", "hatrack.dev/cluster"),
        ),
        (
            "create a user",
            req("CreateUser", "arn:aws:iam::111122223333:user/x"),
        ),
        (
            "create a policy version",
            req(
                "CreatePolicyVersion",
                "arn:aws:iam::111122223333:policy/hatrack-boundary",
            ),
        ),
        ("pass a role", owned(req("PassRole", OWN_ROLE))),
        (
            "make another version of a policy the default",
            req(
                "SetDefaultPolicyVersion",
                "arn:aws:iam::111122223333:policy/team-payments",
            ),
        ),
        (
            "read another account's policy",
            req("GetPolicyVersion", "arn:aws:iam::999999999999:policy/x"),
        ),
    ];
    for (what, r) in attempts {
        assert_ne!(decide(&doc, &r), Decision::Allow, "allowed: {what}");
    }
    let sts = Request {
        action: "sts:AssumeRole".into(),
        resource: Some(OWN_ROLE.into()),
        ..Request::default()
    };
    assert_ne!(decide(&doc, &sts), Decision::Allow);
}
