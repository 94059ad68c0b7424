use super::*;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A request header block with `authority` as a raw literal with incremental indexing.
fn request_block(authority: &str) -> Vec<u8> {
    let mut b = vec![0x83, 0x86, 0x84, 0x41, authority.len() as u8];
    b.extend_from_slice(authority.as_bytes());
    b
}

fn run(input: &[u8], piece: usize) -> Vec<u8> {
    let mut r = Rewriter::default();
    let mut out = Vec::new();
    for chunk in input.chunks(piece) {
        r.feed(chunk);
        out.extend_from_slice(&r.take(usize::MAX));
    }
    r.finish();
    out.extend_from_slice(&r.take(usize::MAX));
    out
}

fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut c = PREFACE.to_vec();
    for f in frames {
        c.extend_from_slice(f);
    }
    c
}

#[test]
fn http1_passes_through_untouched() {
    let req = b"POST /v3/kv/range HTTP/1.1\r\nHost: http://x\r\n\r\n{}";
    for piece in [1, 3, req.len()] {
        assert_eq!(run(req, piece), req);
    }
}

#[test]
fn a_url_authority_is_rewritten_and_other_frames_keep_their_bytes() {
    let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
    let data = frame(0x0, END_STREAM, 1, &[0, 0, 0, 0, 2, 8, 1]);
    let input = connection(&[settings.clone(), frame(HEADERS, END_HEADERS, 1, &request_block("http://127.0.0.1:2379")), data.clone()]);
    let want = connection(&[settings, frame(HEADERS, END_HEADERS, 1, &request_block("http--@127.0.0.1:2379")), data]);
    for piece in [1, 2, 7, 9, 10, input.len()] {
        assert_eq!(run(&input, piece), want, "fed {piece} bytes at a time");
    }
}

#[test]
fn a_valid_authority_leaves_the_stream_byte_for_byte() {
    let input = connection(&[frame(HEADERS, END_HEADERS | END_STREAM, 1, &request_block("127.0.0.1:2379"))]);
    assert_eq!(run(&input, 5), input);
}

#[test]
fn padding_priority_and_continuations_are_folded_into_one_frame() {
    let block = request_block("https://[::1]:2379");
    let (a, b) = block.split_at(4);
    let mut first = vec![2u8]; // pad length
    first.extend_from_slice(&[0x80, 0, 0, 3, 15]); // priority: exclusive, depends on 3, weight 15
    first.extend_from_slice(a);
    first.extend_from_slice(&[0, 0]);
    let input = connection(&[frame(HEADERS, PADDED | PRIORITY | END_STREAM, 5, &first), frame(CONTINUATION, END_HEADERS, 5, b)]);
    let mut payload = vec![0x80, 0, 0, 3, 15];
    payload.extend_from_slice(&request_block("https--@[::1]:2379"));
    let want = connection(&[frame(HEADERS, PRIORITY | END_STREAM | END_HEADERS, 5, &payload)]);
    assert_eq!(run(&input, 3), want);
}

#[test]
fn a_block_grown_past_the_frame_limit_is_cut_into_continuations() {
    // A header of 16 KiB ahead of the authority: the block never fit one frame.
    let mut block = vec![0x83, 0x86, 0x84, 0x00, 0x05];
    block.extend_from_slice(b"x-big");
    block.extend_from_slice(&[0x7f, 0x81, 0x7f]); // raw, 127 + 16257 = 16384 bytes
    block.extend(std::iter::repeat_n(b'a', 16_384));
    block.push(0x41);
    block.push(21);
    block.extend_from_slice(b"http://127.0.0.1:2379");
    let first_len = MAX_FRAME - 10;
    let input = connection(&[frame(HEADERS, 0, 1, &block[..first_len]), frame(CONTINUATION, END_HEADERS, 1, &block[first_len..])]);
    let out = run(&input, 4096);
    let mut frames = Vec::new();
    let mut at = PREFACE.len();
    let mut fragment = Vec::new();
    while at < out.len() {
        let len = u32::from_be_bytes([0, out[at], out[at + 1], out[at + 2]]) as usize;
        assert!(len <= MAX_FRAME);
        frames.push((out[at + 3], out[at + 4]));
        fragment.extend_from_slice(&out[at + FRAME_HEADER..at + FRAME_HEADER + len]);
        at += FRAME_HEADER + len;
    }
    assert_eq!(frames, [(HEADERS, 0), (CONTINUATION, END_HEADERS)]);
    assert!(fragment.ends_with(b"http--@127.0.0.1:2379"));
    assert_eq!(fragment.len(), block.len());
}

#[test]
fn a_broken_block_is_passed_on_for_the_server_to_refuse() {
    let bad = frame(HEADERS, END_HEADERS, 1, &[0x80]); // index 0
    let after = frame(HEADERS, END_HEADERS, 3, &request_block("http://127.0.0.1:2379"));
    let input = connection(&[bad, after]);
    assert_eq!(run(&input, 4), input, "once lost, the rewriter stops changing anything");
}

#[test]
fn a_foreign_frame_inside_a_header_block_stops_the_rewriting() {
    let block = request_block("http://127.0.0.1:2379");
    let input = connection(&[frame(HEADERS, 0, 1, &block[..3]), frame(0x0, 0, 1, b"x"), frame(CONTINUATION, END_HEADERS, 1, &block[3..])]);
    assert_eq!(run(&input, 8), input);
}
