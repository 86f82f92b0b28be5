//! The full update cycle through a real boot loader, in one QEMU run: OVMF
//! boots, from the ESP, either GRUB (a `grub-mkstandalone` EFI image whose
//! `grub.cfg` is the system's entry plus `bootloader-glue grub-config`'s
//! fragment) or systemd-boot (a `system.conf` entry, first in its order,
//! whose name counts trial boots, and a `recovery.conf` entry); or Debian's U-Boot for QEMU x86_64 boots
//! `boot.scr` from the ESP (`bootloader-glue uboot-script`, then the
//! system's own boot commands), the disk on IDE.
//!
//! boot 1: the boot loader boots system 1.0, whose init runs
//! `bootloader-glue request --reboot` for the staged 2.0 (under
//! systemd-boot first `request`, `request`, `cancel`: efivarfs makes the
//! one-shot variable immutable, and each must get past that); boot 2: the boot
//! loader, seeing the instruction on cfg (GRUB) or the one-shot variable
//! (systemd-boot), boots the recovery, which installs 2.0 and reboots;
//! boot 3: the boot loader boots 2.0, whose init runs `bootloader-glue
//! status` and powers off.
//!
//! With the agent ([`Cycle::with_agent`]), boot 1 differs: 1.0's init
//! brings up the network (virtio on QEMU's user network) and runs
//! `reimage-agent install --reboot`, which downloads 2.0's bundle from a
//! static feed on the host, admits it and requests it. With a hawkBit
//! server ([`Cycle::with_hawkbit`]), the bundle comes from that server,
//! and 2.0, once it confirmed itself, runs `reimage-agent report`, which
//! tells the server the update succeeded.

use crate::artifacts;
use crate::scenario::{sample_rootfs_named, Suite, PRODUCT};
use crate::vm::{self, Finished};
use formats::config::Config;
use formats::result::Installed;
use image_builder::disk::{self, Fs, PartitionSpec};
use image_builder::image::{self, ImageRequest, Source};
use image_builder::payload::Compression;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What the running 1.0 does between requesting and rebooting.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Requests 2.0 and reboots.
    Good,
    /// Requests 2.0, then the staged signature is damaged before the
    /// reboot: the recovery must refuse it and the device come back on 1.0.
    BadSignatureAfterRequest,
    /// 2.0 is signed by a key the device does not trust: the running
    /// system's `request` refuses it and nothing is armed.
    UntrustedAtRequest,
    /// 2.0 installs but never confirms itself: each of its boots reboots
    /// at once, until the boot loader's count runs out and the recovery
    /// restores 1.0.
    Unconfirmed,
    /// 2.0 installs and confirms itself (`bootloader-glue confirm`), then
    /// reboots once more: a plain boot of 2.0.
    Confirms,
    /// Under [`Loader::GrubEnvOnly`] or [`Loader::UBoot`]: 2.0's first
    /// boot puts the boot loader's environment into the state a power cut
    /// between the recovery's removing the instruction and clearing the
    /// flag leaves with `trial-boots=1` (GRUB: `reimage_trial=1`; U-Boot:
    /// `bootlimit=1`, `bootcount=0`; and `reimage_update=1`) and reboots;
    /// once the recovery cleared the stale flag, 2.0 boots again and
    /// confirms itself.
    StaleFlag,
    /// Under [`Loader::UBootPair`]: 2.0 does not confirm, and on its first
    /// boot it tears the copy of the environment area on `ubootenv`, the
    /// one U-Boot's script has just written (as a power cut in the middle
    /// of that write would).
    TearsACopy,
    /// 2.0 is not staged: 1.0's agent downloads its bundle from the feed
    /// [`Cycle::with_agent`] serves (or the hawkBit server of
    /// [`Cycle::with_hawkbit`]), requests it and reboots.
    Agent,
}

/// The files of a static feed for the agent (`/<product>/latest`, the
/// bundle), as `(path, bytes)`.
pub type Feed = Vec<(String, Vec<u8>)>;

/// The hardware revision of the agent's cycle: 2.0's bundle is built for
/// it (`hardware-compatibility`), as a hawkBit server matches it against
/// the device's `hawkbit-hardware=`.
pub const HARDWARE: &str = "1.0";

