//! Control packets: the handshake and the disconnect notice. Their first byte has the
//! [`CONTROL_BIT`] set; the low bits say which kind follows. All integers are little-endian.

use super::codec::{Full, Reader, Writer};
use super::packet::CONTROL_BIT;
use crate::DecodeError;

/// Size every connect request and connect response is padded to. Every answer the server sends
/// before a connection exists is smaller, so the handshake cannot be used to amplify traffic
/// towards a spoofed address.
pub const PADDED_REQUEST_LEN: usize = 64;

/// Why a server turned a connection attempt down. Sent to the client in a reject packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The server holds its maximum number of connections.
    ServerFull,
    /// The client speaks another protocol id or version.
    VersionMismatch,
    /// A setting that must match on both sides (packet size, fragment size, fragment count,
    /// disconnect timeout or channel layout) differs.
    ConfigMismatch,
    /// The server application refused this client.
    Refused,
    /// The client's address, or its network prefix, holds as many connections as the server
    /// allows one source (see [`AddressLimits`](crate::AddressLimits)).
    TooManyFromAddress,
}

impl RejectReason {
    fn code(self) -> u8 {
        match self {
            RejectReason::ServerFull => 1,
            RejectReason::VersionMismatch => 2,
            RejectReason::ConfigMismatch => 3,
            RejectReason::Refused => 4,
            RejectReason::TooManyFromAddress => 5,
        }
    }

    fn from_code(code: u8) -> Result<Self, DecodeError> {
        Ok(match code {
            1 => RejectReason::ServerFull,
            2 => RejectReason::VersionMismatch,
            3 => RejectReason::ConfigMismatch,
            4 => RejectReason::Refused,
            5 => RejectReason::TooManyFromAddress,
            _ => return Err(DecodeError::BadControl),
        })
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejectReason::ServerFull => "server full",
            RejectReason::VersionMismatch => "protocol version mismatch",
            RejectReason::ConfigMismatch => "configuration mismatch",
            RejectReason::Refused => "refused by the server application",
            RejectReason::TooManyFromAddress => "too many connections from this address or network",
        })
    }
}

/// A stateless challenge: proof that the client can receive at the address it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookie {
    /// When it was issued, in seconds since the server endpoint started.
    pub issued: u32,
    /// SipHash-2-4 under the server's secret key of (client address, client salt, `issued`).
    pub mac: u64,
}

/// A decoded control packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Client → server: "I want to connect". Padded to [`PADDED_REQUEST_LEN`].
    ConnectRequest {
        /// The client's protocol id.
        protocol_id: u64,
        /// Fingerprint of the client's must-match settings.
        fingerprint: u64,
        /// The client's random salt for this attempt.
        client_salt: u64,
    },
    /// Server → client: "prove you are there" (no state kept on the server).
    Challenge {
        /// Echo of the client's salt.
        client_salt: u64,
        /// The cookie to send back.
        cookie: Cookie,
    },
    /// Client → server: the request again, with the cookie. Padded to [`PADDED_REQUEST_LEN`].
    ConnectResponse {
        /// The client's protocol id.
        protocol_id: u64,
        /// Fingerprint of the client's must-match settings.
        fingerprint: u64,
        /// The client's salt.
        client_salt: u64,
        /// The cookie from the challenge.
        cookie: Cookie,
    },
    /// Server → client: the connection exists.
    Accept {
        /// Echo of the client's salt.
        client_salt: u64,
        /// The server's random salt for this connection.
        server_salt: u64,
    },
    /// Server → client: the connection attempt is turned down.
    Reject {
        /// Echo of the client's salt.
        client_salt: u64,
        /// Why.
        reason: RejectReason,
    },
    /// Either way: the sender closes the connection. Sent several times, as it is not acked.
    Disconnect {
        /// Proof of membership: a mix of both salts, known only to the two peers.
        token: u64,
    },
}

const CONNECT_REQUEST: u8 = 1;
const CHALLENGE: u8 = 2;
const CONNECT_RESPONSE: u8 = 3;
const ACCEPT: u8 = 4;
const REJECT: u8 = 5;
const DISCONNECT: u8 = 6;

