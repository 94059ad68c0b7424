//! Container logs in the CRI format kubelet reads (`<RFC 3339 time> <stream> <F|P> <text>`, one
//! line each; `P` marks a partial line cut at 16 KiB), written by the container shim with
//! rotation (`--container-log-max-size`, `--container-log-max-files`: the live file `N.log`,
//! older ones `N.log.1`, `N.log.2`, ... oldest last) and read back for `/containerLogs`.
//!
//! Invariants: a line is written whole with one `write` call; rotation renames, so a reader
//! holding the old file reads on to its end; readers parse leniently (a torn last line is skipped).

use jiff::Timestamp;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest line text before it is split into partial lines (containerd's 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends CRI lines to a file and rotates it.
pub struct Writer {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    max_size: u64,
    max_files: usize,
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

impl Writer {
    /// Opens (appends to) `path`; rotates when it passes `max_size`, keeping `max_files` files.
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> std::io::Result<Writer> {
        let file = open_append(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Writer { path: path.to_path_buf(), file, size, max_size: max_size.max(1024), max_files: max_files.max(1) })
    }

    /// Writes one line of `text` (without its newline) from `stream` at `at`; `partial` when the
    /// program's line goes on.
    pub fn line(&mut self, at: Timestamp, stream: Stream, partial: bool, text: &[u8]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(text.len() + 48);
        buf.extend_from_slice(format!("{} {} {} ", at, stream.as_str(), if partial { 'P' } else { 'F' }).as_bytes());
        buf.extend_from_slice(text);
        buf.push(b'\n');
        if self.size > 0 && self.size + buf.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let name = |i: usize| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.max_files == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(name(self.max_files - 1));
        for i in (1..self.max_files - 1).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        std::fs::rename(&self.path, name(1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// The files of one container run's log, oldest first.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(usize, PathBuf)> = Vec::new();
    if let (Some(dir), Some(base)) = (path.parent(), path.file_name().map(|n| n.to_string_lossy().into_owned())) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(i) = n.strip_prefix(&format!("{base}.")).and_then(|s| s.parse::<usize>().ok()) {
                rotated.push((i, e.path()));
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When it was written.
    pub at: Timestamp,
    /// stdout or stderr.
    pub stream: Stream,
    /// The line goes on in the next one.
    pub partial: bool,
    /// Its text, without newline.
    pub text: Vec<u8>,
}

/// Parses one CRI line; `None` for a torn or foreign line.
pub fn parse(raw: &[u8]) -> Option<Line> {
    let mut parts = raw.splitn(4, |b| *b == b' ');
    let at: Timestamp = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Line { at, stream, partial, text: parts.next().unwrap_or_default().to_vec() })
}

/// What `/containerLogs` asks for (kubectl logs' options).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `tailLines`: only the last N lines.
    pub tail_lines: Option<usize>,
    /// `sinceTime`/`sinceSeconds` resolved to a time.
    pub since: Option<Timestamp>,
    /// `timestamps`: prefix each line with its RFC 3339 time.
    pub timestamps: bool,
    /// `limitBytes`.
    pub limit_bytes: Option<usize>,
}

/// Renders a line as kubectl shows it.
pub fn render(l: &Line, timestamps: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(l.text.len() + 40);
    if timestamps {
        out.extend_from_slice(format!("{} ", l.at).as_bytes());
    }
    out.extend_from_slice(&l.text);
    if !l.partial {
        out.push(b'\n');
    }
    out
}

/// Reads a run's whole log (all rotated files) with `opts` applied; also returns how many bytes
/// of the live file were consumed, so a follower can go on from there.
pub fn read(path: &Path, opts: &Options) -> (Vec<u8>, u64) {
    let mut lines: Vec<Line> = Vec::new();
    let mut live_len = 0;
    for f in files(path) {
        let data = std::fs::read(&f).unwrap_or_default();
        if f == path {
            // Only whole lines count; a torn last line is read again later.
            live_len = data.iter().rposition(|b| *b == b'\n').map(|p| p as u64 + 1).unwrap_or(0);
        }
        lines.extend(data.split(|b| *b == b'\n').filter_map(parse));
    }
    if let Some(since) = opts.since {
        lines.retain(|l| l.at >= since);
    }
    if let Some(n) = opts.tail_lines {
        let full: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| !l.partial).map(|(i, _)| i).collect();
        if full.len() > n {
            let cut = if n == 0 { lines.len() } else { full[full.len() - n - 1] + 1 };
            lines.drain(..cut);
        }
    }
    let mut out = Vec::new();
    for l in &lines {
        out.extend(render(l, opts.timestamps));
    }
    if let Some(limit) = opts.limit_bytes {
        out.truncate(limit);
    }
    (out, live_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn write_rotate_and_read_back_with_options() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("0.log");
        let mut w = Writer::open(&path, 1024, 3).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..100 {
            w.line(t(i), if i % 2 == 0 { Stream::Stdout } else { Stream::Stderr }, false, format!("line {i}").as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let f = files(&path);
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f.iter().all(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) <= 1024));
        let (all, _) = read(&path, &Options::default());
        let text = String::from_utf8_lossy(&all).into_owned();
        assert!(text.ends_with("line 98\nline 99\n"), "{text}");
        assert!(!text.starts_with("line 0\n"), "the oldest file was dropped");
        let (tail, _) = read(&path, &Options { tail_lines: Some(2), ..Default::default() });
        assert_eq!(String::from_utf8_lossy(&tail), "line 98\nline 99\n");
        let (since, _) = read(&path, &Options { since: Some(t(99)), timestamps: true, ..Default::default() });
        assert_eq!(String::from_utf8_lossy(&since), format!("{} line 99\n", t(99)));
        let (none, _) = read(&path, &Options { tail_lines: Some(0), ..Default::default() });
        assert!(none.is_empty());
        assert_eq!(parse(b"garbage"), None);
    }
}
