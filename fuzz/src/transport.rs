//! The transport targets: packet decoding and a live endpoint.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_testkit::{Pair, Side};

use sturnus_transport::proto::codec::{Reader, Writer};
use sturnus_transport::proto::control::Control;
use sturnus_transport::proto::packet::{
    CONTROL_BIT, DataHeader, Fragment, RecordHeader, decode_ack_delay, encode_ack_delay,
};
use sturnus_transport::proto::seq::MessageSeq;
use sturnus_transport::{ChannelId, ConnectionStats, EndpointConfig, Event, Qos};

/// Decodes `data` as a data packet (header, then records) and as a control packet. Must
/// never panic.
pub fn packet_decode(data: &[u8]) {
    let channels = Qos::ALL;
    let mut r = Reader::new(data);
    if DataHeader::decode(&mut r).is_ok() {
        while !r.is_empty()
            && decode_ack_delay(&mut r) == Ok(None)
            && RecordHeader::decode(&mut r, &channels).is_ok()
        {}
    }
    let _ = Control::decode(data);
}

/// The fragment size of the harness's endpoints: small, so that split messages, whose pieces
/// but the last must be exactly this long, fit in the fuzzer's datagrams.
const FRAGMENT_SIZE: usize = 16;
/// Fresh client packets kept back at most; the fuzzer may feed an older one late (out of order),
/// and those pushed out are lost (gaps in the numbering).
const HELD_PACKETS: usize = 4;
/// The least share, in percent, of the datagrams from the client's address that the server's
/// connection must accept (tag right, records decoded and processed) for a run to count as
/// reaching the record layer: see [`EndpointCounts::check_depth`].
pub const MIN_ACCEPTED_PERCENT: u64 = 30;

/// A server endpoint with one established connection to an honest client endpoint, fed `data`
/// split into datagrams. Must never panic and must never accept a stranger.
///
/// Each datagram is a length byte, a source byte, then that many bytes. The source byte:
///
/// - bit 0 set: the datagram comes from a stranger's address (`192.0.2.<source>`), as written;
/// - else it comes from the connected client's address, and bits 1–2 say how it is built:
///   - `0`: as written, so the tag check and the decoding of garbage stay fuzzed;
///   - `1`: a *real* data packet the client just sent (its header and tag valid, its number
///     fresh), with the records it carried replaced by the bytes as written;
///   - `2`: the same, with records the harness encodes from the bytes (see
///     [`Self::encode_records`]), so that well-formed records reach reassembly, ordering and
///     the budgets even without coverage feedback;
///   - `3`: like `2`, but on an older client packet: with bit 3 set the last one fed (a
///     duplicate), else the oldest one kept back (a late, out-of-order arrival);
/// - bits 4–7: milliseconds the clock moves on before the datagram.
///
/// The tag covers the header, not the records, so replacing the records of a tagged packet is
/// what any on-path attacker (or a buggy peer) can do; it is the way into record handling for
/// a fuzzer, which cannot forge tags.
pub struct EndpointHarness {
    /// The honest client (`a`) connected to the server under attack (`b`), on the testkit's
    /// lossless wire; its clock is the harness's.
    pair: Pair,
    /// Data packets the client sent that were not fed yet, oldest first.
    held: VecDeque<Vec<u8>>,
    /// The last client packet fed with its own header.
    last_fed: Option<Vec<u8>>,
    /// Per channel: the message number the encoded records are around.
    cursor: Vec<u16>,
    /// Per channel: the piece count and the next piece's index of the split message being
    /// encoded.
    pieces: Vec<(u16, u16)>,
    counts: EndpointCounts,
}

/// What an [`EndpointHarness`] counted: how deep its inputs reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointCounts {
    /// Datagrams from the connected client's address.
    pub from_client: u64,
    /// Of those, built on a real client packet's header.
    pub transplanted: u64,
    /// Datagrams meant for a real client packet's header that went in as written instead: the
    /// client had nothing to send (its congestion control or pacing held it back).
    pub no_header: u64,
    /// Datagrams from strangers.
    pub from_strangers: u64,
    /// Packets the server's connection accepted (`ConnectionStats::packets_received`).
    pub accepted: u64,
    /// Packets the connection dropped for a wrong tag (`ConnectionStats::packets_bad_tag`).
    pub bad_tag: u64,
    /// Duplicate packets the connection dropped.
    pub duplicate: u64,
    /// Records or packets the connection dropped as malformed.
    pub malformed: u64,
    /// Messages the connection delivered.
    pub delivered: u64,
    /// Of those, messages longer than a fragment: reassembled from pieces.
    pub reassembled: u64,
    /// Times the connection was lost and made again.
    pub reconnects: u64,
}

