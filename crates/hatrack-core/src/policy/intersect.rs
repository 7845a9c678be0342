//! Whether two IAM wildcard patterns (`*`, `?`) can match a common string: exact, not a
//! prefix test. Used to decide whether a granted action pattern could include a denied one.

/// The part of a pattern before its first wildcard.
fn literal_prefix(p: &str) -> &str {
    p.find(['*', '?']).map_or(p, |i| &p[..i])
}

/// Whether some string matches both `a` and `b`. Breadth-first search over pairs of pattern
/// positions, O(|a|·|b|): `*` may match nothing or swallow one character the other side
/// consumes; two literals must agree (case-insensitively when asked), `?` agrees with anything.
pub fn patterns_intersect(a: &str, b: &str, ignore_case: bool) -> bool {
    // Fast rejection: a common string starts with both literal prefixes (up to the first
    // wildcard), so the shorter must begin the longer. Most pairs (other services) end here.
    // (Bytes, and ASCII case folding: action and ARN patterns are ASCII; others skip this.)
    let (pa, pb) = (literal_prefix(a), literal_prefix(b));
    if pa.is_ascii() && pb.is_ascii() {
        let agree = pa.bytes().zip(pb.bytes()).all(|(x, y)| {
            if ignore_case {
                x.eq_ignore_ascii_case(&y)
            } else {
                x == y
            }
        });
        if !agree {
            return false;
        }
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut seen = vec![false; (n + 1) * (m + 1)];
    let mut stack = vec![(0usize, 0usize)];
    let same = |x: char, y: char| {
        if ignore_case {
            x.to_lowercase().eq(y.to_lowercase())
        } else {
            x == y
        }
    };
    while let Some((i, j)) = stack.pop() {
        let idx = i * (m + 1) + j;
        if seen[idx] {
            continue;
        }
        seen[idx] = true;
        if i == n && j == m {
            return true;
        }
        let ai = a.get(i).copied();
        let bj = b.get(j).copied();
        if ai == Some('*') {
            stack.push((i + 1, j));
            if bj.is_some() {
                stack.push((i, j + 1));
            }
        }
        if bj == Some('*') {
            stack.push((i, j + 1));
            if ai.is_some() {
                stack.push((i + 1, j));
            }
        }
        if let (Some(x), Some(y)) = (ai, bj)
            && x != '*'
            && y != '*'
            && (x == '?' || y == '?' || same(x, y))
        {
            stack.push((i + 1, j + 1));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::patterns_intersect as meet;
    use crate::policy::wildcard::matches;
    use proptest::prelude::*;

    #[test]
    fn the_examples_of_the_guardrail_docs() {
        for granted in [
            "*",
            "iam:*",
            "IAM:createrole",
            "i*:Create*",
            "iam:?reateRole",
            "*:*",
            "*Role",
        ] {
            assert!(
                meet(granted, "iam:*", true),
                "{granted} should intersect iam:*"
            );
        }
        for granted in ["s3:*", "s3:GetObject", "ia:*", "iamx:*", "sts:AssumeRole"] {
            assert!(
                !meet(granted, "iam:*", true),
                "{granted} should not intersect iam:*"
            );
        }
        assert!(!meet("IAM:createrole", "iam:*", false));
        assert!(meet("sts:Assume*", "sts:AssumeRole", true));
        assert!(!meet("sts:AssumeRoleWith*", "sts:AssumeRole", true));
        assert!(meet("", "*", true));
        assert!(!meet("", "?", true));
    }

    /// Every string over {a, b, :} up to length `max`.
    fn all_strings(max: usize) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..max {
            let mut next = Vec::new();
            for s in &frontier {
                for c in ['a', 'b', ':'] {
                    next.push(format!("{s}{c}"));
                }
            }
            out.extend(next.iter().cloned());
            frontier = next;
        }
        out
    }

    proptest! {
        /// Agrees with brute force: patterns of length ≤ 3 that share a string share one of
        /// length ≤ 6, and every string up to 6 characters is tried.
        #[test]
        fn agrees_with_brute_force(a in "[ab:*?]{0,3}", b in "[ab:*?]{0,3}") {
            let witness = all_strings(6).into_iter().find(|s| matches(&a, s, false) && matches(&b, s, false));
            prop_assert_eq!(meet(&a, &b, false), witness.is_some(), "a={:?} b={:?} witness={:?}", a, b, witness);
        }

        /// Symmetric, and a pattern always meets itself and `*`.
        #[test]
        fn symmetric_and_reflexive(a in "[a-c:*?]{0,8}", b in "[a-c:*?]{0,8}") {
            prop_assert_eq!(meet(&a, &b, true), meet(&b, &a, true));
            prop_assert!(meet(&a, &a, true));
            prop_assert!(meet(&a, "*", true));
        }

        /// A literal string meets a pattern exactly when the pattern matches it.
        #[test]
        fn literal_meets_pattern_iff_it_matches(p in "[ab*?]{0,6}", s in "[ab]{0,6}") {
            prop_assert_eq!(meet(&p, &s, false), matches(&p, &s, false));
        }
    }
}
