use crate::crc16;

/// "##", 4 length digits.
const HEADER_LEN: usize = 6;
/// 4 CRC hex digits and CRLF.
const TRAILER_LEN: usize = 6;

/// Splits a TCP byte stream into verified data segments. Never panics, never grows without bound.
///
/// Framing is driven by the length field, not by a CRLF search, because a data segment may itself
/// hold CR/LF (free text in UTF-8). Any error drops at least the "##" it started at, so the stream
/// resynchronises at the next "##" and one bad packet cannot hide the good one after it.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    max_data_len: usize,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum FrameError {
    #[error("{0} bytes before \"##\" skipped")]
    Garbage(usize),
    #[error("bad length field {0:?}")]
    BadLength(String),
    #[error("data segment of {0} bytes is over the limit")]
    Oversized(usize),
    /// A CRC field that is not 4 hex digits is reported with `stated` 0.
    #[error("CRC mismatch: packet says {stated:04X}, data gives {computed:04X}")]
    BadCrc {
        stated: u16,
        computed: u16,
        data: Vec<u8>,
    },
    #[error("packet not terminated by CRLF")]
    NoTerminator,
}

impl FrameError {
    /// Stable label for a Prometheus counter.
    pub fn as_str(&self) -> &'static str {
        match self {
            FrameError::Garbage(_) => "garbage",
            FrameError::BadLength(_) => "bad_length",
            FrameError::Oversized(_) => "oversized",
            FrameError::BadCrc { .. } => "bad_crc",
            FrameError::NoTerminator => "no_terminator",
        }
    }
}

impl Framer {
    /// `max_data_len` is capped at 9999, the most a 4-digit length field can say.
    pub fn new(max_data_len: usize) -> Self {
        Framer {
            buf: Vec::new(),
            max_data_len: max_data_len.min(9999),
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet form a frame (a slow-loris guard for the caller).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// After `next_frame` has returned None, `pending()` is below this: garbage is always reported and
    /// dropped, and an incomplete frame is never longer than the largest frame. Callers drain
    /// `next_frame` after every `push`, which keeps memory per connection bounded.
    pub fn max_frame_len(&self) -> usize {
        HEADER_LEN + self.max_data_len + TRAILER_LEN
    }

    /// The next frame, an error (after which framing resynchronises at the next "##"), or None: need more bytes.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        let skipped = self.garbage_len();
        if skipped > 0 {
            self.buf.drain(..skipped);
            return Some(Err(FrameError::Garbage(skipped)));
        }
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let digits = &self.buf[2..HEADER_LEN];
        if !digits.iter().all(u8::is_ascii_digit) {
            let shown = String::from_utf8_lossy(digits).into_owned();
            self.buf.drain(..2);
            return Some(Err(FrameError::BadLength(shown)));
        }
        let data_len = digits
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        if data_len > self.max_data_len {
            self.buf.drain(..2);
            return Some(Err(FrameError::Oversized(data_len)));
        }
        let frame_len = HEADER_LEN + data_len + TRAILER_LEN;
        if self.buf.len() < frame_len {
            return None;
        }
        if &self.buf[frame_len - 2..frame_len] != b"\r\n" {
            // Length field and content disagree (truncated packet, or a lying length): drop only
            // the "##" so a packet that starts inside these bytes is still found.
            self.buf.drain(..2);
            return Some(Err(FrameError::NoTerminator));
        }
        let data_end = HEADER_LEN + data_len;
        let computed = crc16(&self.buf[HEADER_LEN..data_end]);
        let stated = parse_hex4(&self.buf[data_end..data_end + 4]);
        let frame: Vec<u8> = self.buf.drain(..frame_len).collect();
        let data = frame[HEADER_LEN..data_end].to_vec();
        match stated {
            Some(stated) if stated == computed => Some(Ok(data)),
            stated => Some(Err(FrameError::BadCrc {
                stated: stated.unwrap_or(0),
                computed,
                data,
            })),
        }
    }

    /// Length of the prefix before the first packet start (all of the buffer but a trailing '#' when none).
    fn garbage_len(&self) -> usize {
        match self.buf.windows(2).position(|w| w == b"##") {
            // In a run "###...", only the last two can start a packet.
            Some(mut at) => {
                while self.buf.get(at + 2) == Some(&b'#') {
                    at += 1;
                }
                at
            }
            None if self.buf.last() == Some(&b'#') => self.buf.len() - 1,
            None => self.buf.len(),
        }
    }
}

/// 4 hex digits, either case (real loggers send lower case).
fn parse_hex4(b: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(b).ok()?;
    if s.len() != 4 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}
