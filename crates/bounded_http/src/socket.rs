//! Binding the listening socket, alone or shared by several processes of one server.
//!
//! Shared, every process binds the same address with `SO_REUSEPORT` and the kernel spreads
//! new connections over them, or gives them all to the first ([`steer_to_first`]). The option
//! would also let an unrelated process of the same user (another cluster left on the default
//! port, say) share the port silently, so the first of the siblings proves the address free
//! with a plain bind before it shares it.

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

/// Makes every new connection to the address go to the first socket of those sharing it
/// (`socket`, bound with [`Sharing::FirstOfSiblings`]), not spread over them by hash: one
/// process then has every connection's requests. A classic BPF program that answers index 0
/// (`SO_ATTACH_REUSEPORT_CBPF`). When that socket closes, the kernel moves another into its
/// place, which then gets them.
pub fn steer_to_first(socket: &TcpListener) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // BPF_RET | BPF_K: return the constant 0.
    let mut program = [libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 }];
    let fprog = libc::sock_fprog { len: 1, filter: program.as_mut_ptr() };
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&raw const fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

    #[test]
    fn new_connections_go_to_the_first_sibling_while_it_listens() {
        let first = bind("127.0.0.1:0", Sharing::FirstOfSiblings).unwrap();
        steer_to_first(&first).unwrap();
        let address = first.local_addr().unwrap();
        let second = bind(&address.to_string(), Sharing::Sibling).unwrap();
        // How many connections `listener` accepts until `expected` or a deadline; then any more.
        let accept = |listener: &TcpListener, expected: usize| {
            listener.set_nonblocking(true).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let mut accepted = 0;
            while accepted < expected && std::time::Instant::now() < deadline {
                match listener.accept() {
                    Ok(_) => accepted += 1,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
                }
            }
            accepted + std::iter::from_fn(|| listener.accept().ok()).count()
        };
        // Spread by hash, 20 connections would all land on one of two sockets once in a million.
        let clients: Vec<_> = (0..20).map(|_| std::net::TcpStream::connect(address).unwrap()).collect();
        assert_eq!(accept(&first, 20), 20);
        assert_eq!(accept(&second, 0), 0);
        // The first gone, the other takes them.
        drop(first);
        let more: Vec<_> = (0..5).map(|_| std::net::TcpStream::connect(address).unwrap()).collect();
        assert_eq!(accept(&second, 5), 5);
        drop((clients, more));
    }
}
