//! The sans-IO relay core: datagrams and time in, datagrams out.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::RelayError;
use crate::token::{self, HOST_SLOT, RelayKey};
use crate::wire::{Bind, ErrorCode, HEADER_LEN, Header, Kind};

/// The relay's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// The most allocations held at once (bound, or remembered until their token expires so a
    /// captured BIND cannot be replayed). Default 65,536.
    pub max_allocations: usize,
    /// A binding that receives nothing (DATA or PING) for this long ends. Default 10 s.
    pub idle_timeout: Duration,
    /// The longest datagram relayed, header included; longer ones are dropped. Default 1,500.
    pub max_datagram: usize,
    /// How often [`Relay::handle_timeout`] looks for idle bindings. Default 250 ms.
    pub sweep_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            max_allocations: 65_536,
            idle_timeout: Duration::from_secs(10),
            max_datagram: 1_500,
            sweep_interval: Duration::from_millis(250),
        }
    }
}

impl RelayConfig {
    /// Checks the settings: every field must be positive, and a datagram must hold a BIND.
    pub fn validate(&self) -> Result<(), RelayError> {
        let bad = |field, reason| Err(RelayError::InvalidConfig { field, reason });
        if self.max_allocations == 0 {
            return bad("max_allocations", "must be positive");
        }
        if self.idle_timeout.is_zero() {
            return bad("idle_timeout", "must be positive");
        }
        if self.sweep_interval.is_zero() {
            return bad("sweep_interval", "must be positive");
        }
        if self.max_datagram < crate::wire::BIND_LEN || self.max_datagram > 65_535 {
            return bad("max_datagram", "must be between a BIND's size (126) and 65,535");
        }
        Ok(())
    }
}

/// The relay's counters. Every datagram received is counted once as forwarded, as accepted
/// (`binds`, `rebinds`, `bind_repeats`, `closed`, `pongs`) or in one `dropped_*` counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// Datagrams handed to [`Relay::handle`].
    pub received: u64,
    /// DATA datagrams forwarded to a peer.
    pub forwarded: u64,
    /// Bytes forwarded (relay header included).
    pub forwarded_bytes: u64,
    /// Control replies (BOUND, PONG, ERROR) written in place of a request.
    pub replies: u64,
    /// PINGs answered.
    pub pongs: u64,
    /// PEER_GONE notices queued.
    pub peer_gone_sent: u64,
    /// BINDs that bound an allocation for the first time.
    pub binds: u64,
    /// BINDs that moved a binding to a new address (larger counter).
    pub rebinds: u64,
    /// BINDs repeated from the bound address (answered again).
    pub bind_repeats: u64,
    /// Bindings ended by CLOSE.
    pub closed: u64,
    /// Bindings ended by the idle timeout.
    pub timed_out: u64,
    /// Allocations held now (bound or remembered).
    pub allocations: u64,
    /// Bindings live now.
    pub bindings: u64,
    /// Hosts bound now: the sessions being relayed.
    pub hosts: u64,
    /// Dropped: longer than `max_datagram`.
    pub dropped_oversized: u64,
    /// Dropped: no relay header (too short, wrong magic, unknown type).
    pub dropped_bad_header: u64,
    /// Dropped: DATA, PING or CLOSE from an address with no binding.
    pub dropped_unknown_sender: u64,
    /// Dropped: a BIND of the wrong length.
    pub dropped_malformed_bind: u64,
    /// Dropped: a token not sealed by this relay's key, or a header that disagrees with it.
    pub dropped_bad_token: u64,
    /// Dropped: a BIND whose tag was not made with the allocation's bind key.
    pub dropped_bad_bind_tag: u64,
    /// Dropped: a BIND of an expired token.
    pub dropped_expired: u64,
    /// Dropped: a BIND whose counter was not larger than one bound before (a replay).
    pub dropped_replayed: u64,
    /// Dropped: a BIND while `max_allocations` are held.
    pub dropped_full: u64,
    /// Dropped: a BIND from an address bound to another allocation.
    pub dropped_address_taken: u64,
    /// Dropped: a BIND of another allocation of a (session, slot) that one holds.
    pub dropped_slot_taken: u64,
    /// Dropped: a datagram naming another session than the sender's binding.
    pub dropped_wrong_session: u64,
    /// Dropped: DATA to a slot the sender may not reach (a client to anything but the host,
    /// the host to itself).
    pub dropped_forbidden_slot: u64,
    /// Dropped: DATA to a slot with no live binding.
    pub dropped_no_peer: u64,
    /// Dropped: over the allocation's packet or byte rate.
    pub dropped_rate_limited: u64,
    /// Dropped: a type only the relay sends (BOUND, PONG, PEER_GONE, ERROR).
    pub dropped_unexpected: u64,
}

