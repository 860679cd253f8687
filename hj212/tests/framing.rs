//! The Framer on every kind of malformed input, strict encoding, and reassembly of split packets.

use std::time::{Duration, Instant};

use offsite_hj212::*;

const GOOD: &[u8] = b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80\r\n";
const GOOD_DATA: &[u8] = b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";
const OTHER: &[u8] = b"##0087QN=20160801085857223;ST=91;CN=9014;PW=100000;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&71C0\r\n";

/// Everything the framer yields for `input` pushed in one go.
fn drain(framer: &mut Framer) -> Vec<Result<Vec<u8>, FrameError>> {
    std::iter::from_fn(|| framer.next_frame()).collect()
}

fn frames(input: &[u8]) -> (Vec<Result<Vec<u8>, FrameError>>, usize) {
    let mut framer = Framer::new(MAX_DATA_LEN);
    framer.push(input);
    let out = drain(&mut framer);
    (out, framer.pending())
}

fn labels(out: &[Result<Vec<u8>, FrameError>]) -> Vec<&'static str> {
    out.iter()
        .map(|r| match r {
            Ok(_) => "frame",
            Err(e) => e.as_str(),
        })
        .collect()
}

#[test]
fn one_good_packet() {
    let (out, pending) = frames(GOOD);
    assert_eq!(out, vec![Ok(GOOD_DATA.to_vec())]);
    assert_eq!(pending, 0);
}

#[test]
fn two_packets_in_one_read() {
    let (out, pending) = frames(&[GOOD, OTHER].concat());
    assert_eq!(labels(&out), ["frame", "frame"]);
    assert_eq!(out[0].as_ref().unwrap().as_slice(), GOOD_DATA);
    assert_eq!(Packet::parse(out[1].as_ref().unwrap()).unwrap().cn, "9014");
    assert_eq!(pending, 0);
}

#[test]
fn a_packet_arriving_byte_by_byte() {
    let mut framer = Framer::new(MAX_DATA_LEN);
    for (i, b) in GOOD.iter().enumerate() {
        framer.push(std::slice::from_ref(b));
        let got = framer.next_frame();
        if i + 1 < GOOD.len() {
            assert!(got.is_none(), "early frame at byte {i}");
            assert_eq!(framer.pending(), i + 1);
        } else {
            assert_eq!(got, Some(Ok(GOOD_DATA.to_vec())));
        }
    }
    assert_eq!(framer.pending(), 0);
}

#[test]
fn garbage_before_and_between_packets() {
    let input = [b"\x00\xffhello\r\n#".as_slice(), GOOD, b"junk", OTHER].concat();
    let (out, pending) = frames(&input);
    assert_eq!(labels(&out), ["garbage", "frame", "garbage", "frame"]);
    assert_eq!(out[0], Err(FrameError::Garbage(10)));
    assert_eq!(out[2], Err(FrameError::Garbage(4)));
    assert_eq!(pending, 0);
}

#[test]
fn garbage_without_any_start_is_not_kept() {
    let (out, pending) = frames(&vec![b'x'; 100_000]);
    assert_eq!(out, vec![Err(FrameError::Garbage(100_000))]);
    assert_eq!(pending, 0);
    // A trailing '#' may be the first half of "##": it is held.
    let (out, pending) = frames(b"abc#");
    assert_eq!(out, vec![Err(FrameError::Garbage(3))]);
    assert_eq!(pending, 1);
}

#[test]
fn bad_length_field_then_recovers() {
    let (out, pending) = frames(&[b"##01a1QN=1;CN=1;MN=1;CP=&&&&".as_slice(), GOOD].concat());
    assert_eq!(out[0], Err(FrameError::BadLength("01a1".into())));
    assert_eq!(labels(&out), ["bad_length", "garbage", "frame"]);
    assert_eq!(pending, 0);
    // "###" + packet: the packet starts one byte on.
    let (out, _) = frames(&[b"#".as_slice(), GOOD].concat());
    assert_eq!(out[0], Err(FrameError::Garbage(1)));
    assert_eq!(labels(&out), ["garbage", "frame"]);
}

