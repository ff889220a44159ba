//! The message layer's scenario suite, run over host mode, an in-memory network, real UDP (on
//! the caller's thread and on an I/O thread), and the simulated lossy network (10 % loss each
//! way, duplicates, reordering) with many seeds.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{Path, World, paths, server_config};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sturnus_message::{
    ChannelId, ClientEvent, DisconnectReason, Message, NetworkClient, Player, PlayerId, Qos,
    ServerEvent,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
struct Numbered {
    kind: u8,
    n: u32,
    pad: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(qos = ReliableSequenced)]
struct Hello(usize);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
struct Say(String);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
struct Line {
    from: PlayerId,
    text: String,
}

const PER_KIND: u32 = 20;

fn numbered(kind: usize, n: u32) -> Numbered {
    let qos = Qos::ALL[kind];
    // Fragmented kinds get some messages of several packets.
    let len = if qos.is_fragmented() && n % 4 == 1 { 3000 + n as usize } else { 8 };
    Numbered { kind: u8::try_from(kind).unwrap(), n, pad: vec![n.to_le_bytes()[0]; len] }
}

/// Checks what arrived on each kind against the kind's promise; `lossless` paths must deliver
/// everything in order.
fn check_kinds(path: Path, side: &str, got: &[Vec<Numbered>], lossless: bool) {
    for (kind, msgs) in got.iter().enumerate() {
        let qos = Qos::ALL[kind];
        let ns: Vec<u32> = msgs.iter().map(|m| m.n).collect();
        for m in msgs {
            assert_eq!(*m, numbered(kind, m.n), "{path:?} {side} {qos:?}: payload damaged");
        }
        let mut unique = ns.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ns.len(), "{path:?} {side} {qos:?}: duplicates in {ns:?}");
        if qos.is_sequenced() || lossless {
            assert!(ns.windows(2).all(|w| w[0] < w[1]), "{path:?} {side} {qos:?}: order {ns:?}");
        }
        let all: Vec<u32> = (0..PER_KIND).collect();
        if lossless || (qos.is_reliable() && !qos.is_state_update()) {
            if qos.is_sequenced() || lossless {
                assert_eq!(ns, all, "{path:?} {side} {qos:?}");
            } else {
                assert_eq!(unique, all, "{path:?} {side} {qos:?}");
            }
        }
        if qos == Qos::ReliableStateUpdate {
            assert_eq!(ns.last(), Some(&(PER_KIND - 1)), "{path:?} {side}: newest state lost");
        }
    }
}

/// Every kind of channel, client → server and back, over every path.
#[test]
fn delivery_on_every_kind() {
    for path in paths(12) {
        let at_server: Arc<Mutex<Vec<Vec<Numbered>>>> =
            Arc::new(Mutex::new(vec![Vec::new(); Qos::ALL.len()]));
        let seen = Arc::clone(&at_server);
        let mut world = World::new(path, server_config(), |server| {
            server
                .register_handler(move |mut player: Player<'_>, msg: Numbered| {
                    // The default layout: channel i is of kind Qos::ALL[i].
                    player.send_on(&msg, ChannelId(msg.kind)).unwrap();
                    seen.lock()[usize::from(msg.kind)].push(msg);
                })
                .unwrap();
        });
        let echoes: Arc<Mutex<Vec<Vec<Numbered>>>> =
            Arc::new(Mutex::new(vec![Vec::new(); Qos::ALL.len()]));
        let seen = Arc::clone(&echoes);
        world.add_client(None::<&()>, |client| {
            client
                .register_handler(move |_, msg: Numbered| {
                    seen.lock()[usize::from(msg.kind)].push(msg)
                })
                .unwrap();
        });
        world.authenticate_all();
        for n in 0..PER_KIND {
            for kind in 0..Qos::ALL.len() {
                let channel = ChannelId(u8::try_from(kind).unwrap());
                world.clients[0].send_on(&numbered(kind, n), channel).unwrap();
            }
            world.step();
        }
        let done = world.run_until(|_| {
            let echoes = echoes.lock();
            Qos::ALL.iter().enumerate().all(|(kind, qos)| {
                let got = &echoes[kind];
                match qos {
                    Qos::ReliableStateUpdate => got.last().is_some_and(|m| m.n == PER_KIND - 1),
                    q if q.is_reliable() => got.len() == PER_KIND as usize,
                    _ => true,
                }
            })
        });
        assert!(done, "{path:?}: reliable echoes incomplete: {:?}", echoes.lock());
        world.run_for(30); // let late unreliable messages land, to check them too
        let lossless = path.is_lossless();
        check_kinds(path, "server", &at_server.lock(), lossless);
        check_kinds(path, "client", &echoes.lock(), lossless);
        let id = world.server.players().next().unwrap();
        let stats = world.server.player_stats(id).unwrap();
        assert_eq!(stats.dropped(), 0, "{path:?}: {stats:?}");
        if let Path::Sim { .. } = path {
            // The link really was lossy: the transport had to resend.
            let server_side = world.server.player(id).unwrap().connection_stats().unwrap();
            let client_side = world.clients[0].connection_stats().unwrap();
            assert!(server_side.resends + client_side.resends > 0, "{path:?}: no loss seen");
            assert!(server_side.packets_lost_in + client_side.packets_lost_in > 0);
        }
    }
}

