//! The operator's own IAM policy (`docs/operator-iam-policy*.json`), evaluated against every
//! call the controller makes (allowed) and against escalation attempts (refused).

use hatrack::policy::{self, DocumentKind};
use iam_eval::{Decision, Request, evaluate};
use serde_json::Value;

const ACCOUNT: &str = "111122223333";
const CLUSTER: &str = "prod-eu";
const BOUNDARY: &str = "arn:aws:iam::111122223333:policy/hatrack-boundary";
const CLUSTER_ARN: &str = "arn:aws:eks:eu-west-1:111122223333:cluster/prod-eu";
const OWN_ROLE: &str = "arn:aws:iam::111122223333:role/hatrack/payments-reader-0123456789ab";
const REGION: &str = "eu-west-1";
const ASSOCIATION: &str =
    "arn:aws:eks:eu-west-1:111122223333:podidentityassociation/prod-eu/a-0123456789abcdefg";
/// The role an IAMAccount names for account 222222222222.
const ACCOUNT_ROLE: &str = "arn:aws:iam::222222222222:role/hatrack-operator";
const CONTROLLER_ROLE: &str = "arn:aws:iam::111122223333:role/hatrack-controller";

fn load(file: &str) -> Value {
    let text =
        std::fs::read_to_string(format!("{}/docs/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let text = text
        .replace("${ACCOUNT_ID}", ACCOUNT)
        .replace("${CLUSTER_NAME}", CLUSTER)
        .replace("${CLUSTER_ARN}", CLUSTER_ARN)
        .replace("${BOUNDARY_ARN}", BOUNDARY)
        .replace("${ACCOUNT_ROLE_ARNS}", ACCOUNT_ROLE)
        .replace(
            "${ADOPTABLE_ROLE_ARNS}",
            "arn:aws:iam::111122223333:role/legacy/*",
        )
        .replace("${CONTROLLER_ROLE_ARN}", CONTROLLER_ROLE)
        .replace("${EXTERNAL_ID}", "prod-eu-hatrack")
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
        // The orphan sweep lists every role under the path (ListRoles has no resource-level
        // permission).
        "ListRoles" => req(op, "*"),
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

#[test]
fn the_controller_assumes_only_the_iam_account_roles() {
    let assume = |role: &str| Request {
        action: "sts:AssumeRole".into(),
        resource: Some(role.into()),
        ..Request::default()
    };
    for file in [
        "operator-iam-policy.json",
        "operator-iam-policy-without-boundary.json",
    ] {
        let doc = load(file);
        assert_eq!(
            decide(&doc, &assume(ACCOUNT_ROLE)),
            Decision::Allow,
            "{file}"
        );
        for other in [
            "arn:aws:iam::222222222222:role/admin",
            "arn:aws:iam::333333333333:role/hatrack-operator",
        ] {
            assert_ne!(
                decide(&doc, &assume(other)),
                Decision::Allow,
                "{file}: {other}"
            );
        }
    }
}

#[test]
fn retained_marks_come_off_but_ownership_never_does() {
    let doc = load("operator-iam-policy.json");
    // A binding made again takes its retained role back: the mark is removed.
    let unmark = owned(req("UntagRole", OWN_ROLE)).with("aws:TagKeys", "hatrack.dev/retained");
    assert_eq!(decide(&doc, &unmark), Decision::Allow);
    let mark = owned(req("TagRole", OWN_ROLE))
        .with("aws:RequestTag/hatrack.dev/retained", "true")
        .with("aws:TagKeys", "hatrack.dev/retained");
    assert_eq!(decide(&doc, &mark), Decision::Allow);
    for key in [
        "hatrack.dev/cluster",
        "hatrack.dev/namespace",
        "hatrack.dev/name",
    ] {
        let release = owned(req("UntagRole", OWN_ROLE))
            .with("aws:TagKeys", "hatrack.dev/retained")
            .with("aws:TagKeys", key);
        assert_ne!(decide(&doc, &release), Decision::Allow, "{key}");
    }
}

#[test]
fn an_account_role_trusts_only_the_controller_with_the_external_id() {
    use iam_eval::Principal;
    let trust = load("operator-account-trust-policy.json");
    policy::parse(&trust, DocumentKind::Trust).unwrap();
    let from = |principal: &str| Request {
        principal: Some(Principal::Aws(principal.into())),
        action: "sts:AssumeRole".into(),
        ..Request::default()
    };
    assert_eq!(
        decide(
            &trust,
            &from(CONTROLLER_ROLE).with("sts:ExternalId", "prod-eu-hatrack")
        ),
        Decision::Allow
    );
    assert_ne!(decide(&trust, &from(CONTROLLER_ROLE)), Decision::Allow);
    assert_ne!(
        decide(
            &trust,
            &from("arn:aws:iam::111122223333:role/other").with("sts:ExternalId", "prod-eu-hatrack")
        ),
        Decision::Allow
    );
}

#[test]
fn adoption_is_scoped_to_untagged_adoptable_roles_and_then_to_owned_ones() {
    const LEGACY: &str = "arn:aws:iam::111122223333:role/legacy/payments";
    let adopted = |r: Request| owned(r).with("aws:ResourceTag/hatrack.dev/adopted", "true");
    let adopting = |r: Request| {
        r.with("aws:RequestTag/hatrack.dev/cluster", CLUSTER)
            .with("aws:RequestTag/hatrack.dev/namespace", "payments")
            .with("aws:RequestTag/hatrack.dev/name", "reader")
            .with("aws:RequestTag/hatrack.dev/adopted", "true")
            .with("aws:TagKeys", "hatrack.dev/cluster")
    };
    for (file, boundary) in [
        ("operator-iam-policy.json", Some(BOUNDARY)),
        ("operator-iam-policy-without-boundary.json", None),
    ] {
        let doc = load(file);
        let with_boundary = |r: Request| match boundary {
            Some(b) => r.with("iam:PermissionsBoundary", b),
            None => r,
        };
        assert_eq!(
            decide(&doc, &req("GetRole", LEGACY)),
            Decision::Allow,
            "{file}"
        );
        assert_eq!(
            decide(&doc, &adopting(req("TagRole", LEGACY))),
            Decision::Allow,
            "{file}: adopt"
        );
        for op in [
            "UpdateAssumeRolePolicy",
            "PutRolePolicy",
            "AttachRolePolicy",
            "UntagRole",
            "DeleteRole",
        ] {
            assert_eq!(
                decide(&doc, &with_boundary(adopted(req(op, LEGACY)))),
                Decision::Allow,
                "{file}: {op} on an adopted role"
            );
        }
        let refused: Vec<(&str, Request)> = vec![
            (
                "adopt a role outside the adoptable path",
                adopting(req("TagRole", "arn:aws:iam::111122223333:role/admin")),
            ),
            (
                "adopt another cluster's role",
                adopting(req("TagRole", LEGACY))
                    .with("aws:ResourceTag/hatrack.dev/cluster", "staging"),
            ),
            (
                "adopt for another cluster",
                req("TagRole", LEGACY)
                    .with("aws:RequestTag/hatrack.dev/cluster", "staging")
                    .with("aws:RequestTag/hatrack.dev/namespace", "n")
                    .with("aws:RequestTag/hatrack.dev/name", "n")
                    .with("aws:RequestTag/hatrack.dev/adopted", "true"),
            ),
            (
                "edit a legacy role not adopted",
                req("AttachRolePolicy", LEGACY),
            ),
            (
                "edit an owned role not marked adopted",
                with_boundary(owned(req("AttachRolePolicy", LEGACY))),
            ),
        ];
        for (what, r) in refused {
            assert_ne!(decide(&doc, &r), Decision::Allow, "{file}: allowed: {what}");
        }
        // IAM sends iam:PermissionsBoundary only with the policy and boundary operations.
        for op in [
            "UpdateAssumeRolePolicy",
            "UpdateRole",
            "TagRole",
            "DeleteRole",
        ] {
            assert_eq!(
                decide(&doc, &adopted(req(op, LEGACY))),
                Decision::Allow,
                "{file}: {op} on an adopted role"
            );
        }
        if boundary.is_some() {
            assert_ne!(
                decide(&doc, &adopted(req("AttachRolePolicy", LEGACY))),
                Decision::Allow,
                "an adopted role without the boundary gets no policy"
            );
        }
    }
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
