//! What the kubelet does to strings before a process sees them: `$(VAR)` expansion of env
//! values, `command` and `args` (and, with static env values only, probe exec commands), and
//! the lexical form of file paths. Keys assembled from several env literals, and credentials
//! files named by a path spelled differently from the mount, are found on these forms.

use std::borrow::Cow;

/// The longest single string Linux passes to a process (`MAX_ARG_STRLEN`, 32 pages): a longer
/// expanded env value or argument makes the container fail to start, so nothing is scanned
/// past it.
pub const MAX_STRING: usize = 128 * 1024;

/// What a container's expanded env values and arguments may add up to before expansion
/// stops: Linux refuses to start a process whose arguments and environment exceed 6 MiB
/// (three quarters of the largest stack limit it honours for them).
pub const CONTAINER_BUDGET: usize = 6 * 1024 * 1024;

/// An expansion that exceeds what a process can be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// Expands `$(NAME)` references in `input` as the kubelet does: `$$` is a `$`, `$(NAME)` is
/// the value `lookup` gives for NAME, or stays as it is when NAME is unknown; anything else is
/// kept. Borrows `input` when nothing changes. `budget` is what the container may still
/// expand to; it is charged with the length of every changed result.
pub fn expand<'a, 'm>(
    input: &'a str,
    lookup: &dyn Fn(&str) -> Option<&'m str>,
    budget: &mut usize,
) -> Result<Cow<'a, str>, TooLong> {
    if !input.contains('$') {
        return Ok(Cow::Borrowed(input));
    }
    let b = input.as_bytes();
    let mut out = String::new();
    let mut changed = false;
    let mut last = 0;
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        match b[i + 1] {
            b'$' => {
                out.push_str(&input[last..=i]);
                i += 2;
                last = i;
                changed = true;
            }
            b'(' => match memchr::memchr(b')', &b[i + 2..]) {
                Some(close) => {
                    let end = i + 2 + close + 1;
                    if let Some(value) = lookup(&input[i + 2..end - 1]) {
                        out.push_str(&input[last..i]);
                        out.push_str(value);
                        last = end;
                        changed = true;
                        if out.len() > MAX_STRING {
                            return Err(TooLong);
                        }
                    }
                    i = end;
                }
                None => i += 2,
            },
            // A `$` before anything else is kept, and so is what follows it.
            _ => i += 2,
        }
    }
    if !changed {
        return Ok(Cow::Borrowed(input));
    }
    out.push_str(&input[last..]);
    if out.len() > MAX_STRING || out.len() > *budget {
        return Err(TooLong);
    }
    *budget -= out.len();
    Ok(Cow::Owned(out))
}

/// Whether `a` directly followed by `b` occurs in `h` (a `memmem` searcher costs more to build
/// than these short strings take to scan).
pub fn has_pair(h: &[u8], a: u8, b: u8) -> bool {
    memchr::memchr_iter(a, h).any(|i| h.get(i + 1) == Some(&b))
}

/// Whether `text` refers to a var (`$(`).
pub fn refers(text: &str) -> bool {
    has_pair(text.as_bytes(), b'$', b'(')
}

/// The absolute, lexically clean form of `path` as a process in `working_dir` opens it:
/// relative paths are taken from `working_dir` (`/` when the pod does not set it: the image's
/// WORKDIR is not visible), and `//`, `/./` and `..` are resolved as Go's `path.Clean` does.
pub fn resolve_path<'a>(path: &'a str, working_dir: &str) -> Cow<'a, str> {
    // Most paths are clean already: no allocation for them.
    let b = path.as_bytes();
    if b.first() == Some(&b'/')
        && (b.len() == 1 || b.last() != Some(&b'/'))
        && !has_pair(b, b'/', b'/')
        && !has_pair(b, b'/', b'.')
    {
        return Cow::Borrowed(path);
    }
    let joined: Cow<'_, str> = if path.starts_with('/') {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(format!("{working_dir}/{path}"))
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = String::with_capacity(joined.len() + 1);
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(input: &str) -> String {
        let vars = |n: &str| match n {
            "VAR_A" => Some("A"),
            "VAR_B" => Some("B"),
            "VAR_REF" => Some("$(VAR_A)"),
            "VAR_EMPTY" => Some(""),
            _ => None,
        };
        let mut budget = CONTAINER_BUDGET;
        expand(input, &vars, &mut budget).unwrap().into_owned()
    }

    #[test]
    fn expands_as_the_kubelet_does() {
        // The cases of Kubernetes' third_party/forked/golang/expansion tests.
        for (input, expected) in [
            ("$(VAR_A)", "A"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("___$(VAR_B)___", "___B___"),
            ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_A)bar", "foo\\Abar"),
            ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
            ("$?_boo_$!", "$?_boo_$!"),
            ("$VAR_A", "$VAR_A"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
            ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
            ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
            ("$$$$$$$(VAR_A)", "$$$A"),
            ("${VAR_A}", "${VAR_A}"),
            ("$(VAR_B)_______$(A", "B_______$(A"),
            ("$(VAR_A)foobarzab$", "Afoobarzab$"),
            ("--$($($($($--", "--$($($($($--"),
            ("$(foo$$var)", "$(foo$$var)"),
            ("é$(VAR_A)€", "éA€"),
        ] {
            assert_eq!(exp(input), expected, "{input}");
        }
    }

    #[test]
    fn expansion_is_bounded_by_what_a_process_can_be_given() {
        let big = "x".repeat(MAX_STRING / 2 + 1);
        let vars = |n: &str| (n == "BIG").then_some(big.as_str());
        let mut budget = CONTAINER_BUDGET;
        assert!(expand("$(BIG)", &vars, &mut budget).is_ok());
        assert_eq!(expand("$(BIG)$(BIG)", &vars, &mut budget), Err(TooLong));
        let mut small = 10;
        assert_eq!(expand("$(BIG)", &vars, &mut small), Err(TooLong));
    }

    #[test]
    fn resolves_paths_lexically_against_the_working_dir() {
        for (path, wd, expected) in [
            ("/creds//credentials", "", "/creds/credentials"),
            ("/creds/./credentials", "", "/creds/credentials"),
            ("/tmp/../creds/x/../credentials", "", "/creds/credentials"),
            ("credentials", "/creds", "/creds/credentials"),
            ("../creds/credentials", "/app", "/creds/credentials"),
            ("./.aws/credentials", "", "/.aws/credentials"),
            ("/../..", "", "/"),
            ("/", "", "/"),
            ("/etc/aws/", "", "/etc/aws"),
            ("/home/app/.aws", "", "/home/app/.aws"),
        ] {
            assert_eq!(resolve_path(path, wd), expected, "{path} in {wd}");
        }
    }
}
