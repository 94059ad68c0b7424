//! Keel's own snapshot file: every replicated record of the backend (keys, leases, metadata
//! other than the member's own identity), in key order. Used between members, to catch up a
//! member whose log was purged. Clients get etcd's format instead (`crate::snapshot`), which
//! still restores files of this format that earlier Keel releases handed out.
//!
//! Layout: the magic line, then records `[key len u32][key][value len u32][value]`, then an
//! end record of length `u32::MAX` followed by the CRC32 of everything before it.

use crate::storage::{Backend, WriteBatch, scan_each};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::ops::ControlFlow;

/// First bytes of every snapshot file.
pub const MAGIC: &[u8] = b"KEELSNAP1\n";
const END: u32 = u32::MAX;

/// Keys that describe the member itself, never copied between members.
pub const LOCAL_KEYS: &[&[u8]] = &[b"m/member_id", b"m/cluster_id", b"m/term"];

/// Write every replicated record of `backend` to `out`; returns how many.
pub fn dump(backend: &dyn Backend, out: impl Write) -> io::Result<u64> {
    let mut w = Crc { inner: BufWriter::new(out), crc: crc32fast::Hasher::new() };
    w.write_all(MAGIC)?;
    let mut n = 0u64;
    scan_each::<io::Error>(backend, b"", &[0xff; 8], 1024, |k, v| {
        if !LOCAL_KEYS.contains(&&k[..]) {
            w.write_all(&(k.len() as u32).to_le_bytes())?;
            w.write_all(k)?;
            w.write_all(&(v.len() as u32).to_le_bytes())?;
            w.write_all(v)?;
            n += 1;
        }
        Ok(ControlFlow::Continue(()))
    })?;
    w.write_all(&END.to_le_bytes())?;
    let crc = w.crc.clone().finalize();
    w.inner.write_all(&crc.to_le_bytes())?;
    w.inner.flush()?;
    Ok(n)
}

/// Replace every replicated record of `backend` with the records in `input` (not synced).
pub fn load(backend: &dyn Backend, input: impl Read) -> io::Result<u64> {
    let mut r = CrcReader { inner: BufReader::new(input), crc: crc32fast::Hasher::new() };
    let mut magic = vec![0u8; MAGIC.len()];
    r.read_exact(&mut magic)?;
    if magic != MAGIC {
        return Err(invalid("not a Keel snapshot"));
    }
    // Read (and check) the whole file before touching the backend.
    let mut records = Vec::new();
    loop {
        let klen = read_u32(&mut r)?;
        if klen == END {
            break;
        }
        let mut k = vec![0u8; klen as usize];
        r.read_exact(&mut k)?;
        let vlen = read_u32(&mut r)?;
        let mut v = vec![0u8; vlen as usize];
        r.read_exact(&mut v)?;
        records.push((k, v));
    }
    let want = r.crc.clone().finalize();
    let mut crc = [0u8; 4];
    r.inner.read_exact(&mut crc)?;
    if u32::from_le_bytes(crc) != want {
        return Err(invalid("snapshot checksum mismatch"));
    }
    let mut batch = WriteBatch::default();
    scan_each::<io::Error>(backend, b"", &[0xff; 8], 1024, |k, _| {
        if !LOCAL_KEYS.contains(&&k[..]) {
            batch.delete(k.to_vec());
        }
        Ok(ControlFlow::Continue(()))
    })?;
    let n = records.len() as u64;
    for (k, v) in records {
        batch.put(k, v);
    }
    backend.write(batch).map_err(|e| io::Error::other(e.0))?;
    Ok(n)
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

struct Crc<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct CrcReader<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// Restore a file of this format for `keel-store snapshot restore`: fill an empty backend
/// with its data for the first member start of a new cluster. The Raft history (applied position, membership, removed members) and alarms of
/// the old cluster are dropped; keys, revisions, history and leases are kept.
pub fn restore(backend: &dyn Backend, input: impl Read) -> io::Result<u64> {
    let n = load(backend, input)?;
    let mut batch = WriteBatch::default();
    for key in [
        crate::apply::META_APPLIED,
        crate::apply::META_APPLIED_TERM,
        crate::apply::META_MEMBERSHIP,
        crate::apply::META_REMOVED,
        crate::apply::META_ALARMS,
    ] {
        batch.delete(key.to_vec());
    }
    backend.write(batch).map_err(|e| io::Error::other(e.0))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryBackend;

    #[test]
    fn dump_and_load_copy_replicated_records_only() {
        let a = MemoryBackend::new();
        let mut b = WriteBatch::default();
        b.put(b"k/1".to_vec(), b"one".to_vec());
        b.put(b"m/member_id".to_vec(), b"a".to_vec());
        a.write(b).unwrap();
        let mut file = Vec::new();
        assert_eq!(dump(&a, &mut file).unwrap(), 1);
        let target = MemoryBackend::new();
        let mut b = WriteBatch::default();
        b.put(b"k/old".to_vec(), b"gone".to_vec());
        b.put(b"m/member_id".to_vec(), b"b".to_vec());
        target.write(b).unwrap();
        assert_eq!(load(&target, &file[..]).unwrap(), 1);
        assert_eq!(target.get(b"k/1").unwrap().unwrap(), &b"one"[..]);
        assert!(target.get(b"k/old").unwrap().is_none());
        assert_eq!(target.get(b"m/member_id").unwrap().unwrap(), &b"b"[..], "the member keeps its identity");
        let mut bad = file.clone();
        bad[MAGIC.len() + 5] ^= 1;
        assert!(load(&target, &bad[..]).is_err(), "a corrupt file is refused");
    }
}