impl EndpointCounts {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Self) {
        self.from_client += other.from_client;
        self.transplanted += other.transplanted;
        self.no_header += other.no_header;
        self.from_strangers += other.from_strangers;
        self.accepted += other.accepted;
        self.bad_tag += other.bad_tag;
        self.duplicate += other.duplicate;
        self.malformed += other.malformed;
        self.delivered += other.delivered;
        self.reassembled += other.reassembled;
        self.reconnects += other.reconnects;
    }

    /// Adds a connection's counters.
    fn add_stats(&mut self, stats: &ConnectionStats) {
        self.accepted += stats.packets_received;
        self.bad_tag += stats.packets_bad_tag;
        self.duplicate += stats.packets_duplicate;
        self.malformed += stats.malformed;
        self.delivered += stats.messages_delivered;
    }

    /// Whether the inputs reached the record layer: at least [`MIN_ACCEPTED_PERCENT`] of the
    /// datagrams from the client's address were accepted (which takes a right tag and records
    /// that decode), some split messages were reassembled and delivered, and some datagrams
    /// were turned away by the tag check (so raw input still reaches it). Meant for a run of
    /// thousands of inputs.
    pub fn check_depth(&self) -> Result<(), String> {
        if self.accepted * 100 < self.from_client * MIN_ACCEPTED_PERCENT {
            return Err(format!(
                "only {} of {} datagrams from the client's address were accepted (under {}%): \
                 the fuzz inputs no longer reach the record layer; {self}",
                self.accepted, self.from_client, MIN_ACCEPTED_PERCENT
            ));
        }
        if self.reassembled == 0 || self.bad_tag == 0 {
            return Err(format!("no message reassembled or no tag refused: {self}"));
        }
        Ok(())
    }
}

impl fmt::Display for EndpointCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let percent = |part: u64| part * 100 / self.from_client.max(1);
        write!(
            f,
            "{} datagrams from the client ({} on a real header, {} without one for want of a \
             client packet), {} from strangers; accepted {} ({}%), bad tag {} ({}%), duplicate \
             {}, malformed {}, messages delivered {} ({} reassembled), reconnects {}",
            self.from_client,
            self.transplanted,
            self.no_header,
            self.from_strangers,
            self.accepted,
            percent(self.accepted),
            self.bad_tag,
            percent(self.bad_tag),
            self.duplicate,
            self.malformed,
            self.delivered,
            self.reassembled,
            self.reconnects
        )
    }
}

/// The harness's endpoint configuration: every QoS kind as a channel, small fragments.
fn config() -> EndpointConfig {
    EndpointConfig {
        channels: Qos::ALL.to_vec(),
        fragment_size: FRAGMENT_SIZE,
        max_fragments: 64,
        ..EndpointConfig::default()
    }
}

/// The honest client's configuration: the server's, but with congestion control kept out of
/// the way of the harness, which needs a fresh packet from it for most datagrams while most of
/// them are never acknowledged (their records replaced by the fuzzer's). Its
/// `rtt_probe_interval` of an hour means it never asks for a prompt acknowledgement of
/// unreliable data (it would after that long without an answer), so its path is never taken
/// for silent, and it writes no ack-delay records; its window is wide.
fn client_config() -> EndpointConfig {
    EndpointConfig {
        rtt_probe_interval: Duration::from_secs(3600),
        initial_congestion_window: 1024,
        min_congestion_window: 1024,
        ..config()
    }
}

impl EndpointHarness {
    /// Builds the pair and completes the handshake over a perfect in-memory link.
    pub fn new(start: Instant) -> Self {
        Self {
            pair: connect(start, 0),
            held: VecDeque::new(),
            last_fed: None,
            cursor: vec![0; Qos::ALL.len()],
            pieces: vec![(2, 0); Qos::ALL.len()],
            counts: EndpointCounts::default(),
        }
    }

