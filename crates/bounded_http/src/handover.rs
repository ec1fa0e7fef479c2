//! What sibling servers of one service say to each other over a Unix socket when one hands a
//! request it has accepted to another: an [`Offer`] (the request) and a [`Reply`] (what became
//! of it), each a length-prefixed frame, and who may be at the other end ([`peer_is_trusted`]).
//! Pure framing over `Read`/`Write`; the callers own the sockets and the threads.
//!
//! Why a socket and not shared memory: the offer carries a whole body and its answer comes
//! only after the other side's COMMIT, and the kernel then tells either side at once when the
//! other is gone (EOF), which is what turns a lost sibling into a 503 rather than a hang.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

/// A request handed over: the caller's sequence number, the channel it is for, its body and the
/// headers kept with it (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub seq: u64,
    pub channel: String,
    pub body: Vec<u8>,
    pub headers: Vec<u8>,
}

/// What became of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored, and committed.
    Committed,
    /// Not stored for a reason that a retry may fix (answered 500).
    Failed(String),
    /// Its transaction did not commit, or the taker went away (answered 503).
    NotCommitted(String),
    /// Its signature does not hold (answered 401).
    Refused(String),
    /// Not taken: the offerer stores it itself.
    Declined,
}

impl Outcome {
    fn code(&self) -> (u8, &str) {
        match self {
            Outcome::Committed => (0, ""),
            Outcome::Failed(why) => (1, why),
            Outcome::NotCommitted(why) => (2, why),
            Outcome::Refused(why) => (3, why),
            Outcome::Declined => (4, ""),
        }
    }

    fn from_code(code: u8, why: String) -> io::Result<Outcome> {
        Ok(match code {
            0 => Outcome::Committed,
            1 => Outcome::Failed(why),
            2 => Outcome::NotCommitted(why),
            3 => Outcome::Refused(why),
            4 => Outcome::Declined,
            _ => return Err(invalid(format!("unknown outcome code {code}"))),
        })
    }
}

/// The answer to the offer of sequence number `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub seq: u64,
    pub outcome: Outcome,
}

/// Longest channel name, header block and reason a frame may carry: far above what is ever
/// sent, low enough that a bad length cannot make the reader allocate much.
const MAX_SHORT: usize = 64 << 10;

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

fn put(frame: &mut Vec<u8>, part: &[u8]) {
    frame.extend_from_slice(&(part.len() as u32).to_le_bytes());
    frame.extend_from_slice(part);
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_part(r: &mut impl Read, max: usize, what: &str) -> io::Result<Vec<u8>> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    let n = u32::from_le_bytes(b) as usize;
    if n > max {
        return Err(invalid(format!("{what} of {n} bytes, over the {max} allowed")));
    }
    let mut v = vec![0u8; n];
    r.read_exact(&mut v)?;
    Ok(v)
}

fn utf8(bytes: Vec<u8>, what: &str) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|_| invalid(format!("{what} is not UTF-8")))
}

/// The frame of `offer`, to write in one go.
pub fn encode_offer(offer: &Offer) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + 12 + offer.channel.len() + offer.body.len() + offer.headers.len());
    frame.extend_from_slice(&offer.seq.to_le_bytes());
    put(&mut frame, offer.channel.as_bytes());
    put(&mut frame, &offer.body);
    put(&mut frame, &offer.headers);
    frame
}

/// Reads one offer; a body over `max_body` bytes is an error (the stream is then unusable).
pub fn read_offer(r: &mut impl Read, max_body: usize) -> io::Result<Offer> {
    let seq = read_u64(r)?;
    let channel = utf8(read_part(r, MAX_SHORT, "a channel name")?, "the channel name")?;
    let body = read_part(r, max_body, "a body")?;
    let headers = read_part(r, MAX_SHORT, "the headers")?;
    Ok(Offer { seq, channel, body, headers })
}

