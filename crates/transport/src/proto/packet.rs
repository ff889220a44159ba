//! The data-packet header and the message records that follow it. The byte layout is specified
//! in `PROTOCOL.md` at the crate root; this module is its only implementation.

use super::ack::{bits_len_of_code, encoded_bits_len, expand_bits};
use super::codec::{Full, Reader, Writer, varint_len};
use super::seq::{MessageSeq, PacketSeq};
use super::siphash::hash_two_u64;
use crate::{ChannelId, DecodeError, Qos};

/// Set in the first byte of control packets (handshake and disconnect); clear in data packets.
pub const CONTROL_BIT: u8 = 0x80;
/// Bit of the first header word of a data packet: acknowledge this packet within `ack_delay`.
const ACK_SOON_BIT: u16 = 0x4000;
/// Bytes of the tag that ends every data-packet header.
pub const TAG_LEN: usize = 4;
/// The largest data-packet header: two words, a full ack field and the tag.
pub const MAX_HEADER_LEN: usize = 12;
/// The smallest data-packet header: two words and the tag, ack field left out.
pub const MIN_HEADER_LEN: usize = 8;

/// The header of a data packet: its sequence number, the acknowledgement of what this side
/// has received, and a tag that only the connection's two peers can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    /// This packet's number.
    pub seq: PacketSeq,
    /// The newest packet received from the peer.
    pub ack: PacketSeq,
    /// Bit `i`: packet `ack - 1 - i` was received.
    pub ack_bits: u32,
    /// The sender wants this packet acknowledged within `ack_delay` (it carries reliable data,
    /// or probes a silent path); other packets are acknowledged lazily.
    pub ack_soon: bool,
    /// The packet's tag: see [`tag`](Self::tag).
    pub tag: u32,
}

impl DataHeader {
    /// Bytes the header takes on the wire (8 to 12).
    pub fn encoded_len(&self) -> usize {
        MIN_HEADER_LEN + encoded_bits_len(self.ack_bits).1
    }

    /// Writes the header.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), Full> {
        let (code, len) = encoded_bits_len(self.ack_bits);
        if w.remaining() < MIN_HEADER_LEN + len {
            return Err(Full);
        }
        w.u16_be(self.seq.get() | if self.ack_soon { ACK_SOON_BIT } else { 0 })?;
        w.u16_be((u16::from(code) << 14) | self.ack.get())?;
        w.bytes(&self.ack_bits.to_le_bytes()[..len])?;
        w.bytes(&self.tag.to_le_bytes())
    }

    /// Reads a header from the start of a data packet.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let word0 = r.u16_be()?;
        if word0 & (u16::from(CONTROL_BIT) << 8) != 0 {
            return Err(DecodeError::NotData);
        }
        let word1 = r.u16_be()?;
        // The top two bits of a u16 shifted down always fit in a u8.
        let code = (word1 >> 14) as u8;
        let ack_bits = expand_bits(r.bytes(bits_len_of_code(code))?);
        let tag = r.bytes(TAG_LEN)?;
        Ok(Self {
            seq: PacketSeq::new(word0),
            ack: PacketSeq::new(word1),
            ack_bits,
            ack_soon: word0 & ACK_SOON_BIT != 0,
            tag: u32::from_le_bytes([tag[0], tag[1], tag[2], tag[3]]),
        })
    }

    /// The tag this header must carry: the low 32 bits of SipHash-2-4 under the connection's
    /// 128-bit tag `key`, over `number` (the packet's number extended to 64 bits: its count
    /// from the start of the connection plus the first number) and the header's fields
    /// (`seq | ack_soon << 14 | ack << 16 | ack_bits << 32`), each as a little-endian u64.
    /// The tag field itself is not covered, nor are the records: the tag stops blind
    /// injection, not an on-path attacker (who saw the salts the key derives from).
    pub fn tag(&self, key: (u64, u64), number: u64) -> u32 {
        let fields = u64::from(self.seq.get())
            | u64::from(self.ack_soon) << 14
            | u64::from(self.ack.get()) << 16
            | u64::from(self.ack_bits) << 32;
        let hash = hash_two_u64(key.0, key.1, number, fields);
        u32::try_from(hash & 0xFFFF_FFFF).expect("masked to 32 bits")
    }

    /// Finishes an encoded header at the start of `packet` once the packet builder knows
    /// whether it wants a prompt ack: sets the ack-soon bit as `self` says and writes `self`'s
    /// tag under `key` for packet `number`. `self` must be the header that was encoded (but for
    /// `ack_soon` and `tag`).
    pub fn seal(&self, packet: &mut [u8], key: (u64, u64), number: u64) {
        if self.ack_soon {
            Self::set_ack_soon(packet);
        }
        let end = self.encoded_len();
        if let Some(field) = packet.get_mut(end - TAG_LEN..end) {
            field.copy_from_slice(&self.tag(key, number).to_le_bytes());
        }
    }

    /// Sets the ack-soon bit of an encoded header at the start of `packet`.
    pub fn set_ack_soon(packet: &mut [u8]) {
        if let Some(first) = packet.first_mut() {
            *first |= (ACK_SOON_BIT >> 8) as u8;
        }
    }
}

