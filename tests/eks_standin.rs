//! The EKS Pod Identity association stand-in (tests/support/eks.rs) by itself, driven by the
//! real `aws-sdk-eks` client: shapes, ids and ARNs, the errors EKS answers with, paging.

use hatrack_test_support as support;

use aws_sdk_eks::error::ProvideErrorMetadata;
use support::eks::EksStandIn;

mod builders {
    pub use aws_sdk_eks::operation::create_pod_identity_association::builders::CreatePodIdentityAssociationFluentBuilder;
    pub use aws_sdk_eks::operation::delete_pod_identity_association::builders::DeletePodIdentityAssociationFluentBuilder;
    pub use aws_sdk_eks::operation::describe_pod_identity_association::builders::DescribePodIdentityAssociationFluentBuilder;
    pub use aws_sdk_eks::operation::list_pod_identity_associations::builders::ListPodIdentityAssociationsFluentBuilder;
    pub use aws_sdk_eks::operation::update_pod_identity_association::builders::UpdatePodIdentityAssociationFluentBuilder;
}

const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";
const ROLE: &str = "arn:aws:iam::123456789012:role/hatrack/web-0123456789ab";

async fn standin() -> (EksStandIn, ProdEu) {
    let eks = EksStandIn::start(ACCOUNT, REGION, &["prod-eu"]).await;
    let client = ProdEu(eks.sdk_client());
    (eks, client)
}

/// The SDK's requests on the stand-in's cluster `prod-eu`, with what every test passes.
struct ProdEu(aws_sdk_eks::Client);

impl ProdEu {
    /// A create for ServiceAccount `shop/web` and [`ROLE`].
    fn create(&self) -> builders::CreatePodIdentityAssociationFluentBuilder {
        self.0
            .create_pod_identity_association()
            .cluster_name("prod-eu")
            .namespace("shop")
            .service_account("web")
            .role_arn(ROLE)
    }

    fn describe(&self, id: &str) -> builders::DescribePodIdentityAssociationFluentBuilder {
        self.0
            .describe_pod_identity_association()
            .cluster_name("prod-eu")
            .association_id(id)
    }

    fn update(&self, id: &str) -> builders::UpdatePodIdentityAssociationFluentBuilder {
        self.0
            .update_pod_identity_association()
            .cluster_name("prod-eu")
            .association_id(id)
    }

    fn delete(&self, id: &str) -> builders::DeletePodIdentityAssociationFluentBuilder {
        self.0
            .delete_pod_identity_association()
            .cluster_name("prod-eu")
            .association_id(id)
    }

    fn list(&self) -> builders::ListPodIdentityAssociationsFluentBuilder {
        self.0
            .list_pod_identity_associations()
            .cluster_name("prod-eu")
    }
}

#[tokio::test]
async fn create_describe_update_delete_round_trip() {
    let (eks, client) = standin().await;
    let created = client
        .create()
        .tags("hatrack.dev/cluster", "prod-eu")
        .send()
        .await
        .expect("create");
    let a = created.association().expect("association");
    let id = a.association_id().unwrap().to_string();
    assert!(id.starts_with("a-") && id.len() == 19, "{id}");
    assert!(
        id[2..]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );
    assert_eq!(
        a.association_arn(),
        Some(
            format!("arn:aws:eks:{REGION}:{ACCOUNT}:podidentityassociation/prod-eu/{id}").as_str()
        )
    );
    assert_eq!(a.cluster_name(), Some("prod-eu"));
    assert_eq!(a.namespace(), Some("shop"));
    assert_eq!(a.service_account(), Some("web"));
    assert_eq!(a.role_arn(), Some(ROLE));
    assert!(a.created_at().is_some() && a.modified_at().is_some());

    let described = client.describe(&id).send().await.expect("describe");
    let d = described.association().unwrap();
    assert_eq!(
        d.tags().and_then(|t| t.get("hatrack.dev/cluster")).cloned(),
        Some("prod-eu".to_string())
    );

    let other = "arn:aws:iam::123456789012:role/hatrack/other";
    let updated = client
        .update(&id)
        .role_arn(other)
        .send()
        .await
        .expect("update");
    assert_eq!(updated.association().unwrap().role_arn(), Some(other));
    assert_eq!(eks.associations()[0].role_arn, other);

    let deleted = client.delete(&id).send().await.expect("delete");
    assert_eq!(
        deleted.association().unwrap().association_id(),
        Some(id.as_str())
    );
    assert!(eks.associations().is_empty());
    let calls = eks.calls();
    for op in [
        "CreatePodIdentityAssociation",
        "DescribePodIdentityAssociation",
        "UpdatePodIdentityAssociation",
        "DeletePodIdentityAssociation",
    ] {
        assert_eq!(calls.get(op), Some(&1), "{op}: {calls:?}");
    }
}