    /// Inputs to start mutating from: raw datagrams, and records on real headers.
    pub fn seeds() -> Vec<Vec<u8>> {
        let datagram = |source: u8, body: &[u8]| {
            let mut d = vec![u8::try_from(body.len()).expect("short"), source];
            d.extend_from_slice(body);
            d
        };
        // Encoded records (see `encode_records`): channel, flags (bit 0: number written, bit 1:
        // a fragment, bits 2-7: length), then the fragment's count and index, the number's
        // offset on numbered channels, the payload.
        let reliable = [4, 1 | 3 << 2, 0, b'a', b'b', b'c', 4, 2 << 2, 0, b'd', b'e'];
        let ordered = [6, 1 | 2 << 2, 1, b'x', b'y', 6, 1 | 1 << 2, 0, b'z'];
        // A message in three pieces on channel 5: two full ones, then 5 bytes.
        let piece = |first: bool, last: bool| {
            let flags = if last { 3 | 4 << 2 } else { 3 };
            let mut p = vec![5, flags, u8::from(first), 0, 0];
            p.extend(std::iter::repeat_n(b's', if last { 5 } else { FRAGMENT_SIZE }));
            p
        };
        let unreliable = [0, 5 << 2, 1, 2, 3, 4, 5, 8, 1 | 1 << 2, 0, 7];
        let mut seeds = vec![
            vec![0; 4],
            vec![0x81; 64],
            vec![0, 1, 0, 0, 6, 0x0B, 1, 0],
            datagram(2, &[]),
            // A forged header (its tag wrong) with a record.
            datagram(0, &[0, 5, 0, 0, 1, 2, 3, 4, 0, 4, b'h', b'i']),
            // Raw records: an unreliable "hi!", then message 9 on channel 4, then a whole
            // message numbered 9 on channel 5.
            datagram(2, &[0, 6, b'h', b'i', b'!']),
            datagram(2, &[4, 3, 9, 0, 7, 5, 3, 9, 0, 0, 7]),
            datagram(4, &reliable),
            datagram(0x14, &ordered),
            [datagram(4, &[piece(true, false), piece(false, false)].concat()), {
                datagram(6, &piece(false, true))
            }]
            .concat(),
            [datagram(4, &unreliable), datagram(0x36, &ordered), datagram(0x3E, &reliable)]
                .concat(),
        ];
        // All of them in one input (but for the first three, whose lengths would swallow the
        // rest).
        let all = seeds[3..].concat();
        seeds.push(all);
        seeds
    }

    /// What this harness counted so far.
    pub fn counts(&self) -> EndpointCounts {
        let mut counts = self.counts;
        if let Some(stats) = self.pair.b.connection_stats(self.pair.b_conn) {
            counts.add_stats(&stats);
        }
        counts
    }

    /// Feeds one fuzz input.
    pub fn feed(&mut self, data: &[u8]) {
        let mut rest = data;
        while let [len, source, tail @ ..] = rest {
            let len = usize::from(*len).min(tail.len());
            let (bytes, next) = tail.split_at(len);
            rest = next;
            self.pair.now += Duration::from_millis(u64::from(*source >> 4));
            let (now, client_addr) = (self.pair.now, self.pair.a_addr);
            if source % 2 == 1 {
                self.counts.from_strangers += 1;
                let from = SocketAddr::from(([192, 0, 2, *source], 1000 + u16::from(*source)));
                self.pair.b.handle_datagram(now, from, bytes);
            } else {
                self.counts.from_client += 1;
                let mode = (source >> 1) & 3;
                let datagram = match mode {
                    0 => None,
                    1 | 2 => self.fresh_packet(),
                    _ if source & 8 != 0 => self.last_fed.clone(),
                    _ => self.late_packet(),
                };
                match datagram {
                    Some(mut packet) => {
                        self.counts.transplanted += 1;
                        if mode == 1 {
                            packet.extend_from_slice(bytes);
                        } else {
                            self.encode_records(&mut packet, bytes);
                        }
                        self.pair.b.handle_datagram(now, client_addr, &packet);
                    }
                    None => {
                        if mode != 0 {
                            self.counts.no_header += 1;
                        }
                        self.pair.b.handle_datagram(now, client_addr, bytes);
                    }
                }
            }
            self.step();
        }
        assert!(self.pair.b.connection_count() <= 1);
    }

