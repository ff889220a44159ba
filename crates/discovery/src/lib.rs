//! # sturnus-discovery
//!
//! LAN discovery (UNET's `NetworkDiscovery`): a host *advertises* its game on the local
//! network; a player *searches* and finds the hosts that answer, with the port to connect to
//! and a few bytes of the host's own (a name, a map, a player count).
//!
//! - [`Responder`] and [`Search`] are the protocol, sans-IO: bytes in, bytes out.
//! - [`LanAdvertiser`], [`LanSearch`] and [`lan_search`] drive them over UDP: the advertiser
//!   listens on the discovery port (47777 by default) on IPv4 and IPv6, in the
//!   [`MULTICAST_V6`] group of every interface; a search sends its request on every interface
//!   that is up — to each IPv4 subnet's broadcast address (and `255.255.255.255`) and to the
//!   IPv6 link-local group [`MULTICAST_V6`] of each interface with IPv6 — sends it again a few
//!   times in case one is lost, and gathers the answers until its deadline (one second by
//!   default: hosts are found within it).
//!
//! **Filtering.** A request names a game id and a version: a host answers only requests for
//! its own game and version, so two games (or two builds) on one network never see each other.
//!
//! **No amplification.** A request is always [`REQUEST_LEN`] bytes and an answer never longer:
//! a forged source address gets back no more than was sent. A request of another length, magic
//! or protocol version is dropped and counted.
//!
//! ```
//! use std::time::Duration;
//! use sturnus_discovery::{Advertisement, Responder, Search};
//!
//! let ad = Advertisement::new(0x5157_5251, 3, 7777, b"Alice's game".to_vec())?;
//! let mut host = Responder::new(ad);
//! let start = std::time::Instant::now();
//! let search = Search::new(0x5157_5251, 3, start);
//! let request = search.request();
//! let answer = host.handle(&request).expect("a request for this game");
//! let from = "192.168.1.20:47777".parse()?;
//! let now = start + Duration::from_millis(3);
//! let found = search.handle_answer(now, from, answer).expect("its own answer");
//! assert_eq!(found.addr.to_string(), "192.168.1.20:7777");
//! assert_eq!(found.info, b"Alice's game");
//! assert_eq!(found.found_after, Duration::from_millis(3));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use driver::{LanAdvertiser, LanSearch, LanSearchConfig, lan_search};

/// The default discovery port.
pub const DEFAULT_PORT: u16 = 47777;

/// The link-local IPv6 multicast group searches go to (`ff02::5777`).
pub const MULTICAST_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x5777);

/// Every request is this long (zero-padded); no answer is longer.
pub const REQUEST_LEN: usize = 256;

/// The protocol's version.
const VERSION: u8 = 1;
const REQUEST_MAGIC: [u8; 4] = *b"SDQ1";
const ANSWER_MAGIC: [u8; 4] = *b"SDA1";
/// magic, version, game id, game version, nonce.
const HEADER_LEN: usize = 4 + 1 + 8 + 4 + 8;
/// An answer's header, then the port and the info's length.
const ANSWER_HEADER_LEN: usize = HEADER_LEN + 2 + 2;

/// The most bytes of info an advertisement carries.
pub const MAX_INFO: usize = REQUEST_LEN - ANSWER_HEADER_LEN;

/// What an advertisement cannot be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The info is longer than [`MAX_INFO`] bytes.
    #[error("the advertised info is {0} bytes, more than the {MAX_INFO} an answer holds")]
    InfoTooLong(usize),
}

/// What a host says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    game_id: u64,
    game_version: u32,
    port: u16,
    info: Vec<u8>,
}

impl Advertisement {
    /// A game `game_id` at `game_version`, to be joined on `port`, with `info` (at most
    /// [`MAX_INFO`] bytes: a name, a map, a player count, as the game encodes them).
    ///
    /// # Errors
    /// [`DiscoveryError::InfoTooLong`].
    pub fn new(
        game_id: u64,
        game_version: u32,
        port: u16,
        info: Vec<u8>,
    ) -> Result<Self, DiscoveryError> {
        if info.len() > MAX_INFO {
            return Err(DiscoveryError::InfoTooLong(info.len()));
        }
        Ok(Self { game_id, game_version, port, info })
    }

    /// The game port advertised (where players connect).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replaces the game port (a port of 0 is never advertised: searches ignore it; the
    /// `NetworkManager` fills it in with the port it listens on).
    pub fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    /// The info advertised.
    pub fn info(&self) -> &[u8] {
        &self.info
    }

    /// Replaces the info (the player count changed, say).
    ///
    /// # Errors
    /// [`DiscoveryError::InfoTooLong`], leaving the old info.
    pub fn set_info(&mut self, info: Vec<u8>) -> Result<(), DiscoveryError> {
        if info.len() > MAX_INFO {
            return Err(DiscoveryError::InfoTooLong(info.len()));
        }
        self.info = info;
        Ok(())
    }
}

/// What a [`Responder`] counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponderStats {
    /// Requests answered.
    pub answered: u64,
    /// Requests for another game or version: ignored.
    pub other_game: u64,
    /// Datagrams that are not requests (length, magic, protocol version): dropped.
    pub malformed: u64,
}

