//! The U-Boot boot script that boots the recovery while an update
//! instruction is on `cfg`: U-Boot finds the partitions by their GPT names
//! (`part number`), tests for `update/instruction` on `cfg` (`test -e`),
//! imports `reimage_update` from an environment area on a raw partition
//! (`env import -c`, the CRC-checked format `fw_printenv` reads), and boots
//! the recovery's kernel with `bootefi` (the kernel's EFI stub loads the
//! initramfs named by `initrd=` from the kernel's own partition). It
//! returns when there is nothing to do, so the system's own boot commands
//! follow it in `boot.scr`.

/// Where the recovery is, and what it boots with.
pub struct UbootScript {
    /// GPT name of the partition holding the recovery's kernel and
    /// initramfs (ext4 or FAT).
    pub recovery_part: String,
    /// GPT name of the cfg partition.
    pub cfg_part: String,
    /// GPT name of the raw partition whose first bytes are the
    /// environment area (one copy, at offset 0, [`ENV_SIZE`] bytes).
    pub env_part: String,
    pub kernel: String,
    pub initrd: String,
    pub cmdline: String,
}

/// The variables the script keeps in the environment area: the flag and
/// U-Boot's boot counting. When the script counts, it writes the area with
/// these alone.
pub const AREA_VARIABLES: [&str; 4] = [
    formats::bootflag::FLAG,
    formats::trial::UBOOT_UPGRADE_AVAILABLE,
    formats::trial::UBOOT_BOOTCOUNT,
    formats::trial::UBOOT_BOOTLIMIT,
];

/// The size of the environment area the script reads: `fw_env.config`'s
/// SIZE for it (`DEVICE 0x0 0x4000`).
pub const ENV_SIZE: u32 = 0x4000;

impl Default for UbootScript {
    fn default() -> UbootScript {
        UbootScript {
            recovery_part: "recovery".into(),
            cfg_part: "cfg".into(),
            env_part: "ubootenv".into(),
            kernel: "/vmlinuz".into(),
            initrd: "/initramfs.img".into(),
            cmdline: "console=ttyS0 panic=-1".into(),
        }
    }
}

impl UbootScript {
    /// The script's source, for `mkimage -T script`.
    pub fn script(&self) -> String {
        format!(
            r#"# reimage: boot the recovery while an update instruction is on cfg,
# and count a new system's trial boots. The start of boot.scr (mkimage -A
# x86 -O linux -T script -C none -d FILE boot.scr); it returns when there
# is nothing to do.
setenv reimage_update
setenv upgrade_available
setenv bootcount
setenv bootlimit
setenv altbootcmd 'echo "reimage: booting the recovery"; load ${{devtype}} ${{devnum}}:${{reimage_recovery}} ${{kernel_addr_r}} {kernel}; setenv bootargs "initrd={initrd} {cmdline}"; bootefi ${{kernel_addr_r}}'
part number ${{devtype}} ${{devnum}} {recovery} reimage_recovery
part number ${{devtype}} ${{devnum}} {cfg} reimage_cfg
if part start ${{devtype}} ${{devnum}} {env} reimage_env; then
  if ${{devtype}} read ${{ramdisk_addr_r}} ${{reimage_env}} {blocks:x} && env import -c ${{ramdisk_addr_r}} {size:x} {vars}; then
    if test "${{reimage_update}}" = 1; then
      echo "reimage: reimage_update=1 in the environment on {env}"
    fi
  else
    echo "reimage: no valid environment on {env}"
  fi
fi
if test -e ${{devtype}} ${{devnum}}:${{reimage_cfg}} /update/instruction; then
  echo "reimage: update/instruction on {cfg}"
  setenv reimage_update 1
fi
# A boot sent to the recovery (the instruction, the flag) is not a trial
# boot: it is not counted.
if test "${{reimage_update}}" = 1; then
  run altbootcmd
fi
if test "${{upgrade_available}}" = 1; then
  # U-Boot's boot counting (CONFIG_BOOTCOUNT_LIMIT) for a U-Boot without
  # it: one more boot in bootcount, saved to the area before booting.
  setenv reimage_next 99
  setenv reimage_prev 0
  for n in 1 2 3 4 5 6 7 8 9 10; do
    if test "${{reimage_prev}}" = "${{bootcount}}"; then setenv reimage_next ${{n}}; fi
    setenv reimage_prev ${{n}}
  done
  setenv bootcount ${{reimage_next}}
  env export -c -s {size:x} ${{ramdisk_addr_r}} {vars}
  ${{devtype}} write ${{ramdisk_addr_r}} ${{reimage_env}} {blocks:x}
  echo "reimage: trial boot ${{bootcount}} of ${{bootlimit}}"
  if test ${{bootcount}} -gt ${{bootlimit}}; then
    echo "reimage: bootcount ${{bootcount}} > bootlimit ${{bootlimit}}: altbootcmd"
    run altbootcmd
  fi
fi
"#,
            recovery = self.recovery_part,
            cfg = self.cfg_part,
            env = self.env_part,
            blocks = ENV_SIZE / 512,
            size = ENV_SIZE,
            kernel = self.kernel,
            initrd = self.initrd,
            cmdline = self.cmdline,
            vars = AREA_VARIABLES.join(" "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_script_is_the_one_printed() {
        assert_eq!(
            crate::documented_block("`bootloader-glue uboot-script` prints it:"),
            UbootScript::default().script()
        );
    }

    #[test]
    fn the_script_tests_for_the_instruction_and_reads_the_whole_area() {
        let text = UbootScript::default().script();
        assert!(text.contains("test -e ${devtype} ${devnum}:${reimage_cfg} /update/instruction"));
        // 0x4000 bytes are 0x20 blocks of 512 bytes: U-Boot's numbers are hex.
        assert!(text.contains("${reimage_env} 20 && env import -c ${ramdisk_addr_r} 4000 "));
        assert!(text.contains("setenv bootargs \"initrd=/initramfs.img console=ttyS0 panic=-1\""));
        assert!(text.contains(
            "env import -c ${ramdisk_addr_r} 4000 reimage_update upgrade_available bootcount bootlimit;"
        ));
    }

    /// A boot that the instruction or a one-shot flag left set (a power
    /// cut between removing the instruction and clearing the flag) sends
    /// to the recovery is not a trial boot: the script boots the recovery
    /// before it counts, so that with `bootlimit=1` the recovery still
    /// finds the boot left and clears the stale flag instead of restoring.
    #[test]
    fn a_boot_sent_to_the_recovery_is_not_counted() {
        let text = UbootScript::default().script();
        let to_recovery = text
            .find("if test \"${reimage_update}\" = 1; then\n  run altbootcmd\nfi")
            .expect("the flag's boot");
        let instruction = text.find("/update/instruction; then").unwrap();
        let count = text.find("setenv bootcount ${reimage_next}").unwrap();
        assert!(instruction < to_recovery && to_recovery < count, "{text}");
    }
}