#[test]
fn oversized_length_is_refused_without_waiting_for_the_bytes() {
    let (out, pending) = frames(b"##9999QN=1");
    assert_eq!(labels(&out), ["oversized", "garbage"]);
    assert_eq!(out[0], Err(FrameError::Oversized(9999)));
    assert_eq!(pending, 0);
    let (out, pending) = frames(b"##1025");
    assert_eq!(
        out,
        vec![
            Err(FrameError::Oversized(1025)),
            Err(FrameError::Garbage(4))
        ]
    );
    assert_eq!(pending, 0);
}

#[test]
fn bad_crc_is_reported_with_the_data_and_the_next_packet_survives() {
    let mut bad = GOOD.to_vec();
    let n = bad.len();
    bad[n - 6..n - 2].copy_from_slice(b"1C81");
    let (out, pending) = frames(&[bad.as_slice(), OTHER].concat());
    assert_eq!(
        out[0],
        Err(FrameError::BadCrc {
            stated: 0x1C81,
            computed: 0x1C80,
            data: GOOD_DATA.to_vec()
        })
    );
    assert_eq!(labels(&out), ["bad_crc", "frame"]);
    assert_eq!(pending, 0);
    // A flipped data byte.
    let mut bad = GOOD.to_vec();
    bad[30] ^= 1;
    assert_eq!(labels(&frames(&bad).0), ["bad_crc"]);
    // Not hex at all.
    bad = GOOD.to_vec();
    bad[n - 6..n - 2].copy_from_slice(b"ZZZZ");
    assert!(matches!(
        frames(&bad).0[0],
        Err(FrameError::BadCrc { stated: 0, .. })
    ));
}

#[test]
fn lower_case_crc_is_accepted() {
    let lower = b"##0200QN=20261127100000000;ST=22;CN=2011;PW=123456;MN=SQ0000000000000000000001;Flag=5;CP=&&DataTime=20261127100000;a34004-Rtd=35.2,a34004-Flag=N;a34002-Rtd=58.0,a34002-Flag=N;a01001-Rtd=12.5,a01001-Flag=N&&7700\r\n";
    let (out, _) = frames(lower);
    assert_eq!(labels(&out), ["frame"]);
    let (out, _) = frames(b"##0087QN=20160801085857223;ST=91;CN=9014;PW=100000;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&71c0\r\n");
    assert_eq!(labels(&out), ["frame"]);
}

#[test]
fn truncated_packet_followed_by_a_good_one() {
    // The cut packet's length claims bytes that belong to the next packet: no CRLF where it should be.
    let cut = &GOOD[..60];
    let (out, pending) = frames(&[cut, OTHER, OTHER].concat());
    assert_eq!(labels(&out), ["no_terminator", "garbage", "frame", "frame"]);
    assert_eq!(pending, 0);
}

#[test]
fn truncated_packet_at_the_end_waits_bounded() {
    let (out, pending) = frames(&GOOD[..GOOD.len() - 1]);
    assert!(out.is_empty());
    assert_eq!(pending, GOOD.len() - 1);
    let framer = Framer::new(MAX_DATA_LEN);
    assert!(pending < framer.max_frame_len());
}

#[test]
fn missing_crlf() {
    let mut bad = GOOD.to_vec();
    let n = bad.len();
    bad[n - 2..].copy_from_slice(b"\n\n");
    let (out, _) = frames(&[bad.as_slice(), OTHER].concat());
    assert_eq!(labels(&out), ["no_terminator", "garbage", "frame"]);
}

#[test]
fn length_too_short_for_the_data() {
    let mut bad = GOOD.to_vec();
    bad[2..6].copy_from_slice(b"0100");
    let (out, _) = frames(&[bad.as_slice(), OTHER].concat());
    assert_eq!(labels(&out), ["no_terminator", "garbage", "frame"]);
}

#[test]
fn slow_loris_pending_is_visible_and_bounded() {
    let mut framer = Framer::new(MAX_DATA_LEN);
    framer.push(b"##1024");
    for _ in 0..1024 {
        framer.push(b"a");
        assert!(framer.next_frame().is_none());
    }
    assert_eq!(framer.pending(), 6 + 1024);
    framer.push(b"0000\r\n");
    assert!(matches!(
        framer.next_frame(),
        Some(Err(FrameError::BadCrc { .. }))
    ));
    assert_eq!(framer.pending(), 0);
}