#[tokio::test]
async fn a_second_association_for_the_same_service_account_is_in_use() {
    let (_eks, client) = standin().await;
    let first = client.create().send().await.expect("first create");
    let id = first
        .association()
        .unwrap()
        .association_id()
        .unwrap()
        .to_string();
    let err = client.create().send().await.expect_err("duplicate");
    let service = err.as_service_error().expect("a service error");
    assert!(service.is_resource_in_use_exception(), "{service:?}");
    assert_eq!(
        service.message(),
        Some(format!("Association already exists: {id}").as_str())
    );
    // Another ServiceAccount, or the same one in another namespace, is fine.
    client
        .create()
        .service_account("worker")
        .send()
        .await
        .expect("other SA");
    client
        .create()
        .namespace("ledger")
        .send()
        .await
        .expect("other namespace");
}

#[tokio::test]
async fn a_retried_create_with_the_same_token_gets_the_same_association() {
    let (eks, client) = standin().await;
    let create = || client.create().client_request_token("token-1");
    let a = create().send().await.unwrap();
    let b = create().send().await.unwrap();
    assert_eq!(
        a.association().unwrap().association_id(),
        b.association().unwrap().association_id()
    );
    assert_eq!(eks.associations().len(), 1);
}

#[tokio::test]
async fn unknown_clusters_and_ids_are_not_found() {
    let (_eks, client) = standin().await;
    let err = client
        .0
        .list_pod_identity_associations()
        .cluster_name("nope")
        .send()
        .await
        .expect_err("unknown cluster");
    let service = err.as_service_error().unwrap();
    assert!(service.is_resource_not_found_exception(), "{service:?}");
    for result in [
        client
            .describe("a-00000000000000000")
            .send()
            .await
            .map(drop)
            .map_err(|e| e.into_service_error().is_resource_not_found_exception()),
        client
            .update("a-00000000000000000")
            .role_arn(ROLE)
            .send()
            .await
            .map(drop)
            .map_err(|e| e.into_service_error().is_resource_not_found_exception()),
        client
            .delete("a-00000000000000000")
            .send()
            .await
            .map(drop)
            .map_err(|e| e.into_service_error().is_resource_not_found_exception()),
    ] {
        assert_eq!(result, Err(true));
    }
}

#[tokio::test]
async fn bad_parameters_are_invalid() {
    let (eks, client) = standin().await;
    let cases = vec![
        (
            "not a role ARN",
            client.create().role_arn("arn:aws:iam::123456789012:user/u"),
        ),
        ("bad namespace", client.create().namespace("Shop_1")),
        (
            "bad service account",
            client.create().service_account("-web"),
        ),
        ("reserved tag", client.create().tags("aws:owner", "x")),
        ("long tag key", client.create().tags("k".repeat(129), "x")),
    ];
    for (what, request) in cases {
        let err = request.send().await.expect_err(what);
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_invalid_parameter_exception()),
            "{what}: {err:?}"
        );
    }
    let err = client
        .update("a-00000000000000000")
        .role_arn("not-an-arn")
        .send()
        .await
        .expect_err("bad update");
    assert!(err.into_service_error().is_invalid_parameter_exception());
    for max in [0, 101] {
        let err = client
            .list()
            .max_results(max)
            .send()
            .await
            .expect_err("maxResults out of range");
        assert!(err.into_service_error().is_invalid_parameter_exception());
    }
    let err = client
        .list()
        .next_token("forged")
        .send()
        .await
        .expect_err("unknown token");
    assert!(err.into_service_error().is_invalid_parameter_exception());
    assert!(
        eks.associations().is_empty(),
        "nothing made by a bad request"
    );
}