/// What a client saw, events and handler calls interleaved.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Event(ClientEvent),
    Line(Line),
}

fn recording_client(client: &mut NetworkClient) -> Arc<Mutex<Vec<Seen>>> {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = Arc::clone(&seen);
    client.on_event(move |_, event| log.lock().push(Seen::Event(event.clone())));
    let log = Arc::clone(&seen);
    client.register_handler(move |_, line: Line| log.lock().push(Seen::Line(line))).unwrap();
    seen
}

/// Lifecycle events arrive in order, through callbacks and the poll queue alike; handlers run
/// between them in the same order on every path; broadcasts reach the right players.
#[test]
fn events_handlers_and_broadcast() {
    for path in paths(6) {
        let callback_log: Arc<Mutex<Vec<ServerEvent>>> = Arc::default();
        let hello: Arc<Mutex<HashMap<usize, PlayerId>>> = Arc::default();
        let (log, hellos) = (Arc::clone(&callback_log), Arc::clone(&hello));
        let mut world = World::new(path, server_config(), |server| {
            server.on_event(move |server, event| {
                log.lock().push(event.clone());
                // Sent before authentication completes: every path must deliver it between
                // the client's Connected and Authenticated.
                if let ServerEvent::Connected(id) = event {
                    let welcome = Line { from: *id, text: "welcome".into() };
                    server.send(*id, &welcome).unwrap();
                }
            });
            server
                .register_handler(move |player: Player<'_>, Hello(index)| {
                    hellos.lock().insert(index, player.id());
                })
                .unwrap();
            server
                .register_handler(|mut player: Player<'_>, Say(text)| {
                    let line = Line { from: player.id(), text };
                    assert_eq!(player.server().broadcast(&line).unwrap(), 3);
                })
                .unwrap();
        });
        let mut seen = Vec::new();
        for _ in 0..3 {
            let index = world.add_client(None::<&()>, |_| {});
            seen.push(recording_client(&mut world.clients[index]));
        }
        world.authenticate_all();
        for (index, client) in world.clients.iter_mut().enumerate() {
            client.send(&Hello(index)).unwrap();
        }
        assert!(world.run_until(|_| hello.lock().len() == 3), "{path:?}: hellos lost");
        let ids: Vec<PlayerId> = (0..3).map(|i| hello.lock()[&i]).collect();

        // Client 1 speaks: everyone hears it once.
        world.clients[1].send(&Say("hi".into())).unwrap();
        let heard = |seen: &Arc<Mutex<Vec<Seen>>>, text: &str| {
            seen.lock().iter().filter(|s| matches!(s, Seen::Line(l) if l.text == text)).count()
        };
        assert!(world.run_until(|_| seen.iter().all(|s| heard(s, "hi") == 1)), "{path:?}");

        // A broadcast to players 0 and 2 skips player 1.
        let line = Line { from: ids[0], text: "psst".into() };
        assert_eq!(world.server.broadcast_to([ids[0], ids[2]], &line).unwrap(), 2);
        assert!(world.run_until(|_| heard(&seen[0], "psst") + heard(&seen[2], "psst") == 2));
        world.run_for(20);
        assert_eq!(heard(&seen[1], "psst"), 0, "{path:?}: broadcast_to reached player 1");

        // Client 0 leaves; the server kicks client 2.
        world.clients[0].disconnect();
        world.server.kick(ids[2], "afk");
        let gone = |w: &mut World, id: PlayerId| w.gone(id);
        assert!(world.run_until(|w| gone(w, ids[0])), "{path:?}: leave not seen");
        assert!(
            world.run_until(|w| !w.clients[2].is_authenticated()
                && w.log.clients[2].iter().any(|e| matches!(e, ClientEvent::Disconnected(_)))),
            "{path:?}: kick not seen by the client"
        );

        let line_from_1 = Seen::Line(Line { from: ids[1], text: "hi".into() });
        let psst = Seen::Line(line.clone());
        let connected = |id: PlayerId| {
            vec![
                Seen::Event(ClientEvent::Connected),
                Seen::Line(Line { from: id, text: "welcome".into() }),
                Seen::Event(ClientEvent::Authenticated),
            ]
        };
        let mut expect0 = connected(ids[0]);
        expect0.extend([line_from_1.clone(), psst.clone()]);
        expect0.push(Seen::Event(ClientEvent::Disconnected(DisconnectReason::Closed)));
        assert_eq!(*seen[0].lock(), expect0, "{path:?}: client 0");
        let mut expect2 = connected(ids[2]);
        expect2.extend([line_from_1, psst]);
        expect2
            .push(Seen::Event(ClientEvent::Disconnected(DisconnectReason::Kicked("afk".into()))));
        assert_eq!(*seen[2].lock(), expect2, "{path:?}: client 2");

        // The server saw, per player: Connected, Authenticated, Disconnected with the reason.
        let server_log = world.log.server.clone();
        assert_eq!(server_log, *callback_log.lock(), "{path:?}: callbacks and poll queue differ");
        assert!(matches!(server_log[0], ServerEvent::Started(_)), "{path:?}: {server_log:?}");
        for (index, id) in ids.iter().enumerate() {
            let mine: Vec<ServerEvent> = server_log
                .iter()
                .filter(|e| match e {
                    ServerEvent::Connected(p) | ServerEvent::Authenticated(p) => p == id,
                    ServerEvent::Disconnected(p, _) => p == id,
                    _ => false,
                })
                .cloned()
                .collect();
            let mut expect = vec![ServerEvent::Connected(*id), ServerEvent::Authenticated(*id)];
            let left = match index {
                0 => Some(ServerEvent::Disconnected(*id, DisconnectReason::ClosedByPeer)),
                2 => Some(ServerEvent::Disconnected(*id, DisconnectReason::Kicked("afk".into()))),
                _ => None,
            };
            expect.extend(left);
            assert_eq!(mine, expect, "{path:?}: player {index}");
        }

        // Stopping tells the last client.
        world.server.stop();
        assert_eq!(
            world.server.poll_event(),
            Some(ServerEvent::Disconnected(ids[1], DisconnectReason::ServerStopped))
        );
        assert_eq!(world.server.poll_event(), Some(ServerEvent::Stopped));
        assert!(world.run_until(|w| !w.clients[1].is_authenticated()), "{path:?}: stop not seen");
        let last = seen[1].lock().last().cloned();
        let Some(Seen::Event(ClientEvent::Disconnected(reason))) = last else {
            panic!("{path:?}: client 1 ended with {last:?}")
        };
        if matches!(path, Path::Sim { .. }) {
            // The goodbye may be lost with the server gone; the transport then says why.
            assert!(
                matches!(
                    reason,
                    DisconnectReason::ServerStopped
                        | DisconnectReason::ClosedByPeer
                        | DisconnectReason::Transport(_)
                ),
                "{reason:?}"
            );
        } else {
            assert_eq!(reason, DisconnectReason::ServerStopped, "{path:?}");
        }
    }
}