/// The channel byte of the **ack-delay record**, which may end a data packet (channel ids stop
/// at 254). It is followed by a varint: how many microseconds passed between the arrival of the
/// packet the header acknowledges (its `ack`) and the sending of this one. An acknowledgement
/// that waited for a ride then still times the round trip.
pub const ACK_DELAY_RECORD: u8 = 0xFF;

/// What the ack-delay record says for `micros`: saturated at `u32::MAX` (71 minutes).
fn saturated(micros: u64) -> u32 {
    u32::try_from(micros).unwrap_or(u32::MAX)
}

/// Bytes the ack-delay record of `micros` takes (2 to 6).
pub fn ack_delay_len(micros: u64) -> usize {
    1 + varint_len(saturated(micros))
}

/// Writes the ack-delay record (`micros`, saturated to `u32::MAX`), or nothing if it does not
/// fit.
pub fn encode_ack_delay(micros: u64, w: &mut Writer<'_>) -> Result<(), Full> {
    if w.remaining() < ack_delay_len(micros) {
        return Err(Full);
    }
    w.u8(ACK_DELAY_RECORD)?;
    w.varint(saturated(micros))
}

/// Reads the ack-delay record if the next record is one: `Ok(None)` when it is a message
/// record (or nothing is left). The record must end the packet.
pub fn decode_ack_delay(r: &mut Reader<'_>) -> Result<Option<u32>, DecodeError> {
    if r.peek() != Some(ACK_DELAY_RECORD) {
        return Ok(None);
    }
    r.u8()?;
    let micros = r.varint()?;
    if !r.is_empty() {
        return Err(DecodeError::AckDelayNotLast);
    }
    Ok(Some(micros))
}

/// Which piece of a split message a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// The piece's position, from 0.
    pub index: u16,
    /// How many pieces the message has (at least 2).
    pub count: u16,
}

/// The framing of one message inside a data packet.
///
/// On the wire: the channel id (1 byte), a varint `len << 1 | numbered`, the message number
/// (2 bytes, when `numbered`), and on fragmented channels only, a varint fragment count (`0` for
/// a message sent whole) followed, when non-zero, by a varint fragment index. A message of up to
/// 63 bytes therefore costs 2 bytes of framing, or 4 with its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// The channel the message belongs to.
    pub channel: ChannelId,
    /// Payload bytes that follow the record header.
    pub len: u16,
    /// The message's number on its channel, when written out. Numbered channels leave it out
    /// for a message that directly follows the previous message of the same channel in the same
    /// packet (its number is then the previous one plus one).
    pub seq: Option<MessageSeq>,
    /// Set when the record carries one piece of a split message (the number is then always
    /// written).
    pub fragment: Option<Fragment>,
}

impl RecordHeader {
    fn tag(&self) -> u32 {
        (u32::from(self.len) << 1) | u32::from(self.seq.is_some())
    }

    /// Bytes the record header takes (payload not included); `fragmented_channel` says whether
    /// the channel's QoS is a fragmented kind.
    pub fn encoded_len(&self, fragmented_channel: bool) -> usize {
        let fragment = match (fragmented_channel, self.fragment) {
            (false, _) => 0,
            (true, None) => 1,
            (true, Some(f)) => varint_len(u32::from(f.count)) + varint_len(u32::from(f.index)),
        };
        1 + varint_len(self.tag()) + if self.seq.is_some() { 2 } else { 0 } + fragment
    }

