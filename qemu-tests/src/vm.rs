//! Boots a guest: QEMU with the kernel, an initramfs and the disk on NVMe,
//! `-no-reboot` so that the guest's reboot ends QEMU, the serial console
//! recorded to a file, and a timeout. TCG unless `QEMU_ACCEL=kvm`. Or a
//! firmware that boots the disk: OVMF (UEFI) or U-Boot (`-bios`, the disk
//! on IDE, the one interface both it and the kernel can boot from).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Boot<'a> {
    /// Kernel and initramfs booted directly (`-kernel`, `-initrd`), with
    /// `-no-reboot`; None: the firmware boots the disk (UEFI, OVMF) and
    /// the guest may reboot.
    pub direct: Option<(&'a Path, &'a Path)>,
    /// OVMF's variable store for a UEFI boot (a writable copy).
    pub efi_vars: Option<PathBuf>,
    /// A firmware image booted with `-bios` (U-Boot's `u-boot.rom`); the
    /// disk is then on IDE.
    pub bios: Option<PathBuf>,
    pub disk: &'a Path,
    /// Added to `console=ttyS0 panic=-1`.
    pub cmdline: String,
    pub timeout: Duration,
    /// Where the serial console is recorded.
    pub console: PathBuf,
    /// Prints the recovery's console lines as they come (for the demo).
    pub echo: bool,
    /// Ends the guest once the console shows this (a guest that stays up).
    pub until: Option<String>,
    /// Cuts the power (SIGKILL to QEMU) this long after the console shows
    /// the text.
    pub cut: Option<(String, Duration)>,
    /// A virtio network card on QEMU's user network: the guest (10.0.2.15)
    /// reaches the host's 127.0.0.1 as 10.0.2.2.
    pub user_net: bool,
}

/// OVMF's firmware code, from Debian's `ovmf`.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

impl Boot<'_> {
    pub fn new<'a>(
        kernel: &'a Path,
        initrd: &'a Path,
        disk: &'a Path,
        console: PathBuf,
    ) -> Boot<'a> {
        Boot {
            direct: Some((kernel, initrd)),
            efi_vars: None,
            bios: None,
            disk,
            cmdline: String::new(),
            timeout: Duration::from_secs(180),
            console,
            echo: false,
            until: None,
            cut: None,
            user_net: false,
        }
    }
}

#[derive(Debug)]
pub struct Finished {
    pub console: String,
    /// QEMU ended by itself (the guest rebooted or powered off).
    pub ended: bool,
    /// The harness ended it: `until` was seen, or the power was cut.
    pub stopped: bool,
    pub seconds: f64,
}

impl Finished {
    /// The console lines, for assertion messages.
    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub fn says(&self, text: &str) -> bool {
        self.console.contains(text)
    }

    /// The seconds a step reported, from its line `recovery: STEP… (N s)`.
    pub fn step_seconds(&self, step: &str) -> Option<f64> {
        let line = self
            .console
            .lines()
            .find(|l| l.starts_with(&format!("recovery: {step}")) && l.ends_with(" s)"))?;
        let open = line.rfind('(')?;
        line[open + 1..line.len() - 3].parse().ok()
    }

    /// One line for reports: total time, and the three steps of the update
    /// with their shares of the three (the verify share is the one that
    /// issue 11 cuts).
    pub fn timing(&self) -> String {
        let step = |name| self.step_seconds(name).unwrap_or(f64::NAN);
        let (verify, erase, extract) = (step("payload:"), step("erase: fresh"), step("extract: "));
        let sum = verify + erase + extract;
        let share = |s: f64| 100.0 * s / sum;
        format!(
            "{:.1} s from QEMU start to the guest's reboot; verify {verify:.1} s ({:.0}%), \
             erase {erase:.1} s ({:.0}%), extract and sync {extract:.1} s ({:.0}%)",
            self.seconds,
            share(verify),
            share(erase),
            share(extract)
        )
    }
}

/// Appends a boot's console to `target/qemu-consoles/NAME.log`, where it
/// stays after the test's own directory is gone (for failures and CI).
pub fn keep_console(dir: &Path, prefix: &str, console: &str) {
    let keep = crate::artifacts::workspace().join("target/qemu-consoles");
    let _ = std::fs::create_dir_all(&keep);
    let name = dir.file_name().map_or_else(String::new, |n| {
        n.to_string_lossy().trim_start_matches('.').to_string()
    });
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(keep.join(format!("{prefix}{name}.log")))
    {
        let _ = std::io::Write::write_all(&mut log, console.as_bytes());
    }
}

/// Fails unless QEMU is installed, naming the package.
pub fn require_qemu() {
    let found = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        found,
        "qemu-system-x86_64 is missing: apt-get install qemu-system-x86 (scripts/setup does)"
    );
}