#[test]
fn parse_errors() {
    let cases: [(&[u8], &str); 9] = [
        (b"QN=1;ST=32;CN=2011;PW=1;MN=AB;Flag=5", "missing_field"),
        (b"QN=1;ST=32;PW=1;MN=AB;CP=&&&&", "missing_field"),
        (b"QN=1;ST=32;CN=2011;PW=1;CP=&&&&", "missing_field"),
        (b"CN=2011;MN=AB;CP=&&x", "bad_cp"),
        (b"CN=2011;MN=AB;Flag=x5;CP=&&&&", "bad_number"),
        (b"CN=2011;MN=AB;PNUM=99999999999;CP=&&&&", "bad_number"),
        (b"CN=20a1;MN=AB;CP=&&&&", "bad_field"),
        (b"CN=2011;MN=A B;CP=&&&&", "bad_field"),
        (b"CN=2011;MN=AB\xff;CP=&&&&", "not_utf8"),
    ];
    for (data, label) in cases {
        assert_eq!(
            Packet::parse(data).unwrap_err().as_str(),
            label,
            "{}",
            String::from_utf8_lossy(data)
        );
    }
    // Lenient: unknown fields ignored, empty fields missing, non-standard Flag values taken.
    let p = Packet::parse(b"QN=;XX=1;CN=2011;MN=a-b_C;Flag=255;CP=&&a=1&&").unwrap();
    assert_eq!(
        (p.qn, p.flag, p.mn.as_str()),
        (None, Some(Flag(255)), "a-b_C")
    );
}

fn packet(cp: &str) -> Packet {
    Packet {
        qn: Some("20261127100000000".into()),
        st: Some("22".into()),
        cn: "2011".into(),
        pw: Some("123456".into()),
        mn: "SQ01".into(),
        flag: Some(Flag(5)),
        pnum: None,
        pno: None,
        cp: cp.into(),
    }
}

#[test]
fn strict_encode() {
    let frame = packet("a34004-Rtd=35.2").encode().unwrap();
    let text = String::from_utf8(frame.clone()).unwrap();
    let crc = &text[text.len() - 6..text.len() - 2];
    assert_eq!(crc, crc.to_uppercase());
    // Right up to the limit, and one byte over.
    let overhead = packet("").data_segment().unwrap().len();
    let fits = packet(&"x".repeat(MAX_DATA_LEN - overhead));
    assert_eq!(fits.encode().unwrap().len(), MAX_DATA_LEN + 12);
    let over = packet(&"x".repeat(MAX_DATA_LEN - overhead + 1));
    assert_eq!(over.encode(), Err(ParseError::TooLong(MAX_DATA_LEN + 1)));
    // Fields that would not parse back are refused.
    let mut p = packet("");
    p.pw = Some("a;b".into());
    assert_eq!(p.encode().unwrap_err().as_str(), "bad_field");
    let mut p = packet("");
    p.mn = "has space".into();
    assert_eq!(p.encode().unwrap_err().as_str(), "bad_field");
    let mut p = packet("");
    p.qn = Some(String::new());
    assert!(p.encode().is_err());
    // UTF-8 text: the length counts bytes.
    let p = packet("Info=设备正常");
    let frame = p.encode().unwrap();
    let mut framer = Framer::new(MAX_DATA_LEN);
    framer.push(&frame);
    assert_eq!(
        Packet::parse(&framer.next_frame().unwrap().unwrap()).unwrap(),
        p
    );
}

fn part(qn: &str, pnum: u32, pno: u32, cp: &str) -> Packet {
    Packet {
        qn: Some(qn.into()),
        flag: Some(Flag(7)),
        pnum: Some(pnum),
        pno: Some(pno),
        ..packet(cp)
    }
}

