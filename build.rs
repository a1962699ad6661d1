//! Compiles the protos with `protox` (no system `protoc`), generates the tonic
//! code into OUT_DIR and writes the descriptor set that server reflection serves.
//!
//! The messages and the servers are generated once with the server codec
//! (`crate::grpc::codec::RequestCodec`: a request that cannot be decoded is the
//! caller's error); the clients a second time, into `OUT_DIR/clients`, with
//! prost's codec and the messages of the first pass, so an undecodable
//! response stays INTERNAL for them.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/orgs/v1/common.proto",
        "proto/orgs/v1/organization_service.proto",
        "proto/orgs/v1/invitation_service.proto",
        "proto/orgs/v1/billing_service.proto",
        "proto/orgs/v1/event_service.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("orgs_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .codec_path("crate::grpc::codec::RequestCodec")
        .compile_fds(descriptors.clone())?;
    let clients_dir = out_dir.join("clients");
    fs::create_dir_all(&clients_dir)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .extern_path(".orgs.v1", "crate::proto::v1")
        .out_dir(clients_dir)
        .compile_fds(descriptors)?;
    Ok(())
}