    /// Lets time act on both endpoints and carries the server's answers to the client; makes
    /// the connection again if it was lost.
    fn step(&mut self) {
        let now = self.pair.now;
        self.pair.b.handle_timeout(now);
        self.pair.deliver(Side::B);
        while let Some(event) = self.pair.b.poll_event() {
            match event {
                Event::Connected(_) => panic!("a stranger was accepted"),
                Event::Data { channel, payload, .. }
                    if payload.len() > FRAGMENT_SIZE
                        && Qos::ALL
                            .get(usize::from(channel.0))
                            .is_some_and(|q| q.is_fragmented()) =>
                {
                    self.counts.reassembled += 1;
                }
                _ => {}
            }
        }
        self.pair.a.handle_timeout(now);
        while self.pair.a.poll_event().is_some() {}
        if !self.pair.b.is_connected(self.pair.b_conn)
            || !self.pair.a.is_connected(self.pair.a_conn)
        {
            self.reconnect();
        }
    }

    /// Replaces both endpoints with a freshly connected pair, keeping the counts.
    fn reconnect(&mut self) {
        if let Some(stats) = self.pair.b.connection_stats(self.pair.b_conn) {
            self.counts.add_stats(&stats);
        }
        self.counts.reconnects += 1;
        self.pair = connect(self.pair.now, self.counts.reconnects);
        self.held.clear();
        self.last_fed = None;
        self.cursor.fill(0);
        self.pieces.fill((2, 0));
    }

    /// Pulls the client's pending data packets into `held` (with a small message queued first
    /// if it has none), dropping the oldest beyond [`HELD_PACKETS`] (lost on the way).
    fn pull_client(&mut self) {
        let before = self.held.len();
        self.poll_client();
        let idle = self.pair.a.queue_depth(self.pair.a_conn, ChannelId(0)) == Some(0);
        if self.held.len() == before && idle {
            // An unreliable message, so its loss (its records are replaced) costs nothing.
            let _ = self.pair.a.send(self.pair.a_conn, ChannelId(0), b"x");
            self.poll_client();
        }
        while self.held.len() > HELD_PACKETS {
            self.held.pop_front();
        }
    }

    /// Takes the client's data packets into `held`; its control packets (not expected once
    /// connected) go to the server as sent.
    fn poll_client(&mut self) {
        let (server_addr, held) = (self.pair.b_addr, &mut self.held);
        self.pair.deliver_where(Side::A, |to, packet| {
            let control = packet.first().is_some_and(|b| b & CONTROL_BIT != 0);
            if to == server_addr && !control {
                held.push_back(packet.to_vec());
            }
            control
        });
    }

    /// The header of the newest data packet the client sent, its records cut off.
    fn fresh_packet(&mut self) -> Option<Vec<u8>> {
        self.pull_client();
        let packet = self.held.pop_back()?;
        Some(self.remember(packet))
    }

    /// The header of the oldest data packet the client sent that was kept back, so it arrives
    /// after newer ones.
    fn late_packet(&mut self) -> Option<Vec<u8>> {
        self.pull_client();
        let packet = self.held.pop_front()?;
        Some(self.remember(packet))
    }

    /// Notes `packet` as the last fed; returns its header.
    fn remember(&mut self, mut packet: Vec<u8>) -> Vec<u8> {
        let header_len = header_len(&packet);
        packet.truncate(header_len);
        self.last_fed = Some(packet.clone());
        packet
    }