/// Where the agent's cycle publishes 2.0's bundle.
enum Publish<'a> {
    /// A static feed: gets the feed, returns its base URL.
    Feed(Box<dyn FnOnce(Feed) -> String + 'a>),
    /// A hawkBit server, known before the systems are built: the
    /// `agent.conf` lines naming it (1.0's and 2.0's), and what puts the
    /// bundle (its path) on it.
    Hawkbit {
        conf: String,
        publish: Box<dyn FnOnce(&Path) + 'a>,
    },
}

/// The boot loader on the ESP.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    Grub,
    /// GRUB that cannot see cfg (the fragment looks for another label):
    /// only the `reimage_update` flag in a GRUB environment block on the
    /// recovery partition sends it to the recovery.
    GrubEnvOnly,
    SystemdBoot,
    /// U-Boot (`-bios u-boot.rom`), its boot script on the ESP; `request
    /// --bootloader uboot` also sets `reimage_update=1` in the environment
    /// area on the `ubootenv` partition, which the script imports: one
    /// copy, the older layout.
    UBoot,
    /// [`Loader::UBoot`] with the area a redundant pair: a copy on
    /// `ubootenv` and one on `ubootenv2`.
    UBootPair,
}

impl Loader {
    /// `bootloader-glue request --bootloader` for it.
    fn glue_name(self) -> &'static str {
        match self {
            Loader::Grub => "grub",
            Loader::GrubEnvOnly => "grubenv:/boot/grubenv",
            Loader::SystemdBoot => "systemd-boot",
            Loader::UBoot | Loader::UBootPair => "uboot:/etc/fw_env.config",
        }
    }

    fn is_uboot(self) -> bool {
        matches!(self, Loader::UBoot | Loader::UBootPair)
    }

    /// `fw_env.config` for the environment area (partitions 6 and 7 as
    /// the running system and the recovery see them, on IDE).
    fn fw_env_config(self) -> &'static str {
        match self {
            Loader::UBootPair => "/dev/sda6 0x0 0x4000\n/dev/sda7 0x0 0x4000\n",
            _ => "/dev/sda6 0x0 0x4000\n",
        }
    }
}

/// Debian's U-Boot for QEMU x86_64, from `u-boot-qemu`.
pub const UBOOT_ROM: &str = "/usr/lib/u-boot/qemu-x86_64/u-boot.rom";

/// What the kernel needs under this U-Boot: its MTRRs cover no RAM (the
/// kernel would trim all of it), its EFI runtime services fault in
/// `SetVirtualAddressMap`, and the DSDT it hands over is gone by the time
/// the kernel loads the ACPI namespace, so the PCI bus is found without
/// ACPI.
const UBOOT_KERNEL_ARGS: &str = "disable_mtrr_trim efi=noruntime pci=noacpi";

/// The recovery's boot flag under systemd-boot: the one-shot variable
/// (`recovery.conf`), and trial boots counted in the name of `system.conf`
/// on the partition `esp`.
const SYSTEMD_BOOT_FLAG: &str = "systemd-boot:::system.conf:esp:";

/// systemd-boot's EFI binary, from Debian's `systemd-boot-efi`.
pub const SYSTEMD_BOOT: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";

pub struct Cycle {
    pub dir: tempfile::TempDir,
    pub disk: PathBuf,
    vars: PathBuf,
    loader: Loader,
    /// The guest has a network card (the agent's cycle).
    net: bool,
}

/// Partition numbers of the layout, for the kernel's `root=`.
const LAYOUT: [(&str, u64, Fs); 5] = [
    ("esp", 34, Fs::Fat),
    ("recovery", 24, Fs::Ext4),
    ("cfg", 8, Fs::Ext4),
    ("system", 48, Fs::Ext4),
    ("storage", 32, Fs::Ext4),
];

const INIT: &str = r#"#!/bin/sh
# The sample system's init: asks for the staged update once, reports the
# state of updates otherwise, and powers off.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /cfg /storage /boot
# NVMe, or IDE under U-Boot.
if [ -b /dev/sda ]; then p=/dev/sda; else p=/dev/nvme0n1p; fi
mount -t ext4 ${p}3 /cfg
mount -t ext4 ${p}5 /storage
mount -t ext4 ${p}2 /boot
insmod /lib/modules/efivarfs.ko 2>/dev/null
[ -d /sys/firmware/efi/efivars ] && mount -t efivarfs efivarfs /sys/firmware/efi/efivars
# The ESP, where systemd-boot's entries count trial boots.
if [ -f /lib/modules/fat.order ]; then
  for m in $(cat /lib/modules/fat.order); do insmod /lib/modules/$m; done
  mkdir -p /efi
  mount -t vfat ${p}1 /efi
