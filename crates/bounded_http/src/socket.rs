//! Binding the listening socket, alone or shared by several processes of one server.
//!
//! Shared, every process binds the same address with `SO_REUSEPORT` and the kernel spreads
//! new connections over them. The option would also let an unrelated process of the same
//! user (another cluster left on the default port, say) share the port silently, so the
//! first of the siblings proves the address free with a plain bind before it shares it.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

/// Connections the kernel queues per socket before they are accepted.
const BACKLOG: i32 = 1024;

/// How a socket is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// This process alone: a second bind of the address fails.
    Alone,
    /// The first of several sibling processes that will share it: fails unless the address is
    /// free of anyone else.
    FirstOfSiblings,
    /// A sibling of a process already bound with [`Sharing::FirstOfSiblings`].
    Sibling,
}

pub fn bind(address: &str, sharing: Sharing) -> io::Result<TcpListener> {
    let addr = resolve(address)?;
    if sharing == Sharing::FirstOfSiblings {
        drop(socket_for(addr, false)?); // EADDRINUSE if anyone else has it
    }
    socket_for(addr, sharing != Sharing::Alone)
}

fn resolve(address: &str) -> io::Result<SocketAddr> {
    address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{address} names no address")))
}

fn socket_for(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    // As std's TcpListener::bind: a restarted server may bind while old connections linger.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_share_a_port_and_strangers_are_kept_out() {
        let first = bind("127.0.0.1:0", Sharing::FirstOfSiblings).unwrap();
        let address = first.local_addr().unwrap().to_string();
        let second = bind(&address, Sharing::Sibling).unwrap();
        assert_eq!(second.local_addr().unwrap(), first.local_addr().unwrap());
        // Another "first" (a second server on the same address) is refused, and so is a lone one.
        assert_eq!(bind(&address, Sharing::FirstOfSiblings).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        assert_eq!(bind(&address, Sharing::Alone).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        // A port held by someone else alone is refused to siblings' first.
        let stranger = bind("127.0.0.1:0", Sharing::Alone).unwrap();
        let taken = stranger.local_addr().unwrap().to_string();
        assert_eq!(bind(&taken, Sharing::FirstOfSiblings).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        assert!(bind("no-such-host.invalid:1", Sharing::Alone).is_err());
    }
}
