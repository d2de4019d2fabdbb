//! The sharding pass: attaches a mesh and one sharding per parameter. It never touches
//! nodes, so the values (a function of seed, FQN, initializer and global index) cannot depend
//! on the result: sharding-invariance holds by construction, and `initc verify` checks it.

use initc_ir::{Mesh, Module, Sharding, ShardingError};

use crate::rules::{RuleRef, Rules, ShardError, glob_match, logical_spec, padded};

/// What the pass decided, per parameter in model order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The rule that decided each parameter's sharding; `None`: no rule, replicated.
    pub matched_by: Vec<Option<RuleRef>>,
}

impl Report {
    /// FQNs of the parameters no rule matched (they are replicated).
    pub fn unmatched<'m>(&self, m: &'m Module) -> Vec<&'m str> {
        m.params.iter().zip(&self.matched_by).filter(|(_, r)| r.is_none()).map(|(p, _)| p.fqn.as_str()).collect()
    }

    /// Per `[[shard]]` rule, how many parameters it decided (a rule matching nothing is
    /// usually a typo).
    pub fn shard_rule_hits(&self, rules: &Rules) -> Vec<usize> {
        let mut hits = vec![0; rules.shard.len()];
        for r in self.matched_by.iter().flatten() {
            if let RuleRef::Shard(i) = r {
                hits[*i] += 1;
            }
        }
        hits
    }
}

/// Sets `m.mesh` and every parameter's sharding from `rules` (replacing any earlier ones).
/// On error `m` is left unchanged.
pub fn shard(m: &mut Module, mesh: &Mesh, rules: &Rules) -> Result<Report, ShardError> {
    rules.check(mesh)?;
    let mut shardings = Vec::with_capacity(m.params.len());
    let mut matched_by = Vec::with_capacity(m.params.len());
    for p in &m.params {
        let rank = p.ty.rank();
        let (sharding, rule) = decide(p.fqn.as_str(), &p.axes, rank, mesh, rules);
        let fail =
            |rule: RuleRef, error: ShardingError| ShardError { rule, rule_desc: rule.describe(rules), param: Some(p.fqn.clone()), error };
        let sharding = match (sharding, rule) {
            (Ok(s), _) => s,
            (Err(e), Some(r)) => return Err(fail(r, e)),
            (Err(_), None) => Sharding::replicated(rank),
        };
        if let Some(r) = rule {
            sharding.check(mesh, &p.ty).map_err(|e| fail(r, e))?;
        }
        shardings.push(sharding);
        matched_by.push(rule);
    }
    for (p, s) in m.params.iter_mut().zip(shardings) {
        p.sharding = Some(s);
    }
    m.mesh = Some(mesh.clone());
    Ok(Report { matched_by })
}

/// Removes the mesh and all shardings.
pub fn unshard(m: &mut Module) {
    m.mesh = None;
    for p in &mut m.params {
        p.sharding = None;
    }
}

fn decide(fqn: &str, axes: &[String], rank: usize, mesh: &Mesh, rules: &Rules) -> (Result<Sharding, ShardingError>, Option<RuleRef>) {
    if let Some(i) = rules.shard.iter().position(|r| glob_match(&r.pattern, fqn)) {
        return (padded(&rules.shard[i].spec, rank), Some(RuleRef::Shard(i)));
    }
    if let Some((spec, i)) = logical_spec(&rules.logical, axes) {
        return (Ok(Sharding { dims: spec }), Some(RuleRef::Logical(i)));
    }
    if let Some(b) = rules.builtin
        && let Some(spec) = b.spec(axes, rank, mesh)
    {
        return (Ok(Sharding { dims: spec }), Some(RuleRef::Builtin(b)));
    }
    (Ok(Sharding::replicated(rank)), None)
}
