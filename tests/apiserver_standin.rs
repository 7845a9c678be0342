//! The in-process API server stand-in, driven through real kube clients, watchers and a
//! `Controller`, so that the fault-injection tests built on it can trust what it does, and
//! that it refuses what it does not serve (those tests run against the real API server).
use hatrack_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams, WatchEvent, WatchParams,
};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, finalizer, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);
const CM_PATH: &str = "/api/v1/namespaces/default/configmaps";

fn config_map(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": data,
    }))
    .expect("config map")
}

fn binding_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("hatrack.dev", "v1alpha1", "IAMRoleBinding");
    ApiResource::from_gvk_with_plural(&gvk, "iamrolebindings")
}

fn bindings(client: Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, ns, &binding_resource())
}

fn binding(name: &str, spec: Value) -> DynamicObject {
    DynamicObject::new(name, &binding_resource()).data(json!({ "spec": spec }))
}

fn api_code(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn generation(obj: &DynamicObject) -> i64 {
    obj.metadata.generation.expect("generation")
}

/// Polls `check` until it holds, failing after [`WAIT`] instead of hanging.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `stream` (a watcher only makes progress when polled), dropping its events, until
/// `check` holds.
async fn drive_until<S: Stream + Unpin>(stream: &mut S, what: &str, check: impl Fn() -> bool) {
    let done = timeout(WAIT, async {
        while !check() {
            tokio::select! {
                _ = stream.next() => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    })
    .await;
    assert!(done.is_ok(), "timed out waiting for {what}");
}

/// Skips watcher events until one satisfies `want`; errors (410, dropped streams) are skipped
/// too, since the watcher recovers from them by itself.
async fn wait_for<K, S>(stream: &mut S, what: &str, want: impl Fn(&watcher::Event<K>) -> bool)
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
{
    let found = timeout(WAIT, async {
        while let Some(item) = stream.next().await {
            if let Ok(event) = item
                && want(&event)
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "watcher never saw {what}");
}

fn applied(event: &watcher::Event<ConfigMap>, name: &str, key: &str, value: &str) -> bool {
    match event {
        watcher::Event::Apply(cm) | watcher::Event::InitApply(cm) => {
            cm.name_any() == name
                && cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(String::as_str)
                    == Some(value)
        }
        _ => false,
    }
}

#[tokio::test]
async fn create_get_list_and_errors_behave_like_the_api_server() {
    let server = ApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");

    let created = cms
        .create(&PostParams::default(), &config_map("a", json!({"k": "v"})))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some());
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert_eq!(meta.generation, Some(1));
    let rv: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();

    cms.create(&PostParams::default(), &config_map("b", json!({})))
        .await
        .unwrap();
    let b = cms.get("b").await.unwrap();
    let rv_b: u64 = b
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv_b > rv, "resourceVersion must increase");

    let got = cms.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");
    let names: Vec<_> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, ["a", "b"]);

    assert_eq!(
        api_code(cms.get("missing").await.unwrap_err()),
        (404, "NotFound".into())
    );
    let again = cms
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await;
    assert_eq!(api_code(again.unwrap_err()), (409, "AlreadyExists".into()));

    // Other namespaces are separate.
    let other: Api<ConfigMap> = Api::namespaced(server.client(), "other");
    assert!(
        other
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn what_is_not_served_is_refused() {
    let server = ApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    cms.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .unwrap();

    let mut generated = config_map("", json!({}));
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let err = cms.create(&PostParams::default(), &generated).await;
    assert_eq!(api_code(err.unwrap_err()).0, 422);

    for params in [
        ListParams::default().labels("app=x"),
        ListParams::default().fields("metadata.name=a"),
    ] {
        assert_eq!(api_code(cms.list(&params).await.unwrap_err()).0, 400);
    }
    let err = cms.delete("a", &DeleteParams::default()).await;
    assert_eq!(api_code(err.unwrap_err()).0, 405);
    let strategic = Patch::Strategic(json!({"data": {"k": "v"}}));
    let err = cms.patch("a", &PatchParams::default(), &strategic).await;
    assert_eq!(api_code(err.unwrap_err()).0, 415);
    let apply = Patch::Apply(config_map("a", json!({"k": "v"})));
    let err = cms
        .patch("a", &PatchParams::apply("m").force(), &apply)
        .await;
    assert_eq!(api_code(err.unwrap_err()).0, 415);
    assert_eq!(server.objects(CM_PATH).len(), 1);
    assert!(server.get_object(&format!("{CM_PATH}/a")).unwrap()["data"]["k"].is_null());
}

#[tokio::test]
async fn cluster_scoped_and_custom_resources_are_served() {
    let server = ApiServer::start().await;
    let client = server.client();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let got = namespaces.get("team-a").await.unwrap();
    assert_eq!(got.metadata.namespace, None);
    assert_eq!(
        namespaces
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(server.get_object("/api/v1/namespaces/team-a").is_some());

    for ns in ["team-a", "team-b"] {
        let api = bindings(client.clone(), ns);
        api.create(
            &PostParams::default(),
            &binding("app", json!({"roleName": ns})),
        )
        .await
        .unwrap();
    }
    let in_a = bindings(client.clone(), "team-a")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(in_a.items.len(), 1);
    assert_eq!(in_a.items[0].data["spec"]["roleName"], "team-a");

    let all: Api<DynamicObject> = Api::all_with(client, &binding_resource());
    let everywhere = all.list(&ListParams::default()).await.unwrap();
    assert_eq!(everywhere.items.len(), 2);
    assert_eq!(everywhere.types.kind, "IAMRoleBindingList");
    let stored = server
        .get_object("/apis/hatrack.dev/v1alpha1/namespaces/team-b/iamrolebindings/app")
        .unwrap();
    assert_eq!(stored["kind"], "IAMRoleBinding");
    assert_eq!(stored["spec"]["roleName"], "team-b");
}

#[tokio::test]
async fn replace_with_stale_resource_version_conflicts() {
    let server = ApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let v1 = cms
        .create(&PostParams::default(), &config_map("a", json!({"k": "1"})))
        .await
        .unwrap();

    let mut v2 = v1.clone();
    v2.data = Some([("k".to_string(), "2".to_string())].into());
    let v2 = cms.replace("a", &PostParams::default(), &v2).await.unwrap();
    assert_ne!(v2.resource_version(), v1.resource_version());

    let mut stale = v1.clone();
    stale.data = Some([("k".to_string(), "3".to_string())].into());
    let err = cms
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_code(err), (409, "Conflict".into()));
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "2");

    // A stale resourceVersion in a merge patch conflicts too.
    let patch = json!({"metadata": {"resourceVersion": v1.resource_version()}, "data": {"k": "4"}});
    let err = cms
        .patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_err();
    assert_eq!(api_code(err), (409, "Conflict".into()));
    let missing = cms
        .replace(
            "nope",
            &PostParams::default(),
            &config_map("nope", json!({})),
        )
        .await;
    assert_eq!(api_code(missing.unwrap_err()).0, 404);
}

#[tokio::test]
async fn merge_and_json_patches_change_the_object() {
    let server = ApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    cms.create(
        &PostParams::default(),
        &config_map("a", json!({"keep": "1", "drop": "x"})),
    )
    .await
    .unwrap();

    let merge = json!({"data": {"drop": null, "added": "2"}, "metadata": {"labels": {"l": "1"}}});
    let merged = cms
        .patch("a", &PatchParams::default(), &Patch::Merge(&merge))
        .await
        .unwrap();
    let data = merged.data.clone().unwrap();
    assert_eq!(data.get("drop"), None);
    assert_eq!(data["keep"], "1");
    assert_eq!(data["added"], "2");
    assert_eq!(merged.labels()["l"], "1");

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/keep", "value": "1"},
        {"op": "replace", "path": "/data/keep", "value": "one"},
    ]))
    .unwrap();
    let patched = cms
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["keep"], "one");

    // A failing `test` operation rejects the whole patch.
    let failing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/keep", "value": "1"},
        {"op": "replace", "path": "/data/keep", "value": "never"},
    ]))
    .unwrap();
    let err = cms
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(failing))
        .await
        .unwrap_err();
    assert_eq!(api_code(err).0, 422);
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["keep"], "one");

    // A JSON patch `test` of a missing path against null passes (kube's finalizer helper).
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["f"]},
    ]))
    .unwrap();
    let finalized = cms
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(finalized.finalizers(), ["f"]);

    // A merge patch does not create an absent object.
    let err = cms
        .patch(
            "ghost",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(err), (404, "NotFound".into()));
}

