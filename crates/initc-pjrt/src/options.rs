//! XLA compile options (`CompileOptionsProto`), built from initc's own subset of the schema.

use prost::Message;

#[allow(clippy::all)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/xla.rs"));
}

pub use pb::option_override_proto::Value as OptionValue;

/// What initc asks XLA for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompileOptions {
    /// Number of SPMD partitions; 1 compiles a single-device program.
    pub num_partitions: u32,
    /// Global device ids of the partitions, in partition order (SPMD only).
    pub device_assignment: Vec<i64>,
    /// Shardy (true) or GSPMD (false) as the SPMD partitioner.
    pub use_shardy: bool,
    /// XLA debug options by name, e.g. `("xla_dump_to", "/tmp/dump")`.
    pub overrides: Vec<(String, OptionValue)>,
}

impl CompileOptions {
    /// A single-device executable that may be launched on any addressable device.
    pub fn portable() -> CompileOptions {
        CompileOptions { num_partitions: 1, ..Default::default() }
    }

    /// An SPMD program over `devices` (global ids, one partition each).
    pub fn spmd(devices: Vec<i64>, use_shardy: bool) -> CompileOptions {
        CompileOptions { num_partitions: devices.len() as u32, device_assignment: devices, use_shardy, overrides: Vec::new() }
    }

    pub fn proto(&self) -> pb::CompileOptionsProto {
        let portable = self.num_partitions <= 1;
        let device_assignment = (!portable).then(|| pb::DeviceAssignmentProto {
            replica_count: 1,
            computation_count: self.device_assignment.len() as i32,
            computation_devices: self
                .device_assignment
                .iter()
                .map(|&d| pb::device_assignment_proto::ComputationDevice { replica_device_ids: vec![d] })
                .collect(),
        });
        pb::CompileOptionsProto {
            executable_build_options: Some(pb::ExecutableBuildOptionsProto {
                device_ordinal: -1,
                num_replicas: 1,
                num_partitions: self.num_partitions.max(1) as i64,
                use_spmd_partitioning: !portable,
                device_assignment,
                use_shardy_partitioner: !portable && self.use_shardy,
            }),
            compile_portable_executable: portable,
            env_option_overrides: self
                .overrides
                .iter()
                .map(|(k, v)| (k.clone(), pb::OptionOverrideProto { value: Some(v.clone()) }))
                .collect(),
        }
    }

    /// The serialized `CompileOptionsProto`.
    pub fn encode(&self) -> Vec<u8> {
        self.proto().encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes checked by hand against XLA's field numbers: executable_build_options = 3 {
    /// device_ordinal = 1: -1, num_replicas = 4: 1, num_partitions = 5: 1 },
    /// compile_portable_executable = 4: true.
    #[test]
    fn portable_options_encode_with_xlas_field_numbers() {
        let bytes = CompileOptions::portable().encode();
        let mut want = vec![0x1a, 0x0f, 0x08]; // 15 bytes: 1 + 10 + 2 + 2
        want.extend([0xff; 9]);
        want.push(0x01); // varint(-1) is ten bytes
        want.extend([0x20, 0x01, 0x28, 0x01]);
        want.extend([0x20, 0x01]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn spmd_options_carry_the_device_assignment() {
        let p = CompileOptions::spmd(vec![0, 1, 2, 3], true).proto();
        let b = p.executable_build_options.unwrap();
        assert_eq!((b.num_partitions, b.use_spmd_partitioning, b.use_shardy_partitioner), (4, true, true));
        let da = b.device_assignment.unwrap();
        assert_eq!((da.replica_count, da.computation_count), (1, 4));
        assert_eq!(da.computation_devices[3].replica_device_ids, vec![3]);
        assert!(!p.compile_portable_executable);
    }

    #[test]
    fn overrides_become_the_env_option_map() {
        let mut o = CompileOptions::portable();
        o.overrides.push(("xla_dump_to".into(), OptionValue::StringField("/tmp/d".into())));
        let p = o.proto();
        assert_eq!(p.env_option_overrides["xla_dump_to"].value, Some(OptionValue::StringField("/tmp/d".into())));
    }
}