impl Control {
    /// Writes the packet (padding requests to [`PADDED_REQUEST_LEN`]).
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), Full> {
        let start = w.len();
        match *self {
            Control::ConnectRequest { protocol_id, fingerprint, client_salt } => {
                w.u8(CONTROL_BIT | CONNECT_REQUEST)?;
                w.bytes(&protocol_id.to_le_bytes())?;
                w.bytes(&fingerprint.to_le_bytes())?;
                w.bytes(&client_salt.to_le_bytes())?;
            }
            Control::Challenge { client_salt, cookie } => {
                w.u8(CONTROL_BIT | CHALLENGE)?;
                w.bytes(&client_salt.to_le_bytes())?;
                write_cookie(w, cookie)?;
            }
            Control::ConnectResponse { protocol_id, fingerprint, client_salt, cookie } => {
                w.u8(CONTROL_BIT | CONNECT_RESPONSE)?;
                w.bytes(&protocol_id.to_le_bytes())?;
                w.bytes(&fingerprint.to_le_bytes())?;
                w.bytes(&client_salt.to_le_bytes())?;
                write_cookie(w, cookie)?;
            }
            Control::Accept { client_salt, server_salt } => {
                w.u8(CONTROL_BIT | ACCEPT)?;
                w.bytes(&client_salt.to_le_bytes())?;
                w.bytes(&server_salt.to_le_bytes())?;
            }
            Control::Reject { client_salt, reason } => {
                w.u8(CONTROL_BIT | REJECT)?;
                w.bytes(&client_salt.to_le_bytes())?;
                w.u8(reason.code())?;
            }
            Control::Disconnect { token } => {
                w.u8(CONTROL_BIT | DISCONNECT)?;
                w.bytes(&token.to_le_bytes())?;
            }
        }
        if self.is_padded_request() {
            while w.len() - start < PADDED_REQUEST_LEN {
                w.u8(0)?;
            }
        }
        Ok(())
    }

    /// Whether this kind is padded (and must arrive padded).
    pub fn is_padded_request(&self) -> bool {
        matches!(self, Control::ConnectRequest { .. } | Control::ConnectResponse { .. })
    }

    /// Reads a control packet (the whole datagram).
    pub fn decode(datagram: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(datagram);
        let first = r.u8()?;
        if first & CONTROL_BIT == 0 {
            return Err(DecodeError::BadControl);
        }
        let packet = match first & !CONTROL_BIT {
            CONNECT_REQUEST => Control::ConnectRequest {
                protocol_id: read_u64(&mut r)?,
                fingerprint: read_u64(&mut r)?,
                client_salt: read_u64(&mut r)?,
            },
            CHALLENGE => {
                Control::Challenge { client_salt: read_u64(&mut r)?, cookie: read_cookie(&mut r)? }
            }
            CONNECT_RESPONSE => Control::ConnectResponse {
                protocol_id: read_u64(&mut r)?,
                fingerprint: read_u64(&mut r)?,
                client_salt: read_u64(&mut r)?,
                cookie: read_cookie(&mut r)?,
            },
            ACCEPT => {
                Control::Accept { client_salt: read_u64(&mut r)?, server_salt: read_u64(&mut r)? }
            }
            REJECT => Control::Reject {
                client_salt: read_u64(&mut r)?,
                reason: RejectReason::from_code(r.u8()?)?,
            },
            DISCONNECT => Control::Disconnect { token: read_u64(&mut r)? },
            _ => return Err(DecodeError::BadControl),
        };
        if packet.is_padded_request() && datagram.len() < PADDED_REQUEST_LEN {
            return Err(DecodeError::Unpadded);
        }
        Ok(packet)
    }
}

fn read_u64(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    let b = r.bytes(8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
}

fn write_cookie(w: &mut Writer<'_>, cookie: Cookie) -> Result<(), Full> {
    w.bytes(&cookie.issued.to_le_bytes())?;
    w.bytes(&cookie.mac.to_le_bytes())
}

fn read_cookie(r: &mut Reader<'_>) -> Result<Cookie, DecodeError> {
    let b = r.bytes(4)?;
    let issued = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    Ok(Cookie { issued, mac: read_u64(r)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(packet: &Control) -> Vec<u8> {
        let mut buf = [0u8; 128];
        let mut w = Writer::new(&mut buf);
        packet.encode(&mut w).unwrap();
        let n = w.len();
        buf[..n].to_vec()
    }

    fn all() -> Vec<Control> {
        let cookie = Cookie { issued: 7, mac: 0xDEAD_BEEF };
        vec![
            Control::ConnectRequest { protocol_id: 1, fingerprint: 2, client_salt: 3 },
            Control::Challenge { client_salt: 3, cookie },
            Control::ConnectResponse { protocol_id: 1, fingerprint: 2, client_salt: 3, cookie },
            Control::Accept { client_salt: 3, server_salt: 4 },
            Control::Reject { client_salt: 3, reason: RejectReason::ConfigMismatch },
            Control::Reject { client_salt: 3, reason: RejectReason::TooManyFromAddress },
            Control::Disconnect { token: 5 },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for packet in all() {
            assert_eq!(Control::decode(&encode(&packet)).unwrap(), packet);
        }
    }

    #[test]
    fn no_server_answer_is_larger_than_a_request() {
        let sizes: Vec<(bool, usize)> =
            all().iter().map(|p| (p.is_padded_request(), encode(p).len())).collect();
        let smallest_request =
            sizes.iter().filter(|(req, _)| *req).map(|&(_, len)| len).min().unwrap();
        assert_eq!(smallest_request, PADDED_REQUEST_LEN);
        assert!(sizes.iter().filter(|(req, _)| !*req).all(|&(_, len)| len < smallest_request));
    }

    #[test]
    fn unpadded_requests_and_unknown_kinds_are_rejected() {
        let request = encode(&all()[0]);
        assert_eq!(Control::decode(&request[..25]), Err(DecodeError::Unpadded));
        assert_eq!(Control::decode(&[0x80 | 99]), Err(DecodeError::BadControl));
        assert_eq!(Control::decode(&[0x05]), Err(DecodeError::BadControl));
        assert!(matches!(
            Control::decode(&[0x80 | ACCEPT, 1, 2]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut reject = encode(&all()[4]);
        *reject.last_mut().unwrap() = 0;
        assert_eq!(Control::decode(&reject), Err(DecodeError::BadControl));
    }
}