    /// Appends well-formed records built from `bytes` to `packet`, while they last and fit.
    /// Each record: a channel byte (modulo the channel count), a flags byte (bit 0: write the
    /// message number even where it could be implied; bit 1: a fragment, on fragmented channels;
    /// bits 2–7: the payload length), then for a fragment its count (2 + the byte modulo 8, or
    /// for 0 the channel's previous count) and index (the byte added to the index after the
    /// channel's previous piece, modulo the count: 0 for the next piece), then for a numbered record the number's offset (a signed byte)
    /// from the channel's cursor, which moves on when the offset is 0 (but for a piece other
    /// than the last), then the payload (zeros
    /// once the bytes run out). A fragment's payload is a full [`FRAGMENT_SIZE`] but for the
    /// last piece. A channel byte of 255 ends the packet with an ack-delay record instead,
    /// its delay the next four bytes (little-endian microseconds).
    fn encode_records(&mut self, packet: &mut Vec<u8>, bytes: &[u8]) {
        let channels = Qos::ALL;
        let mut bytes = bytes.iter().copied();
        let mut out = vec![0u8; 1200usize.saturating_sub(packet.len())];
        let mut w = Writer::new(&mut out);
        // Per channel: the number of the previous record in this packet, when the next one may
        // leave its own out.
        let mut previous: [Option<u16>; Qos::ALL.len()] = [None; Qos::ALL.len()];
        while let (Some(channel), Some(flags)) = (bytes.next(), bytes.next()) {
            if channel == u8::MAX {
                let mut micros = [flags, 0, 0, 0];
                for byte in &mut micros[1..] {
                    *byte = bytes.next().unwrap_or(0);
                }
                let _ = encode_ack_delay(u64::from(u32::from_le_bytes(micros)), &mut w);
                break;
            }
            let ch = usize::from(channel) % channels.len();
            let qos = channels[ch];
            let fragment = if flags & 2 != 0 && qos.is_fragmented() {
                let (count, next) = self.pieces[ch];
                let count = match bytes.next().unwrap_or(0) {
                    0 => count,
                    b => 2 + u16::from(b % 8),
                };
                let index = (next + u16::from(bytes.next().unwrap_or(0))) % count;
                self.pieces[ch] = (count, (index + 1) % count);
                Some(Fragment { index, count })
            } else {
                None
            };
            let numbered = qos.is_numbered() || flags & 1 != 0;
            let seq = if !numbered {
                None
            } else {
                let offset = bytes.next().unwrap_or(0).cast_signed();
                let seq = self.cursor[ch].wrapping_add_signed(i16::from(offset));
                // The pieces of a split message share its number: the last one moves on.
                let more_pieces = fragment.is_some_and(|f| f.index + 1 < f.count);
                if offset == 0 && !more_pieces {
                    self.cursor[ch] = self.cursor[ch].wrapping_add(1);
                }
                Some(seq)
            };
            let len = match fragment {
                Some(f) if f.index + 1 < f.count => FRAGMENT_SIZE,
                Some(_) => 1 + usize::from(flags >> 2) % FRAGMENT_SIZE,
                None => usize::from(flags >> 2),
            };
            let payload: Vec<u8> = (0..len).map(|_| bytes.next().unwrap_or(0)).collect();
            // Leave the number out where the receiver can imply it, unless told not to.
            let implied = match (seq, previous[ch]) {
                (Some(seq), Some(p)) => {
                    fragment.is_none() && flags & 1 == 0 && seq == p.wrapping_add(1)
                }
                _ => false,
            };
            let record = RecordHeader {
                channel: ChannelId(u8::try_from(ch).expect("under 11")),
                len: u16::try_from(len).expect("short"),
                seq: if implied { None } else { seq.map(MessageSeq::new) },
                fragment,
            };
            if record.encode(&payload, qos.is_fragmented(), &mut w).is_err() {
                break;
            }
            previous[ch] = if fragment.is_none() && qos.is_numbered() { seq } else { None };
        }
        let n = w.len();
        packet.extend_from_slice(&out[..n]);
    }
}

/// The length of the header at the start of `packet`, a data packet an endpoint wrote.
fn header_len(packet: &[u8]) -> usize {
    let mut r = Reader::new(packet);
    match DataHeader::decode(&mut r) {
        Ok(_) => r.position(),
        Err(_) => packet.len(),
    }
}

/// A client (`a`) connected to a server (`b`) over a perfect in-memory link at `now`. `seed`
/// varies the deterministic secrets.
fn connect(now: Instant, seed: u64) -> Pair {
    let pair = Pair::connect(now, client_config(), config(), (2 * seed + 2, 2 * seed + 1));
    assert_eq!(pair.b.connection_count(), 1, "the harness connects");
    pair
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(clippy::disallowed_methods, reason = "any instant will do as the origin")]
    fn the_seeds_reach_the_record_layer() {
        let mut harness = EndpointHarness::new(Instant::now());
        for seed in EndpointHarness::seeds() {
            harness.feed(&seed);
        }
        let counts = harness.counts();
        assert!(counts.transplanted > 0 && counts.accepted >= counts.transplanted / 2, "{counts}");
        assert!(counts.reassembled >= 2, "the split message, in two seeds: {counts}");
        assert!(counts.bad_tag > 0, "{counts}");
    }
}