fi
echo "system: running demo $(cat /etc/version)"
loader=$(cat /etc/bootloader)
# QEMU's user network: the host is 10.0.2.2.
net_up() {
  for m in $(cat /lib/modules/net.order); do insmod /lib/modules/$m; done
  /bin/busybox ip link set lo up
  /bin/busybox ip addr add 10.0.2.15/24 dev eth0
  /bin/busybox ip link set eth0 up
  /bin/busybox ip route add default via 10.0.2.2
}
if [ -f /etc/reimage/agent.conf ] && [ ! -f /cfg/update/result ]; then
  net_up
  /usr/bin/reimage-agent install --reboot
  echo "system: agent exit code $?"
fi
if [ -f /etc/request-update ] && [ ! -f /cfg/update/result ]; then
  if [ -f /etc/damage-after-request ]; then
    /usr/bin/bootloader-glue request --manifest storage:updates/demo-2.0.manifest --cfg /cfg --bootloader "$loader"
    echo "system: damaging the staged signature before the reboot"
    cat /storage/updates/damaged.minisig > /storage/updates/demo-2.0.manifest.minisig
    sync
    reboot -f
  fi
  if [ -f /etc/request-cancel-first ]; then
    # What an operator may do on real firmware, where efivarfs marks the
    # one-shot variable immutable: ask twice, cancel, ask again.
    for step in request request cancel; do
      if [ $step = request ]; then
        /usr/bin/bootloader-glue request --manifest storage:updates/demo-2.0.manifest --cfg /cfg --bootloader "$loader"
        code=$?
        # The proof that efivarfs made it immutable: a plain rm fails.
        if /bin/busybox rm -f /sys/firmware/efi/efivars/LoaderEntryOneShot-* 2>/dev/null; then
          echo "system: the one-shot variable is removable"
        else
          echo "system: the one-shot variable is immutable"
        fi
        (exit $code)
      else
        /usr/bin/bootloader-glue cancel --cfg /cfg --bootloader "$loader"
      fi
      echo "system: $step exit code $?"
    done
    if ls /sys/firmware/efi/efivars/LoaderEntryOneShot-* >/dev/null 2>&1; then
      echo "system: the one-shot variable is still set"
    else
      echo "system: the one-shot variable is gone"
    fi
  fi
  /usr/bin/bootloader-glue request --manifest storage:updates/demo-2.0.manifest --cfg /cfg --bootloader "$loader" --reboot
fi
if [ -f /cfg/update/trial ]; then
  if [ -f /etc/stale-flag ] && [ ! -f /cfg/stale-flag-left ]; then
    echo "system: leaving the flag set with 1 trial boot left, as a power cut in the recovery would"
    cat /etc/stale-flag > $(cat /etc/stale-flag-path)
    touch /cfg/stale-flag-left
    sync
    reboot -f
  fi
  if [ -f /etc/tear-uboot-copy ] && [ ! -f /cfg/tore-uboot-copy ]; then
    copy=$(cat /etc/tear-uboot-copy)
    echo "system: tearing the environment copy on $copy, as a power cut in its write would"
    printf 'torn' | /bin/busybox dd of=$copy bs=1 seek=64 conv=notrunc 2>/dev/null
    touch /cfg/tore-uboot-copy
  fi
  if [ -f /etc/confirm ]; then
    /usr/bin/bootloader-glue confirm --cfg /cfg
    echo "system: confirm exit code $?"
    if [ -f /etc/reboot-after-confirm ]; then
      sync
      reboot -f
    fi
  else
    echo "system: on trial, not confirming: rebooting"
    sync
    reboot -f
  fi
fi
# The new system tells the agent's source how the update went.
if [ -f /etc/reimage/agent.conf ] && [ -f /cfg/update/action ]; then
  net_up
  /usr/bin/reimage-agent report
  echo "system: report exit code $?"
fi
/usr/bin/bootloader-glue status --cfg /cfg
echo "system: status exit code $?"
sync
# U-Boot gives the kernel no ACPI to power off with: the harness ends
# the guest at this line.
echo "system: powering off"
poweroff -f
"#;

impl Cycle {
    pub fn new(variant: Variant) -> Cycle {
        Cycle::with_loader(variant, Loader::Grub)
    }

    pub fn with_loader(variant: Variant, loader: Loader) -> Cycle {
        Cycle::make(variant, loader, None, Box::new(|_| {}))
    }

