//! The U-Boot boot script that boots the recovery while an update
//! instruction is on `cfg`: U-Boot finds the partitions by their GPT names
//! (`part number`), tests for `update/instruction` on `cfg` (`test -e`),
//! imports `reimage_update` and U-Boot's boot counting from an environment
//! area on raw partitions (`env import -c`, the CRC-checked format
//! `fw_printenv` reads), and boots the recovery's kernel with `bootefi`
//! (the kernel's EFI stub loads the initramfs named by `initrd=` from the
//! kernel's own partition). It returns when there is nothing to do, so the
//! system's own boot commands follow it in `boot.scr`.
//!
//! The area is a redundant pair, as U-Boot keeps its own environment
//! (`CONFIG_SYS_REDUNDAND_ENVIRONMENT`): a copy at the start of each of
//! two partitions, each a CRC-32, a flags byte that goes one up with each
//! write, and the variables; the newest valid copy is read, and a count is
//! written to the other, so that a power cut in the middle of a write
//! leaves the newest copy as it was. Without the second partition the
//! area is one copy without a flags byte (the older layout), read and
//! written in place. This U-Boot has no `setexpr`: the script moves bytes
//! with `cp.b` at offsets from `base`, and finds the flags byte and the
//! one after it by a lookup with `itest.b`.

