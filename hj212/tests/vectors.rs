//! The test vectors of hj212.md, replies built from them, and CP parsing.

use chrono::{TimeZone, Utc};
use offsite_hj212::*;

const APPENDIX_A: &[u8] = b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80\r\n";
const LENIENT: &[u8] = b"##0109ST=32;CN=2011;PW=123456;MN=NJGDKYYC202101q0001w0001;CP=&&DataTime=20210305003817000;ele01-Rtd=1;ele02-Rtd=0&&8C41\r\n";
const AIR: &[u8] = b"##0200QN=20261127100000000;ST=22;CN=2011;PW=123456;MN=SQ0000000000000000000001;Flag=5;CP=&&DataTime=20261127100000;a34004-Rtd=35.2,a34004-Flag=N;a34002-Rtd=58.0,a34002-Flag=N;a01001-Rtd=12.5,a01001-Flag=N&&7700\r\n";
const REPLY_9014: &[u8] = b"##0087QN=20160801085857223;ST=91;CN=9014;PW=100000;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&71C0\r\n";
const REPLY_9011: &[u8] = b"##0094QN=20160801085857223;ST=91;CN=9011;PW=100000;MN=010000A8900016F000169DC0;Flag=4;CP=&&QnRtn=1&&E101\r\n";
const REPLY_9012: &[u8] = b"##0095QN=20160801085857223;ST=91;CN=9012;PW=100000;MN=010000A8900016F000169DC0;Flag=4;CP=&&ExeRtn=1&&21C0\r\n";

const ALL: [&[u8]; 6] = [APPENDIX_A, LENIENT, AIR, REPLY_9014, REPLY_9011, REPLY_9012];

/// Frames exactly one packet out of `frame` and parses it.
fn frame_and_parse(frame: &[u8]) -> Packet {
    let mut framer = Framer::new(MAX_DATA_LEN);
    framer.push(frame);
    let data = framer.next_frame().expect("a frame").expect("valid frame");
    assert!(framer.next_frame().is_none());
    assert_eq!(framer.pending(), 0);
    Packet::parse(&data).expect("parses")
}

/// The data segment and the stated CRC of a vector, split by hand (independently of the Framer).
fn split_vector(frame: &[u8]) -> (&[u8], u16) {
    let len: usize = std::str::from_utf8(&frame[2..6]).unwrap().parse().unwrap();
    let data = &frame[6..6 + len];
    let crc =
        u16::from_str_radix(std::str::from_utf8(&frame[6 + len..10 + len]).unwrap(), 16).unwrap();
    assert_eq!(&frame[10 + len..], b"\r\n");
    (data, crc)
}

#[test]
fn every_vector_has_the_crc_it_states() {
    for v in ALL {
        let (data, crc) = split_vector(v);
        assert_eq!(crc16(data), crc, "{}", String::from_utf8_lossy(v));
    }
}

#[test]
fn every_vector_frames_parses_and_encodes_back_byte_for_byte() {
    // The lenient vector lacks QN and Flag; encoding keeps only the fields present, so it too comes back.
    for v in ALL {
        let p = frame_and_parse(v);
        assert_eq!(p.encode().unwrap(), v, "{}", String::from_utf8_lossy(v));
    }
}

#[test]
fn appendix_a_fields() {
    let p = frame_and_parse(APPENDIX_A);
    assert_eq!(p.qn.as_deref(), Some("20160801085857223"));
    assert_eq!(p.st.as_deref(), Some("32"));
    assert_eq!(p.cn, "1062");
    assert_eq!(p.pw.as_deref(), Some("100000"));
    assert_eq!(p.mn, "010000A8900016F000169DC0");
    assert_eq!(p.flag, Some(Flag(5)));
    assert!(p.reply_wanted());
    assert_eq!((p.pnum, p.pno), (None, None));
    assert_eq!(p.cp, "RtdInterval=30");
    let cp = p.parse_cp().unwrap();
    assert_eq!(
        cp.fields,
        vec![("RtdInterval".to_string(), "30".to_string())]
    );
    assert!(cp.values.is_empty());
    assert_eq!(cp.data_time, None);
}

#[test]
fn replies_to_appendix_a_are_the_vectors() {
    let req = frame_and_parse(APPENDIX_A);
    assert_eq!(data_reply(&req).encode().unwrap(), REPLY_9014);
    assert_eq!(
        request_reply(&req, QnRtn::Ready).encode().unwrap(),
        REPLY_9011
    );
    assert_eq!(
        execution_reply(&req, ExeRtn::Ok).encode().unwrap(),
        REPLY_9012
    );
    let refused = request_reply(&req, QnRtn::BadPassword);
    assert_eq!(refused.cp, "QnRtn=3");
    assert!(!refused.reply_wanted());
}

#[test]
fn lenient_vector() {
    let p = frame_and_parse(LENIENT);
    assert_eq!(p.qn, None);
    assert_eq!(p.flag, None);
    assert!(!p.reply_wanted());
    assert_eq!(p.mn, "NJGDKYYC202101q0001w0001");
    let cp = p.parse_cp().unwrap();
    assert_eq!(
        cp.data_time,
        Some(Utc.with_ymd_and_hms(2021, 3, 4, 16, 38, 17).unwrap())
    );
    let codes: Vec<_> = cp
        .values
        .iter()
        .map(|v| (v.code.as_str(), v.suffix.as_str(), v.value, v.flag))
        .collect();
    assert_eq!(
        codes,
        vec![("ele01", "Rtd", 1.0, None), ("ele02", "Rtd", 0.0, None)]
    );
}

