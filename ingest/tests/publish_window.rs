//! The platform's own publishing stays within rumqttd's 200-packet link buffer
//! (`offsite_wire::publish_window`): a link paced by `wait_for_link_room` never makes its buffer
//! grow, while the same link publishing as fast as it can does (the control, which shows the
//! test still exercises the overflow). A grown buffer is never shrunk and is passed on to device
//! connections, which is how the broker's RSS crept in the 30-minute soak.

use std::net::{SocketAddr, TcpListener};

use offsite_broker::{BrokerBuilder, BrokerConfig, Pki};
use offsite_store::testing::TestDb;

/// rumqttd's link buffer capacity (`MAX_CHANNEL_CAPACITY`).
const RUMQTTD_LINK_BUFFER: usize = 200;
/// Paced: this many messages. Unpaced: until the buffer overflows, or this many times more.
const MESSAGES: usize = 50_000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Publishes acknowledgement-sized messages and returns the largest capacity the link's buffer
/// had after any of them: paced, `MESSAGES` of them; unpaced, until the buffer overflows (the
/// router lags behind a tight loop now and then, not on every run of 20,000) or 20 x `MESSAGES`.
fn publish(tx: &mut rumqttd::local::LinkTx, paced: bool) -> usize {
    let mut largest = 0;
    let count = if paced { MESSAGES } else { 20 * MESSAGES };
    for i in 0..count {
        if paced {
            offsite_ingest::wait_for_link_room(tx);
        }
        tx.publish(
            format!("/tenants/dev-{}/v1/ack", i % 100),
            br#"{"seq":1,"ok":true}"#.to_vec(),
        )
        .unwrap();
        largest = largest.max(tx.buffer().capacity());
        if !paced && largest > RUMQTTD_LINK_BUFFER {
            break;
        }
    }
    largest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_link_publishing_never_grows_the_broker_buffer() {
    offsite_broker::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&dir.path().join("pki")).unwrap();
    let db = TestDb::new().await.unwrap();
    let cfg = BrokerConfig {
        tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], free_port()))),
        plain_listen: Some(SocketAddr::from(([127, 0, 0, 1], free_port()))),
        ..BrokerConfig::default()
    };
    let internal = offsite_broker::internal_password(dir.path()).unwrap();
    let mut builder = BrokerBuilder::new(&cfg, &pki, db.store.clone(), internal).unwrap();
    let (mut tx, _rx) = builder.link("paced-acks").unwrap();
    let _broker = builder.spawn().unwrap();

    let (paced, unpaced) = tokio::task::spawn_blocking(move || {
        let paced = publish(&mut tx, true);
        let unpaced = publish(&mut tx, false);
        (paced, unpaced)
    })
    .await
    .unwrap();
    println!("largest link buffer: paced {paced}, unpaced {unpaced} packets");
    assert!(
        unpaced > RUMQTTD_LINK_BUFFER,
        "publishing unpaced never overflowed the buffer ({unpaced}): the test no longer shows the overflow"
    );
    assert!(
        paced <= RUMQTTD_LINK_BUFFER,
        "the paced link's buffer grew to {paced} packets"
    );
}
