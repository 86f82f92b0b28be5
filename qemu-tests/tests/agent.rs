//! The agent in the guest, end to end: system 1.0's `reimage-agent install
//! --reboot` fetches 2.0's bundle from a static feed on the host (QEMU's
//! user network, the host's 127.0.0.1 seen as 10.0.2.2), admits and
//! requests it; GRUB boots the recovery, which installs 2.0 from the
//! bundle; 2.0 boots.

// The agent's own fault-injecting test server: one home for it.
#[path = "../../agent/tests/server/mod.rs"]
mod server;

use qemu_tests::cycle::{self, Cycle};
use server::{Fault, Plan, Server};
use std::time::Duration;

/// The fault server serving the cycle's feed with `plan`, kept in
/// `served` with the bundle's path and bytes; the URL the guest uses.
fn serve(
    feed: cycle::Feed,
    plan: Plan,
    served: &mut Option<(Server, (String, Vec<u8>))>,
) -> String {
    let bundle = feed
        .iter()
        .find(|(path, _)| path.ends_with(".swu"))
        .map(|(path, bytes)| (path.clone(), bytes.clone()))
        .expect("the feed holds a bundle");
    let server = Server::start_files(feed, plan);
    let url = format!("http://10.0.2.2:{}", server.addr().port());
    *served = Some((server, bundle));
    url
}

#[test]
fn the_agent_downloads_2_0_from_a_feed_and_the_recovery_installs_it() {
    let mut served = None;
    let cycle = Cycle::with_agent(|feed| serve(feed, Plan::good(), &mut served));
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

#[test]
fn a_power_cut_in_the_middle_of_the_download_resumes_at_the_next_boot() {
    // 2.0 carries 12 MiB of noise: the download passes a checkpoint
    // (agent::download::CHECKPOINT, 4 MiB synced) well before its end,
    // on a link slowed to about 3 MB/s.
    let mut served = None;
    let slow = Fault::Slow {
        chunk: 64 << 10,
        pause: Duration::from_millis(20),
    };
    let cycle = Cycle::with_agent_and(
        |feed| serve(feed, Plan::always(slow), &mut served),
        |v2| {
            std::fs::write(v2.join("noise.bin"), server::noise(12 << 20, 9)).unwrap();
        },
    );
    let (server, (bundle_path, bundle)) = served.expect("the cycle started the feed");
    let len = bundle.len() as u64;
    let head = (formats::bundle::HEAD_MAX as u64).min(len);

    // The cut: shortly after the first checkpoint's progress report.
    let marker = "Proceeding { what: \"downloading\"";
    let first = cycle.run_cut(marker, Duration::from_millis(300));
    assert!(first.stopped, "the power was not cut:\n{}", first.tail());
    assert!(
        !first.says("complete and verified"),
        "the download ended before the cut:\n{}",
        first.tail()
    );
    // Bytes of a connection killed with QEMU are no longer counted.
    std::thread::sleep(Duration::from_millis(500));
    let before = server.served_of(&bundle_path);

    let second = cycle.run(false);
    cycle.assert_updated(&second);
    let resumed: u64 = second
        .console
        .lines()
        .find_map(|l| l.split("demo-2.0.swu: resuming at byte ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the download did not resume:\n{}", second.tail()));
    assert!(
        resumed >= agent::download::CHECKPOINT && resumed < len,
        "resumed at byte {resumed} of {len}"
    );
    assert!(
        server.requests().contains(&Some(resumed)),
        "no Range request from byte {resumed}: {:?}",
        server.requests()
    );
    // The next boot fetched the head again and only the rest.
    assert_eq!(
        server.served_of(&bundle_path) - before,
        head + (len - resumed),
        "bytes served after the cut, resuming at {resumed} of {len}"
    );
    let storage = cycle.inspect().partition("storage");
    assert_eq!(
        storage.read("/updates/demo-2.0.swu"),
        Some(bundle),
        "the resumed bundle on storage is not the one served"
    );
    println!(
        "cut and resumed at byte {resumed} of {len}: {:.1} s + {:.1} s",
        first.seconds, second.seconds
    );
}
