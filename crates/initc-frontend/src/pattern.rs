//! FQN globs for overrides (`*` any run of characters, `?` one character) and `{a..b}`
//! repetition in generic module names.

pub use initc_shard::glob_match;

/// Expands every `{a..b}` (inclusive, a <= b) into the cartesian product of names, in order:
/// `layers.{0..1}.fc{1..2}` → `layers.0.fc1, layers.0.fc2, layers.1.fc1, layers.1.fc2`.
pub fn expand_ranges(name: &str) -> Result<Vec<String>, String> {
    let Some(open) = name.find('{') else {
        if name.contains('}') {
            return Err("`}` without `{`".into());
        }
        return Ok(vec![name.to_string()]);
    };
    let close = name[open..].find('}').map(|c| open + c).ok_or("`{` without a closing `}`")?;
    let inner = &name[open + 1..close];
    let (a, b) = inner.split_once("..").ok_or_else(|| format!("`{{{inner}}}` is not a range `{{a..b}}`"))?;
    let parse = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("`{s}` in `{{{inner}}}` is not a non-negative integer"));
    let (a, b) = (parse(a)?, parse(b)?);
    if a > b {
        return Err(format!("range `{{{inner}}}` is empty: {a} > {b}"));
    }
    if b - a >= 1 << 20 {
        return Err(format!("range `{{{inner}}}` has more than 2^20 entries"));
    }
    let rest = expand_ranges(&name[close + 1..])?;
    let count = ((b - a + 1) as usize).checked_mul(rest.len()).filter(|&n| n <= initc_ir::limits::MAX_PARAMS);
    let Some(count) = count else {
        return Err(format!("`{name}` expands to more than {} names (the parameter limit)", initc_ir::limits::MAX_PARAMS));
    };
    let mut out = Vec::with_capacity(count);
    for i in a..=b {
        for r in &rest {
            out.push(format!("{}{i}{r}", &name[..open]));
        }
    }
    Ok(out)
}

/// The closest of `candidates` to `word` by edit distance, if it is close enough to be a typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, c)| d <= 2.max(c.len() / 3))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("layers.*.attention.wq.weight", "layers.12.attention.wq.weight"));
        assert!(glob_match("*.weight", "norm.weight"));
        assert!(glob_match("layers.?.ffn_norm.weight", "layers.3.ffn_norm.weight"));
        assert!(!glob_match("layers.?.ffn_norm.weight", "layers.13.ffn_norm.weight"));
        assert!(!glob_match("*.bias", "norm.weight"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "a.x.b.y.c"));
    }

    #[test]
    fn ranges() {
        assert_eq!(expand_ranges("layers.{0..1}.fc{1..2}").unwrap(), ["layers.0.fc1", "layers.0.fc2", "layers.1.fc1", "layers.1.fc2"]);
        assert_eq!(expand_ranges("embed").unwrap(), ["embed"]);
        assert_eq!(expand_ranges("l.{3..2}").unwrap_err(), "range `{3..2}` is empty: 3 > 2");
        assert!(expand_ranges("l.{3").is_err());
        assert!(expand_ranges("l.{a..2}").is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("dimm", ["dim", "n_layers"]), Some("dim"));
        assert_eq!(suggest("zzzzzz", ["dim", "n_layers"]), None);
    }
}