    /// Writes the record header followed by `payload` (whose length must be `self.len`), or
    /// nothing if it does not fit.
    pub fn encode(
        &self,
        payload: &[u8],
        fragmented_channel: bool,
        w: &mut Writer<'_>,
    ) -> Result<(), Full> {
        debug_assert_eq!(payload.len(), usize::from(self.len), "record length and payload agree");
        debug_assert!(
            self.fragment.is_none() || (self.seq.is_some() && fragmented_channel),
            "fragments travel on fragmented channels and carry their number"
        );
        if w.remaining() < self.encoded_len(fragmented_channel) + payload.len() {
            return Err(Full);
        }
        w.u8(self.channel.0)?;
        w.varint(self.tag())?;
        if let Some(seq) = self.seq {
            w.u16_le(seq.get())?;
        }
        if fragmented_channel {
            match self.fragment {
                None => w.varint(0)?,
                Some(f) => {
                    w.varint(u32::from(f.count))?;
                    w.varint(u32::from(f.index))?;
                }
            }
        }
        w.bytes(payload)
    }

    /// Reads one record; returns its header and payload. `channels` is the connection's channel
    /// layout (index = channel id), which says which channels exist and which are fragmented.
    pub fn decode<'a>(
        r: &mut Reader<'a>,
        channels: &[Qos],
    ) -> Result<(Self, &'a [u8]), DecodeError> {
        let channel = ChannelId(r.u8()?);
        let qos =
            *channels.get(usize::from(channel.0)).ok_or(DecodeError::UnknownChannel(channel.0))?;
        let tag = r.varint()?;
        let len = u16::try_from(tag >> 1).map_err(|_| DecodeError::RecordTooLong)?;
        let seq = if tag & 1 != 0 { Some(MessageSeq::new(r.u16_le()?)) } else { None };
        let count = if qos.is_fragmented() { r.varint()? } else { 0 };
        let fragment = match count {
            0 => None,
            count => {
                let count = u16::try_from(count).map_err(|_| DecodeError::BadFragment)?;
                let index = u16::try_from(r.varint()?).map_err(|_| DecodeError::BadFragment)?;
                if count < 2 || index >= count {
                    return Err(DecodeError::BadFragment);
                }
                if seq.is_none() {
                    return Err(DecodeError::FragmentWithoutSeq);
                }
                Some(Fragment { index, count })
            }
        };
        let payload = r.bytes(usize::from(len))?;
        Ok((Self { channel, len, seq, fragment }, payload))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Channel 0 and 1 are whole-message kinds, 2 and 3 fragmented ones.
    const CHANNELS: [Qos; 4] = [
        Qos::Unreliable,
        Qos::ReliableSequenced,
        Qos::ReliableFragmented,
        Qos::UnreliableFragmented,
    ];

    fn fragmented(channel: ChannelId) -> bool {
        CHANNELS[usize::from(channel.0)].is_fragmented()
    }

    fn encode_packet(header: &DataHeader, records: &[(RecordHeader, Vec<u8>)]) -> Vec<u8> {
        let mut buf = vec![0u8; 1500];
        let mut w = Writer::new(&mut buf);
        header.encode(&mut w).unwrap();
        for (record, payload) in records {
            record.encode(payload, fragmented(record.channel), &mut w).unwrap();
        }
        let n = w.len();
        buf.truncate(n);
        buf
    }

    fn decode_record(bytes: &[u8]) -> Result<(RecordHeader, &[u8]), DecodeError> {
        RecordHeader::decode(&mut Reader::new(bytes), &CHANNELS)
    }

    #[test]
    fn a_header_without_recent_loss_is_eight_bytes_and_with_loss_at_most_twelve() {
        let clean = DataHeader {
            seq: PacketSeq::new(5),
            ack: PacketSeq::new(9),
            ack_bits: u32::MAX,
            ack_soon: false,
            tag: 0xDEAD_BEEF,
        };
        assert_eq!(clean.encoded_len(), 8);
        let lossy = DataHeader { ack_bits: 0x1234_5678, ack_soon: true, ..clean };
        assert_eq!(lossy.encoded_len(), MAX_HEADER_LEN);
        for header in [clean, lossy] {
            let bytes = encode_packet(&header, &[]);
            assert_eq!(bytes.len(), header.encoded_len());
            assert_eq!(DataHeader::decode(&mut Reader::new(&bytes)).unwrap(), header);
        }
    }

    #[test]
    fn a_32_byte_message_costs_two_bytes_of_framing_and_four_with_its_number() {
        let plain = RecordHeader { channel: ChannelId(0), len: 32, seq: None, fragment: None };
        assert_eq!(plain.encoded_len(false), 2);
        let numbered = RecordHeader { seq: Some(MessageSeq::new(7)), ..plain };
        assert_eq!(numbered.encoded_len(false), 4);
        assert_eq!(numbered.encoded_len(true), 5, "a whole message on a fragmented channel");
        let long = RecordHeader { len: 64, ..plain };
        assert_eq!(long.encoded_len(false), 3, "the one-byte length ends at 63");
    }

    #[test]
    fn control_packets_are_not_data_and_bit_1_asks_for_a_prompt_ack() {
        let decode = |bytes: &[u8]| DataHeader::decode(&mut Reader::new(bytes));
        assert_eq!(decode(&[0x81, 0, 0, 0, 0, 0, 0, 0]), Err(DecodeError::NotData));
        let soon = decode(&[0x40, 7, 0, 0, 1, 2, 3, 4]).unwrap();
        assert_eq!((soon.ack_soon, soon.seq, soon.tag), (true, PacketSeq::new(7), 0x0403_0201));
        let mut packet = [0x00, 7, 0, 0, 1, 2, 3, 4];
        DataHeader::set_ack_soon(&mut packet);
        assert_eq!(decode(&packet), Ok(soon));
        assert!(matches!(decode(&[0, 0, 0xC0, 0, 1, 2, 3, 4]), Err(DecodeError::Truncated { .. })));
        assert!(matches!(decode(&[0, 7, 0, 0, 1, 2, 3]), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn the_tag_depends_on_the_key_the_number_and_every_header_field() {
        let header = DataHeader {
            seq: PacketSeq::new(100),
            ack: PacketSeq::new(200),
            ack_bits: 0xFFFF_FF7F,
            ack_soon: false,
            tag: 0,
        };
        let key = (0x0123_4567, 0x89AB_CDEF);
        let tag = header.tag(key, 100);
        let changed = [
            header.tag((key.0 ^ 1, key.1), 100),
            header.tag((key.0, key.1 ^ 1), 100),
            header.tag(key, 100 + 16_384),
            DataHeader { seq: PacketSeq::new(101), ..header }.tag(key, 100),
            DataHeader { ack: PacketSeq::new(201), ..header }.tag(key, 100),
            DataHeader { ack_bits: 0xFFFF_FFFF, ..header }.tag(key, 100),
            DataHeader { ack_soon: true, ..header }.tag(key, 100),
        ];
        for (i, other) in changed.into_iter().enumerate() {
            assert_ne!(other, tag, "change {i} left the tag as it was");
        }
        // Sealing an encoded header sets the bit and writes the tag that decoding checks.
        let mut bytes = encode_packet(&header, &[]);
        let sealed = DataHeader { ack_soon: true, ..header };
        sealed.seal(&mut bytes, key, 100);
        let decoded = DataHeader::decode(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(decoded, DataHeader { tag: sealed.tag(key, 100), ..sealed });
    }

    #[test]
    fn malformed_records_are_errors() {
        assert_eq!(decode_record(&[9, 0]).unwrap_err(), DecodeError::UnknownChannel(9));
        // A fragment (count 3, index 0) without a message number.
        assert_eq!(decode_record(&[2, 0, 3, 0]).unwrap_err(), DecodeError::FragmentWithoutSeq);
        // index >= count, and a count of one.
        assert_eq!(decode_record(&[2, 1, 0, 0, 3, 3]).unwrap_err(), DecodeError::BadFragment);
        assert_eq!(decode_record(&[2, 1, 0, 0, 1, 0]).unwrap_err(), DecodeError::BadFragment);
        // Length past the end.
        assert!(matches!(decode_record(&[0, 40, 1, 2]), Err(DecodeError::Truncated { .. })));
        // A length that does not fit in 16 bits.
        assert_eq!(decode_record(&[0, 0xFF, 0xFF, 0x7F]).unwrap_err(), DecodeError::RecordTooLong);
    }

    #[test]
    fn the_ack_delay_record_ends_a_packet_and_saturates() {
        let mut buf = [0u8; 16];
        let mut w = Writer::new(&mut buf);
        // 1 s: the marker and a 3-byte varint.
        encode_ack_delay(1_000_000, &mut w).unwrap();
        assert_eq!(w.len(), 4);
        let mut r = Reader::new(&buf[..4]);
        assert_eq!(decode_ack_delay(&mut r), Ok(Some(1_000_000)));
        assert!(r.is_empty());
        // A message record is left for the record decoder.
        let mut r = Reader::new(&[0, 2, 7]);
        assert_eq!(decode_ack_delay(&mut r), Ok(None));
        assert_eq!(r.position(), 0);
        // Anything after it is an error, as is a cut varint.
        assert_eq!(
            decode_ack_delay(&mut Reader::new(&[ACK_DELAY_RECORD, 5, 0])),
            Err(DecodeError::AckDelayNotLast)
        );
        assert!(matches!(
            decode_ack_delay(&mut Reader::new(&[ACK_DELAY_RECORD, 0x80])),
            Err(DecodeError::Truncated { .. })
        ));
        // A delay beyond 71 minutes is written as the largest a varint holds; one that does not
        // fit is not written at all.
        let mut buf = [0u8; 6];
        let mut w = Writer::new(&mut buf);
        encode_ack_delay(u64::MAX, &mut w).unwrap();
        assert_eq!(decode_ack_delay(&mut Reader::new(&buf)), Ok(Some(u32::MAX)));
        let mut small = [0u8; 3];
        let mut w = Writer::new(&mut small);
        assert_eq!(encode_ack_delay(1_000_000, &mut w), Err(Full));
        assert_eq!(w.len(), 0);
    }

    fn record_strategy() -> impl Strategy<Value = (RecordHeader, Vec<u8>)> {
        (
            0u8..4,
            proptest::collection::vec(any::<u8>(), 0..100),
            proptest::option::of(any::<u16>()),
            proptest::option::of((2u16..2000).prop_flat_map(|count| (0..count, Just(count)))),
        )
            .prop_map(|(channel, payload, seq, fragment)| {
                let channel = ChannelId(channel);
                let fragment = fragment
                    .filter(|_| fragmented(channel))
                    .map(|(index, count)| Fragment { index, count });
                let seq = if fragment.is_some() { Some(seq.unwrap_or(0)) } else { seq };
                let header = RecordHeader {
                    channel,
                    len: u16::try_from(payload.len()).unwrap(),
                    seq: seq.map(MessageSeq::new),
                    fragment,
                };
                (header, payload)
            })
    }

    proptest! {
        #[test]
        fn packets_round_trip(
            seq in 0u16..16_384,
            ack in 0u16..16_384,
            ack_bits in prop_oneof![
                Just(u32::MAX),
                any::<u32>(),
                (0u32..256).prop_map(|b| b | 0xFFFF_FF00),
            ],
            ack_soon in any::<bool>(),
            tag in any::<u32>(),
            records in proptest::collection::vec(record_strategy(), 0..8),
        ) {
            let header = DataHeader {
                seq: PacketSeq::new(seq),
                ack: PacketSeq::new(ack),
                ack_bits,
                ack_soon,
                tag,
            };
            let bytes = encode_packet(&header, &records);
            let expected_len = header.encoded_len()
                + records
                    .iter()
                    .map(|(h, p)| h.encoded_len(fragmented(h.channel)) + p.len())
                    .sum::<usize>();
            prop_assert_eq!(bytes.len(), expected_len);
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(DataHeader::decode(&mut r).unwrap(), header);
            for (record, payload) in &records {
                let (got, got_payload) = RecordHeader::decode(&mut r, &CHANNELS).unwrap();
                prop_assert_eq!(&got, record);
                prop_assert_eq!(got_payload, payload.as_slice());
            }
            prop_assert!(r.is_empty());
        }

        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            if DataHeader::decode(&mut r).is_ok() {
                while !r.is_empty()
                    && decode_ack_delay(&mut r) == Ok(None)
                    && RecordHeader::decode(&mut r, &CHANNELS).is_ok()
                {}
            }
        }
    }
}
