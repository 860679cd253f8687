use chrono::{DateTime, Utc};

use crate::{utc_to_beijing, Flag, Packet};

/// The range the standard allows for RtdInterval, in seconds.
pub const MIN_RTD_INTERVAL: u32 = 30;
pub const MAX_RTD_INTERVAL: u32 = 3600;

/// System code of platform interaction packets.
const ST_SYSTEM: &str = "91";
/// HJ 212-2017, no reply wanted: what the platform's replies carry.
const FLAG_REPLY: Flag = Flag(4);
/// HJ 212-2017, reply wanted: what the platform's requests carry.
const FLAG_REQUEST: Flag = Flag(5);

/// QnRtn of 9011.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QnRtn {
    Ready = 1,
    Rejected = 2,
    BadPassword = 3,
    BadMn = 4,
    BadSt = 5,
    BadFlag = 6,
    BadQn = 7,
    BadCn = 8,
    BadCrc = 9,
    Unknown = 100,
}

/// ExeRtn of 9012.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExeRtn {
    Ok = 1,
    Failed = 2,
    ConditionError = 3,
    Timeout = 4,
    Busy = 5,
    Fault = 6,
    NoData = 100,
}

impl QnRtn {
    pub fn code(self) -> u32 {
        self as u32
    }
    pub fn from_code(code: u32) -> Option<Self> {
        use QnRtn::*;
        [
            Ready,
            Rejected,
            BadPassword,
            BadMn,
            BadSt,
            BadFlag,
            BadQn,
            BadCn,
            BadCrc,
            Unknown,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }
}

impl ExeRtn {
    pub fn code(self) -> u32 {
        self as u32
    }
    pub fn from_code(code: u32) -> Option<Self> {
        use ExeRtn::*;
        [Ok, Failed, ConditionError, Timeout, Busy, Fault, NoData]
            .into_iter()
            .find(|r| r.code() == code)
    }
}

/// A reply echoes the request's QN, PW and MN so the logger can match it.
fn reply(req: &Packet, cn: &str, cp: String) -> Packet {
    Packet {
        qn: req.qn.clone(),
        st: Some(ST_SYSTEM.into()),
        cn: cn.into(),
        pw: req.pw.clone(),
        mn: req.mn.clone(),
        flag: Some(FLAG_REPLY),
        pnum: None,
        pno: None,
        cp,
    }
}

/// CN=9014 data reply, CP empty.
pub fn data_reply(req: &Packet) -> Packet {
    reply(req, "9014", String::new())
}

/// CN=9011 request reply, CP QnRtn=n.
pub fn request_reply(req: &Packet, rtn: QnRtn) -> Packet {
    reply(req, "9011", format!("QnRtn={}", rtn.code()))
}

/// CN=9012 execution result, CP ExeRtn=n.
pub fn execution_reply(req: &Packet, rtn: ExeRtn) -> Packet {
    reply(req, "9012", format!("ExeRtn={}", rtn.code()))
}

fn request(mn: &str, pw: &str, st: &str, at: DateTime<Utc>, cn: &str, cp: String) -> Packet {
    Packet {
        qn: Some(utc_to_beijing(at, true)),
        st: Some(st.into()),
        cn: cn.into(),
        pw: Some(pw.into()),
        mn: mn.into(),
        flag: Some(FLAG_REQUEST),
        pnum: None,
        pno: None,
        cp,
    }
}

/// CN=1012 clock sync: CP SystemTime=YYYYMMDDhhmmss (Beijing time).
pub fn set_time_request(
    mn: &str,
    pw: &str,
    st: &str,
    at: DateTime<Utc>,
    set_to: DateTime<Utc>,
) -> Packet {
    let cp = format!("SystemTime={}", utc_to_beijing(set_to, false));
    request(mn, pw, st, at, "1012", cp)
}

/// CN=1062 real-time interval: CP RtdInterval=n, clamped to the standard's 30..=3600 s.
pub fn set_interval_request(
    mn: &str,
    pw: &str,
    st: &str,
    at: DateTime<Utc>,
    seconds: u32,
) -> Packet {
    let seconds = seconds.clamp(MIN_RTD_INTERVAL, MAX_RTD_INTERVAL);
    request(mn, pw, st, at, "1062", format!("RtdInterval={seconds}"))
}