    /// The agent's cycle under GRUB: `serve` gets the feed (2.0's bundle
    /// and `latest`), serves it on the host's 127.0.0.1 and returns the
    /// base URL the guest uses (`http://10.0.2.2:PORT`).
    pub fn with_agent(serve: impl FnOnce(Feed) -> String) -> Cycle {
        Cycle::with_agent_and(serve, |_| {})
    }

    /// [`Cycle::with_agent`], with `change_2_0` applied to 2.0's tree
    /// before its image is built (e.g. a large file, for a long download).
    pub fn with_agent_and(
        serve: impl FnOnce(Feed) -> String,
        change_2_0: impl FnOnce(&Path),
    ) -> Cycle {
        Cycle::make(
            Variant::Agent,
            Loader::Grub,
            Some(Publish::Feed(Box::new(serve))),
            Box::new(change_2_0),
        )
    }

    /// The agent's cycle under GRUB with a hawkBit server the caller runs:
    /// `agent_conf` is the `source=hawkbit` and `hawkbit-*` lines of 1.0's
    /// and 2.0's `agent.conf` (the server as the guest sees it,
    /// `http://10.0.2.2:PORT`; `hawkbit-hardware=`[`HARDWARE`]); `publish`
    /// gets 2.0's bundle and offers it to the device (upload, rollout).
    pub fn with_hawkbit(agent_conf: &str, publish: impl FnOnce(&Path)) -> Cycle {
        Cycle::make(
            Variant::Agent,
            Loader::Grub,
            Some(Publish::Hawkbit {
                conf: agent_conf.to_string(),
                publish: Box::new(publish),
            }),
            Box::new(|_| {}),
        )
    }

