//! The documentation holds together: every relative link and `#anchor` in README.md and
//! docs/*.md resolves (anchors as GitHub makes them from headings), every repository path the
//! docs name in code spans exists, and the README's first binding shows what `hatrack plan`
//! really prints for it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use pulldown_cmark::{BrokenLink, Event, LinkType, Options, Parser, Tag, TagEnd};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, docs/*.md (not docs/_pending/, a staging area) and BENCHMARKS.md, relative to the
/// repository root.
fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(root()).unwrap().to_path_buf())
        .collect();
    docs.sort();
    docs.insert(0, PathBuf::from("README.md"));
    docs.push(PathBuf::from("BENCHMARKS.md"));
    docs
}

fn parser(text: &str) -> Parser<'_> {
    Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH)
}

/// GitHub's anchor for a heading: lower case, every character but letters, digits, `_`, `-`
/// and spaces dropped, spaces turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor of a document, with GitHub's `-1`, `-2` suffixes for repeated headings.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut heading: Option<String> = None;
    for event in parser(text) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let s = slug(&heading.take().unwrap());
                let n = seen.entry(s.clone()).or_default();
                out.insert(if *n == 0 {
                    s.clone()
                } else {
                    format!("{s}-{n}")
                });
                *n += 1;
            }
            _ => {}
        }
    }
    out
}

/// Normalises `a/./b/../c` without touching the file system (the target may not exist).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(root().join(&doc)).unwrap();
        let mut broken_refs = Vec::new();
        let mut links = Vec::new();
        {
            let mut callback = |link: BrokenLink<'_>| {
                // `[text][ref]` and `[text][]` whose definition is missing; a bare `[text]`
                // is ordinary prose.
                if link.link_type != LinkType::Shortcut {
                    broken_refs.push(link.reference.to_string());
                }
                None
            };
            let events = Parser::new_with_broken_link_callback(
                &text,
                Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH,
                Some(&mut callback),
            );
            for event in events {
                if let Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) =
                    event
                {
                    links.push(dest_url.to_string());
                }
            }
        }
        for r in broken_refs {
            problems.push(format!(
                "{}: reference link [{r}] has no definition",
                doc.display()
            ));
        }
        for dest in links {
            if dest.contains("://") || dest.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match dest.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (dest.as_str(), None),
            };
            let target = if path.is_empty() {
                doc.clone()
            } else {
                normalise(&doc.parent().unwrap().join(path))
            };
            let full = root().join(&target);
            if !full.exists() {
                problems.push(format!(
                    "{}: link ({dest}): {} does not exist",
                    doc.display(),
                    target.display()
                ));
                continue;
            }
            if let Some(anchor) = anchor {
                if target.extension().is_none_or(|e| e != "md") {
                    problems.push(format!(
                        "{}: link ({dest}): an anchor into a file that is not Markdown",
                        doc.display()
                    ));
                    continue;
                }
                let target_text = std::fs::read_to_string(&full).unwrap();
                if !anchors(&target_text).contains(anchor) {
                    problems.push(format!(
                        "{}: link ({dest}): no heading of {} has the anchor #{anchor}",
                        doc.display(),
                        target.display()
                    ));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} relative links found: is the parser reading the docs?"
    );
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

/// Generated, never committed: named in the fuzzing instructions.
const GENERATED: [&str; 3] = ["fuzz/target", "fuzz/artifacts/", "fuzz/corpus/"];

/// Code spans that start like a repository path (`src/…`, `tests/…`, …) name a file or folder
/// that exists, so a moved file cannot leave the docs pointing at nothing.
#[test]
fn paths_named_in_the_docs_exist() {
    const ROOTS: [&str; 11] = [
        "src/",
        "tests/",
        "scripts/",
        "benches/",
        "bench/",
        "charts/",
        "crates/",
        "docs/",
        "fuzz/",
        "examples/",
        "crds/",
    ];
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(root().join(&doc)).unwrap();
        for event in parser(&text) {
            let Event::Code(code) = event else { continue };
            if !ROOTS.iter().any(|r| code.starts_with(r)) {
                continue;
            }
            // `tests/iam_moto.rs::a_test`, `scripts/x.sh [ARGS]`: the path is the first word.
            let path = code.split("::").next().unwrap();
            let path = path
                .split(' ')
                .next()
                .unwrap()
                .trim_end_matches([',', ';', ':']);
            if path.contains(['…', '*', '<', '>', '{', '}', '$', '[']) {
                continue; // a pattern or a placeholder, not a path
            }
            if GENERATED.iter().any(|g| path.starts_with(g)) {
                continue;
            }
            checked += 1;
            let exists = root().join(path).exists();
            if !exists {
                problems.push(format!("{}: `{code}` does not exist", doc.display()));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} paths found: is the parser reading the docs?"
    );
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "paths the docs name:\n{}",
        problems.join("\n")
    );
}

/// The fenced blocks (language, text) under the README heading `heading`.
fn blocks_under(text: &str, heading: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_heading: Option<String> = None;
    let mut current: Option<String> = None;
    let mut block: Option<(String, String)> = None;
    for event in parser(text) {
        match event {
            Event::Start(Tag::Heading { .. }) => in_heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => current = in_heading.take(),
            Event::Start(Tag::CodeBlock(pulldown_cmark::CodeBlockKind::Fenced(lang))) => {
                block = Some((lang.to_string(), String::new()))
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = in_heading.as_mut() {
                    h.push_str(&t);
                } else if let Some((_, b)) = block.as_mut() {
                    b.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some(b) = block.take()
                    && current.as_deref() == Some(heading)
                {
                    out.push(b);
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn the_readme_first_binding_shows_what_plan_prints() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let args = [
        "plan",
        "--cluster-name",
        "demo",
        "--cluster-region",
        "eu-west-1",
        "--account-id",
        "111122223333",
        "--oidc-issuer",
        "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE",
        "examples/minimal.yaml",
    ];
    assert!(
        readme.contains(&format!("cargo run -- {}", args.join(" "))),
        "README's first binding no longer runs `plan` with these arguments: {args:?}"
    );
    let blocks = blocks_under(&readme, "A first binding");
    let yaml = blocks
        .iter()
        .find(|(lang, _)| lang == "yaml")
        .expect("a yaml block under \"A first binding\"");
    let example = std::fs::read_to_string(root().join("examples/minimal.yaml")).unwrap();
    assert_eq!(
        yaml.1, example,
        "README shows examples/minimal.yaml as it is"
    );
    let shown = blocks
        .iter()
        .find(|(lang, _)| lang == "json")
        .expect("a json block under \"A first binding\"");
    let shown: serde_json::Value = serde_json::from_str(&shown.1).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_hatrack"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hatrack plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown, printed,
        "README's plan output differs from what `hatrack plan` prints"
    );
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(
        slug("No static AWS keys: the admission webhook and hatrack check"),
        "no-static-aws-keys-the-admission-webhook-and-hatrack-check"
    );
    assert_eq!(
        slug("The operator's own IAM permissions"),
        "the-operators-own-iam-permissions"
    );
    assert_eq!(
        slug("A webhook outside the cluster: webhook.url"),
        "a-webhook-outside-the-cluster-webhookurl"
    );
    let repeated = anchors("# Notes\n\n## Notes\n\n## Notes\n");
    assert_eq!(
        repeated,
        BTreeSet::from([
            "notes".to_string(),
            "notes-1".to_string(),
            "notes-2".to_string()
        ])
    );
}
