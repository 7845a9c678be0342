//! The operator's own IAM policy (`docs/operator-iam-policy*.json`), evaluated against every
//! call the controller makes (allowed) and against escalation attempts (refused).

use hatrack::policy::eval::{Decision, Request, evaluate};
use hatrack::policy::{self, DocumentKind};
use serde_json::Value;

const ACCOUNT: &str = "111122223333";
const CLUSTER: &str = "prod-eu";
const BOUNDARY: &str = "arn:aws:iam::111122223333:policy/hatrack-boundary";
const OWN_ROLE: &str = "arn:aws:iam::111122223333:role/hatrack/payments-reader-0123456789ab";
const REGION: &str = "eu-west-1";
const CLUSTER_ARN: &str = "arn:aws:eks:eu-west-1:111122223333:cluster/prod-eu";
const ASSOCIATION: &str =
    "arn:aws:eks:eu-west-1:111122223333:podidentityassociation/prod-eu/a-0123456789abcdefg";

fn load(file: &str) -> Value {
    let text =
        std::fs::read_to_string(format!("{}/docs/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let text = text
        .replace("${ACCOUNT_ID}", ACCOUNT)
        .replace("${CLUSTER_NAME}", CLUSTER)
        .replace("${BOUNDARY_ARN}", BOUNDARY)
        .replace("${REGION}", REGION);
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

fn eks_req(action: &str, resource: &str) -> Request {
    Request {
        action: format!("eks:{action}"),
        resource: Some(resource.into()),
        ..Request::default()
    }
}

fn creating_association(r: Request) -> Request {
    let mut r = r
        .with("aws:RequestTag/hatrack.dev/cluster", CLUSTER)
        .with("aws:RequestTag/hatrack.dev/namespace", "payments")
        .with("aws:RequestTag/hatrack.dev/name", "reader");
    for k in [
        "hatrack.dev/cluster",
        "hatrack.dev/namespace",
        "hatrack.dev/name",
    ] {
        r = r.with("aws:TagKeys", k);
    }
    r
}

/// Passing the binding's role to EKS Pod Identity, as creating or updating an association does.
fn pass_to_pod_identity(role: &str) -> Request {
    req("PassRole", role).with("iam:PassedToService", "pods.eks.amazonaws.com")
}

/// Every authorisation one EKS operation of the controller needs.
fn controller_eks_call(op: &str) -> Vec<Request> {
    match op {
        "ListPodIdentityAssociations" => vec![eks_req(op, CLUSTER_ARN)],
        // Foreign associations are read too (to report them), so no tag condition.
        "DescribePodIdentityAssociation" => vec![eks_req(op, ASSOCIATION)],
        "CreatePodIdentityAssociation" => vec![
            creating_association(eks_req(op, CLUSTER_ARN)),
            creating_association(eks_req("TagResource", ASSOCIATION)),
            pass_to_pod_identity(OWN_ROLE),
        ],
        "UpdatePodIdentityAssociation" => vec![
            owned(eks_req(op, ASSOCIATION)),
            pass_to_pod_identity(OWN_ROLE),
        ],
        _ => vec![owned(eks_req(op, ASSOCIATION))],
    }
}

#[test]
fn every_eks_call_the_controller_makes_is_allowed() {
    for file in [
        "operator-iam-policy.json",
        "operator-iam-policy-without-boundary.json",
    ] {
        let doc = load(file);
        for op in hatrack::eks::EKS_OPERATIONS {
            for r in controller_eks_call(op) {
                assert_eq!(
                    decide(&doc, &r),
                    Decision::Allow,
                    "{file}: {op} refused: {} on {:?}",
                    r.action,
                    r.resource
                );
            }
        }
    }
}

#[test]
fn association_escalations_are_refused() {
    let other_cluster_arn = "arn:aws:eks:eu-west-1:111122223333:cluster/staging";
    let other_cluster_association =
        "arn:aws:eks:eu-west-1:111122223333:podidentityassociation/staging/a-0123456789abcdefg";
    let other_region = "arn:aws:eks:us-east-1:111122223333:cluster/prod-eu";
    for file in [
        "operator-iam-policy.json",
        "operator-iam-policy-without-boundary.json",
    ] {
        let doc = load(file);
        let attempts: Vec<(&str, Request)> = vec![
            (
                "create without ownership tags",
                eks_req("CreatePodIdentityAssociation", CLUSTER_ARN),
            ),
            (
                "create tagged for another cluster",
                eks_req("CreatePodIdentityAssociation", CLUSTER_ARN)
                    .with("aws:RequestTag/hatrack.dev/cluster", "staging")
                    .with("aws:RequestTag/hatrack.dev/namespace", "n")
                    .with("aws:RequestTag/hatrack.dev/name", "n"),
            ),
            (
                "create in another cluster",
                creating_association(eks_req("CreatePodIdentityAssociation", other_cluster_arn)),
            ),
            (
                "create in a same-named cluster of another region",
                creating_association(eks_req("CreatePodIdentityAssociation", other_region)),
            ),
            (
                "list another cluster's associations",
                eks_req("ListPodIdentityAssociations", other_cluster_arn),
            ),
            (
                "update a foreign association",
                eks_req("UpdatePodIdentityAssociation", ASSOCIATION),
            ),
            (
                "delete a foreign association",
                eks_req("DeletePodIdentityAssociation", ASSOCIATION),
            ),
            (
                "delete another cluster's association",
                eks_req("DeletePodIdentityAssociation", other_cluster_association)
                    .with("aws:ResourceTag/hatrack.dev/cluster", "staging"),
            ),
            (
                "retag another cluster's association as ours",
                creating_association(eks_req("TagResource", ASSOCIATION))
                    .with("aws:ResourceTag/hatrack.dev/cluster", "staging"),
            ),
            (
                "release ownership of an own association",
                owned(eks_req("UntagResource", ASSOCIATION))
                    .with("aws:TagKeys", "hatrack.dev/cluster"),
            ),
            (
                "pass a role outside the hatrack path to Pod Identity",
                pass_to_pod_identity("arn:aws:iam::111122223333:role/admin"),
            ),
            (
                "pass a hatrack role to another service",
                req("PassRole", OWN_ROLE).with("iam:PassedToService", "ec2.amazonaws.com"),
            ),
            ("delete a cluster", eks_req("DeleteCluster", CLUSTER_ARN)),
        ];
        for (what, r) in attempts {
            assert_ne!(decide(&doc, &r), Decision::Allow, "{file}: allowed: {what}");
        }
    }
}
