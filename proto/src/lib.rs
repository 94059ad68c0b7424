//! `keel-proto`: the etcd v3 wire protocol for Keel.
//!
//! Generated at build time from the `.proto` files in `proto/` (written for
//! Keel, wire-compatible with etcd v3.5, plus a few response fields added in
//! etcd 3.6). Codegen uses protox, so no system `protoc` is needed.
//! Every message has prost encoding, `bytes` fields are [`bytes::Bytes`], and
//! every message and enum implements `serde::Serialize`/`Deserialize` per the
//! proto3 JSON mapping as etcd's HTTP gateway uses it: 64-bit integers as
//! strings, bytes as base64, enums by name, original proto field names on
//! output, and both original and lowerCamel names accepted on input.
//!
//! Modules (one per protobuf package, as siblings so cross-package paths such
//! as `super::mvccpb::KeyValue` resolve):
//! - [`mvccpb`]: `KeyValue` and watch `Event`.
//! - [`authpb`]: users, roles and permissions.
//! - [`etcdserverpb`]: the KV, Watch, Lease, Cluster, Maintenance and Auth
//!   services, with tonic clients (`kv_client::KvClient`, ...) and servers
//!   (`kv_server::{Kv, KvServer}`, ...).
//! - [`v3lockpb`]: the Lock service.
//! - [`v3electionpb`]: the Election service.
//! - [`keelpeerpb`]: Keel's own peer protocol (Raft messages, forwarded requests).

/// Storage records: `KeyValue`, `Event`.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// Auth records: `User`, `Role`, `Permission`.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// The etcd v3 client API: messages and the KV, Watch, Lease, Cluster,
/// Maintenance and Auth services.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// The Lock service.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod v3lockpb {
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

/// The Election service.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod v3electionpb {
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

/// Keel's peer protocol on port 2380.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod keelpeerpb {
    include!(concat!(env!("OUT_DIR"), "/keelpeerpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/keelpeerpb.serde.rs"));
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use prost::Message;

    use crate::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader, range_request};
    use crate::mvccpb::KeyValue;

    #[test]
    fn range_request_roundtrip() {
        let req = RangeRequest {
            key: Bytes::from_static(b"foo"),
            range_end: Bytes::from_static(b"fop"),
            limit: 10,
            sort_order: range_request::SortOrder::Descend as i32,
            max_create_revision: 42,
            ..Default::default()
        };
        let buf = req.encode_to_vec();
        // key is field 1 (tag 0x0a), max_create_revision is field 13 (tag 0x68).
        assert_eq!(&buf[..2], &[0x0a, 3]);
        assert!(buf.windows(2).any(|w| w == [0x68, 42]));
        let back = RangeRequest::decode(buf.as_slice()).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.sort_order(), range_request::SortOrder::Descend);
    }

    #[test]
    fn range_response_json() {
        let resp = RangeResponse {
            header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 3, raft_term: 4 }),
            kvs: vec![KeyValue {
                key: Bytes::from_static(b"foo"),
                value: Bytes::from_static(b"bar"),
                create_revision: 2,
                mod_revision: 3,
                version: 2,
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let json = serde_json::to_string(&resp).unwrap();
        assert!(json.contains(r#""revision":"3""#), "{json}");
        assert!(json.contains(r#""cluster_id":"1""#), "{json}");
        assert!(json.contains(r#""key":"Zm9v""#), "{json}");
        assert!(json.contains(r#""value":"YmFy""#), "{json}");
        assert!(json.contains(r#""count":"1""#), "{json}");
        // Default values are omitted, as etcd's gateway does.
        assert!(!json.contains("more"), "{json}");
        assert!(!json.contains("lease"), "{json}");

        // Input accepts lowerCamel names and bare numbers too.
        let camel = r#"{"header":{"clusterId":"1","memberId":2,"revision":"3","raftTerm":"4"},
            "kvs":[{"key":"Zm9v","value":"YmFy","createRevision":"2","mod_revision":3,"version":"2"}],
            "count":"1","unknown_field":true}"#;
        let back: RangeResponse = serde_json::from_str(camel).unwrap();
        assert_eq!(back, resp);
        let back: RangeResponse = serde_json::from_str(&json).unwrap();
        assert_eq!(back, resp);
    }

    #[test]
    fn enums_as_names() {
        use crate::mvccpb::{Event, event::EventType};
        let ev = Event { r#type: EventType::Delete as i32, kv: Some(KeyValue::default()), prev_kv: None };
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(json, r#"{"type":"DELETE","kv":{}}"#);
    }
}