/// Prints the complete lines of the console after byte `from` that come
/// from the recovery or say the machine restarts; returns where it stopped.
fn echo_new_lines(console: &Path, from: usize) -> usize {
    let bytes = std::fs::read(console).unwrap_or_default();
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n').map(|i| i + 1) else {
        return from;
    };
    if end <= from {
        return from;
    }
    for line in String::from_utf8_lossy(&bytes[from..end]).lines() {
        let shown = [
            "recovery:",
            "system:",
            "reimage:",
            "bootloader-glue",
            "update to",
            "OK:",
            "WARNING:",
            "CRITICAL:",
            "UNKNOWN:",
        ]
        .iter()
        .any(|p| line.starts_with(p))
            || line.contains("reimage: booting")
            || line.contains("] reboot: ")
            || line.contains("Run /init");
        if shown {
            println!("  | {line}");
        }
    }
    end
}

pub fn boot(b: &Boot) -> Finished {
    require_qemu();
    let accel = std::env::var("QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", &accel, "-cpu", "max", "-m", "512", "-smp", "1"])
        .args(["-display", "none", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", b.console.display()));
    match (&b.direct, &b.efi_vars, &b.bios) {
        (Some((kernel, initrd)), _, _) => {
            cmd.arg("-no-reboot")
                .arg("-kernel")
                .arg(kernel)
                .arg("-initrd")
                .arg(initrd)
                .arg("-append")
                .arg(format!("console=ttyS0 panic=-1 {}", b.cmdline));
        }
        (None, Some(vars), _) => {
            assert!(
                Path::new(OVMF_CODE).is_file(),
                "{OVMF_CODE} is missing: apt-get install ovmf (scripts/setup does)"
            );
            cmd.arg("-drive")
                .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
                .arg("-drive")
                .arg(format!("if=pflash,format=raw,file={}", vars.display()));
        }
        (None, None, Some(rom)) => {
            assert!(
                rom.is_file(),
                "{} is missing: apt-get install u-boot-qemu (scripts/setup does)",
                rom.display()
            );
            cmd.arg("-bios").arg(rom);
        }
        (None, None, None) => panic!("a boot needs a kernel or a firmware (OVMF, U-Boot)"),
    }
    if b.user_net {
        cmd.args(["-nic", "user,model=virtio-net-pci"]);
    }
    cmd.arg("-drive")
        // cache=unsafe: the guest's flushes are not turned into host
        // fdatasyncs, which on a busy host can outlast the guest's 30 s NVMe
        // timeout. What the guest wrote still reaches the host's page cache
        // at once, so killing QEMU loses exactly the guest's own unwritten
        // pages: a power cut, as the tests mean it.
        .arg(format!(
            "file={},if=none,format=raw,id=disk,cache=unsafe",
            b.disk.display()
        ))
        // U-Boot's distro boot scans IDE but not NVMe; everything else
        // boots from NVMe, which the cloud kernel has built in.
        .args(if b.bios.is_some() {
            ["-device", "ide-hd,drive=disk,bus=ide.0"]
        } else {
            ["-device", "nvme,serial=reimage0,drive=disk"]
        })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // A console left from an earlier boot of the same disk must not be
    // mistaken for this one's.
    let _ = std::fs::remove_file(&b.console);
    let start = Instant::now();
    let mut child = cmd.spawn().expect("start qemu-system-x86_64");
    let mut shown = 0;
    let mut cut_at: Option<Instant> = None;
    let console =
        || String::from_utf8_lossy(&std::fs::read(&b.console).unwrap_or_default()).into_owned();
    let (ended, stopped) = loop {
        if b.echo {
            shown = echo_new_lines(&b.console, shown);
        }
        if let Ok(Some(_)) = child.try_wait() {
            if b.echo {
                echo_new_lines(&b.console, shown);
            }
            break (true, false);
        }
        let stop_now = match (&b.until, &b.cut, cut_at) {
            (_, Some(_), Some(at)) => Instant::now() >= at,
            (_, Some((marker, after)), None) => {
                if console().contains(marker.as_str()) {
                    cut_at = Some(Instant::now() + *after);
                }
                false
            }
            (Some(marker), None, _) => console().contains(marker.as_str()),
            (None, None, _) => false,
        };
        if stop_now || start.elapsed() > b.timeout {
            // SIGKILL: for a cut, exactly a power cut for the guest.
            let _ = child.kill();
            let _ = child.wait();
            break (false, stop_now);
        }
        std::thread::sleep(Duration::from_millis(if b.cut.is_some() { 5 } else { 100 }));
    };
    Finished {
        console: console(),
        ended,
        stopped,
        seconds: start.elapsed().as_secs_f64(),
    }
}
