//! The agent in the guest, end to end: system 1.0's `reimage-agent install
//! --reboot` fetches 2.0's bundle from a static feed on the host (QEMU's
//! user network, the host's 127.0.0.1 seen as 10.0.2.2), admits and
//! requests it; GRUB boots the recovery, which installs 2.0 from the
//! bundle; 2.0 boots. The same through a real gooseBit (a hawkBit DDI
//! server) on the host, where 2.0 also reports the success to the server.

// The agent's own fault-injecting test server: one home for it.
#[path = "../../agent/tests/server/mod.rs"]
mod server;

use qemu_tests::cycle::{self, Cycle};
use qemu_tests::goosebit;
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
fn the_agent_updates_from_goosebit_and_2_0_reports_the_success() {
    let server = goosebit::Server::start();
    let port = server
        .base
        .rsplit_once(':')
        .expect("http://127.0.0.1:PORT")
        .1;
    let id = "demo-1";
    let conf = format!(
        "source=hawkbit\nhawkbit-server=http://10.0.2.2:{port}\n\
         hawkbit-controller-id={id}\nhawkbit-hardware={}\n",
        cycle::HARDWARE
    );
    let mut software = None;
    let cycle = Cycle::with_hawkbit(&conf, |bundle| software = Some(server.roll_out(bundle)));
    let software = software.expect("the cycle published the bundle");
    let run = cycle.run(false);
    cycle.assert_updated(&run);
    for line in ["system: confirm exit code 0", "system: report exit code 0"] {
        assert!(
            run.says(line),
            "no {line:?} on the console:\n{}",
            run.tail()
        );
    }

    // gooseBit's own view: 2.0 reported by the new system, after the
    // progress 1.0 reported while downloading.
    let dev = server.device(id);
    assert_eq!(dev["sw_version"], "2.0", "{dev}\n{}", server.log());
    assert_eq!(dev["last_state"], "Finished", "{dev}");
    assert_eq!(dev["hardware"]["revision"], cycle::HARDWARE, "{dev}");
    let (log, progress) = server.device_log(id);
    for said in [
        "downloading: Downloaded 100%",
        "downloaded and verified",
        "2.0 installed and booted (from 1.0",
    ] {
        assert!(log.contains(said), "no {said:?} in the device log:\n{log}");
    }
    assert_eq!(progress, Some(100), "{log}");
    let rollouts = server.request("GET", "/api/v1/rollouts", &[]).json();
    assert_eq!(rollouts["rollouts"][0]["success_count"], 1, "{rollouts}");
    assert_eq!(rollouts["rollouts"][0]["failure_count"], 0, "{rollouts}");

    // On the disk: the offer's action record is gone once reported; the
    // bundle gooseBit served is on storage.
    let disk = cycle.inspect();
    let cfg = disk.partition("cfg");
    assert!(!cfg.exists("/update/action"), "{:?}", cfg.list("/update"));
    let storage = disk.partition("storage");
    let bundle = storage
        .read("/updates/demo-2.0.swu")
        .unwrap_or_else(|| panic!("no bundle on storage: {:?}", storage.list("/updates")));
    let software_list = server.request("GET", "/api/v1/software", &[]).json();
    let uploaded = &software_list["software"][0];
    assert_eq!(uploaded["id"], software, "{software_list}");
    assert_eq!(uploaded["size"], bundle.len() as u64, "{software_list}");
    println!("goosebit cycle: {:.1} s", run.seconds);
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