#[tokio::test]
async fn list_filters_and_pages() {
    let (_eks, client) = standin().await;
    for ns in ["shop", "ledger"] {
        for i in 0..5 {
            client
                .create()
                .namespace(ns)
                .service_account(format!("sa-{i}"))
                .send()
                .await
                .unwrap();
        }
    }
    // Pages of two through the five of "shop".
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let out = client
            .list()
            .namespace("shop")
            .max_results(2)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        for a in out.associations() {
            assert_eq!(a.namespace(), Some("shop"));
            assert!(a.association_id().is_some() && a.association_arn().is_some());
            seen.push(a.service_account().unwrap().to_string());
        }
        match out.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["sa-0", "sa-1", "sa-2", "sa-3", "sa-4"]);
    // The SDK's paginator walks the same pages.
    let all: Vec<_> = client
        .list()
        .max_results(3)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(all.len(), 10);
    let one = client
        .list()
        .namespace("ledger")
        .service_account("sa-3")
        .send()
        .await
        .unwrap();
    assert_eq!(one.associations().len(), 1);
    assert!(one.next_token().is_none());
}

#[tokio::test]
async fn a_target_role_gets_an_external_id_kept_until_the_target_goes() {
    let (_eks, client) = standin().await;
    const TARGET: &str = "arn:aws:iam::222222222222:role/hatrack/web-0123456789ab";
    // Without a target role: no external id.
    let plain = client
        .create()
        .service_account("plain")
        .send()
        .await
        .expect("create");
    let plain = plain.association().unwrap();
    assert_eq!(plain.target_role_arn(), None);
    assert_eq!(plain.external_id(), None);

    let created = client
        .create()
        .target_role_arn(TARGET)
        .send()
        .await
        .expect("create with a target role");
    let a = created.association().unwrap();
    let id = a.association_id().unwrap().to_string();
    assert_eq!(a.target_role_arn(), Some(TARGET));
    let external_id = a.external_id().expect("an external id").to_string();
    // A UUID, as EKS makes them.
    let groups: Vec<usize> = external_id.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{external_id}");

    let described = client.describe(&id).send().await.unwrap();
    let d = described.association().unwrap();
    assert_eq!(d.target_role_arn(), Some(TARGET));
    assert_eq!(d.external_id(), Some(external_id.as_str()));

    // Another target: the association's external id stays.
    let other = "arn:aws:iam::333333333333:role/x";
    let updated = client
        .update(&id)
        .target_role_arn(other)
        .send()
        .await
        .unwrap();
    let u = updated.association().unwrap();
    assert_eq!(u.target_role_arn(), Some(other));
    assert_eq!(u.external_id(), Some(external_id.as_str()));
    // An update naming only the role leaves the target as it is.
    let updated = client.update(&id).role_arn(ROLE).send().await.unwrap();
    assert_eq!(
        updated.association().unwrap().target_role_arn(),
        Some(other)
    );
    // An empty target removes it, and the external id with it.
    let cleared = client.update(&id).target_role_arn("").send().await.unwrap();
    let c = cleared.association().unwrap();
    assert_eq!(c.target_role_arn(), None);
    assert_eq!(c.external_id(), None);

    // A malformed target role ARN is a bad parameter.
    let err = client
        .create()
        .service_account("bad")
        .target_role_arn("arn:aws:iam::222222222222:user/x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));
}
