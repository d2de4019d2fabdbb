//! Compiles proto/initc.proto with protox (a pure-Rust protobuf compiler), so building initc
//! needs no system `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../../proto/initc.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["../../proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