/// The id of an allocation: the first 8 bytes of its bind key (random, and secret to its
/// holder).
fn allocation_id(bind_key: &[u8; 32]) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&bind_key[..8]);
    u64::from_le_bytes(id)
}

impl RelayStats {
    /// Every datagram dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_oversized
            + self.dropped_bad_header
            + self.dropped_unknown_sender
            + self.dropped_malformed_bind
            + self.dropped_bad_token
            + self.dropped_bad_bind_tag
            + self.dropped_expired
            + self.dropped_replayed
            + self.dropped_full
            + self.dropped_address_taken
            + self.dropped_slot_taken
            + self.dropped_wrong_session
            + self.dropped_forbidden_slot
            + self.dropped_no_peer
            + self.dropped_rate_limited
            + self.dropped_unexpected
    }
}

/// A datagram to send: the first `len` bytes of the buffer handed to [`Relay::handle`]
/// (rewritten in place) go to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// The destination.
    pub to: SocketAddr,
    /// Bytes at the start of the buffer to send.
    pub len: usize,
}

/// One token bucket pair, in millionths of a packet and of a byte.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    packets_per_sec: u64,
    bytes_per_sec: u64,
    packets: u64,
    bytes: u64,
    at: Instant,
}

const MICROS: u64 = 1_000_000;

impl Bucket {
    fn new(packets_per_sec: u32, bytes_per_sec: u32, now: Instant) -> Self {
        let packets_per_sec = u64::from(packets_per_sec);
        let bytes_per_sec = u64::from(bytes_per_sec);
        Self {
            packets_per_sec,
            bytes_per_sec,
            packets: packets_per_sec * MICROS,
            bytes: bytes_per_sec * MICROS,
            at: now,
        }
    }

    /// Takes one datagram of `len` bytes if both buckets hold enough.
    fn take(&mut self, now: Instant, len: usize) -> bool {
        let elapsed = now.saturating_duration_since(self.at);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if micros >= MICROS {
            self.at = now;
        } else {
            // Only whole microseconds are credited, so frequent calls lose nothing.
            self.at += Duration::from_micros(micros);
        }
        let micros = micros.min(MICROS);
        self.packets =
            (self.packets + micros * self.packets_per_sec).min(self.packets_per_sec * MICROS);
        self.bytes = (self.bytes + micros * self.bytes_per_sec).min(self.bytes_per_sec * MICROS);
        let byte_cost = u64::try_from(len).unwrap_or(u64::MAX).saturating_mul(MICROS);
        let packets_ok = self.packets_per_sec == 0 || self.packets >= MICROS;
        let bytes_ok = self.bytes_per_sec == 0 || self.bytes >= byte_cost;
        if !(packets_ok && bytes_ok) {
            return false;
        }
        if self.packets_per_sec != 0 {
            self.packets -= MICROS;
        }
        if self.bytes_per_sec != 0 {
            self.bytes -= byte_cost;
        }
        true
    }
}

/// One allocation the relay holds: bound to an address, or remembered (with its BIND counter)
/// until its token expires.
#[derive(Debug)]
struct Entry {
    session: u32,
    slot: u16,
    /// Which allocation of (session, slot) this is: the first 8 bytes of its bind key. Only a
    /// BIND of the same allocation may move the binding.
    allocation: u64,
    addr: Option<SocketAddr>,
    counter: u64,
    expires_unix: u64,
    last_seen: Instant,
    bucket: Bucket,
}

/// The relay: bindings of allocations to addresses, and the forwarding between them.
///
/// Sans-IO: [`handle`](Self::handle) takes each received datagram (and the time) and rewrites
/// it in place into what to send, if anything; [`handle_timeout`](Self::handle_timeout) ends
/// idle bindings; [`poll_transmit`](Self::poll_transmit) hands out the PEER_GONE notices that
/// endings cause. The forwarding path allocates nothing.
///
/// Rules: a BIND with a token sealed under the relay's key, a tag made with its bind key and a
/// counter larger than any bound before for that allocation binds the sender's address (the
/// same address may repeat its BIND). A client (slot ≥ 1) may send DATA only to the host
/// (slot 0) of its session; the host may send to any client slot of its session. The relay
/// rewrites the slot field to the sender's slot. Each binding is held to its token's packet
/// and byte rates. When the host's binding ends, the session's clients get PEER_GONE; when a
/// client's ends, the host does.
#[derive(Debug)]
pub struct Relay {
    key: RelayKey,
    config: RelayConfig,
    entries: Vec<Option<Entry>>,
    free: Vec<u32>,
    by_addr: HashMap<SocketAddr, u32>,
    by_slot: HashMap<(u32, u16), u32>,
    sessions: HashMap<u32, Vec<u32>>,
    notices: VecDeque<(SocketAddr, [u8; HEADER_LEN])>,
    stats: RelayStats,
    next_sweep: Option<Instant>,
}