/// Writes one reply (the caller flushes).
pub fn write_reply(w: &mut impl Write, reply: &Reply) -> io::Result<()> {
    let (code, why) = reply.outcome.code();
    let why = &why.as_bytes()[..why.len().min(MAX_SHORT)];
    let mut frame = Vec::with_capacity(8 + 1 + 4 + why.len());
    frame.extend_from_slice(&reply.seq.to_le_bytes());
    frame.push(code);
    put(&mut frame, why);
    w.write_all(&frame)
}

/// Reads one reply.
pub fn read_reply(r: &mut impl Read) -> io::Result<Reply> {
    let seq = read_u64(r)?;
    let mut code = [0u8];
    r.read_exact(&mut code)?;
    let why = String::from_utf8_lossy(&read_part(r, MAX_SHORT, "a reason")?).into_owned();
    Ok(Reply { seq, outcome: Outcome::from_code(code[0], why)? })
}

/// Whether the process at the other end of `stream` runs as this process's user or as root
/// (`SO_PEERCRED`). Any local process can reach an abstract socket name, or take the name
/// first: a request is handed only to a sibling, and taken only from one.
pub fn peer_is_trusted(stream: &UnixStream) -> io::Result<bool> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for getsockopt to write, and len says cred's size.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    Ok(cred.uid == me || cred.uid == 0)
}

/// Starts a thread with every signal blocked: in a Postgres backend, signals must reach the
/// main thread only.
pub fn spawn_quiet(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<std::thread::JoinHandle<()>> {
    super::with_signals_blocked(|| std::thread::Builder::new().name(name.into()).spawn(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_reads_back_as_written() {
        let offer = Offer { seq: 7, channel: "support".into(), body: b"{\"x\":1}".to_vec(), headers: b"{}".to_vec() };
        let frame = encode_offer(&offer);
        assert_eq!(read_offer(&mut &frame[..], 1 << 20).unwrap(), offer);
    }

    #[test]
    fn a_body_over_the_limit_is_refused_before_it_is_read() {
        let offer = Offer { seq: 1, channel: "c".into(), body: vec![b'x'; 100], headers: vec![] };
        let err = read_offer(&mut &encode_offer(&offer)[..], 99).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("a body of 100 bytes, over the 99 allowed"), "{err}");
    }

    #[test]
    fn a_huge_announced_length_allocates_nothing() {
        let mut frame = 1u64.to_le_bytes().to_vec();
        frame.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = read_offer(&mut &frame[..], 1 << 20).unwrap_err();
        assert!(err.to_string().contains("a channel name of 4294967295 bytes"), "{err}");
    }

    #[test]
    fn a_cut_frame_is_an_error() {
        let offer = Offer { seq: 1, channel: "c".into(), body: b"body".to_vec(), headers: b"{}".to_vec() };
        let frame = encode_offer(&offer);
        for cut in 0..frame.len() {
            assert!(read_offer(&mut &frame[..cut], 1 << 20).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn every_outcome_reads_back_as_written() {
        for outcome in [
            Outcome::Committed,
            Outcome::Failed("disk full".into()),
            Outcome::NotCommitted("serialization".into()),
            Outcome::Refused("Signature mismatch".into()),
            Outcome::Declined,
        ] {
            let mut frame = Vec::new();
            write_reply(&mut frame, &Reply { seq: 42, outcome: outcome.clone() }).unwrap();
            assert_eq!(read_reply(&mut &frame[..]).unwrap(), Reply { seq: 42, outcome });
        }
    }

    #[test]
    fn an_unknown_outcome_code_is_an_error() {
        let mut frame = 3u64.to_le_bytes().to_vec();
        frame.push(9);
        frame.extend_from_slice(&0u32.to_le_bytes());
        assert!(read_reply(&mut &frame[..]).unwrap_err().to_string().contains("unknown outcome code 9"));
    }

    #[test]
    fn a_socket_pair_of_this_process_is_trusted() {
        let (a, b) = UnixStream::pair().unwrap();
        assert!(peer_is_trusted(&a).unwrap() && peer_is_trusted(&b).unwrap());
    }
}
