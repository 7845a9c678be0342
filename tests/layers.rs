//! The layers the workspace promises (README, "How the code is laid out"), checked on the
//! resolved dependency graph: the pure core can reach no Kubernetes client, AWS SDK, async
//! runtime or HTTP stack, and the shipped binary does not carry the test-only IAM evaluator.
//! The compiler enforces the layering only as long as these dependencies stay out of the
//! core's Cargo.toml; this test fails the day one comes in, directly or through another crate.

use std::collections::BTreeSet;
use std::process::Command;

/// Crates (by name prefix) that mean I/O: a client, a runtime or an SDK.
const FORBIDDEN_IN_CORE: &[&str] = &[
    "kube-client",
    "kube-runtime",
    "kube",
    "tokio",
    "tokio-",
    "hyper",
    "reqwest",
    "aws-",
    "tower",
    "tracing-subscriber",
];

/// Every package in `package`'s normal (non-dev, non-build) dependency tree.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn is_forbidden(name: &str) -> bool {
    FORBIDDEN_IN_CORE.iter().any(|f| {
        if f.ends_with('-') {
            name.starts_with(f)
        } else {
            name == *f
        }
    })
}

#[test]
fn the_core_reaches_no_client_sdk_or_runtime() {
    let deps = normal_dependencies("hatrack-core");
    // The tree is read, not empty: the core's own direct dependencies are in it.
    for expected in ["hatrack-core", "kube-core", "k8s-openapi", "serde_json"] {
        assert!(deps.contains(expected), "{expected} missing from {deps:?}");
    }
    let io: Vec<&String> = deps.iter().filter(|d| is_forbidden(d)).collect();
    assert!(
        io.is_empty(),
        "hatrack-core depends on I/O crates {io:?}; move the code that needs them to the hatrack crate"
    );
}

#[test]
fn the_check_itself_recognises_io_crates() {
    for name in [
        "tokio",
        "tokio-util",
        "kube",
        "kube-runtime",
        "aws-sdk-iam",
        "aws-config",
    ] {
        assert!(is_forbidden(name), "{name}");
    }
    for name in ["kube-core", "kube-derive", "serde", "towel"] {
        assert!(!is_forbidden(name), "{name}");
    }
}

#[test]
fn the_binary_does_not_ship_the_test_only_evaluator() {
    let deps = normal_dependencies("hatrack");
    assert!(deps.contains("hatrack-core"), "{deps:?}");
    assert!(
        !deps.contains("iam-eval"),
        "iam-eval is the tests' oracle and must stay a dev-dependency"
    );
}
