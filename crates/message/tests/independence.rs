//! Two channels of the same kind are independent: a message held back on one (its last fragment
//! lost, again and again) does not delay the messages of the other, on the lossy simulated
//! network.

mod common;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use common::{Path, World, server_config};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sturnus_message::{ChannelLayout, Message, Qos, ServerConfig};
use sturnus_testkit::sim::carries_a_last_fragment;

/// Channel 1 (A): a large message of many fragments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(channel = 1)]
struct Big(Vec<u8>);

/// Channel 2 (B): a stream of small messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(channel = 2)]
struct Small(u32);

#[derive(Debug, Clone, PartialEq)]
enum Got {
    Big(usize),
    Small(u32),
}

const SMALL: u32 = 20;

fn big() -> Big {
    Big((0..12_000u32).map(|i| i.to_le_bytes()[0] ^ 0x5A).collect())
}

/// Channel 0 is the layer's own (authentication); A and B are two more typed channels of the
/// same kind, `ReliableFragmentedSequenced`.
fn layout() -> ChannelLayout {
    ChannelLayout::typed(&[Qos::ReliableFragmentedSequenced; 3])
}

#[test]
fn a_message_held_on_one_channel_does_not_delay_another_of_the_same_kind() {
    for seed in [1, 2, 3] {
        let path = Path::Sim { seed, loss: 0.1 };
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let (bigs, smalls) = (Arc::clone(&got), Arc::clone(&got));
        let config = ServerConfig { channels: layout(), ..server_config() };
        let mut world = World::new(path, config, |server| {
            server
                .register_handler(move |_, Big(bytes)| {
                    assert_eq!(Big(bytes.clone()), big(), "A's message damaged");
                    bigs.lock().push(Got::Big(bytes.len()));
                })
                .unwrap();
            server.register_handler(move |_, Small(n)| smalls.lock().push(Got::Small(n))).unwrap();
        });
        world.add_client(None::<&()>, |_| {});
        world.authenticate_all();

        // From now on, every datagram from the client carrying a message's last fragment is
        // dropped: A's message can never be completed.
        let kinds = layout().kinds().to_vec();
        let held = Rc::new(Cell::new(0u32));
        let count = Rc::clone(&held);
        let filter = move |_to: SocketAddr, datagram: &[u8]| {
            let last = carries_a_last_fragment(datagram, &kinds);
            count.set(count.get() + u32::from(last));
            !last
        };
        let client = world.clients[0].local_addr().unwrap();
        world.sim().set_send_filter(client, Some(Box::new(filter)));

        world.clients[0].send(&Big(big().0)).unwrap();
        assert!(world.run_until(|_| held.get() >= 1), "{path:?}: A's last fragment never sent");
        for n in 0..SMALL {
            world.clients[0].send(&Small(n)).unwrap();
            world.step();
        }
        let sent_at = world.elapsed();
        let all_small = |got: &[Got]| got.iter().filter(|g| matches!(g, Got::Small(_))).count();
        assert!(
            world.run_until(|_| all_small(&got.lock()) == SMALL as usize),
            "{path:?}: B's messages waited for A's: {:?}",
            got.lock()
        );
        let b_took = world.elapsed() - sent_at;
        // Every message of B, in order, by the handler; A's message still incomplete, though
        // sent first, and resent into the filter meanwhile.
        let expect: Vec<Got> = (0..SMALL).map(Got::Small).collect();
        assert_eq!(*got.lock(), expect, "{path:?}");
        // B's stream did not wait for A's retransmissions: it arrived within a few round trips
        // (milliseconds on this net; A's resends back off far beyond that).
        assert!(b_took < Duration::from_secs(1), "{path:?}: B took {b_took:?}");
        // A stays held as long as the filter is on, resent into it again and again.
        let until = world.elapsed() + Duration::from_secs(2);
        world.run_until(|w| w.elapsed() >= until);
        assert_eq!(got.lock().len(), SMALL as usize, "{path:?}: A arrived through the filter");
        assert!(held.get() >= 3, "{path:?}: A's last fragment not resent: {}", held.get());

        // Lifted, A's message arrives, whole, after all of B's.
        world.sim().set_send_filter(client, None);
        assert!(
            world.run_until(|_| got.lock().len() == SMALL as usize + 1),
            "{path:?}: A's message never arrived"
        );
        assert_eq!(got.lock().last(), Some(&Got::Big(big().0.len())), "{path:?}");
    }
}