    fn make<'a>(
        variant: Variant,
        loader: Loader,
        publish: Option<Publish<'a>>,
        change_2_0: Box<dyn FnOnce(&Path) + 'a>,
    ) -> Cycle {
        let suite = Suite::get();
        let dir = tempfile::tempdir_in(artifacts::workspace().join("target")).unwrap();
        let d = dir.path();
        let glue = artifacts::static_bootloader_glue().unwrap_or_else(|e| panic!("{e}"));
        let system = |version: &str, name: &str, request: bool| {
            let root = sample_rootfs_named(d, version, name);
            fs::write(root.join("sbin/init"), INIT).unwrap();
            chmod(&root.join("sbin/init"), 0o755);
            fs::copy(&glue, root.join("usr/bin/bootloader-glue")).unwrap();
            fs::create_dir_all(root.join("etc/reimage/keys")).unwrap();
            fs::copy(&suite.key_pub, root.join("etc/reimage/keys/vendor.pub")).unwrap();
            fs::write(
                root.join("etc/reimage/recovery.conf"),
                Config::for_product(PRODUCT).render(),
            )
            .unwrap();
            fs::create_dir_all(root.join("lib/modules")).unwrap();
            let module = artifacts::efivarfs_module().unwrap_or_else(|e| panic!("{e}"));
            fs::copy(module, root.join("lib/modules/efivarfs.ko")).unwrap();
            if loader == Loader::SystemdBoot {
                install_modules(&root, "fat", artifacts::fat_modules());
            }
            fs::write(root.join("etc/bootloader"), loader.glue_name()).unwrap();
            fs::write(root.join("etc/fw_env.config"), loader.fw_env_config()).unwrap();
            if request {
                fs::write(root.join("etc/request-update"), "").unwrap();
                if loader == Loader::SystemdBoot {
                    fs::write(root.join("etc/request-cancel-first"), "").unwrap();
                }
                if variant == Variant::BadSignatureAfterRequest {
                    fs::write(root.join("etc/damage-after-request"), "").unwrap();
                }
            }
            root
        };
        let v1 = system("1.0", "system", variant != Variant::Agent);
        let v2 = system("2.0", "v2", false);
        change_2_0(&v2);
        // With a server that takes reports, 2.0 has the agent too.
        if let Some(Publish::Hawkbit { conf, .. }) = &publish {
            install_agent(&v2, conf);
        }
        // A new system confirms itself once it is up, as the systemd unit
        // in docs/reliability.md does.
        if !matches!(variant, Variant::Unconfirmed | Variant::TearsACopy) {
            fs::write(v2.join("etc/confirm"), "").unwrap();
        }
        if variant == Variant::Confirms {
            fs::write(v2.join("etc/reboot-after-confirm"), "").unwrap();
        }
        if variant == Variant::TearsACopy {
            fs::write(v2.join("etc/tear-uboot-copy"), "/dev/sda6").unwrap();
        }
        if variant == Variant::StaleFlag {
            let (path, bytes) = if loader == Loader::UBoot {
                let mut stale = formats::ubootenv::UbootEnv::default();
                for (name, value) in [
                    (formats::bootflag::FLAG, "1"),
                    (formats::trial::UBOOT_UPGRADE_AVAILABLE, "1"),
                    (formats::trial::UBOOT_BOOTCOUNT, "0"),
                    (formats::trial::UBOOT_BOOTLIMIT, "1"),
                ] {
                    stale.set(name, value);
                }
                let size = bootloader_glue::uboot::ENV_SIZE as usize;
                ("/dev/sda6", stale.render_copy(size, None).unwrap())
            } else {
                let mut stale = formats::grubenv::GrubEnv::default();
                stale.set(formats::trial::GRUB_COUNTER, "1").unwrap();
                stale.set(formats::bootflag::FLAG, "1").unwrap();
                ("/boot/grubenv", stale.render().unwrap())
            };
            fs::write(v2.join("etc/stale-flag"), bytes).unwrap();
            fs::write(v2.join("etc/stale-flag-path"), path).unwrap();
        }

        let storage = d.join("storage");
        fs::create_dir_all(storage.join("updates")).unwrap();
        // The agent's 2.0 is published on the feed, not staged.
        let feed = d.join("feed");
        fs::create_dir_all(&feed).unwrap();
        let build = |rootfs: &Path, version: &str, key: PathBuf| {
            let out_dir = if variant == Variant::Agent && version == "2.0" {
                feed.clone()
            } else {
                storage.join("updates")
            };
            let source = Source::Rootfs(rootfs.to_path_buf());
            image::build(&ImageRequest {
                compression: Compression {
                    level: 3,
                    threads: 2,
                },
                ..ImageRequest::fixture(source, PRODUCT, version, &key, &out_dir)
            })
            .unwrap()
        };
        // The installed version's image: what a failed update is
        // restored from (`request` refuses without it).
        build(&v1, "1.0", suite.key_sec.clone());
        let image = build(
            &v2,
            "2.0",
            if variant == Variant::UntrustedAtRequest {
                image_builder::keygen::keygen(&d.join("stranger"))
                    .unwrap()
                    .1
            } else {
                suite.key_sec.clone()
            },
        );
        if let Some(publish) = publish {
            let bundle = image_builder::bundle::build(&image_builder::bundle::BundleRequest {
                manifest: image.manifest_path.clone(),
                out_dir: feed.clone(),
                hardware: vec![HARDWARE.into()],
            })
            .unwrap_or_else(|e| panic!("bundle: {e}"));
            let conf = match publish {
                Publish::Feed(serve) => {
                    let name = bundle.path.file_name().unwrap().to_string_lossy();
                    let url = serve(vec![
                        (format!("/{PRODUCT}/latest"), b"2.0\n".to_vec()),
                        (
                            format!("/{PRODUCT}/{name}"),
                            fs::read(&bundle.path).unwrap(),
                        ),
                    ]);
                    format!("feed={url}\n")
                }
                Publish::Hawkbit { conf, publish } => {
                    publish(&bundle.path);
                    conf
                }
            };
            install_agent(&v1, &conf);
        }
        let sig = fs::read_to_string(&image.signature_path).unwrap();
        let mut lines: Vec<String> = sig.lines().map(String::from).collect();
        let mut line: Vec<char> = lines[1].chars().collect();
        line[40] = if line[40] == 'A' { 'B' } else { 'A' };
        lines[1] = line.into_iter().collect();
        fs::write(
            storage.join("updates/damaged.minisig"),
            lines.join("\n") + "\n",
        )
        .unwrap();

        let cfg = d.join("cfg");
        fs::create_dir_all(cfg.join("update")).unwrap();
        fs::write(cfg.join("hostname"), "demo-1\n").unwrap();
        // The recovery clears U-Boot's flag through this one.
        fs::write(cfg.join("fw_env.config"), loader.fw_env_config()).unwrap();
        let installed = Installed {
            product: PRODUCT.into(),
            version: "1.0".into(),
        };
        fs::write(cfg.join(formats::cfg::INSTALLED), installed.render()).unwrap();

        let recovery = d.join("recovery");
        fs::create_dir_all(&recovery).unwrap();
        fs::copy(&suite.kernel, recovery.join("vmlinuz")).unwrap();
        fs::copy(&suite.initramfs, recovery.join("initramfs.img")).unwrap();

        let esp = d.join("esp");
        fs::create_dir_all(esp.join("EFI/BOOT")).unwrap();
        match loader {
            Loader::Grub | Loader::GrubEnvOnly => {
                let grub_cfg = d.join("grub.cfg");
                fs::write(&grub_cfg, grub_cfg_text(loader)).unwrap();
                run_tool(Command::new("grub-mkstandalone")
                    .args([
                        "-O",
                        "x86_64-efi",
                        "--modules=part_gpt ext2 fat search test echo linux normal loadenv serial terminal",
                    ])
                    .arg("-o")
                    .arg(esp.join("EFI/BOOT/BOOTX64.EFI"))
                    .arg(format!("boot/grub/grub.cfg={}", grub_cfg.display())),
                    "grub-efi-amd64-bin grub-common");
            }
            Loader::SystemdBoot => {
                fs::copy(SYSTEMD_BOOT, esp.join("EFI/BOOT/BOOTX64.EFI"))
                    .expect("systemd-boot is missing: apt-get install systemd-boot-efi");
                fs::create_dir_all(esp.join("loader/entries")).unwrap();
                // No `default`: systemd-boot boots the first entry in its
                // order, which is the system's (entries sort by name,
                // descending) unless its tries ran out (`system+0-N.conf`
                // sorts last): then the recovery's.
                fs::write(esp.join("loader/loader.conf"), "timeout 0\n").unwrap();
                fs::write(
                    esp.join("loader/entries/system.conf"),
                    "title System\nlinux /vmlinuz\noptions root=/dev/nvme0n1p4 rw rootwait console=ttyS0 panic=-1\n",
                )
                .unwrap();
                fs::write(
                    esp.join("loader/entries/recovery.conf"),
                    format!(
                        "title Recovery\nlinux /vmlinuz\ninitrd /initramfs.img\n\
                         options console=ttyS0 panic=-1 recovery.bootflag={SYSTEMD_BOOT_FLAG}\n"
                    ),
                )
                .unwrap();
                fs::copy(&suite.kernel, esp.join("vmlinuz")).unwrap();
                fs::copy(&suite.initramfs, esp.join("initramfs.img")).unwrap();
            }
            Loader::UBoot | Loader::UBootPair => {
                fs::remove_dir_all(esp.join("EFI")).unwrap();
                let script = d.join("boot.cmd");
                fs::write(&script, uboot_script_text()).unwrap();
                run_tool(
                    Command::new("mkimage")
                        .args([
                            "-A", "x86", "-O", "linux", "-T", "script", "-C", "none", "-d",
                        ])
                        .arg(&script)
                        .arg(esp.join("boot.scr")),
                    "u-boot-tools",
                );
                system_initrd(&recovery.join("system-initrd.img"));
            }
        }

        let contents = [
            Some(esp),
            Some(recovery),
            Some(cfg),
            Some(v1),
            Some(storage),
        ];
        let mut layout: Vec<PartitionSpec> = LAYOUT
            .iter()
            .zip(contents)
            .map(|((name, size, fs), dir)| PartitionSpec {
                name: name.to_string(),
                size: size << 20,
                fs: *fs,
                contents: dir,
            })
            .collect();
        let env_parts: &[&str] = match loader {
            Loader::UBoot => &["ubootenv"],
            Loader::UBootPair => &["ubootenv", "ubootenv2"],
            _ => &[],
        };
        for name in env_parts {
            layout.push(PartitionSpec {
                name: name.to_string(),
                size: 1 << 20,
                fs: Fs::Raw,
                contents: None,
            });
        }
        let disk_path = d.join("disk.img");
        let placed = disk::build(&disk_path, &layout).unwrap_or_else(|e| panic!("disk: {e}"));
        if let Some(area) = placed.iter().find(|p| p.name == "ubootenv") {
            write_uboot_env(&disk_path, area.offset, loader == Loader::UBootPair);
        }
        let vars = d.join("OVMF_VARS.fd");
        fs::copy(vm::OVMF_VARS, &vars).expect("OVMF_VARS.fd is missing: apt-get install ovmf");
        Cycle {
            dir,
            disk: disk_path,
            vars,
            loader,
            net: variant == Variant::Agent,
        }
    }

    /// Runs the three boots (until the guest powers off).
    pub fn run(&self, echo: bool) -> Finished {
        self.boot(echo, None)
    }

    /// Runs the boots until the console shows `marker`, and cuts the power
    /// (SIGKILL to QEMU) `after` that; the disk and the EFI variables stay
    /// for the next [`Cycle::run`].
    pub fn run_cut(&self, marker: &str, after: Duration) -> Finished {
        self.boot(false, Some((marker.to_string(), after)))
    }

    fn boot(&self, echo: bool, cut: Option<(String, Duration)>) -> Finished {
        let mut boot = vm::Boot::new(
            Path::new("/"),
            Path::new("/"),
            &self.disk,
            self.dir.path().join("console.log"),
        );
        boot.direct = None;
        if self.loader.is_uboot() {
            boot.bios = Some(UBOOT_ROM.into());
            boot.until = Some("system: powering off".into());
        } else {
            boot.efi_vars = Some(self.vars.clone());
        }
        boot.timeout = Duration::from_secs(600);
        boot.echo = echo;
        boot.user_net = self.net;
        boot.cut = cut;
        let finished = vm::boot(&boot);
        vm::keep_console(self.dir.path(), "cycle-", &finished.console);
        finished
    }

    pub fn inspect(&self) -> crate::inspect::Disk {
        crate::inspect::Disk::new(&self.disk)
    }

    /// Asserts that `run` updated 1.0 to 2.0: the boots of [`UPDATED`],
    /// the request, the install and 2.0's status exiting 0 on the console;
    /// 2.0 on system and no instruction left on cfg.
    pub fn assert_updated(&self, run: &Finished) {
        assert!(run.ended, "the guest did not power off:\n{}", run.tail());
        assert_eq!(boots(run), UPDATED, "{}", run.tail());
        for line in [
            "update to demo 2.0 requested",
            "recovery: done: 2.0 installed",
            "system: status exit code 0",
        ] {
            assert!(
                run.says(line),
                "no {line:?} on the console:\n{}",
                run.tail()
            );
        }
        let disk = self.inspect();
        let system = disk.partition("system");
        assert_eq!(system.read_string("/etc/version").as_deref(), Some("2.0\n"));
        assert!(!disk.partition("cfg").exists("/update/instruction"));
    }
}

