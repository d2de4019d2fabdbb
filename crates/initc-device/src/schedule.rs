//! Plan → batches → executables → per-seed arguments: the one path from a module to what PJRT
//! executes, shared by the runtime ([`crate::Materializer`]) and `initc lower --shard-programs`.

use std::collections::HashMap;

use initc_cpu::Evaluator;
use initc_ir::Module;

use crate::DeviceError;
use crate::pack::{TableSpec, pack_static, table_specs};
use crate::plan::{Batch, DevicePlan, FUSE};

/// What a set of mesh devices runs: the plan, each device's batches (one execute each, in queue
/// order) and the executables they use.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub plan: DevicePlan,
    /// Per planned device (in [`DevicePlan::devices`] order), its batches in queue order.
    pub batches: Vec<Vec<Batch>>,
    /// Per executable ([`Batch::executable`]): `(program, launches per execute)`.
    pub executables: Vec<(usize, usize)>,
    /// Launches per group of shared static words ([`FUSE`]).
    pub fuse: usize,
}

/// One device's table arguments: each distinct table once, and which ones each launch takes.
#[derive(Clone, Debug)]
pub struct TableArgs {
    pub specs: Vec<TableSpec>,
    /// Per launch of the device, indices into `specs` (its arguments after the static words, in
    /// order; none for empty shards).
    pub uses: Vec<Vec<usize>>,
}

impl Schedule {
    /// Plans `mesh_devices` and batches their launches (at most `max_batch` per execute;
    /// `None`: [`crate::Program::default_batch`]).
    pub fn new(m: &Module, mesh_devices: &[u64], max_batch: Option<usize>) -> Result<Schedule, DeviceError> {
        Ok(Self::for_plan(DevicePlan::new(m, mesh_devices)?, max_batch))
    }

    /// Batches the launches of a plan (e.g. [`DevicePlan::for_regions`]).
    pub fn for_plan(plan: DevicePlan, max_batch: Option<usize>) -> Schedule {
        let (batches, executables) = plan.batches(max_batch);
        Schedule { plan, batches, executables, fuse: FUSE }
    }

    /// The StableHLO text of executable `e`.
    pub fn executable_text(&self, e: usize) -> String {
        let (p, k) = self.executables[e];
        initc_stablehlo::Batched::new(&self.plan.programs[p].ir, k, self.fuse).print()
    }

    /// The shard-program IR of executable `e` (its text form, after a line saying how many
    /// launches an execute runs and in which groups of shared static words).
    pub fn executable_ir(&self, e: usize) -> String {
        let (p, k) = self.executables[e];
        let groups = initc_stablehlo::batch_groups(k, self.fuse);
        format!("; {k} launch(es) per execute, static words in groups of {groups:?}\n{}", self.plan.programs[p].ir)
    }

    /// A name for executable `e` in messages (its program's summary).
    pub fn executable_name(&self, e: usize) -> String {
        let (p, k) = self.executables[e];
        let summary = &self.plan.programs[p].summary;
        if k == 1 { summary.clone() } else { format!("{summary} x{k} batched") }
    }

    /// Device `i`'s table arguments.
    pub fn tables(&self, ev: &Evaluator, i: usize) -> TableArgs {
        let mut specs: Vec<TableSpec> = Vec::new();
        let mut index: HashMap<TableSpec, usize> = HashMap::new();
        let uses = self.plan.devices[i]
            .launches
            .iter()
            .map(|l| {
                if l.region.numel() == 0 {
                    return Vec::new();
                }
                table_specs(ev, l)
                    .into_iter()
                    .map(|spec| {
                        *index.entry(spec.clone()).or_insert_with(|| {
                            specs.push(spec);
                            specs.len() - 1
                        })
                    })
                    .collect()
            })
            .collect();
        TableArgs { specs, uses }
    }

    /// Device `i`'s static words for the evaluator's seed: per batch, one vector per group of
    /// [`Schedule::fuse`] launches, each launch's words one after the other (the arguments of a
    /// [`initc_stablehlo::Batched`] program; one vector for a single launch).
    pub fn statics(&self, m: &Module, ev: &Evaluator, i: usize) -> Result<Vec<Vec<Vec<u32>>>, DeviceError> {
        let dl = &self.plan.devices[i];
        self.batches[i]
            .iter()
            .map(|batch| {
                batch
                    .launches
                    .chunks(self.fuse.max(1))
                    .map(|group| {
                        let mut words = Vec::new();
                        for &k in group {
                            let l = &dl.launches[k];
                            words.extend(pack_static(m, ev, &self.plan.programs[l.program], l)?);
                        }
                        Ok(words)
                    })
                    .collect()
            })
            .collect()
    }
}
