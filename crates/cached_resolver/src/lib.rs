//! Host names for a client that sends all day, looked up once a minute rather than once a
//! request: the delivery worker's sender pool, and wa-sim's load generator and callbacks.
//!
//! ureq 3 resolves the host of every request before it looks for a pooled connection, and
//! with a timeout set (every send has one) it does so on a thread it spawns for the purpose.
//! So each message the delivery worker sent cost a new thread and a DNS query for
//! graph.facebook.com (glibc keeps no cache): a thousand sends a second were a thousand threads
//! and queries. This keeps each answer for [`TTL`] and asks ureq's own resolver, with its
//! timeout, only when it has none. [`agent`] builds a ureq agent that resolves through it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long an answer is used. Long enough that a busy channel looks up its host a few times
/// an hour; short enough that a changed address (Meta's edge moves) is picked up within it, the
/// sends meanwhile failing as transport errors, which are retried.
pub const TTL: Duration = Duration::from_secs(60);

/// ureq's resolver behind a cache of its answers, per scheme, host and port.
#[derive(Debug)]
pub struct CachingResolver<R = DefaultResolver> {
    inner: R,
    ttl: Duration,
    answers: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl CachingResolver {
    /// ureq's own resolver, its answers kept for [`TTL`].
    pub fn new() -> CachingResolver {
        CachingResolver::with(DefaultResolver::default(), TTL)
    }
}

impl Default for CachingResolver {
    fn default() -> CachingResolver {
        CachingResolver::new()
    }
}

/// A ureq agent with `config` whose host names go through a [`CachingResolver`] of its own.
pub fn agent(config: Config) -> ureq::Agent {
    ureq::Agent::with_parts(config, ureq::unversioned::transport::DefaultConnector::default(), CachingResolver::new())
}

impl<R: Resolver> CachingResolver<R> {
    fn with(inner: R, ttl: Duration) -> CachingResolver<R> {
        CachingResolver { inner, ttl, answers: Mutex::new(HashMap::new()) }
    }
}

impl<R: Resolver> Resolver for CachingResolver<R> {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        // (An invalid URL has no authority: the inner resolver says why.)
        let key = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => return self.inner.resolve(uri, config, timeout),
        };
        let fresh = |at: &Instant| at.elapsed() < self.ttl;
        if let Some((_, addrs)) = self.lock().get(&key).filter(|(at, _)| fresh(at)) {
            return Ok(addrs.clone());
        }
        // Looked up without the lock, so a slow lookup holds up no other thread's cached hosts;
        // errors are not kept (the next send asks again).
        let addrs = self.inner.resolve(uri, config, timeout)?;
        let mut answers = self.lock();
        answers.retain(|_, (at, _)| fresh(at));
        answers.insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

impl<R> CachingResolver<R> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, ResolvedSocketAddrs)>> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers 127.0.0.<n> for the n-th lookup, and counts them.
    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    impl Resolver for Counting {
        fn resolve(&self, uri: &Uri, _: &Config, _: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
            if uri.host() == Some("nowhere.invalid") {
                return Err(ureq::Error::HostNotFound);
            }
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            let mut addrs = self.empty();
            addrs.push(SocketAddr::from(([127, 0, 0, n as u8], uri.port_u16().unwrap_or(443))));
            Ok(addrs)
        }
    }

    fn resolve(r: &CachingResolver<Counting>, url: &str) -> Result<SocketAddr, ureq::Error> {
        let uri: Uri = url.parse().unwrap();
        r.resolve(&uri, &Config::default(), NextTimeout::default()).map(|a| a[0])
    }

    #[test]
    fn a_host_is_looked_up_once_within_the_ttl() {
        let r = CachingResolver::with(Counting::default(), Duration::from_secs(60));
        let first = resolve(&r, "https://graph.example:443/v23.0/1/messages").unwrap();
        let again = resolve(&r, "https://graph.example:443/v23.0/2/messages").unwrap();
        assert_eq!(first, again);
        assert_eq!(r.inner.0.load(Ordering::SeqCst), 1);
        // Another port or scheme is another answer.
        assert_ne!(resolve(&r, "https://graph.example:8443/x").unwrap(), first);
        assert_ne!(resolve(&r, "http://graph.example:443/x").unwrap(), first);
        assert_eq!(r.inner.0.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn an_answer_older_than_the_ttl_is_looked_up_again() {
        let r = CachingResolver::with(Counting::default(), Duration::ZERO);
        let first = resolve(&r, "https://graph.example/x").unwrap();
        let again = resolve(&r, "https://graph.example/x").unwrap();
        assert_ne!(first, again);
        assert_eq!(r.inner.0.load(Ordering::SeqCst), 2);
        assert_eq!(r.lock().len(), 1, "expired answers are dropped, not kept beside the new one");
    }

    #[test]
    fn a_failed_lookup_is_not_kept() {
        let r = CachingResolver::with(Counting::default(), Duration::from_secs(60));
        assert!(matches!(resolve(&r, "https://nowhere.invalid/x"), Err(ureq::Error::HostNotFound)));
        assert!(r.lock().is_empty());
    }
}