/// Runs a host tool that builds a boot loader's files; fails naming the
/// package when it is missing.
fn run_tool(cmd: &mut Command, package: &str) {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e}: apt-get install {package}"));
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The boots of an update that goes through: 1.0, the recovery, 2.0.
pub const UPDATED: [&str; 5] = [
    "reimage: booting the system",
    "system: running demo 1.0",
    "reimage: booting the recovery",
    "reimage: booting the system",
    "system: running demo 2.0",
];

/// The boot loader's and the systems' lines of a run, in order.
pub fn boots(run: &Finished) -> Vec<&str> {
    run.console
        .lines()
        .filter_map(|l| {
            // GRUB's lines may carry terminal escapes before the text.
            let at = l
                .find("reimage: booting")
                .or_else(|| l.find("system: running"))?;
            Some(&l[at..])
        })
        .collect()
}

/// The static agent on the system at `root`, with the network modules and
/// an `agent.conf` of the source's lines `source_conf` (the rest: the
/// defaults, which fit this layout; little free space asked of the small
/// storage partition).
fn install_agent(root: &Path, source_conf: &str) {
    let agent = artifacts::static_agent().unwrap_or_else(|e| panic!("{e}"));
    fs::copy(agent, root.join("usr/bin/reimage-agent")).unwrap();
    install_modules(root, "net", artifacts::net_modules());
    fs::write(
        root.join("etc/reimage/agent.conf"),
        format!("{source_conf}min-free=1M\n"),
    )
    .unwrap();
}