/// Where the recovery is, and what it boots with.
pub struct UbootScript {
    /// GPT name of the partition holding the recovery's kernel and
    /// initramfs (ext4 or FAT).
    pub recovery_part: String,
    /// GPT name of the cfg partition.
    pub cfg_part: String,
    /// GPT name of the raw partition whose first [`ENV_SIZE`] bytes are
    /// the environment area's first copy.
    pub env_part: String,
    /// GPT name of the raw partition whose first [`ENV_SIZE`] bytes are
    /// the second copy; without that partition the area is one copy.
    pub env_part2: String,
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

/// The size of each copy of the environment area: `fw_env.config`'s SIZE
/// (`DEVICE 0x0 0x4000`, a line for each copy).
pub const ENV_SIZE: u32 = 0x4000;

impl Default for UbootScript {
    fn default() -> UbootScript {
        UbootScript {
            recovery_part: "recovery".into(),
            cfg_part: "cfg".into(),
            env_part: "ubootenv".into(),
            env_part2: "ubootenv2".into(),
            kernel: "/vmlinuz".into(),
            initrd: "/initramfs.img".into(),
            cmdline: "console=ttyS0 panic=-1".into(),
        }
    }
}

impl UbootScript {
    /// The script's source, for `mkimage -T script`.
    pub fn script(&self) -> String {
        let bytes: Vec<String> = (0..=255u8).map(|n| format!("{n:02x}")).collect();
        format!(
            r#"# reimage: boot the recovery while an update instruction is on cfg,
# and count a new system's trial boots. The start of boot.scr (mkimage -A
# x86 -O linux -T script -C none -d FILE boot.scr); it returns when there
# is nothing to do. Scratch memory: {scratch:#x} bytes at ramdisk_addr_r
# and at kernel_addr_r, before the kernel is loaded.
setenv reimage_update
setenv upgrade_available
setenv bootcount
setenv bootlimit
setenv reimage_copy
setenv reimage_env2
setenv altbootcmd 'echo "reimage: booting the recovery"; load ${{devtype}} ${{devnum}}:${{reimage_recovery}} ${{kernel_addr_r}} {kernel}; setenv bootargs "initrd={initrd} {cmdline}"; bootefi ${{kernel_addr_r}}'
part number ${{devtype}} ${{devnum}} {recovery} reimage_recovery
part number ${{devtype}} ${{devnum}} {cfg} reimage_cfg
# The environment area: a redundant pair, a copy of {size:#x} bytes at the
# start of {env} and of {env2} (CRC-32, a flags byte one up with each
# write, the variables); or one copy on {env} (CRC-32, the variables: the
# older layout, also read as copy 0 of a pair with no valid copy).
if part start ${{devtype}} ${{devnum}} {env} reimage_env1; then
  if part start ${{devtype}} ${{devnum}} {env2} reimage_env2 && ${{devtype}} read ${{ramdisk_addr_r}} ${{reimage_env1}} {blocks:x} && ${{devtype}} read ${{kernel_addr_r}} ${{reimage_env2}} {blocks:x}; then
    # Copy 1 at ramdisk_addr_r, copy 2 at kernel_addr_r: each made into
    # what env import -c takes (CRC-32, the variables) {size:#x} bytes on,
    # and its flags byte moved to its start, for itest.b.
    for a in ${{ramdisk_addr_r}} ${{kernel_addr_r}}; do
      base ${{a}}
      cp.b 0 {size:x} 4
      cp.b 5 {shifted:x} {data:x}
      cp.b 4 0 1
    done
    base 0
    # Each flags byte, and the one after it (0 after ff), by lookup.
    setenv reimage_prev ff
    for n in {bytes}; do
      if itest.b *${{ramdisk_addr_r}} == 0x${{reimage_prev}}; then setenv reimage_flags1 ${{reimage_prev}}; setenv reimage_next1 ${{n}}; fi
      if itest.b *${{kernel_addr_r}} == 0x${{reimage_prev}}; then setenv reimage_flags2 ${{reimage_prev}}; setenv reimage_next2 ${{n}}; fi
      setenv reimage_prev ${{n}}
    done
    # U-Boot's rule: the higher flags byte is the newer copy; 0 follows ff.
    setenv reimage_newer 1
    if itest 0x${{reimage_flags2}} -gt 0x${{reimage_flags1}}; then setenv reimage_newer 2; fi
    if test "${{reimage_flags1}}${{reimage_flags2}}" = ff00; then setenv reimage_newer 2; fi
    if test "${{reimage_flags1}}${{reimage_flags2}}" = 00ff; then setenv reimage_newer 1; fi
    for a in ${{ramdisk_addr_r}} ${{kernel_addr_r}}; do
      base ${{a}}
      cp.b {size:x} 0 {import:x}
    done
    base 0
    # The newer copy if it is valid, else the older one (a copy that
    # fails the CRC imports nothing; one that passes sets the variables
    # it holds, and leaves the others as they are: unset).
    if test ${{reimage_newer}} = 2; then
      if env import -c ${{kernel_addr_r}} {import:x} {vars}; then
        setenv reimage_copy 2
      else
        if env import -c ${{ramdisk_addr_r}} {import:x} {vars}; then setenv reimage_copy 1; fi
      fi
    else
      if env import -c ${{ramdisk_addr_r}} {import:x} {vars}; then
        setenv reimage_copy 1
      else
        if env import -c ${{kernel_addr_r}} {import:x} {vars}; then setenv reimage_copy 2; fi
      fi
    fi
    if test -n "${{reimage_copy}}"; then
      echo "reimage: the environment from copy ${{reimage_copy}} ({env}, {env2})"
    fi
  fi
  if test -z "${{reimage_copy}}"; then
    if ${{devtype}} read ${{ramdisk_addr_r}} ${{reimage_env1}} {blocks:x} && env import -c ${{ramdisk_addr_r}} {size:x} {vars}; then
      setenv reimage_copy 0
    fi
  fi
fi
if test -n "${{reimage_copy}}"; then
  if test "${{reimage_update}}" = 1; then
    echo "reimage: reimage_update=1 in the environment on {env}"
  fi
else
  echo "reimage: no valid environment on {env}"
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
  # To the copy not read, its flags byte one ahead of the one read (a
  # pair whose copy 0 was read: to copy 2); one copy: over it.
  setenv reimage_to
  if test "${{reimage_copy}}" = 1; then setenv reimage_to ${{reimage_env2}}; setenv reimage_buf ${{kernel_addr_r}}; setenv reimage_flags ${{reimage_next1}}; fi
  if test "${{reimage_copy}}" = 2; then setenv reimage_to ${{reimage_env1}}; setenv reimage_buf ${{ramdisk_addr_r}}; setenv reimage_flags ${{reimage_next2}}; fi
  if test "${{reimage_copy}}" = 0 && test -n "${{reimage_env2}}"; then setenv reimage_to ${{reimage_env2}}; setenv reimage_buf ${{kernel_addr_r}}; setenv reimage_flags 01; fi
  if test -n "${{reimage_to}}"; then
    env export -c -s {import:x} ${{reimage_buf}} {vars}
    base ${{reimage_buf}}
    cp.b 4 {shifted:x} {data:x}
    cp.b {shifted:x} 5 {data:x}
    mw.b 4 ${{reimage_flags}}
    base 0
    ${{devtype}} write ${{reimage_buf}} ${{reimage_to}} {blocks:x}
  else
    env export -c -s {size:x} ${{ramdisk_addr_r}} {vars}
    ${{devtype}} write ${{ramdisk_addr_r}} ${{reimage_env1}} {blocks:x}
  fi
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
            env2 = self.env_part2,
            blocks = ENV_SIZE / 512,
            size = ENV_SIZE,
            scratch = 2 * ENV_SIZE,
            shifted = ENV_SIZE + 4,
            data = ENV_SIZE - 5,
            import = ENV_SIZE - 1,
            bytes = bytes.join(" "),
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
        assert!(text.contains("${reimage_env1} 20 && env import -c ${ramdisk_addr_r} 4000 "));
        assert!(text.contains("setenv bootargs \"initrd=/initramfs.img console=ttyS0 panic=-1\""));
        assert!(text.contains(
            "env import -c ${ramdisk_addr_r} 4000 reimage_update upgrade_available bootcount bootlimit;"
        ));
    }

    /// The area is a redundant pair, as U-Boot's own environment: both
    /// copies are read, the newer valid one is imported last, and a count
    /// is written to the other one only, with the flags byte one ahead.
    #[test]
    fn the_script_reads_both_copies_and_writes_the_older() {
        let text = UbootScript::default().script();
        for line in [
            "  if part start ${devtype} ${devnum} ubootenv2 reimage_env2 && ${devtype} read ${ramdisk_addr_r} ${reimage_env1} 20 && ${devtype} read ${kernel_addr_r} ${reimage_env2} 20; then",
            "    if itest 0x${reimage_flags2} -gt 0x${reimage_flags1}; then setenv reimage_newer 2; fi",
            "    if test \"${reimage_flags1}${reimage_flags2}\" = ff00; then setenv reimage_newer 2; fi",
            "      if env import -c ${kernel_addr_r} 3fff reimage_update upgrade_available bootcount bootlimit; then\n        setenv reimage_copy 2\n      else",
            "  if test \"${reimage_copy}\" = 1; then setenv reimage_to ${reimage_env2}; setenv reimage_buf ${kernel_addr_r}; setenv reimage_flags ${reimage_next1}; fi",
            "  if test \"${reimage_copy}\" = 2; then setenv reimage_to ${reimage_env1}; setenv reimage_buf ${ramdisk_addr_r}; setenv reimage_flags ${reimage_next2}; fi",
            "    ${devtype} write ${reimage_buf} ${reimage_to} 20",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line:?} not in:\n{text}");
        }
        // The lookup of the flags byte covers every value, 0 after ff.
        assert!(text.contains("setenv reimage_prev ff\n    for n in 00 01 02 "));
        assert!(text.contains(" fd fe ff; do\n"));
        // The older layout is still read: one copy on ubootenv, imported
        // as env import -c takes it, and written in place.
        assert!(text.contains(
            "    env export -c -s 4000 ${ramdisk_addr_r} reimage_update upgrade_available bootcount bootlimit\n    \
             ${devtype} write ${ramdisk_addr_r} ${reimage_env1} 20\n"
        ));
    }