/// A host serves its local client and remote clients at once; all see the same things.
#[test]
fn host_mode_serves_remote_clients_too() {
    for path in [Path::Memory, Path::Udp, Path::Threaded, Path::Sim { seed: 3, loss: 0.1 }] {
        let mut world = World::new(path, server_config(), |server| {
            server
                .register_handler(|mut player: Player<'_>, Say(text)| {
                    let line = Line { from: player.id(), text };
                    player.server().broadcast(&line).unwrap();
                })
                .unwrap();
        });
        let local = world.add_local_client();
        let remote = world.add_client(None::<&()>, |_| {});
        let local_seen = recording_client(&mut world.clients[local]);
        let remote_seen = recording_client(&mut world.clients[remote]);
        world.authenticate_all();
        world.clients[local].send(&Say("from the host".into())).unwrap();
        let heard =
            world.run_until(|_| remote_seen.lock().len() == 3 && local_seen.lock().len() == 3);
        assert!(heard, "{path:?}: {:?} {:?}", local_seen.lock(), remote_seen.lock());
        assert!(world.clients[local].is_local() && !world.clients[remote].is_local());
        let local_log = local_seen.lock().clone();
        assert_eq!(local_log, *remote_seen.lock(), "{path:?}");
        assert_eq!(
            local_log[..2],
            [Seen::Event(ClientEvent::Connected), Seen::Event(ClientEvent::Authenticated)]
        );
        assert!(matches!(&local_log[2], Seen::Line(l) if l.text == "from the host"));
        let ids: Vec<PlayerId> = world.server.players().collect();
        let locals = ids.iter().filter(|id| world.server.player(**id).unwrap().is_local()).count();
        assert_eq!((ids.len(), locals), (2, 1), "{path:?}");
    }
}