/// Kernel modules on the system at `root`, with `lib/modules/KIND.order`,
/// which its init loads them by.
fn install_modules(root: &Path, kind: &str, modules: Result<Vec<PathBuf>, String>) {
    let modules = modules.unwrap_or_else(|e| panic!("{e}"));
    let mut order = String::new();
    for module in modules {
        let name = module.file_name().unwrap().to_string_lossy().into_owned();
        fs::copy(&module, root.join("lib/modules").join(&name)).unwrap();
        order += &format!("{name}\n");
    }
    fs::write(
        root.join("lib/modules").join(format!("{kind}.order")),
        order,
    )
    .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The system's own entry (a distribution's), then the fragment of
/// `bootloader-glue grub-config`, which makes the recovery the default
/// while an instruction waits.
fn grub_cfg_text(loader: Loader) -> String {
    let mut config = bootloader_glue::grub::GrubConfig::default();
    if loader == Loader::GrubEnvOnly {
        config.cfg_label = "not-cfg".into();
        config.grubenv = Some(("recovery".into(), "/grubenv".into()));
        config.cmdline += " recovery.bootflag=grubenv:recovery:grubenv";
    }
    let fragment = config.fragment();
    format!(
        r#"set timeout=0
set default=system
serial --unit=0 --speed=115200
terminal_output serial
menuentry "System" --id system {{
  search --no-floppy --label recovery --set=root
  echo "reimage: booting the system"
  linux /vmlinuz root=/dev/nvme0n1p4 rw rootwait console=ttyS0 panic=-1
}}
{fragment}"#
    )
}

