//! Compiles the etcd-compatible `.proto` files under `proto/` with protox
//! (pure Rust, no system `protoc`), then generates:
//! - prost messages + tonic clients/servers (`<package>.rs`), bytes fields as `bytes::Bytes`;
//! - pbjson serde impls following the proto3 JSON mapping (`<package>.serde.rs`).

use std::path::PathBuf;

use prost::Message as _;

const PROTOS: &[&str] = &[
    "mvccpb/kv.proto",
    "authpb/auth.proto",
    "etcdserverpb/rpc.proto",
    "v3lockpb/v3lock.proto",
    "v3electionpb/v3election.proto",
    "keelpeerpb/peer.proto",
];

const PACKAGES: &[&str] = &[".mvccpb", ".authpb", ".etcdserverpb", ".v3lockpb", ".v3electionpb", ".keelpeerpb"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    let fds = protox::compile(PROTOS, ["proto"])?;
    let descriptor_bytes = fds.encode_to_vec();

    tonic_prost_build::configure().build_client(true).build_server(true).bytes(".").compile_fds(fds)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .out_dir(&out_dir)
        // etcd's grpc-gateway emits the original proto field names
        // (`cluster_id`, `raft_term`); deserialization accepts both forms.
        .preserve_proto_field_names()
        // The gateway tolerates unknown JSON fields; so do we.
        .ignore_unknown_fields()
        .build(PACKAGES)?;

    Ok(())
}
