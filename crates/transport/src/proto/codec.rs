//! Byte cursors and LEB128 varints: the only code that touches raw packet bytes.
//!
//! Reading never panics: running out of input is a [`DecodeError`], so a truncated or hostile
//! datagram is rejected instead of crashing the endpoint.

use crate::DecodeError;

/// Reads from a borrowed datagram.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next byte, without reading it.
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    /// Reads a big-endian `u16`.
    pub fn u16_be(&mut self) -> Result<u16, DecodeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a little-endian `u16`.
    pub fn u16_le(&mut self) -> Result<u16, DecodeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Reads `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated { needed: n, available: self.remaining() });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Reads an unsigned LEB128 varint of at most 5 bytes that fits in a `u32`.
    pub fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let byte = self.u8()?;
            let part = u32::from(byte & 0x7F);
            if i == 4 && part > 0x0F {
                return Err(DecodeError::VarintOverflow);
            }
            value |= part << (7 * i);
            if byte & 0x80 == 0 {
                // Reject over-long forms (a trailing zero group) so each value has one encoding.
                if i > 0 && byte == 0 {
                    return Err(DecodeError::VarintOverlong);
                }
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow)
    }
}

/// Writes into a caller-lent buffer; a write that does not fit fails and leaves the buffer's
/// position unchanged, so encoders can try to add a record and back off.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

/// The buffer had no room for a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Room left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Writes one byte.
    pub fn u8(&mut self, v: u8) -> Result<(), Full> {
        self.bytes(&[v])
    }

    /// Writes a big-endian `u16`.
    pub fn u16_be(&mut self, v: u16) -> Result<(), Full> {
        self.bytes(&v.to_be_bytes())
    }

    /// Writes a little-endian `u16`.
    pub fn u16_le(&mut self, v: u16) -> Result<(), Full> {
        self.bytes(&v.to_le_bytes())
    }

    /// Writes `data`.
    pub fn bytes(&mut self, data: &[u8]) -> Result<(), Full> {
        if data.len() > self.remaining() {
            return Err(Full);
        }
        self.buf[self.pos..self.pos + data.len()].copy_from_slice(data);
        self.pos += data.len();
        Ok(())
    }

    /// Writes `v` as an unsigned LEB128 varint.
    pub fn varint(&mut self, v: u32) -> Result<(), Full> {
        let mut tmp = [0u8; 5];
        let n = encode_varint(v, &mut tmp);
        self.bytes(&tmp[..n])
    }
}

/// Bytes `v` takes as a varint (1 to 5).
pub const fn varint_len(v: u32) -> usize {
    match v {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        0x20_0000..=0x0FFF_FFFF => 4,
        _ => 5,
    }
}

fn encode_varint(mut v: u32, out: &mut [u8; 5]) -> usize {
    let mut i = 0;
    loop {
        // Truncation keeps the low seven bits, which is the point.
        let low = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out[i] = low;
            return i + 1;
        }
        out[i] = low | 0x80;
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn varint_boundaries() {
        for (v, len) in [(0, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (u32::MAX, 5)] {
            let mut buf = [0u8; 8];
            let mut w = Writer::new(&mut buf);
            w.varint(v).unwrap();
            assert_eq!((w.len(), varint_len(v)), (len, len), "{v}");
            assert_eq!(Reader::new(&buf[..len]).varint().unwrap(), v);
        }
    }

    #[test]
    fn bad_varints_are_errors() {
        assert_eq!(
            Reader::new(&[0x80]).varint(),
            Err(DecodeError::Truncated { needed: 1, available: 0 })
        );
        assert_eq!(Reader::new(&[0xFF; 6]).varint(), Err(DecodeError::VarintOverflow));
        assert_eq!(
            Reader::new(&[0xFF, 0xFF, 0xFF, 0xFF, 0x1F]).varint(),
            Err(DecodeError::VarintOverflow)
        );
        assert_eq!(Reader::new(&[0x81, 0x00]).varint(), Err(DecodeError::VarintOverlong));
    }

    #[test]
    fn a_write_that_does_not_fit_changes_nothing() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        w.u16_be(0xABCD).unwrap();
        assert_eq!(w.bytes(&[1, 2]), Err(Full));
        assert_eq!(w.varint(300), Err(Full));
        assert_eq!(w.len(), 2);
        w.u8(7).unwrap();
        assert_eq!(buf, [0xAB, 0xCD, 7]);
    }

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<u32>()) {
            let mut buf = [0u8; 5];
            let mut w = Writer::new(&mut buf);
            w.varint(v).unwrap();
            let n = w.len();
            prop_assert_eq!(n, varint_len(v));
            let mut r = Reader::new(&buf[..n]);
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn reading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut r = Reader::new(&bytes);
            while r.varint().is_ok() {}
            let mut r = Reader::new(&bytes);
            let _ = r.u16_be();
            let _ = r.bytes(bytes.len());
        }
    }
}