#[test]
fn air_vector_values_and_flags() {
    let p = frame_and_parse(AIR);
    let cp = p.parse_cp().unwrap();
    assert_eq!(
        cp.data_time,
        Some(Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap())
    );
    assert_eq!(
        cp.values,
        vec![
            CpValue {
                code: "a34004".into(),
                suffix: "Rtd".into(),
                value: 35.2,
                flag: Some(DataFlag::Normal)
            },
            CpValue {
                code: "a34002".into(),
                suffix: "Rtd".into(),
                value: 58.0,
                flag: Some(DataFlag::Normal)
            },
            CpValue {
                code: "a01001".into(),
                suffix: "Rtd".into(),
                value: 12.5,
                flag: Some(DataFlag::Normal)
            },
        ]
    );
    assert!(cp.fields.is_empty());
}

#[test]
fn cp_flags_equipment_state_and_text_fields() {
    let cp = Cp::parse(
        "DataTime=20261127100000;a34004-Avg=35.2,a34004-Max=40,a34004-Flag=M;\
         a21026-Rtd=12,a21026-Flag=X;SB1-RS=2;a34004-SampleTime=20261127095900;\
         w01018-Rtd=,w01018-Flag=D;LA-Data=55.1;a01001-Rtd=1e1;a01002-Rtd=NaN;QnRtn=1",
    )
    .unwrap();
    let got: Vec<_> = cp
        .values
        .iter()
        .map(|v| (format!("{}-{}", v.code, v.suffix), v.value, v.flag))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a34004-Avg".to_string(), 35.2, Some(DataFlag::Maintenance)),
            ("a34004-Max".to_string(), 40.0, Some(DataFlag::Maintenance)),
            // An unknown flag letter is not taken for N: the value stays unflagged and the letter is kept.
            ("a21026-Rtd".to_string(), 12.0, None),
            ("SB1-RS".to_string(), 2.0, None),
            ("LA-Data".to_string(), 55.1, None),
            ("a01001-Rtd".to_string(), 10.0, None),
        ]
    );
    assert_eq!(cp.field("a21026-Flag"), Some("X"));
    assert_eq!(cp.field("a34004-SampleTime"), Some("20261127095900"));
    assert_eq!(cp.field("w01018-Rtd"), Some(""));
    assert_eq!(cp.field("a01002-Rtd"), Some("NaN"));
    assert_eq!(cp.field("QnRtn"), Some("1"));
    assert_eq!(cp.value("SB1", "RS").unwrap().value, 2.0);
    // The D flag had no numeric value in its item: nothing else of w01018 to attach to.
    assert!(cp.value("w01018", "Rtd").is_none());
}

#[test]
fn cp_flag_in_its_own_item_applies_to_earlier_values() {
    let cp = Cp::parse("a34004-Rtd=35.2;a34004-Flag=T").unwrap();
    assert_eq!(cp.values[0].flag, Some(DataFlag::OverRange));
}

#[test]
fn cp_errors() {
    assert_eq!(Cp::parse("DataTime=2026").unwrap_err().as_str(), "bad_time");
    assert_eq!(Cp::parse("a34004-Rtd").unwrap_err().as_str(), "bad_cp");
    assert_eq!(Cp::parse("=5").unwrap_err().as_str(), "bad_cp");
    assert_eq!(Cp::parse("").unwrap(), Cp::default());
}

#[test]
fn data_flag_letters() {
    let letters: String = DataFlag::ALL.iter().map(|f| f.letter()).collect();
    assert_eq!(letters, "NFMSDCTB");
    for flag in DataFlag::ALL {
        assert_eq!(DataFlag::parse(&flag.letter().to_string()), Some(flag));
    }
    for bad in ["", "n", "X", "NN"] {
        assert_eq!(DataFlag::parse(bad), None);
    }
}

#[test]
fn flag_bits() {
    assert!(Flag(5).reply_wanted() && !Flag(5).split() && Flag(5).version() == 1);
    assert!(Flag(7).reply_wanted() && Flag(7).split());
    assert!(!Flag(4).reply_wanted() && Flag(4).version() == 1);
    assert_eq!(Flag(1).version(), 0);
}

#[test]
fn requests_from_the_platform() {
    let at = Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap();
    let sync = set_time_request("SQ01", "123456", "22", at, at);
    assert_eq!(sync.cn, "1012");
    assert_eq!(sync.qn.as_deref(), Some("20261127100000000"));
    assert_eq!(sync.cp, "SystemTime=20261127100000");
    assert!(sync.reply_wanted());
    let frame = sync.encode().unwrap();
    assert_eq!(frame_and_parse(&frame), sync);

    let interval = set_interval_request("SQ01", "123456", "22", at, 60);
    assert_eq!(
        (interval.cn.as_str(), interval.cp.as_str()),
        ("1062", "RtdInterval=60")
    );
    assert_eq!(
        set_interval_request("SQ01", "1", "22", at, 5).cp,
        "RtdInterval=30"
    );
    assert_eq!(
        set_interval_request("SQ01", "1", "22", at, 99999).cp,
        "RtdInterval=3600"
    );
}

#[test]
fn rtn_codes() {
    assert_eq!(QnRtn::Unknown as u8, 100);
    assert_eq!(QnRtn::from_code(9), Some(QnRtn::BadCrc));
    assert_eq!(ExeRtn::from_code(100), Some(ExeRtn::NoData));
    assert_eq!(ExeRtn::from_code(7), None);
}
