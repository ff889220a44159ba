//! Quality of service: what each kind of channel promises.

use std::fmt;

/// A channel's number on a connection (0 to 254; up to 255 channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub u8);

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "channel {}", self.0)
    }
}

/// The delivery promise of a channel: the UNET quality-of-service types.
///
/// | QoS | delivery | order | size |
/// |---|---|---|---|
/// | `Unreliable` | may drop | none | one packet |
/// | `UnreliableFragmented` | may drop (whole message) | none | many fragments |
/// | `UnreliableSequenced` | may drop; never an older message after a newer one | sequenced | one packet |
/// | `UnreliableFragmentedSequenced` | may drop (whole message); never older after newer | sequenced | many fragments |
/// | `Reliable` | guaranteed or disconnect | none | one packet |
/// | `ReliableFragmented` | guaranteed or disconnect | none | many fragments |
/// | `ReliableSequenced` | guaranteed or disconnect | in order | one packet |
/// | `ReliableFragmentedSequenced` | guaranteed or disconnect | in order | many fragments |
/// | `StateUpdate` | may drop; only the newest queued is sent, only the newest received is delivered | latest only | one packet |
/// | `ReliableStateUpdate` | the newest state is guaranteed; a resend carries the newest state | latest only | one packet |
/// | `AllCostDelivery` | guaranteed; resent on a fixed interval until acked | none | one packet |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Qos {
    /// Fire and forget, like a UDP datagram. Example: short log lines.
    Unreliable,
    /// Unreliable, split into fragments when larger than a packet; lost if any piece is lost.
    UnreliableFragmented,
    /// Unreliable, and never delivers a message older than one already delivered. Example: voice.
    UnreliableSequenced,
    /// [`UnreliableFragmented`](Self::UnreliableFragmented) and sequenced.
    UnreliableFragmentedSequenced,
    /// Delivered (or the connection is lost), in any order. Example: damage events.
    Reliable,
    /// Reliable and split into fragments when larger than a packet.
    ReliableFragmented,
    /// Delivered in the order sent, like a TCP stream (per channel). Example: chat, file patches.
    ReliableSequenced,
    /// Reliable, in order, and split into fragments when larger than a packet.
    ReliableFragmentedSequenced,
    /// Only the newest state matters: older queued states are skipped when sending, older
    /// arrivals are dropped when receiving. Example: positions.
    StateUpdate,
    /// Like `StateUpdate`, but the newest state is guaranteed to arrive: a resend carries the
    /// newest state, not the lost one.
    ReliableStateUpdate,
    /// Reliable, resent on a short fixed interval instead of the RTT-based timeout. For small,
    /// urgent messages: "player A was hit", "the round starts".
    AllCostDelivery,
}

impl Qos {
    /// Every kind, in the order of the table above.
    pub const ALL: [Qos; 11] = [
        Qos::Unreliable,
        Qos::UnreliableFragmented,
        Qos::UnreliableSequenced,
        Qos::UnreliableFragmentedSequenced,
        Qos::Reliable,
        Qos::ReliableFragmented,
        Qos::ReliableSequenced,
        Qos::ReliableFragmentedSequenced,
        Qos::StateUpdate,
        Qos::ReliableStateUpdate,
        Qos::AllCostDelivery,
    ];

    /// Whether delivery is guaranteed (for the state-update kind: of the newest state).
    pub const fn is_reliable(self) -> bool {
        matches!(
            self,
            Qos::Reliable
                | Qos::ReliableFragmented
                | Qos::ReliableSequenced
                | Qos::ReliableFragmentedSequenced
                | Qos::ReliableStateUpdate
                | Qos::AllCostDelivery
        )
    }

    /// Whether messages larger than a packet are split into fragments.
    pub const fn is_fragmented(self) -> bool {
        matches!(
            self,
            Qos::UnreliableFragmented
                | Qos::UnreliableFragmentedSequenced
                | Qos::ReliableFragmented
                | Qos::ReliableFragmentedSequenced
        )
    }

    /// Whether an older message is never delivered after a newer one.
    pub const fn is_sequenced(self) -> bool {
        matches!(
            self,
            Qos::UnreliableSequenced
                | Qos::UnreliableFragmentedSequenced
                | Qos::ReliableSequenced
                | Qos::ReliableFragmentedSequenced
                | Qos::StateUpdate
                | Qos::ReliableStateUpdate
        )
    }

    /// Whether only the newest message counts.
    pub const fn is_state_update(self) -> bool {
        matches!(self, Qos::StateUpdate | Qos::ReliableStateUpdate)
    }

    /// Whether messages carry a per-channel number on the wire (for ordering, duplicate
    /// suppression or reassembly).
    pub const fn is_numbered(self) -> bool {
        self.is_reliable() || self.is_sequenced() || self.is_fragmented()
    }

    /// The name in kebab-case, as used on command lines (`reliable-sequenced`).
    pub const fn name(self) -> &'static str {
        match self {
            Qos::Unreliable => "unreliable",
            Qos::UnreliableFragmented => "unreliable-fragmented",
            Qos::UnreliableSequenced => "unreliable-sequenced",
            Qos::UnreliableFragmentedSequenced => "unreliable-fragmented-sequenced",
            Qos::Reliable => "reliable",
            Qos::ReliableFragmented => "reliable-fragmented",
            Qos::ReliableSequenced => "reliable-sequenced",
            Qos::ReliableFragmentedSequenced => "reliable-fragmented-sequenced",
            Qos::StateUpdate => "state-update",
            Qos::ReliableStateUpdate => "reliable-state-update",
            Qos::AllCostDelivery => "all-cost-delivery",
        }
    }
}

impl fmt::Display for Qos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Qos {
    type Err = crate::ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Qos::ALL
            .into_iter()
            .find(|q| q.name() == s)
            .ok_or_else(|| crate::ConfigError::UnknownQos(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eleven_kinds_with_distinct_names_that_parse_back() {
        let mut names: Vec<&str> = Qos::ALL.iter().map(|q| q.name()).collect();
        for q in Qos::ALL {
            assert_eq!(q.name().parse::<Qos>().unwrap(), q);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 11);
        assert!("reliable-ordered".parse::<Qos>().is_err());
    }

    #[test]
    fn properties_follow_the_table() {
        let reliable = Qos::ALL.iter().filter(|q| q.is_reliable()).count();
        let fragmented = Qos::ALL.iter().filter(|q| q.is_fragmented()).count();
        assert_eq!((reliable, fragmented), (6, 4));
        assert!(
            Qos::ReliableStateUpdate.is_state_update() && Qos::ReliableStateUpdate.is_reliable()
        );
        assert!(!Qos::Unreliable.is_numbered());
        assert!(
            Qos::UnreliableFragmented.is_numbered(),
            "fragments need a message number to reassemble"
        );
        assert!(!Qos::AllCostDelivery.is_sequenced());
    }
}
