//! Micro-benchmarks of the transport's hot paths: packet header and record coding, ack
//! bookkeeping, each channel kind's send → receive path through two endpoints joined by the
//! testkit's lossless in-memory wire ([`Pair`]), and fragmentation with reassembly.
//!
//! `cargo bench -p sturnus-benches --bench transport` (criterion; reports land in
//! `target/criterion`).
#![allow(missing_docs, reason = "criterion's macros generate undocumented items")]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sturnus_testkit::{Pair, Side};
use sturnus_transport::proto::ack::{AckState, acknowledged};
use sturnus_transport::proto::codec::{Reader, Writer};
use sturnus_transport::proto::packet::{DataHeader, RecordHeader};
use sturnus_transport::proto::seq::{MessageSeq, PacketSeq};
use sturnus_transport::{ChannelId, EndpointConfig, Event, Qos};

fn coding(c: &mut Criterion) {
    let mut group = c.benchmark_group("coding");
    let header = DataHeader {
        seq: PacketSeq::new(1234),
        ack: PacketSeq::new(987),
        ack_bits: 0xFFFF_7FFF,
        ack_soon: true,
        tag: 0x1234_5678,
    };
    let record = RecordHeader {
        channel: ChannelId(6),
        len: 32,
        seq: Some(MessageSeq::new(4242)),
        fragment: None,
    };
    let payload = [7u8; 32];
    let mut buf = [0u8; 1200];
    group.bench_function("encode header + 32 records of 32 B", |b| {
        b.iter(|| {
            let mut w = Writer::new(&mut buf);
            black_box(header).encode(&mut w).unwrap();
            for _ in 0..32 {
                black_box(record).encode(&payload, false, &mut w).unwrap();
            }
            black_box(w.len())
        });
    });
    let len = {
        let mut w = Writer::new(&mut buf);
        header.encode(&mut w).unwrap();
        for _ in 0..32 {
            record.encode(&payload, false, &mut w).unwrap();
        }
        w.len()
    };
    let channels = Qos::ALL;
    group.bench_function("decode header + 32 records of 32 B", |b| {
        b.iter(|| {
            let mut r = Reader::new(black_box(&buf[..len]));
            let h = DataHeader::decode(&mut r).unwrap();
            let mut total = usize::from(h.seq.get());
            while !r.is_empty() {
                let (rec, p) = RecordHeader::decode(&mut r, &channels).unwrap();
                total += usize::from(rec.len) + p.len();
            }
            black_box(total)
        });
    });
    group.finish();
}

fn acks(c: &mut Criterion) {
    let mut group = c.benchmark_group("acks");
    group.throughput(Throughput::Elements(1024));
    group.bench_function("record 1024 arrivals with 1 in 16 lost", |b| {
        b.iter(|| {
            let mut state = AckState::new(PacketSeq::new(100));
            for i in 0..1024u16 {
                if i % 16 != 15 {
                    black_box(state.record(PacketSeq::new(100u16.wrapping_add(i) & 0x3FFF)));
                }
            }
            black_box(state.bits())
        });
    });
    group.bench_function("walk 1024 ack fields", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for i in 0..1024u16 {
                n += acknowledged(PacketSeq::new(i), black_box(0xFFFF_7FFF)).count();
            }
            black_box(n)
        });
    });
    group.finish();
}

/// Two endpoints with a channel of every kind, connected over the testkit's lossless wire.
fn pair() -> Pair {
    Pair::new(EndpointConfig {
        channels: Qos::ALL.to_vec(),
        send_queue_capacity: 16_384,
        ..EndpointConfig::default()
    })
}

/// One millisecond of a game loop: every datagram both ways, events drained, due timers run.
/// Returns the messages `b` received.
fn round(pair: &mut Pair) -> usize {
    let mut got = 0;
    pair.round(Duration::from_millis(1), |side, event| {
        if let (Side::B, Event::Data { payload, .. }) = (side, event) {
            got += payload.len().min(1);
        }
    });
    got
}

const BATCH: u64 = 256;

fn channels(c: &mut Criterion) {
    let mut group = c.benchmark_group("send-receive");
    group.throughput(Throughput::Elements(BATCH));
    let payload = [5u8; 32];
    for (i, qos) in Qos::ALL.into_iter().enumerate() {
        let channel = ChannelId(u8::try_from(i).unwrap());
        let mut pair = pair();
        group.bench_function(BenchmarkId::new("256 x 32 B", qos.name()), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    pair.a.send(pair.a_conn, channel, black_box(&payload)).unwrap();
                }
                black_box(round(&mut pair))
            });
        });
    }
    group.finish();
}

/// Runs `side`'s due timers and sends what they made due (not delivered: an ack the peer does
/// not need for the echo), as `Host` does after reading.
fn settle(pair: &mut Pair, side: Side) {
    pair.run_timers(side);
    pair.discard(side);
}

/// W2's protocol work without the sockets: one 32-B message echoed at a time, with the
/// endpoints polled the way `Host` polls them (a flush, the datagram, timers, a flush).
fn ping_pong(c: &mut Criterion) {
    let mut group = c.benchmark_group("ping-pong");
    group.throughput(Throughput::Elements(1));
    let payload = [5u8; 32];
    let hop = Duration::from_micros(10);
    for qos in [Qos::Unreliable, Qos::ReliableSequenced] {
        let channel =
            ChannelId(u8::try_from(Qos::ALL.iter().position(|&q| q == qos).unwrap()).unwrap());
        let mut pair = pair();
        group.bench_function(BenchmarkId::new("round trip of 32 B", qos.name()), |b| {
            b.iter(|| {
                pair.now += hop;
                pair.a.send(pair.a_conn, channel, black_box(&payload)).unwrap();
                pair.deliver(Side::A);
                settle(&mut pair, Side::B);
                let mut echo = [0u8; 32];
                while let Some(event) = pair.b.poll_event() {
                    if let Event::Data { payload, .. } = event {
                        echo.copy_from_slice(payload);
                    }
                }
                pair.b.send(pair.b_conn, channel, &echo).unwrap();
                pair.now += hop;
                pair.deliver(Side::B);
                settle(&mut pair, Side::A);
                let mut got = 0;
                while let Some(event) = pair.a.poll_event() {
                    got += usize::from(matches!(event, Event::Data { .. }));
                }
                assert_eq!(got, 1);
            });
        });
    }
    group.finish();
}

fn fragmentation(c: &mut Criterion) {
    let mut group = c.benchmark_group("fragmentation");
    for size in [16 * 1024, 256 * 1024] {
        let message = vec![9u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        for qos in [Qos::ReliableFragmentedSequenced, Qos::UnreliableFragmented] {
            let channel =
                ChannelId(u8::try_from(Qos::ALL.iter().position(|&q| q == qos).unwrap()).unwrap());
            let mut pair = pair();
            group.bench_function(BenchmarkId::new(qos.name(), size), |b| {
                b.iter(|| {
                    pair.a.send(pair.a_conn, channel, black_box(&message)).unwrap();
                    let mut got = 0;
                    while got == 0 {
                        got = round(&mut pair);
                    }
                    black_box(got)
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, coding, acks, channels, ping_pong, fragmentation);
criterion_main!(benches);
