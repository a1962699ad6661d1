//! Generated protobuf and gRPC code, nested like the packages.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod orgs {
    pub mod v1 {
        tonic::include_proto!("orgs.v1");
        // The clients, generated separately with prost's own codec (build.rs).
        include!(concat!(env!("OUT_DIR"), "/clients/orgs.v1.rs"));
    }
}

/// The encoded `FileDescriptorSet` of the orgs protos, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/orgs_descriptor.bin"));

pub use orgs::v1;
