//! The agent in the guest, end to end: system 1.0's `reimage-agent install
//! --reboot` fetches 2.0's bundle from a static feed on the host (QEMU's
//! user network, the host's 127.0.0.1 seen as 10.0.2.2), admits and
//! requests it; GRUB boots the recovery, which installs 2.0 from the
//! bundle; 2.0 boots.

// The agent's own fault-injecting test server: one home for it.
#[path = "../../agent/tests/server/mod.rs"]
mod server;

use qemu_tests::cycle::Cycle;
use server::{Plan, Server};

#[test]
fn the_agent_downloads_2_0_from_a_feed_and_the_recovery_installs_it() {
    let mut served = None;
    let cycle = Cycle::with_agent(|feed| {
        let bundle = feed
            .iter()
            .find(|(path, _)| path.ends_with(".swu"))
            .map(|(path, bytes)| (path.clone(), bytes.clone()))
            .expect("the feed holds a bundle");
        let server = Server::start_files(feed, Plan::good());
        let url = format!("http://10.0.2.2:{}", server.addr().port());
        served = Some((server, bundle));
        url
    });
    let (server, (bundle_path, bundle)) = served.expect("the cycle started the feed");
    let run = cycle.run(false);
    cycle.assert_updated(&run);

    // What the server served: `latest` once, the bundle's head (its
    // signature, admitted before the payload) and then the rest of it.
    assert_eq!(
        server.served_of("/demo/latest"),
        4,
        "{:?}",
        server.requests()
    );
    let bundle_served = server.served_of(&bundle_path);
    let len = bundle.len() as u64;
    assert_eq!(
        bundle_served,
        len + (formats::bundle::HEAD_MAX as u64).min(len),
        "bytes served of the {len}-byte bundle: {:?}",
        server.requests()
    );

    let storage = cycle.inspect().partition("storage");
    assert_eq!(
        storage.read("/updates/demo-2.0.swu"),
        Some(bundle),
        "the bundle on storage is not the one served: {:?}",
        storage.list("/updates")
    );
    // The installed version's image stays: a failed update is restored
    // from it.
    assert!(
        storage.exists("/updates/demo-1.0.manifest"),
        "{:?}",
        storage.list("/updates")
    );
    println!(
        "agent cycle: {:.1} s, {bundle_served} bytes of the {len}-byte bundle served",
        run.seconds
    );
}