#[tokio::test]
async fn status_writes_do_not_bump_generation_and_main_writes_keep_status() {
    let server = ApiServer::start().await;
    let api = bindings(server.client(), "default");
    let mut with_status = binding("app", json!({"roleName": "r"}));
    with_status.data["status"] = json!({"ready": true});
    let created = api
        .create(&PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(
        created.data.get("status"),
        None,
        "status is not set on create"
    );

    let status = json!({"status": {"phase": "Ready"}, "spec": {"roleName": "ignored"}});
    let after_status = api
        .patch_status("app", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(after_status.data["status"]["phase"], "Ready");
    assert_eq!(
        after_status.data["spec"]["roleName"], "r",
        "status writes change only status"
    );
    assert_eq!(generation(&after_status), 1);
    assert_ne!(after_status.resource_version(), created.resource_version());

    // Replace on the status subresource works the same way.
    let mut replaced = after_status.clone();
    replaced.data["status"] = json!({"phase": "Replaced"});
    let after_replace = api
        .replace_status("app", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(after_replace.data["status"]["phase"], "Replaced");
    assert_eq!(generation(&after_replace), 1);

    // Writes to the main resource cannot change status.
    let main = json!({"status": {"phase": "Hacked"}, "metadata": {"labels": {"a": "b"}}});
    let after_main = api
        .patch("app", &PatchParams::default(), &Patch::Merge(&main))
        .await
        .unwrap();
    assert_eq!(after_main.data["status"]["phase"], "Replaced");
    assert_eq!(
        generation(&after_main),
        1,
        "metadata-only writes keep generation"
    );
}

#[tokio::test]
async fn spec_change_bumps_generation_and_no_op_writes_change_nothing() {
    let server = ApiServer::start().await;
    let api = bindings(server.client(), "default");
    let created = api
        .create(
            &PostParams::default(),
            &binding("app", json!({"roleName": "r"})),
        )
        .await
        .unwrap();

    let spec = json!({"spec": {"roleName": "changed"}});
    let changed = api
        .patch("app", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    assert_eq!(generation(&changed), 2);

    // Writing the same content again is a no-op: same resourceVersion, no event.
    let rv_before = server.resource_version();
    let same = api
        .patch("app", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    assert_eq!(same.resource_version(), changed.resource_version());
    assert_eq!(server.resource_version(), rv_before);
    assert_eq!(generation(&same), 2);
    assert_ne!(created.resource_version(), same.resource_version());
}

#[tokio::test]
async fn watcher_sees_added_and_modified() {
    let server = ApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    cms.create(
        &PostParams::default(),
        &config_map("before", json!({"k": "0"})),
    )
    .await
    .unwrap();
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    wait_for(&mut events, "the initial list", |e| {
        applied(e, "before", "k", "0")
    })
    .await;
    wait_for(&mut events, "the end of the initial list", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;

    cms.create(&PostParams::default(), &config_map("a", json!({"k": "1"})))
        .await
        .unwrap();
    wait_for(&mut events, "a added", |e| applied(e, "a", "k", "1")).await;
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    wait_for(&mut events, "a modified", |e| applied(e, "a", "k", "2")).await;

    // Objects seeded directly on the server are seen too.
    server.put_object(
        CM_PATH,
        json!({"metadata": {"name": "seeded"}, "data": {"k": "s"}}),
    );
    wait_for(&mut events, "seeded added", |e| {
        applied(e, "seeded", "k", "s")
    })
    .await;
}

#[tokio::test]
async fn watcher_relists_after_dropped_watch_and_gone() {
    let server = ApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    wait_for(&mut events, "the initial list", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;
    cms.create(&PostParams::default(), &config_map("a", json!({"k": "1"})))
        .await
        .unwrap();
    wait_for(&mut events, "a added", |e| applied(e, "a", "k", "1")).await;
    let lists = || {
        server
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == CM_PATH && !r.is_watch())
            .count()
    };
    assert_eq!(lists(), 1);

    server.faults().expire_history();
    server.faults().drop_watches();
    cms.create(&PostParams::default(), &config_map("b", json!({"k": "1"})))
        .await
        .unwrap();
    wait_for(&mut events, "a re-list after 410 Gone", |e| {
        matches!(e, watcher::Event::Init)
    })
    .await;
    wait_for(&mut events, "b in the re-list", |e| {
        applied(e, "b", "k", "1")
    })
    .await;
    assert_eq!(lists(), 2, "the watcher re-listed once");

    cms.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    wait_for(&mut events, "b modified after the re-list", |e| {
        applied(e, "b", "k", "2")
    })
    .await;
}

#[tokio::test]
async fn dropped_watch_resumes_without_relisting() {
    let server = ApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    wait_for(&mut events, "the initial list", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;
    // The watcher opens its watch only when polled after InitDone.
    drive_until(&mut events, "the watch to open", || {
        server.open_watches() == 1
    })
    .await;
    server.faults().drop_watches();
    eventually("the watch to be dropped", || server.open_watches() == 0).await;
    cms.create(&PostParams::default(), &config_map("a", json!({"k": "1"})))
        .await
        .unwrap();
    wait_for(&mut events, "a added", |e| applied(e, "a", "k", "1")).await;
    let requests = server.requests();
    let watches = requests.iter().filter(|r| r.is_watch()).count();
    let lists = requests
        .iter()
        .filter(|r| r.method == "GET" && !r.is_watch())
        .count();
    assert_eq!(
        (lists, watches),
        (1, 2),
        "resumed from the last resourceVersion"
    );
}

#[tokio::test]
async fn watch_from_expired_resource_version_gets_410_gone_event() {
    let server = ApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let cm = cms
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .unwrap();
    let old_rv = cm.resource_version().unwrap();

    // Within the history, a watch replays what happened after its resourceVersion.
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    let wp = WatchParams::default().timeout(1);
    let replayed: Vec<_> = cms
        .watch(&wp, &old_rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(matches!(&replayed[..], [WatchEvent::Modified(cm)] if cm.name_any() == "a"));

    server.faults().expire_history();
    let mut stream = cms.watch(&wp, &old_rv).await.unwrap().boxed();
    let first = timeout(WAIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match first {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn injected_conflict_fails_next_status_write_only() {
    let server = ApiServer::start().await;
    let api = bindings(server.client(), "default");
    api.create(&PostParams::default(), &binding("app", json!({})))
        .await
        .unwrap();
    server
        .faults()
        .fail_next_status_writes(1, "/iamrolebindings/app", 409);

    // Reads and main-resource writes are not affected.
    api.get("app").await.unwrap();
    let labels = json!({"metadata": {"labels": {"a": "b"}}});
    api.patch("app", &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .unwrap();

    let status = Patch::Merge(json!({"status": {"phase": "Ready"}}));
    let err = api
        .patch_status("app", &PatchParams::default(), &status)
        .await
        .unwrap_err();
    assert_eq!(api_code(err), (409, "Conflict".into()));
    let ok = api
        .patch_status("app", &PatchParams::default(), &status)
        .await
        .unwrap();
    assert_eq!(ok.data["status"]["phase"], "Ready");
}

#[tokio::test]
async fn injected_server_errors_and_request_log() {
    let server = ApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    server.faults().fail_next(2, "POST", "/configmaps", 500);
    for _ in 0..2 {
        let err = cms
            .create(&PostParams::default(), &config_map("a", json!({})))
            .await;
        assert_eq!(api_code(err.unwrap_err()), (500, "InternalError".into()));
    }
    cms.create(&PostParams::default(), &config_map("a", json!({"k": "v"})))
        .await
        .unwrap();

    let posts: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 3);
    assert_eq!(posts[2].path, CM_PATH);
    assert_eq!(
        server.get_object(&format!("{CM_PATH}/a")).unwrap()["data"]["k"],
        "v"
    );
}

struct Ctx {
    client: Client,
    applies: AtomicUsize,
}

async fn reconcile(
    cm: Arc<ConfigMap>,
    ctx: Arc<Ctx>,
) -> Result<Action, finalizer::Error<kube::Error>> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), "default");
    finalizer(&api, "hatrack.dev/test", cm, |event| async {
        match event {
            finalizer::Event::Apply(cm) => {
                ctx.applies.fetch_add(1, Ordering::SeqCst);
                let done = json!({"data": {"reconciled": "yes"}});
                api.patch(
                    &cm.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&done),
                )
                .await?;
                Ok(Action::await_change())
            }
            finalizer::Event::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
}

fn error_policy(_: Arc<ConfigMap>, _: &finalizer::Error<kube::Error>, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(50))
}

#[tokio::test]
async fn controller_adds_its_finalizer_and_reconciles_against_the_standin() {
    let server = ApiServer::start().await;
    let client = server.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        applies: AtomicUsize::new(0),
    });
    let controller = Controller::new(cms.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    cms.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .unwrap();
    let path = format!("{CM_PATH}/a");
    eventually("the finalizer and the reconciled data", || {
        server.get_object(&path).is_some_and(|cm| {
            cm["metadata"]["finalizers"] == json!(["hatrack.dev/test"])
                && cm["data"]["reconciled"] == "yes"
        })
    })
    .await;

    assert!(ctx.applies.load(Ordering::SeqCst) >= 1);
    controller.abort();
}
