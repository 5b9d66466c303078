//! The monitor's attach protocol, spoken over `<runroot>/containers/<id>/attach.sock`.
//!
//! Every message is a frame: one byte of kind, three zero bytes, a big-endian u32
//! length, then the payload (Docker's stream framing, with a few more kinds). A client
//! opens with `Hello` (which streams it wants); the monitor then sends `Stdout`/`Stderr`
//! as the container writes, `Exit` with the exit code when it ends, and closes the
//! connection once it has torn everything down. Clients send `Stdin`, `CloseStdin` and
//! `Resize`.

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    /// rows and columns, two big-endian u16.
    Resize = 3,
    CloseStdin = 4,
    /// The container's exit code, a big-endian i32.
    Exit = 5,
    /// One byte of [`WANT_STDIN`] | [`WANT_OUTPUT`] flags.
    Hello = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Stdin,
            1 => Kind::Stdout,
            2 => Kind::Stderr,
            3 => Kind::Resize,
            4 => Kind::CloseStdin,
            5 => Kind::Exit,
            6 => Kind::Hello,
            _ => return None,
        })
    }
}

/// The client will send the container's stdin.
pub const WANT_STDIN: u8 = 1;
/// The client wants the container's output.
pub const WANT_OUTPUT: u8 = 2;

const HEADER: usize = 8;
/// Larger frames are a protocol error (nothing legitimate sends them).
const MAX_FRAME: usize = 1 << 20;

/// One frame, encoded.
pub fn encode(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&[kind as u8, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn resize(rows: u16, cols: u16) -> Vec<u8> {
    let mut p = rows.to_be_bytes().to_vec();
    p.extend_from_slice(&cols.to_be_bytes());
    encode(Kind::Resize, &p)
}

/// Collects bytes as they arrive and hands out complete frames.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, an error for a
    /// malformed stream.
    pub fn next_frame(&mut self) -> Result<Option<(Kind, Vec<u8>)>, String> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let kind = Kind::from_u8(self.buf[0])
            .ok_or_else(|| format!("unknown frame kind {}", self.buf[0]))?;
        let len = u32::from_be_bytes(self.buf[4..8].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(format!("frame of {len} bytes is too large"));
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER..HEADER + len].to_vec();
        self.buf.drain(..HEADER + len);
        Ok(Some((kind, payload)))
    }
}

/// Reads the exit code out of an `Exit` payload.
pub fn exit_code(payload: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(payload.get(..4)?.try_into().ok()?))
}

/// Reads rows and columns out of a `Resize` payload.
pub fn size(payload: &[u8]) -> Option<(u16, u16)> {
    let p = payload.get(..4)?;
    Some((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let mut bytes = encode(Kind::Stdout, b"hello");
        bytes.extend(encode(Kind::Exit, &3i32.to_be_bytes()));
        bytes.extend(resize(24, 80));
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in bytes {
            d.push(&[b]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got[0], (Kind::Stdout, b"hello".to_vec()));
        assert_eq!(exit_code(&got[1].1), Some(3));
        assert_eq!(size(&got[2].1), Some((24, 80)));
    }

    #[test]
    fn garbage_is_an_error() {
        let mut d = Decoder::default();
        d.push(&[99, 0, 0, 0, 0, 0, 0, 0]);
        assert!(d.next_frame().is_err());
        let mut d = Decoder::default();
        d.push(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
    }
}