    /// What the script's write makes of `env export -c -s 3fff` (CRC-32
    /// and 0x3ffb bytes of variables) with its `cp.b` and `mw.b`, and what
    /// its read makes of a copy, done here on bytes: the copy is one that
    /// fw_printenv and the recovery read as a redundant copy, and the read
    /// gives back what env import -c takes.
    #[test]
    fn the_scripts_byte_moves_make_a_redundant_copy_and_back() {
        let mut env = formats::ubootenv::UbootEnv::default();
        env.set("bootcount", "2");
        env.set("upgrade_available", "1");
        let size = ENV_SIZE as usize;
        // env export -c -s 3fff: CRC-32, then the variables.
        let exported = env.render_copy(size - 1, None).unwrap();
        let mut buf = vec![0u8; 2 * size];
        buf[..size - 1].copy_from_slice(&exported);
        let cp = |buf: &mut Vec<u8>, from: usize, to: usize, n: usize| {
            let bytes = buf[from..from + n].to_vec();
            buf[to..to + n].copy_from_slice(&bytes);
        };
        // cp.b 4 4004 3ffb; cp.b 4004 5 3ffb; mw.b 4 FLAGS
        cp(&mut buf, 4, size + 4, size - 5);
        cp(&mut buf, size + 4, 5, size - 5);
        buf[4] = 0x07;
        let copy = formats::ubootenv::UbootEnv::parse_copy(&buf[..size], true).unwrap();
        assert_eq!((copy.env, copy.flags), (env.clone(), Some(0x07)));
        // The read: cp.b 0 4000 4; cp.b 5 4004 3ffb; cp.b 4 0 1; then
        // cp.b 4000 0 3fff, and env import -c of 0x3fff bytes.
        cp(&mut buf, 0, size, 4);
        cp(&mut buf, 5, size + 4, size - 5);
        cp(&mut buf, 4, 0, 1);
        assert_eq!(buf[0], 0x07, "the flags byte for itest.b");
        cp(&mut buf, size, 0, size - 1);
        let imported = formats::ubootenv::UbootEnv::parse_copy(&buf[..size - 1], false).unwrap();
        assert_eq!(imported.env, env);
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
