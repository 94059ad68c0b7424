//! Snapshot files as etcd writes them: what `Maintenance.Snapshot` streams (`etcdctl snapshot
//! save`) and what `keel-store snapshot restore` reads.
//!
//! A snapshot is an etcd backend, a bbolt file with etcd's buckets ([`etcd`] says which and
//! what Keel puts in them; [`bbolt`] writes and reads the file), followed by etcd's trailer:
//! the SHA-256 of the file. bbolt files are whole 4096-byte pages, so the trailer is what
//! makes the length 32 more than a multiple of 512, which is how `etcdctl snapshot restore`
//! knows it is there. `etcdctl snapshot status` and `restore` read Keel's files, and Keel
//! restores etcd's.
//!
//! Keel's earlier snapshot format (`KEELSNAP1`, the one [`crate::raft::snapshot`] still uses
//! between members) is still restored, recognised by its first bytes.

pub mod bbolt;
pub mod etcd;

use crate::error::{Error, Internal, Result};
use crate::storage::{Backend, WriteBatch};
use keel_proto::etcdserverpb::Member;
use sha2::Digest;
use std::io::{Read, Seek, Write};

/// Bytes of etcd's trailer.
const TRAILER: usize = 32;

fn io(e: std::io::Error) -> Error {
    Error::Internal(Internal::Storage(format!("snapshot file: {e}")))
}

/// Write `backend`'s replicated state as an etcd snapshot into `file` (from its start), with
/// the SHA-256 trailer; `file` is left rewound. Returns the number of revision records.
pub fn save(backend: &dyn Backend, members: &[Member], file: std::fs::File) -> Result<(std::fs::File, u64)> {
    let (file, revisions) = etcd::export(backend, members, file)?;
    Ok((seal(file)?, revisions))
}

/// Append etcd's SHA-256 trailer to the bbolt file [`etcd::export`] wrote into `file`, and
/// rewind it. Apart from [`save`] so a caller can release what kept the state still once the
/// export is written: the hash reads the file again.
pub fn seal(mut file: std::fs::File) -> Result<std::fs::File> {
    file.rewind().map_err(io)?;
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    file.write_all(&hash.finalize()).map_err(io)?;
    file.rewind().map_err(io)?;
    Ok(file)
}

/// The bbolt bytes of a snapshot file: without the trailer when there is one (checked), the
/// whole file when there is none (a backend copied from a data dir).
pub fn without_trailer(file: &[u8]) -> Result<&[u8]> {
    if file.len() % 512 != TRAILER {
        return Ok(file);
    }
    let (db, sum) = file.split_at(file.len() - TRAILER);
    if sha2::Sha256::digest(db)[..] != *sum {
        return Err(Error::corrupt("snapshot file: its SHA-256 does not match its contents"));
    }
    Ok(db)
}

/// `keel-store snapshot restore`: fill an empty backend with a snapshot's data (an etcd
/// snapshot, one Keel wrote, or Keel's earlier format) for the first start of a new cluster.
/// Keys with their history, the compacted revision, leases and auth are kept; the Raft
/// position, membership and alarms of the old cluster are not. Returns the records written.
pub fn restore(backend: &dyn Backend, mut input: impl Read) -> Result<u64> {
    let mut file = Vec::new();
    input.read_to_end(&mut file).map_err(io)?;
    if file.starts_with(crate::raft::snapshot::MAGIC) {
        return crate::raft::snapshot::restore(backend, &file[..]).map_err(io);
    }
    let db = bbolt::Db::open(without_trailer(&file)?)?;
    let mut batch = WriteBatch::default();
    let n = etcd::import(&db, &mut batch)?;
    backend.write(batch)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::codec;
    use crate::storage::memory::MemoryBackend;

    fn keel_with_keys() -> MemoryBackend {
        let b = MemoryBackend::new();
        let mut batch = WriteBatch::default();
        for main in 1..=3 {
            let kv = keel_proto::mvccpb::KeyValue {
                key: "k".into(),
                value: "v".into(),
                create_revision: 1,
                mod_revision: main,
                version: main,
                lease: 0,
            };
            batch.put(codec::rev_key(crate::mvcc::Rev { main, sub: 0 }), codec::encode_record(&kv, false));
        }
        b.write(batch).unwrap();
        b
    }

    #[test]
    fn a_saved_snapshot_carries_etcds_trailer_and_restores() {
        let keel = keel_with_keys();
        let (mut file, revisions) = save(&keel, &[], tempfile::tempfile().unwrap()).unwrap();
        assert_eq!(revisions, 3);
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() % 512, 32, "etcdctl finds the trailer by the length");
        let target = MemoryBackend::new();
        assert_eq!(restore(&target, &bytes[..]).unwrap(), 3);
        assert_eq!(target.scan(b"", &[0xff], 100).unwrap(), keel.scan(b"", &[0xff], 100).unwrap());

        let mut bad = bytes.clone();
        bad[4096 * 3 + 100] ^= 1;
        let err = restore(&MemoryBackend::new(), &bad[..]).unwrap_err();
        assert!(err.to_string().contains("SHA-256"), "{err}");
        // Without the trailer (a backend file from a data dir) it still opens.
        assert_eq!(restore(&MemoryBackend::new(), &bytes[..bytes.len() - 32]).unwrap(), 3);
    }

    #[test]
    fn keels_earlier_format_still_restores() {
        let keel = keel_with_keys();
        let mut old = Vec::new();
        crate::raft::snapshot::dump(&keel, &mut old).unwrap();
        let target = MemoryBackend::new();
        assert_eq!(restore(&target, &old[..]).unwrap(), 3);
        assert_eq!(target.scan(b"", &[0xff], 100).unwrap(), keel.scan(b"", &[0xff], 100).unwrap());
        assert!(restore(&MemoryBackend::new(), &b"neither format"[..]).is_err());
    }
}
