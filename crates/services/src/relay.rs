//! The relay inside `sturnusd`: a [`RelayServer`] on its own thread, and the minter the
//! matchmaker seals allocations with. The relay holds only its own key: the game's keys are
//! minted into connect tokens and never reach it, so payloads stay end-to-end encrypted.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sturnus_relay::{Allocation, AllocationSpec, RelayConfig, RelayKey, RelayServer};
use sturnus_socket::UdpSocketFactory;

use crate::http::{RelayFigures, RelayProbe};

/// What each participant's allocation allows, per second (a host's is multiplied by the
/// match's size: it talks to everyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AllocationLimits {
    /// Datagrams per second one participant may send.
    pub packets_per_second: u32,
    /// Bytes per second one participant may send.
    pub bytes_per_second: u32,
}

impl Default for AllocationLimits {
    fn default() -> Self {
        // 300 datagrams and 300 kB per second per player: five times a 60 Hz game's.
        Self { packets_per_second: 300, bytes_per_second: 300_000 }
    }
}

/// A host's allocation allows its match's size times a player's, up to this many players' worth:
/// a match of any size cannot buy a relay's whole capacity.
pub const HOST_SCALE_CAP: u16 = 256;

/// Mints relay allocations for the matchmaker.
#[derive(Debug, Clone)]
pub struct RelayMinter {
    key: Arc<RelayKey>,
    public: SocketAddr,
    lifetime: u64,
    player_lifetime: u64,
    limits: AllocationLimits,
}

impl RelayMinter {
    /// A minter for the relay players reach at `public`, holding `key`. A host's allocation
    /// may be bound for `lifetime_seconds` (its match's length); a player's for
    /// `player_lifetime_seconds`, enough to connect and to bind again after a relay restart
    /// or a NAT change. The relay remembers every allocation until it expires (so a captured
    /// BIND cannot be replayed), so players' short lifetimes keep departed players from
    /// holding its capacity.
    pub fn new(
        key: RelayKey,
        public: SocketAddr,
        lifetime_seconds: u64,
        player_lifetime_seconds: u64,
        limits: AllocationLimits,
    ) -> Self {
        Self {
            key: Arc::new(key),
            public,
            lifetime: lifetime_seconds,
            player_lifetime: player_lifetime_seconds,
            limits,
        }
    }

    /// Where players reach the relay.
    pub fn public_address(&self) -> SocketAddr {
        self.public
    }

    /// A fresh session id.
    pub fn new_session(&self) -> Result<u32, getrandom::Error> {
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    /// The sealed allocation of `slot` in `session` (a match of `size` players), as bytes.
    pub fn mint(
        &self,
        session: u32,
        slot: u16,
        size: u16,
        now_unix: u64,
    ) -> Result<Vec<u8>, sturnus_relay::RelayError> {
        let host = slot == sturnus_relay::HOST_SLOT;
        let scale = if host { u32::from(size.clamp(1, HOST_SCALE_CAP)) } else { 1 };
        let lifetime = if host { self.lifetime } else { self.player_lifetime };
        let spec = AllocationSpec {
            session,
            slot,
            expires_unix: now_unix.saturating_add(lifetime),
            packets_per_sec: self.limits.packets_per_second.saturating_mul(scale),
            bytes_per_sec: self.limits.bytes_per_second.saturating_mul(scale),
        };
        Ok(Allocation::mint(&spec, &self.key, self.public, now_unix)?.to_bytes())
    }
}

/// The relay's counters, published by its thread.
#[derive(Debug, Default)]
struct Published {
    bindings: AtomicU64,
    sessions: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

/// The relay running on its own thread.
#[derive(Debug)]
pub struct RelayService {
    local: SocketAddr,
    minter: RelayMinter,
    stop: Arc<AtomicBool>,
    published: Arc<Published>,
    thread: Option<JoinHandle<()>>,
}

/// Reads a relay key file: 64 hexadecimal digits (surrounding whitespace ignored).
fn read_key(path: &Path) -> Result<RelayKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the relay key {}: {e}", path.display()))?;
    let hex = text.trim();
    let mut bytes = [0u8; 32];
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(format!("{}: a relay key is 64 hex digits", path.display()));
    }
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("{}: a relay key is 64 hex digits", path.display()))?;
    }
    Ok(RelayKey::from_bytes(bytes))
}

impl RelayService {
    /// Binds the relay at `bind` and starts its thread. Players reach it at `public` (or
    /// `bind`); its key is read from `key_file` or drawn from the operating system.
    pub fn start(
        bind: SocketAddr,
        public: Option<SocketAddr>,
        key_file: Option<&Path>,
        lifetime_seconds: u64,
        player_lifetime_seconds: u64,
        limits: AllocationLimits,
    ) -> Result<Self, String> {
        let key = match key_file {
            Some(path) => read_key(path)?,
            None => RelayKey::generate().map_err(|e| e.to_string())?,
        };
        let relay_key = RelayKey::from_bytes(*key.as_bytes());
        let mut server = RelayServer::bind(
            &UdpSocketFactory::default(),
            bind,
            RelayConfig::default(),
            relay_key,
        )
        .map_err(|e| e.to_string())?;
        let local = server.local_addr();
        let public = public.unwrap_or(local);
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(Published::default());
        let thread = {
            let (stop, published) = (Arc::clone(&stop), Arc::clone(&published));
            std::thread::Builder::new()
                .name("sturnusd-relay".into())
                .spawn(move || {
                    let report = |s: &sturnus_relay::RelayStats, _: &_| {
                        published.bindings.store(s.bindings, Ordering::Relaxed);
                        published.sessions.store(s.hosts, Ordering::Relaxed);
                        published.forwarded.store(s.forwarded, Ordering::Relaxed);
                        published.dropped.store(s.dropped(), Ordering::Relaxed);
                    };
                    // A socket error ends the relay's loop; start it again rather than end
                    // the relay (the error is logged, the socket is still bound).
                    while let Err(e) =
                        server.run_reporting(&stop, Duration::from_millis(100), report)
                    {
                        tracing::error!(error = %e, "relay: socket failed");
                    }
                })
                .map_err(|e| e.to_string())?
        };
        tracing::info!(%local, %public, "relay listening");
        Ok(Self {
            local,
            minter: RelayMinter::new(
                key,
                public,
                lifetime_seconds,
                player_lifetime_seconds,
                limits,
            ),
            stop,
            published,
            thread: Some(thread),
        })
    }

    /// Where the relay is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The minter of its allocations.
    pub fn minter(&self) -> RelayMinter {
        self.minter.clone()
    }

    /// A reader of its counters.
    pub fn probe(&self) -> RelayProbe {
        let published = Arc::clone(&self.published);
        Arc::new(move || RelayFigures {
            bindings: published.bindings.load(Ordering::Relaxed),
            sessions: published.sessions.load(Ordering::Relaxed),
            forwarded: published.forwarded.load(Ordering::Relaxed),
            dropped: published.dropped.load(Ordering::Relaxed),
        })
    }

    /// Stops the relay's thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RelayService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