/// A host's side, sans-IO: answers the requests for its game.
#[derive(Debug, Clone)]
pub struct Responder {
    ad: Advertisement,
    answer: Vec<u8>,
    stats: ResponderStats,
}

impl Responder {
    /// A responder advertising `ad`.
    pub fn new(ad: Advertisement) -> Self {
        Self { ad, answer: Vec::with_capacity(REQUEST_LEN), stats: ResponderStats::default() }
    }

    /// The advertisement, to change its info.
    pub fn advertisement_mut(&mut self) -> &mut Advertisement {
        &mut self.ad
    }

    /// What it counted.
    pub fn stats(&self) -> ResponderStats {
        self.stats
    }

    /// The answer to `datagram`, if it is a request for this game and version.
    pub fn handle(&mut self, datagram: &[u8]) -> Option<&[u8]> {
        let Some((game_id, game_version, nonce)) = parse_header(datagram, REQUEST_MAGIC) else {
            self.stats.malformed += 1;
            return None;
        };
        if datagram.len() != REQUEST_LEN {
            self.stats.malformed += 1;
            return None;
        }
        if game_id != self.ad.game_id || game_version != self.ad.game_version {
            self.stats.other_game += 1;
            return None;
        }
        self.answer.clear();
        write_header(&mut self.answer, ANSWER_MAGIC, game_id, game_version, nonce);
        self.answer.extend_from_slice(&self.ad.port.to_le_bytes());
        let len = u16::try_from(self.ad.info.len()).unwrap_or(0);
        self.answer.extend_from_slice(&len.to_le_bytes());
        self.answer.extend_from_slice(&self.ad.info[..usize::from(len)]);
        self.stats.answered += 1;
        Some(&self.answer)
    }
}

/// A host found by a [`Search`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundHost {
    /// Where to connect: the answer's source address with the advertised port.
    pub addr: SocketAddr,
    /// The host's info.
    pub info: Vec<u8>,
    /// How long after the search started the answer came: the discovery latency.
    pub found_after: Duration,
}

/// A player's side of one search, sans-IO.
#[derive(Debug, Clone)]
pub struct Search {
    game_id: u64,
    game_version: u32,
    nonce: u64,
    started: Instant,
}

impl Search {
    /// A search for game `game_id` at `game_version` started at `now`, with a nonce from the
    /// operating system (answers to other searches are not taken for this one's).
    pub fn new(game_id: u64, game_version: u32, now: Instant) -> Self {
        let mut bytes = [0_u8; 8];
        // Without the OS generator, a fixed nonce: answers to others' searches could then be
        // taken for this one's, which only shows their hosts too.
        let _ = getrandom::fill(&mut bytes);
        Self { game_id, game_version, nonce: u64::from_le_bytes(bytes), started: now }
    }

    /// The request to send ([`REQUEST_LEN`] bytes).
    pub fn request(&self) -> [u8; REQUEST_LEN] {
        let mut out = Vec::with_capacity(REQUEST_LEN);
        write_header(&mut out, REQUEST_MAGIC, self.game_id, self.game_version, self.nonce);
        let mut request = [0_u8; REQUEST_LEN];
        request[..out.len()].copy_from_slice(&out);
        request
    }

    /// When it started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The host that sent `datagram` from `from`, received at `now`, if it answers this
    /// search.
    pub fn handle_answer(
        &self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Option<FoundHost> {
        let (game_id, game_version, nonce) = parse_header(datagram, ANSWER_MAGIC)?;
        if game_id != self.game_id || game_version != self.game_version || nonce != self.nonce {
            return None;
        }
        let rest = datagram.get(HEADER_LEN..)?;
        let port = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]);
        let len = usize::from(u16::from_le_bytes([*rest.get(2)?, *rest.get(3)?]));
        let info = rest.get(4..4 + len)?;
        if rest.len() != 4 + len || port == 0 {
            return None;
        }
        let mut addr = from;
        addr.set_port(port);
        Some(FoundHost {
            addr,
            info: info.to_vec(),
            found_after: now.saturating_duration_since(self.started),
        })
    }
}

fn write_header(out: &mut Vec<u8>, magic: [u8; 4], game_id: u64, version: u32, nonce: u64) {
    out.extend_from_slice(&magic);
    out.push(VERSION);
    out.extend_from_slice(&game_id.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&nonce.to_le_bytes());
}

/// The game id, version and nonce of a datagram with `magic`, if it has the header.
fn parse_header(datagram: &[u8], magic: [u8; 4]) -> Option<(u64, u32, u64)> {
    let header = datagram.get(..HEADER_LEN)?;
    if header[..4] != magic || header[4] != VERSION {
        return None;
    }
    let game_id = u64::from_le_bytes(header[5..13].try_into().ok()?);
    let version = u32::from_le_bytes(header[13..17].try_into().ok()?);
    let nonce = u64::from_le_bytes(header[17..25].try_into().ok()?);
    Some((game_id, version, nonce))
}