#[test]
fn reassembly_in_order_and_out_of_order() {
    let now = Instant::now();
    let mut r = Reassembler::new(8, Duration::from_secs(60));
    assert_eq!(r.push(packet("a=1"), now).unwrap(), Some(packet("a=1")));
    assert_eq!(r.push(part("1", 3, 1, "a=1"), now).unwrap(), None);
    assert_eq!(r.push(part("1", 3, 2, "b=2"), now).unwrap(), None);
    let whole = r.push(part("1", 3, 3, "c=3"), now).unwrap().unwrap();
    assert_eq!(whole.cp, "a=1;b=2;c=3");
    assert_eq!(
        (whole.pnum, whole.pno, whole.flag),
        (None, None, Some(Flag(5)))
    );
    assert_eq!(r.pending(), 0);

    assert_eq!(r.push(part("2", 3, 3, "c=3"), now).unwrap(), None);
    assert_eq!(r.push(part("2", 3, 1, "a=1"), now).unwrap(), None);
    assert_eq!(
        r.push(part("2", 3, 2, "b=2"), now).unwrap().unwrap().cp,
        "a=1;b=2;c=3"
    );
}

#[test]
fn reassembly_duplicate_part_and_interleaved_messages() {
    let now = Instant::now();
    let mut r = Reassembler::new(8, Duration::from_secs(60));
    assert_eq!(r.push(part("1", 2, 1, "a=1"), now).unwrap(), None);
    assert_eq!(r.push(part("2", 2, 1, "x=1"), now).unwrap(), None);
    assert_eq!(r.push(part("1", 2, 1, "a=DUP"), now).unwrap(), None);
    assert_eq!(r.pending(), 2);
    assert_eq!(
        r.push(part("1", 2, 2, "b=2"), now).unwrap().unwrap().cp,
        "a=1;b=2"
    );
    assert_eq!(
        r.push(part("2", 2, 2, "y=2"), now).unwrap().unwrap().cp,
        "x=1;y=2"
    );
}

#[test]
fn reassembly_expiry_and_bound() {
    let t0 = Instant::now();
    let mut r = Reassembler::new(2, Duration::from_secs(10));
    r.push(part("1", 2, 1, "a=1"), t0).unwrap();
    r.push(part("2", 2, 1, "a=1"), t0 + Duration::from_secs(5))
        .unwrap();
    assert_eq!(r.expire(t0 + Duration::from_secs(9)), 0);
    assert_eq!(r.expire(t0 + Duration::from_secs(10)), 1);
    assert_eq!(r.pending(), 1);
    // The late part of the expired message starts a new message; it does not complete anything.
    assert_eq!(
        r.push(part("1", 2, 2, "b=2"), t0 + Duration::from_secs(11))
            .unwrap(),
        None
    );
    // Full: a third message evicts the oldest ("2").
    r.push(part("3", 2, 1, "a=1"), t0 + Duration::from_secs(12))
        .unwrap();
    assert_eq!(r.pending(), 2);
    assert_eq!(r.take_evicted(), 1);
    assert_eq!(r.take_evicted(), 0);
    assert_eq!(
        r.push(part("2", 2, 2, "b=2"), t0 + Duration::from_secs(12))
            .unwrap(),
        None
    );
}

#[test]
fn reassembly_refuses_bad_parts() {
    let now = Instant::now();
    let mut r = Reassembler::new(8, Duration::from_secs(60));
    for bad in [
        part("1", 0, 0, ""),
        part("1", 2, 3, ""),
        part("1", MAX_PARTS + 1, 1, ""),
    ] {
        assert_eq!(r.push(bad, now).unwrap_err().as_str(), "bad_split");
    }
    let mut no_qn = part("1", 2, 1, "");
    no_qn.qn = None;
    assert_eq!(r.push(no_qn, now).unwrap_err().as_str(), "missing_field");
    let mut half = part("1", 2, 1, "");
    half.pno = None;
    assert_eq!(r.push(half, now).unwrap_err().as_str(), "bad_split");
    r.push(part("5", 2, 1, ""), now).unwrap();
    assert_eq!(
        r.push(part("5", 3, 2, ""), now).unwrap_err().as_str(),
        "bad_split"
    );
    assert_eq!(r.pending(), 1);
}
