//! Compiles proto/xla_compile_options.proto with protox (no system `protoc`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../../proto/xla_compile_options.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["../../proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