impl Relay {
    /// A relay that opens tokens with `key`.
    pub fn new(config: RelayConfig, key: RelayKey) -> Result<Self, RelayError> {
        config.validate()?;
        Ok(Self {
            key,
            config,
            entries: Vec::new(),
            free: Vec::new(),
            by_addr: HashMap::new(),
            by_slot: HashMap::new(),
            sessions: HashMap::new(),
            notices: VecDeque::new(),
            stats: RelayStats::default(),
            next_sweep: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// The address bound to `slot` of `session`, if any.
    pub fn bound_address(&self, session: u32, slot: u16) -> Option<SocketAddr> {
        let index = *self.by_slot.get(&(session, slot))?;
        self.entry(index)?.addr
    }

    /// Counts a datagram the driver received but could not hold (longer than `max_datagram`).
    pub(crate) fn note_oversized(&mut self) {
        self.stats.received += 1;
        self.stats.dropped_oversized += 1;
    }

    fn entry(&self, index: u32) -> Option<&Entry> {
        self.entries.get(index as usize)?.as_ref()
    }

    fn entry_mut(&mut self, index: u32) -> Option<&mut Entry> {
        self.entries.get_mut(index as usize)?.as_mut()
    }

    /// Handles one datagram from `from`, received at `now` (`unix`: the wall clock in
    /// seconds, which tokens expire by). Returns what to send, rewritten in place in
    /// `datagram`: a forwarded DATA, or a reply to the sender (never longer than the request).
    pub fn handle(
        &mut self,
        now: Instant,
        unix: u64,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> Option<Forward> {
        self.stats.received += 1;
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + self.config.sweep_interval);
        }
        if datagram.len() > self.config.max_datagram {
            self.stats.dropped_oversized += 1;
            return None;
        }
        let Some(header) = Header::parse(datagram) else {
            self.stats.dropped_bad_header += 1;
            return None;
        };
        match header.kind {
            Kind::Data => self.data(now, from, header, datagram),
            Kind::Bind => self.bind(now, unix, from, header, datagram),
            Kind::Ping => {
                if !self.by_addr.contains_key(&from) {
                    self.stats.dropped_unknown_sender += 1;
                    return self.error(from, header, ErrorCode::NotBound, datagram);
                }
                let index = self.sender(from, header)?;
                let entry = self.entry_mut(index)?;
                if !entry.bucket.take(now, datagram.len()) {
                    self.stats.dropped_rate_limited += 1;
                    return None;
                }
                entry.last_seen = now;
                let slot = entry.slot;
                self.stats.pongs += 1;
                self.reply(from, Header::new(Kind::Pong, slot, header.session), datagram)
            }
            Kind::Close => {
                let index = self.sender(from, header)?;
                self.stats.closed += 1;
                self.end_binding(index, unix);
                None
            }
            Kind::Bound | Kind::Pong | Kind::PeerGone | Kind::Error => {
                self.stats.dropped_unexpected += 1;
                None
            }
        }
    }

    /// The binding of `from`, if it has one in the header's session.
    fn sender(&mut self, from: SocketAddr, header: Header) -> Option<u32> {
        let Some(&index) = self.by_addr.get(&from) else {
            self.stats.dropped_unknown_sender += 1;
            return None;
        };
        if self.entry(index)?.session != header.session {
            self.stats.dropped_wrong_session += 1;
            return None;
        }
        Some(index)
    }

    fn data(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: Header,
        datagram: &mut [u8],
    ) -> Option<Forward> {
        let Some(&index) = self.by_addr.get(&from) else {
            self.stats.dropped_unknown_sender += 1;
            // Tell a sender whose binding ended (idle, or the relay restarted) to bind again;
            // the ERROR is the header alone, no longer than the DATA.
            return self.error(from, header, ErrorCode::NotBound, datagram);
        };
        let entry = self.entries.get_mut(index as usize)?.as_mut()?;
        if entry.session != header.session {
            self.stats.dropped_wrong_session += 1;
            return None;
        }
        let allowed = if entry.slot == HOST_SLOT {
            header.slot != HOST_SLOT
        } else {
            header.slot == HOST_SLOT
        };
        if !allowed {
            self.stats.dropped_forbidden_slot += 1;
            return None;
        }
        if !entry.bucket.take(now, datagram.len()) {
            self.stats.dropped_rate_limited += 1;
            return None;
        }
        entry.last_seen = now;
        let source = entry.slot;
        let to = self
            .by_slot
            .get(&(header.session, header.slot))
            .and_then(|&peer| self.entries.get(peer as usize)?.as_ref()?.addr);
        let Some(to) = to else {
            self.stats.dropped_no_peer += 1;
            return None;
        };
        datagram[2..4].copy_from_slice(&source.to_be_bytes());
        self.stats.forwarded += 1;
        self.stats.forwarded_bytes += datagram.len() as u64;
        Some(Forward { to, len: datagram.len() })
    }

    fn reply(&mut self, to: SocketAddr, header: Header, datagram: &mut [u8]) -> Option<Forward> {
        header.write(datagram);
        self.stats.replies += 1;
        Some(Forward { to, len: HEADER_LEN })
    }

    fn error(
        &mut self,
        to: SocketAddr,
        header: Header,
        code: ErrorCode,
        datagram: &mut [u8],
    ) -> Option<Forward> {
        let reply = Header { kind: Kind::Error, flags: code.to_byte(), ..header };
        self.reply(to, reply, datagram)
    }

    fn bind(
        &mut self,
        now: Instant,
        unix: u64,
        from: SocketAddr,
        header: Header,
        datagram: &mut [u8],
    ) -> Option<Forward> {
        let Some(bind) = Bind::parse(datagram) else {
            self.stats.dropped_malformed_bind += 1;
            return None;
        };
        let Some((spec, bind_key)) = token::open(bind.sealed, &self.key) else {
            self.stats.dropped_bad_token += 1;
            return self.error(from, header, ErrorCode::BadToken, datagram);
        };
        if spec.session != header.session || spec.slot != header.slot || spec.slot == u16::MAX {
            self.stats.dropped_bad_token += 1;
            return self.error(from, header, ErrorCode::BadToken, datagram);
        }
        if !bind.verify(&bind_key) {
            self.stats.dropped_bad_bind_tag += 1;
            return None;
        }
        let counter = bind.counter;
        if spec.expires_unix <= unix {
            self.stats.dropped_expired += 1;
            return self.error(from, header, ErrorCode::Expired, datagram);
        }
        let key = (spec.session, spec.slot);
        let allocation = allocation_id(&bind_key);
        let mut existing = self.by_slot.get(&key).copied();
        if let Some(index) = existing {
            let entry = self.entries.get(index as usize)?.as_ref()?;
            if entry.allocation != allocation {
                // Two matches drew one session id: the first allocation keeps it until its
                // token expires (an ended one is forgotten then, and the slot is free).
                if entry.addr.is_none() && entry.expires_unix <= unix {
                    self.forget(index);
                    existing = None;
                } else {
                    self.stats.dropped_slot_taken += 1;
                    return self.error(from, header, ErrorCode::SlotTaken, datagram);
                }
            }
        }
        let holder = self.by_addr.get(&from).copied();
        if holder.is_some() && holder != existing {
            self.stats.dropped_address_taken += 1;
            return self.error(from, header, ErrorCode::AddressTaken, datagram);
        }
        let bound = Header::new(Kind::Bound, spec.slot, spec.session);
        if let Some(index) = existing {
            let entry = self.entries.get_mut(index as usize)?.as_mut()?;
            if entry.addr == Some(from) {
                if counter < entry.counter {
                    self.stats.dropped_replayed += 1;
                    return self.error(from, header, ErrorCode::Replayed, datagram);
                }
                entry.counter = counter;
                entry.last_seen = now;
                self.stats.bind_repeats += 1;
                return self.reply(from, bound, datagram);
            }
            if counter <= entry.counter {
                self.stats.dropped_replayed += 1;
                return self.error(from, header, ErrorCode::Replayed, datagram);
            }
            let old = entry.addr.replace(from);
            entry.counter = counter;
            entry.last_seen = now;
            match old {
                Some(old) => {
                    self.by_addr.remove(&old);
                    self.stats.rebinds += 1;
                }
                None => {
                    self.stats.bindings += 1;
                    self.stats.hosts += u64::from(spec.slot == HOST_SLOT);
                    self.stats.binds += 1;
                }
            }
            self.by_addr.insert(from, index);
            return self.reply(from, bound, datagram);
        }
        if self.by_slot.len() >= self.config.max_allocations {
            self.stats.dropped_full += 1;
            return self.error(from, header, ErrorCode::Full, datagram);
        }
        let entry = Entry {
            session: spec.session,
            slot: spec.slot,
            allocation,
            addr: Some(from),
            counter,
            expires_unix: spec.expires_unix,
            last_seen: now,
            bucket: Bucket::new(spec.packets_per_sec, spec.bytes_per_sec, now),
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.entries[index as usize] = Some(entry);
                index
            }
            None => {
                let Ok(index) = u32::try_from(self.entries.len()) else {
                    self.stats.dropped_full += 1;
                    return None;
                };
                self.entries.push(Some(entry));
                index
            }
        };
        self.by_slot.insert(key, index);
        self.by_addr.insert(from, index);
        self.sessions.entry(spec.session).or_default().push(index);
        self.stats.binds += 1;
        self.stats.bindings += 1;
        self.stats.hosts += u64::from(spec.slot == HOST_SLOT);
        self.stats.allocations = self.by_slot.len() as u64;
        self.reply(from, bound, datagram)
    }

    /// Ends the binding of entry `index`: its address is forgotten, its peers told, and the
    /// entry itself forgotten once its token has expired (until then its counter guards
    /// against a replayed BIND).
    fn end_binding(&mut self, index: u32, unix: u64) {
        let Some(entry) = self.entries.get_mut(index as usize).and_then(Option::as_mut) else {
            return;
        };
        let Some(addr) = entry.addr.take() else { return };
        let (session, slot, expires) = (entry.session, entry.slot, entry.expires_unix);
        self.by_addr.remove(&addr);
        self.stats.bindings -= 1;
        self.stats.hosts -= u64::from(slot == HOST_SLOT);
        let gone = Header::new(Kind::PeerGone, slot, session).to_bytes();
        if let Some(members) = self.sessions.get(&session) {
            for &member in members {
                let Some(peer) = self.entries.get(member as usize).and_then(Option::as_ref) else {
                    continue;
                };
                let Some(to) = peer.addr else { continue };
                let concerned =
                    if slot == HOST_SLOT { peer.slot != HOST_SLOT } else { peer.slot == HOST_SLOT };
                if concerned {
                    self.notices.push_back((to, gone));
                    self.stats.peer_gone_sent += 1;
                }
            }
        }
        if expires <= unix {
            self.forget(index);
        }
    }

    /// Removes entry `index` entirely.
    fn forget(&mut self, index: u32) {
        let Some(entry) = self.entries.get_mut(index as usize).and_then(Option::take) else {
            return;
        };
        if let Some(addr) = entry.addr {
            self.by_addr.remove(&addr);
            self.stats.bindings -= 1;
            self.stats.hosts -= u64::from(entry.slot == HOST_SLOT);
        }
        self.by_slot.remove(&(entry.session, entry.slot));
        if let Some(members) = self.sessions.get_mut(&entry.session) {
            members.retain(|&member| member != index);
            if members.is_empty() {
                self.sessions.remove(&entry.session);
            }
        }
        self.free.push(index);
        self.stats.allocations = self.by_slot.len() as u64;
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Ends bindings idle for `idle_timeout` and forgets ended allocations whose token has
    /// expired (at most once per `sweep_interval`).
    pub fn handle_timeout(&mut self, now: Instant, unix: u64) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.next_sweep = Some(now + self.config.sweep_interval);
        for index in 0..self.entries.len() {
            let Ok(index) = u32::try_from(index) else { break };
            let Some(entry) = self.entry(index) else { continue };
            match entry.addr {
                Some(_)
                    if now.saturating_duration_since(entry.last_seen)
                        >= self.config.idle_timeout =>
                {
                    self.stats.timed_out += 1;
                    self.end_binding(index, unix);
                }
                None if entry.expires_unix <= unix => self.forget(index),
                _ => {}
            }
        }
    }

    /// The next notice to send (PEER_GONE): its destination and bytes.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, [u8; HEADER_LEN])> {
        self.notices.pop_front()
    }
}