/// `boot.scr`'s source: `bootloader-glue uboot-script`'s script (the
/// recovery told to clear U-Boot's flag through cfg's `fw_env.config`),
/// then the system's own boot: the kernel from the recovery partition with
/// the system's initramfs, which loads the IDE disk's modules.
fn uboot_script_text() -> String {
    let script = bootloader_glue::uboot::UbootScript {
        cmdline: format!(
            "console=ttyS0 panic=-1 {UBOOT_KERNEL_ARGS} recovery.bootflag=uboot:cfg:fw_env.config"
        ),
        ..Default::default()
    };
    format!(
        r#"{reimage}echo "reimage: booting the system"
load ${{devtype}} ${{devnum}}:${{reimage_recovery}} ${{kernel_addr_r}} /vmlinuz
setenv bootargs "initrd=/system-initrd.img root=/dev/sda4 rw console=ttyS0 panic=-1 {UBOOT_KERNEL_ARGS}"
bootefi ${{kernel_addr_r}}
"#,
        reimage = script.script()
    )
}

/// The environment area as a device has it once U-Boot's defaults were
/// saved: a valid copy (`request` never writes over a blank area); of a
/// pair, the first copy (flags 1), the second blank.
fn write_uboot_env(disk: &Path, offset: u64, pair: bool) {
    use std::io::{Seek, SeekFrom, Write};
    let mut env = formats::ubootenv::UbootEnv::default();
    env.set("bootlimit", "3");
    let area = env
        .render_copy(bootloader_glue::uboot::ENV_SIZE as usize, pair.then_some(1))
        .unwrap();
    let mut file = fs::OpenOptions::new().write(true).open(disk).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&area).unwrap();
}

/// The system's initramfs under U-Boot (a distribution's does the same):
/// busybox and the IDE disk's modules; its `/init` loads them, mounts
/// `root=` and hands over to the system's `/sbin/init`.
fn system_initrd(out: &Path) {
    let modules = artifacts::ide_disk_modules().unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = modules
        .iter()
        .map(|m| m.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let init = format!(
        r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for m in {names}; do /bin/busybox insmod /lib/modules/$m; done
for arg in $(/bin/busybox cat /proc/cmdline); do
  case "$arg" in root=*) root="${{arg#root=}}" ;; esac
done
n=0
while [ ! -b "$root" ] && [ $n -lt 200 ]; do /bin/busybox sleep 0.1; n=$((n+1)); done
/bin/busybox mount -t ext4 -o rw "$root" /newroot
/bin/busybox umount /dev
/bin/busybox umount /proc
exec /bin/busybox switch_root /newroot /sbin/init
"#,
        names = names.join(" ")
    );
    let mut cpio = image_builder::cpio::CpioWriter::new(fs::File::create(out).unwrap());
    for dir in ["bin", "dev", "proc", "newroot", "lib", "lib/modules"] {
        cpio.dir(dir).unwrap();
    }
    cpio.char_device("dev/console", 0o600, 5, 1).unwrap();
    cpio.file(
        "bin/busybox",
        0o755,
        &fs::read(crate::scenario::busybox()).unwrap(),
    )
    .unwrap();
    cpio.file("init", 0o755, init.as_bytes()).unwrap();
    for (module, name) in modules.iter().zip(&names) {
        cpio.file(
            &format!("lib/modules/{name}"),
            0o644,
            &fs::read(module).unwrap(),
        )
        .unwrap();
    }
    cpio.finish().unwrap();
}
