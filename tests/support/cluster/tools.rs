//! The command-line tools the tests run against the cluster (kubectl, helm), found in
//! `.tools/` or through their variables, and files for them in the cluster's directory.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use super::TestCluster;

pub(super) fn tool(env: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let path = crate::repository_root().join(".tools").join(name);
    assert!(
        path.exists(),
        "{name} not found at {}: run scripts/install-test-deps.sh (it builds etcd and \
         kube-apiserver from their Go modules), set {env}, or set HATRACK_TEST_KUBECONFIG to \
         test against a cluster of your own",
        path.display()
    );
    path
}

/// Path of a test tool (`kubectl`, `helm`, ...) in `.tools/`, or from its variable.
pub fn tool_path(env: &str, name: &str) -> PathBuf {
    tool(env, name)
}

/// Runs a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kubectl` against this cluster as administrator (`.tools/kubectl` or `HATRACK_KUBECTL`).
pub fn kubectl(cluster: &TestCluster) -> Command {
    let mut cmd = Command::new(tool("HATRACK_KUBECTL", "kubectl"));
    cmd.env("KUBECONFIG", &cluster.kubeconfig);
    cmd
}

/// `helm` against this cluster as administrator (`.tools/helm` or `HATRACK_HELM`), with its
/// caches and configuration in the cluster's directory instead of `$HOME`.
pub fn helm(cluster: &TestCluster) -> Command {
    let mut cmd = Command::new(tool("HATRACK_HELM", "helm"));
    cmd.env("KUBECONFIG", &cluster.kubeconfig);
    for (var, sub) in [
        ("HELM_CACHE_HOME", "helm/cache"),
        ("HELM_CONFIG_HOME", "helm/config"),
        ("HELM_DATA_HOME", "helm/data"),
    ] {
        cmd.env(var, cluster.dir.join(sub));
    }
    cmd
}

/// Writes `text` to a file in the cluster's directory and returns its path.
pub fn temp_file(cluster: &TestCluster, name: &str, text: &str) -> PathBuf {
    let path = cluster.dir.join(name);
    let mut f = std::fs::File::create(&path).expect("create temp file");
    f.write_all(text.as_bytes()).expect("write temp file");
    path
}
