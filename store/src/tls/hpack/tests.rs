use super::*;

/// Huffman-code `s` as an encoder would (RFC 7541 §5.2).
fn huffman_encode(s: &[u8]) -> Vec<u8> {
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u64, 0u32);
    for &b in s {
        let (code, len) = (huffman_table::ENCODE_CODES[b as usize] as u64, huffman_table::ENCODE_CODE_LENGTHS[b as usize] as u32);
        acc = (acc << len) | code;
        bits += len;
        while bits >= 8 {
            out.push((acc >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(((acc << (8 - bits)) as u8) | ((1u8 << (8 - bits)) - 1));
    }
    out
}

fn huffman_string(s: &[u8]) -> Vec<u8> {
    let h = huffman_encode(s);
    let mut out = Vec::new();
    encode_raw_string(&mut out, &h);
    out[0] |= 0x80;
    let (len, start) = integer(&out, 0, 7).unwrap();
    assert_eq!((len, start + len), (h.len(), out.len()));
    out
}

/// Every field of `block` as (name, value), decoded with `mirror`.
/// `values`: the dynamic table's values, newest first, kept by the caller across blocks.
fn fields(mirror: &mut Mirror, values: &mut VecDeque<Vec<u8>>, block: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let b = block[pos];
        if b & 0x80 != 0 {
            let (i, next) = integer(block, pos, 7).unwrap();
            let name = mirror.name(i).unwrap().to_vec();
            let value = match i {
                2..=7 => [&b"GET"[..], b"POST", b"/", b"/index.html", b"http", b"https"][i - 2].to_vec(),
                62.. => values[i - 62].clone(),
                _ => Vec::new(),
            };
            out.push((String::from_utf8(name).unwrap(), String::from_utf8(value).unwrap()));
            pos = next;
        } else {
            let indexing = b & 0xc0 == 0x40;
            let (i, mut next) = integer(block, pos, if indexing { 6 } else { 4 }).unwrap();
            let name = if i == 0 {
                let (n, a) = string(block, next).unwrap();
                next = a;
                n
            } else {
                mirror.name(i).unwrap().to_vec()
            };
            let (value, after) = string(block, next).unwrap();
            if indexing {
                mirror.insert(name.clone(), value.len());
                values.push_front(value.clone());
            }
            out.push((String::from_utf8(name).unwrap(), String::from_utf8(value).unwrap()));
            pos = after;
        }
    }
    out
}

#[test]
fn huffman_decodes_every_byte_as_encoded() {
    let all: Vec<u8> = (0..=255u8).chain(b"http://127.0.0.1:2379".iter().copied()).collect();
    assert_eq!(huffman_decode(&huffman_encode(&all)).unwrap(), all);
    // RFC 7541 C.4.1: "www.example.com".
    let rfc = [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
    assert_eq!(huffman_decode(&rfc).unwrap(), b"www.example.com");
}

#[test]
fn huffman_refuses_bad_padding() {
    // 'a' is 00011 (5 bits): padding of zeros, and a whole byte of padding, are both errors.
    assert_eq!(huffman_decode(&[0b0001_1000]), Err(Malformed));
    assert_eq!(huffman_decode(&[0b0001_1111, 0xff]), Err(Malformed));
    assert_eq!(huffman_decode(&[0b0001_1111]).unwrap(), b"a");
}

#[test]
fn integers_decode_as_in_rfc_7541_c1() {
    assert_eq!(integer(&[0b0000_1010], 0, 5), Ok((10, 1)));
    assert_eq!(integer(&[0b0001_1111, 0b1001_1010, 0b0000_1010], 0, 5), Ok((1337, 3)));
    assert_eq!(integer(&[42], 0, 8), Ok((42, 1)));
    assert_eq!(integer(&[0x1f, 0x80], 0, 5), Err(Malformed));
}

#[test]
fn rfc_7541_c4_requests_fill_the_table_as_the_rfc_says() {
    let mut m = Mirror::default();
    let c41 = [0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
    assert_eq!(m.rewrite(&c41), Ok(None));
    assert_eq!(m.size, 57);
    let c42 = [0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf];
    assert_eq!(m.rewrite(&c42), Ok(None));
    assert_eq!(m.size, 110);
    assert_eq!(m.name(62).unwrap(), b"cache-control");
    assert_eq!(m.name(63).unwrap(), b":authority");
}

#[test]
fn url_authorities_become_valid_ones_of_the_same_length() {
    let table: &[(&str, Option<&str>)] = &[
        ("http://127.0.0.1:2379", Some("http--@127.0.0.1:2379")),
        ("https://[::1]:2379", Some("https--@[::1]:2379")),
        ("http://localhost:2379/", Some("http---localhost-2379-")),
        ("unix:///tmp/etcd.sock", Some("unix----tmp-etcd.sock")),
        ("#initially=[https://a:1;https://b:2]", Some("-initially--https---a-1-https---b-2-")),
        ("127.0.0.1:2379", None),
        ("localhost", None),
        ("bad authority", None),
        ("has space://x", None),
        ("a/b", None),
    ];
    for (value, want) in table {
        let got = fix_authority(value.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(got.as_deref(), *want, "{value}");
        if let Some(got) = got {
            assert_eq!(got.len(), value.len());
            assert!(http::uri::Authority::try_from(got.as_str()).is_ok(), "{got}");
        }
    }
}

#[test]
fn a_url_authority_is_rewritten_and_later_references_still_agree() {
    // What grpc-go sends for etcdctl 3.4 `--endpoints=http://127.0.0.1:2379 defrag`: method POST
    // (static 3), scheme http (6), path as a new literal, then :authority as a literal with
    // incremental indexing on static name 1, Huffman-coded.
    let mut first = vec![0x83, 0x86, 0x44];
    first.extend(huffman_string(b"/etcdserverpb.Maintenance/Defragment"));
    first.push(0x41);
    first.extend(huffman_string(b"http://127.0.0.1:2379"));
    first.push(0x40);
    first.extend(huffman_string(b"content-type"));
    first.extend(huffman_string(b"application/grpc"));

    let (mut client, mut server, mut values) = (Mirror::default(), Mirror::default(), VecDeque::new());
    let sent = client.rewrite(&first).unwrap().expect("rewritten");
    let seen = fields(&mut server, &mut values, &sent);
    assert_eq!(
        seen,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/etcdserverpb.Maintenance/Defragment"),
            (":authority", "http--@127.0.0.1:2379"),
            ("content-type", "application/grpc"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
    );
    assert_eq!(client.size, server.size);

    // The next request names both by index: content-type is 62, :authority 63 (64 is the path).
    let second = [0x83, 0x86, 0xc0, 0xbf, 0xbe];
    assert_eq!(client.rewrite(&second), Ok(None));
    let seen = fields(&mut server, &mut values, &second);
    assert_eq!(seen[3], (":authority".to_string(), "http--@127.0.0.1:2379".to_string()), "indexed fields carry the server's value");
    assert_eq!(server.name(63).unwrap(), b":authority");
}

#[test]
fn a_valid_block_goes_through_untouched_and_a_broken_one_is_reported() {
    let mut m = Mirror::default();
    let mut block = vec![0x83, 0x86, 0x41];
    block.extend(huffman_string(b"127.0.0.1:2379"));
    assert_eq!(m.rewrite(&block), Ok(None));
    assert_eq!(Mirror::default().rewrite(&[0x80]), Err(Malformed), "index 0");
    assert_eq!(Mirror::default().rewrite(&[0xff, 0x00]), Err(Malformed), "index past the tables");
    assert_eq!(Mirror::default().rewrite(&[0x41, 0x85, 0xff]), Err(Malformed), "string past the end");
}

#[test]
fn size_updates_and_evictions_track_the_encoder() {
    let mut m = Mirror::default();
    let mut block = vec![0x3f, 0xe1, 0x1f]; // size update to 4096 (31 + 4065)
    for i in 0..200 {
        block.push(0x40);
        block.extend(huffman_string(format!("x-key-{i}").as_bytes()));
        block.extend(huffman_string(b"0123456789"));
    }
    assert_eq!(m.rewrite(&block), Ok(None));
    assert!(m.size <= 4096);
    assert_eq!(m.name(62).unwrap(), b"x-key-199");
    assert_eq!(m.rewrite(&[0x20]), Ok(None), "size update to 0 empties the table");
    assert_eq!((m.size, m.entries.len()), (0, 0));
}
