//! Partition rules: explicit `[[shard]]` rules by FQN glob, Flax-style logical-axis rules, and
//! the built-in rule sets `fsdp`, `tp` and `fsdp+tp`.

use std::fmt;

use initc_ir::{Mesh, Sharding, ShardingError};

/// Whether `fqn` matches `pattern` (`*` matches any run, dots included; `?` one character).
pub fn glob_match(pattern: &str, fqn: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), fqn.chars().collect());
    let (mut pi, mut si) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, si));
            pi += 1;
        } else if let Some((bp, bs)) = backtrack {
            pi = bp + 1;
            si = bs + 1;
            backtrack = Some((bp, bs + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `[[shard]] match = "<glob>", spec = [...]`: a `PartitionSpec` for every parameter the glob
/// matches. A spec shorter than the rank leaves the remaining dimensions replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub pattern: String,
    pub spec: Vec<Vec<String>>,
}

/// `[logical_rules] embed = "fsdp"`: dimensions named `logical` are split over `axes`.
/// An empty `axes` pins them replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalRule {
    pub logical: String,
    pub axes: Vec<String>,
}

/// The built-in rule sets, defined on the logical axis names every preset records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// Dimension 0 of every parameter over `fsdp` (FSDP2's `Shard(0)`).
    Fsdp,
    /// torchtitan's tensor-parallel plan: column-parallel weights (`heads`, `kv_heads`, `mlp`,
    /// `qkv`, `vocab` dims) over `tp`; row-parallel ones on their second dim by the same names;
    /// norms and other `embed`-only parameters replicated.
    Tp,
    /// `tp`, then dimension 0 additionally over `fsdp` (minor to `tp` when both split dim 0,
    /// as FSDP2's strided shard of a TP-sharded tensor lays it out).
    FsdpTp,
}

pub const BUILTINS: &[&str] = &["fsdp", "tp", "fsdp+tp"];

/// Logical axis names the `tp` plan splits.
const TP_LOGICAL: &[&str] = &["vocab", "heads", "kv_heads", "mlp", "qkv"];

impl Builtin {
    pub fn from_name(s: &str) -> Option<Builtin> {
        match s {
            "fsdp" => Some(Builtin::Fsdp),
            "tp" => Some(Builtin::Tp),
            "fsdp+tp" | "tp+fsdp" => Some(Builtin::FsdpTp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Fsdp => "fsdp",
            Builtin::Tp => "tp",
            Builtin::FsdpTp => "fsdp+tp",
        }
    }

    /// The spec for a parameter with logical `axes` and `rank`, on `mesh`. Mesh axes the set
    /// names but the mesh lacks count as size 1 (so `fsdp+tp` runs on `--mesh fsdp=8`).
    /// `None` when the set has nothing to say (no logical names under `tp`; rank 0).
    pub fn spec(self, axes: &[String], rank: usize, mesh: &Mesh) -> Option<Vec<Vec<String>>> {
        let has = |a: &str| mesh.axis(a).is_some();
        let mut spec = vec![vec![]; rank];
        if rank == 0 {
            return None;
        }
        if matches!(self, Builtin::Tp | Builtin::FsdpTp) {
            if axes.len() != rank {
                return None;
            }
            // Only the first dim with a TP name is split (a mesh axis is used at most once).
            if let Some(d) = axes.iter().position(|a| TP_LOGICAL.contains(&a.as_str()))
                && has("tp")
            {
                spec[d].push("tp".to_string());
            }
        }
        if matches!(self, Builtin::Fsdp | Builtin::FsdpTp) && has("fsdp") {
            spec[0].push("fsdp".to_string());
        }
        Some(spec)
    }
}

/// Everything that decides shardings, in order of precedence: the first `[[shard]]` rule
/// whose glob matches; else the logical rules (when one names an axis of the parameter);
/// else the built-in set; else replicated (and reported as unmatched).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub shard: Vec<Rule>,
    pub logical: Vec<LogicalRule>,
    pub builtin: Option<Builtin>,
}

/// Which rule decided a parameter's sharding (indices into [`Rules`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleRef {
    Shard(usize),
    Logical(usize),
    Builtin(Builtin),
}

impl RuleRef {
    /// `[[shard]] #2 (match = "layers.*.wq.weight")`, `[logical_rules] embed`, `built-in rule set fsdp+tp`.
    pub fn describe(self, rules: &Rules) -> String {
        match self {
            RuleRef::Shard(i) => format!("[[shard]] #{} (match = \"{}\")", i + 1, rules.shard.get(i).map_or("?", |r| r.pattern.as_str())),
            RuleRef::Logical(i) => format!("[logical_rules] `{}`", rules.logical.get(i).map_or("?", |r| r.logical.as_str())),
            RuleRef::Builtin(b) => format!("built-in rule set `{}`", b.name()),
        }
    }
}

/// A rule that cannot be applied: which rule, which parameter (when the problem is specific
/// to one), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule_desc}{}: {error}", param.as_ref().map(|p| format!(", parameter `{p}`")).unwrap_or_default())]
pub struct ShardError {
    pub rule: RuleRef,
    pub rule_desc: String,
    pub param: Option<String>,
    pub error: ShardingError,
}

impl Rules {
    /// Checks every rule against the mesh before any parameter is looked at: unknown axes and
    /// an axis used twice in one spec.
    pub fn check(&self, mesh: &Mesh) -> Result<(), ShardError> {
        let err = |rule: RuleRef, error| ShardError { rule, rule_desc: rule.describe(self), param: None, error };
        for (i, r) in self.shard.iter().enumerate() {
            check_axes(mesh, &r.spec).map_err(|e| err(RuleRef::Shard(i), e))?;
        }
        for (i, r) in self.logical.iter().enumerate() {
            check_axes(mesh, std::slice::from_ref(&r.axes)).map_err(|e| err(RuleRef::Logical(i), e))?;
        }
        Ok(())
    }
}

fn check_axes(mesh: &Mesh, spec: &[Vec<String>]) -> Result<(), ShardingError> {
    Sharding { dims: spec.to_vec() }.check_axes(mesh)
}

/// Flax's `logical_to_mesh_axes`: rules in order; each assigns its mesh axes to the first
/// not-yet-assigned dimension with its logical name, unless one of those mesh axes is already
/// used by this parameter. Returns the spec and the first rule that applied, or `None` when no
/// rule names any of the parameter's axes.
pub(crate) fn logical_spec(rules: &[LogicalRule], axes: &[String]) -> Option<(Vec<Vec<String>>, usize)> {
    let mut spec: Vec<Option<Vec<String>>> = vec![None; axes.len()];
    let mut first = None;
    for (i, r) in rules.iter().enumerate() {
        let Some(d) = axes.iter().enumerate().position(|(d, a)| *a == r.logical && spec[d].is_none()) else { continue };
        first.get_or_insert(i);
        let used = spec.iter().flatten().flatten().any(|u| r.axes.contains(u));
        if !used {
            spec[d] = Some(r.axes.clone());
        }
    }
    first.map(|i| (spec.into_iter().map(Option::unwrap_or_default).collect(), i))
}

/// A sharding from a rule's spec, padded with replicated dims to `rank`.
pub(crate) fn padded(spec: &[Vec<String>], rank: usize) -> Result<Sharding, ShardingError> {
    if spec.len() > rank {
        return Err(ShardingError::Rank { entries: spec.len(), rank });
    }
    let mut dims = spec.to_vec();
    dims.resize(rank, vec![]);
    Ok(Sharding { dims })
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
